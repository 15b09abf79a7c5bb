// Signed URLs: "Copy link" on a file or an object asks the server for a URL that reads it
// without a credential until it expires (POST …/signed-url with the chosen expiry), shows
// it with its expiry time and copies it to the clipboard. The link is made only when the
// user asks (the expiry starts then), never kept by the console.

import { json } from './api.js'
import { say } from './util.js'

let opener = null

// `path`: the signed-url endpoint (/v1/files/{id}/signed-url or the object's).
export function openShare (label, path, from) {
  const dialog = document.getElementById('share')
  const form = document.getElementById('share-form')
  opener = from
  document.getElementById('share-title').textContent = `Link to ${label}`
  document.getElementById('share-url').value = ''
  document.getElementById('share-result').hidden = true
  document.getElementById('share-error').textContent = ''
  form.onsubmit = async (ev) => {
    ev.preventDefault()
    const expires = Number(form.expires.value)
    let signed
    try {
      signed = await json(path, { method: 'POST', body: { method: 'GET', expires_in: expires } })
    } catch (e) {
      document.getElementById('share-error').textContent = `Could not make a link: ${e.message}`
      return
    }
    // A relative answer (no Host to build on) is made absolute here.
    const url = new URL(signed.url, window.location.origin).href
    const field = document.getElementById('share-url')
    field.value = url
    document.getElementById('share-expires').textContent = `Works until ${new Date(signed.expires_at).toLocaleString()}.`
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
