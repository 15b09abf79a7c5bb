// Previews in a modal <dialog>: images as <img>, text as plain text (textContent), PDFs in
// a sandboxed iframe. The bytes are fetched with the credential header and shown from a
// blob: URL typed by us, so a file cannot run script with the console's origin.

import { request } from './api.js'
import { el, bytes, visible } from './util.js'

const TEXT_LIMIT = 256 * 1024 // the first 256 KiB of a text file (a Range request)
const BLOB_LIMIT = 32 * 1024 * 1024 // images and PDFs up to this size are previewed

export function previewKind (file) {
  const t = (file.content_type || '').split(';')[0].trim().toLowerCase()
  if (t.startsWith('image/') && t !== 'image/svg+xml') return 'image'
  if (t === 'application/pdf') return 'pdf'
  if (t.startsWith('text/') || ['application/json', 'application/xml', 'application/x-yaml'].includes(t)) return 'text'
  return null
}

let current = null

export async function openPreview (file, opener) {
  const dialog = document.getElementById('preview')
  const body = document.getElementById('preview-body')
  document.getElementById('preview-title').textContent = visible(file.name)
  body.replaceChildren(el('p', { text: 'Loading…' }))
  dialog.showModal()
  const close = () => dialog.close()
  document.getElementById('preview-close').onclick = close
  dialog.addEventListener('close', () => {
    if (current) URL.revokeObjectURL(current)
    current = null
    body.replaceChildren()
    if (opener) opener.focus() // focus returns where it was
  }, { once: true })
  const kind = previewKind(file)
  const src = `/v1/files/${encodeURIComponent(file.id)}/content`
  try {
    if (kind === 'text') {
      const resp = await request(src, { headers: { Range: `bytes=0-${TEXT_LIMIT - 1}` } })
      const text = await resp.text()
      const note = file.size > TEXT_LIMIT ? el('p', { class: 'help', text: `First ${bytes(TEXT_LIMIT)} of ${bytes(file.size)}.` }) : null
      body.replaceChildren(el('pre', { class: 'text-preview', tabindex: '0', text }), note)
      return
    }
    if (file.size > BLOB_LIMIT) {
      body.replaceChildren(el('p', { text: `Too large to preview (${bytes(file.size)}); download it instead.` }))
      return
    }
    const resp = await request(src)
    const type = kind === 'pdf' ? 'application/pdf' : file.content_type
    current = URL.createObjectURL(new Blob([await resp.blob()], { type }))
    if (kind === 'image') {
      body.replaceChildren(el('img', { src: current, alt: file.name, class: 'image-preview' }))
    } else {
      // No allow-same-origin: the frame's origin is opaque, it cannot reach the console.
      body.replaceChildren(el('iframe', { src: current, sandbox: 'allow-scripts', title: `PDF: ${file.name}`, class: 'pdf-preview' }))
    }
  } catch (e) {
    body.replaceChildren(el('p', { class: 'error', text: `Preview failed: ${e.message}` }))
  }
}
