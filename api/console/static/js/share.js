// Signed URLs: "Copy link" on a file or an object asks the server for a URL that reads it
// without a credential until it expires (POST …/signed-url with the chosen expiry), shows
// it with its expiry time and copies it to the clipboard. The link is made only when the
// user asks (the expiry starts then), never kept by the console.

import { json } from './api.js'
import { say, visible } from './util.js'

let opener = null

// `path`: the signed-url endpoint (/v1/files/{id}/signed-url or the object's).
export function openShare (label, path, from) {
  const dialog = document.getElementById('share')
  const form = document.getElementById('share-form')
  opener = from
  document.getElementById('share-title').textContent = visible(`Link to ${label}`)
  document.getElementById('share-url').value = ''
  document.getElementById('share-result').hidden = true
  document.getElementById('share-error').textContent = ''
  form.onsubmit = async (ev) => {
    ev.preventDefault()
    const expires = Number(form.expires.value)
    const ask = (seconds) => json(path, { method: 'POST', body: { method: 'GET', expires_in: seconds } })
    let signed
    let capped = false
    try {
      try {
        signed = await ask(expires)
      } catch (e) {
        // Longer than this server allows (CAIRN_SIGNED_URL_MAX_EXPIRY, which it names):
        // the longest it allows instead, said so beside the expiry.
        const max = e.code === 'invalid_expires_in' && Number(e.details.max)
        if (!max || max >= expires) throw e
        signed = await ask(max)
        capped = true
      }
    } catch (e) {
      document.getElementById('share-error').textContent = `Could not make a link: ${e.message}`
      return
    }
    // A relative answer (no Host to build on) is made absolute here.
    const url = new URL(signed.url, window.location.origin).href
    const field = document.getElementById('share-url')
    field.value = url
    document.getElementById('share-expires').textContent = `Works until ${new Date(signed.expires_at).toLocaleString()}.` +
      (capped ? ' This server allows links for no longer than that.' : '')
    document.getElementById('share-result').hidden = false
    let copied = false
    try {
      await navigator.clipboard.writeText(url)
      copied = true
    } catch { /* no clipboard (not a secure context, or refused): the field is selected */ }
    field.focus()
    field.select()
    say(copied ? `Link to ${label} copied.` : `Link to ${label} made; copy it from the field.`)
  }
  document.getElementById('share-copy').onclick = async () => {
    const field = document.getElementById('share-url')
    try { await navigator.clipboard.writeText(field.value); say('Link copied.') } catch { field.select() }
  }
  document.getElementById('share-close').onclick = () => dialog.close()
  dialog.addEventListener('close', () => { if (opener && opener.isConnected) opener.focus() }, { once: true })
  dialog.showModal()
  form.expires.focus()
}
