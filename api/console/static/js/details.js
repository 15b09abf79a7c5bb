// A file's details, as an object browser shows them: whole name, bucket and key, id, size
// (human and exact), content type, SHA-256, times, status, downloads and the metadata a
// client sent, an object's stored headers (headers.js: the owner edits them there), with
// download, copy link and preview. One GET /v1/files/{id} when it opens
// (the list already has most of this, but the view has its own address, #file/<id>, that
// may be typed, bookmarked or reloaded; and that read folds the file's own events, so it is
// never behind the list's read model). Another user's file is a 404 from the API, shown
// as "not found". Every value goes into the page as text (el's `text`, an input's value),
// never as HTML: metadata is whatever a client sent.

import { json, credential, ApiError } from './api.js'
import { el, bytes, when, visible } from './util.js'
import { fullName, nameNodes, remember } from './names.js'
import { download } from './files.js'
import { openShare } from './share.js'
import { openPreview, previewKind } from './preview.js'
import { headersTable, headersEditor, editsOf } from './headers.js'
import { listedBucket } from './buckets.js'

const ROUTE = /^#file\/(.+)$/
const enc = (s) => encodeURIComponent(s)
let shown = null // the id the dialog is showing (or loading), null when closed

const dialog = () => document.getElementById('details')
const note = (text) => { document.getElementById('details-note').textContent = text }

// The id in the address, if it names a file's details.
function routed () {
  const m = ROUTE.exec(window.location.hash)
  if (!m) return null
  try { return decodeURIComponent(m[1]) } catch { return m[1] }
}

// Follows the address: opens the details it names, closes them when it names none (Back).
export function route () {
  const id = routed()
  if (id) openDetails(id)
  else if (dialog().open) dialog().close()
}

export async function openDetails (id) {
  const d = dialog()
  if (shown !== id) {
    shown = id
    document.getElementById('details-title').textContent = 'File details'
    document.getElementById('details-body').replaceChildren(el('p', { text: 'Loading…' }))
    note('')
  }
  if (!d.open) d.showModal()
  let f
  try {
    f = await json(`/v1/files/${enc(id)}`)
  } catch (e) {
    if (shown !== id) return // another file was opened meanwhile
    const missing = e instanceof ApiError && e.status === 404
    document.getElementById('details-title').textContent = missing ? 'File not found' : 'File details'
    document.getElementById('details-body').replaceChildren(el('p', {
      class: 'error',
      text: missing ? 'No such file: it does not exist, it was deleted, or it is not yours.'
        : `Could not read the file: ${e.message}`
    }))
    return
  }
  if (shown !== id) return // a slower answer for a file no longer shown
  remember(f)
  render(f)
}

function render (f) {
  const full = fullName(f)
  const title = document.getElementById('details-title')
  title.replaceChildren(...nameNodes(full))
  title.title = visible(full)
  const props = el('dl', { class: 'props' })
  const add = (term, ...value) => props.append(el('dt', { text: term }), el('dd', {}, ...value))
  add('Name', full)
  add('Bucket', f.bucket === 'default' ? 'default (no bucket)' : f.bucket)
  if (f.key) add('Key', copyable('key', f.key))
  add('Id', copyable('id', f.id))
  add('Size', f.size >= 1024 ? `${bytes(f.size)} (${f.size.toLocaleString()} bytes)` : `${f.size} bytes`)
  add('Content type', f.content_type)
  add('SHA-256', copyable('SHA-256', f.sha256))
  add('Created', el('time', { datetime: f.created_at, title: f.created_at, text: when(f.created_at) }))
  if (f.updated_at !== f.created_at) {
    add('Modified', el('time', { datetime: f.updated_at, title: f.updated_at, text: when(f.updated_at) }))
  }
  add('Status', el('span', { class: 'badge s-completed', id: 'details-status', text: 'available' }))
  if (f.downloads !== undefined) add('Downloads', `${f.downloads} (${bytes(f.bytes_sent)} sent)`)

  const entries = Object.entries(f.metadata || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  const meta = entries.length
    ? el('table', { class: 'list meta', 'aria-labelledby': 'details-meta-title' },
      el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: 'Key' }), el('th', { scope: 'col', text: 'Value' }))),
      el('tbody', {}, ...entries.map(([k, v]) => el('tr', {},
        el('td', { 'data-label': 'Key', text: k }), el('td', { 'data-label': 'Value', text: String(v) })))))
    : el('p', { class: 'help', text: 'No metadata.' })

  // An object's stored headers may be edited by whoever may rename or delete it: as on the
  // Objects tab, an object of a bucket the console lists (GET /v1/buckets: yours, everyone's
  // for an admin), not one of someone else's public bucket, which is only readable.
  const editor = f.key && listedBucket(f.bucket) ? headersEditor(f, () => openDetails(f.id)) : null

  const actions = el('div', { class: 'row actions', id: 'details-actions' },
    el('button', { type: 'button', onclick: () => download(f), text: 'Download' }),
    el('button', { type: 'button', onclick: (ev) => openShare(full, `/v1/files/${enc(f.id)}/signed-url`, ev.currentTarget), text: 'Copy link' }),
    previewKind(f) ? el('button', { type: 'button', onclick: (ev) => openPreview({ ...f, name: full }, ev.currentTarget), text: 'Preview' }) : null,
    editor ? editor.button : null)

  // Focus stays where it was across a re-render (a live update), by the control's label;
  // an open headers form keeps what was typed in it.
  const body = document.getElementById('details-body')
  const focused = body.contains(document.activeElement) ? document.activeElement.getAttribute('aria-label') || document.activeElement.textContent : null
  const edits = editsOf(body)
  body.replaceChildren(props, el('h3', { id: 'details-meta-title', class: 'sub', text: 'Metadata' }), meta,
    ...headersTable(f), actions, ...(editor ? [editor.form || editor.note] : []))
  if (focused) {
    const again = [...body.querySelectorAll('button, input')].find(x => (x.getAttribute('aria-label') || x.textContent) === focused)
    if (again) again.focus()
  }
  if (edits && editor && editor.keep) editor.keep(edits)
}

// An id, a key or a digest: a read-only field that selects itself whole, and a Copy button.
function copyable (label, value) {
  const field = el('input', { type: 'text', readonly: true, class: 'copy-field', 'aria-label': label, value, spellcheck: 'false' })
  field.addEventListener('focus', () => field.select())
  const copy = el('button', {
    type: 'button',
    'aria-label': `Copy ${label}`,
    text: 'Copy',
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(value)
        note(`Copied the ${label}.`)
      } catch {
        // No clipboard here (not a secure context, or refused): selected for Ctrl+C.
        field.focus()
        field.select()
        note(`The ${label} is selected: copy it with Ctrl+C (⌘C).`)
      }
    }
  })
  return el('span', { class: 'copy' }, field, copy)
}

// A file event from the live stream: the details shown follow it (read again; a deleted
// file says so and its actions go).
export function detailsEvent (type, envelope) {
  const id = (envelope.stream_id || '').replace(/^file-/, '')
  if (!shown || id !== shown || !dialog().open) return
  if (type === 'FileDeleted') {
    const status = document.getElementById('details-status')
    if (status) { status.textContent = 'deleted'; status.className = 'badge s-failed' }
    document.getElementById('details-actions')?.remove()
    document.getElementById('details-headers-form')?.remove()
    note('This file was deleted.')
    return
  }
  openDetails(id) // created again (an object's key), renamed, moved, replaced
}

export function closeDetails () {
  if (dialog().open) dialog().close()
}

export function setupDetails () {
  const d = dialog()
  document.getElementById('details-close').addEventListener('click', () => d.close())
  // Escape closes it too (a modal <dialog>'s own cancel). Closed by any means, the address
  // forgets the file (replaced, not pushed: Back does not reopen it), and focus returns
  // to the file's link in the list, or to the list's filter when it is not on this page.
  d.addEventListener('close', () => {
    const id = shown
    shown = null
    if (routed()) history.replaceState(null, '', window.location.pathname + window.location.search)
    const link = id && document.querySelector(`#files tbody tr[data-id="${CSS.escape(id)}"] a.file-link`)
    const back = link || document.getElementById('files-filter')
    if (back.offsetParent !== null) back.focus()
  })
  // Signed out, the address waits: signing in follows it (main.js).
  window.addEventListener('hashchange', () => { if (credential()) route() })
}
