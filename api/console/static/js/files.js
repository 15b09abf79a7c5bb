// The caller's files (GET /v1/files): a page at a time, a name filter, download, preview,
// rename or move (PATCH), delete, and a selection for tasks (tasks.js). The list reloads
// when the live stream says a file appeared, changed or went away.

import { json, request, ApiError } from './api.js'
import { el, bytes, when, say, debounce, visible } from './util.js'
import { openPreview, previewKind } from './preview.js'
import { CatchUp } from './catchup.js'
import { fullName, nameNodes, detailsHref, remember } from './names.js'
import { openShare } from './share.js'

const PAGE = 25
const state = { offset: 0, total: 0, prefix: '', bucket: '' }
const chosen = new Map() // id -> name: the selection, kept across pages and reloads

// The list is a read model: catch up with what the stream (or our delete) said.
const awaited = new CatchUp(() => loadFiles())

export async function loadFiles () {
  const q = new URLSearchParams({ limit: PAGE, offset: state.offset })
  if (state.prefix) q.set('prefix', state.prefix)
  if (state.bucket) q.set('bucket', state.bucket)
  let page
  try {
    page = await json(`/v1/files?${q}`)
  } catch (e) {
    say(`Could not list files: ${e.message}`, true)
    return
  }
  if (page.items.length === 0 && state.offset > 0 && page.total > 0) {
    state.offset = Math.max(0, state.offset - PAGE) // the last page emptied: step back
    return loadFiles()
  }
  const ids = new Set(page.items.map(f => f.id))
  const items = page.items.filter(f => !awaited.hides(f.id))
  state.total = page.total - (page.items.length - items.length)
  render(items)
  // Only the first page of the newest-first list (no name filter) must show a new file.
  awaited.settle(ids, state.offset === 0 && !state.prefix, new Map(page.items.map(f => [f.id, f])))
}

// A file event from the live stream: what the list should show once it catches up.
export function fileEvent (type, envelope) {
  const id = (envelope.stream_id || '').replace(/^file-/, '')
  if (type === 'FileDeleted') {
    awaited.expect(id, false)
    if (chosen.delete(id)) showSelection()
  }
  const data = envelope.data || {}
  if (type === 'FileUpdated') changed(id, data.name, data.bucket)
  // A new file is awaited in the list only if it belongs there (the bucket shown).
  if (type === 'FileCreated' && (!state.bucket || data.bucket === state.bucket)) awaited.expect(id, true)
  reloadFiles()
}

// A renamed or moved file: the list waits for the new name, and a file moved out of the
// bucket shown leaves it at once.
function changed (id, name, bucket) {
  if (state.bucket && bucket !== state.bucket) awaited.expect(id, false)
  else awaited.expectChange(id, f => f.name === name && f.bucket === bucket)
}

export const reloadFiles = debounce(loadFiles, 150)

function render (items) {
  const tbody = document.querySelector('#files tbody')
  tbody.replaceChildren(...items.map(row))
  const empty = document.getElementById('files-empty')
  empty.textContent = state.prefix ? `No file name starts with “${state.prefix}”${state.bucket ? ' in ' + state.bucket : ''}.`
    : state.bucket ? `No files in ${state.bucket} yet.` : 'No files yet.'
  empty.hidden = items.length > 0
  const pages = Math.max(1, Math.ceil(state.total / PAGE))
  const at = Math.floor(state.offset / PAGE) + 1
  document.getElementById('files-page').textContent = `Page ${at} of ${pages} (${state.total} files)`
  document.getElementById('files-prev').disabled = state.offset === 0
  document.getElementById('files-next').disabled = state.offset + PAGE >= state.total
}

function row (f) {
  remember(f)
  const full = fullName(f)
  const pick = el('input', { type: 'checkbox', 'aria-label': `Select ${full}`, checked: chosen.has(f.id) })
  pick.addEventListener('change', () => {
    if (pick.checked) chosen.set(f.id, full)
    else chosen.delete(f.id)
    showSelection()
  })
  const actions = el('td', { class: 'actions' },
    el('button', { type: 'button', 'aria-label': `Download ${full}`, onclick: () => download(f), text: 'Download' }),
    el('button', { type: 'button', 'aria-label': `Rename or move ${full}`, onclick: (ev) => openEdit(f, ev.currentTarget), text: 'Rename/move' }),
    el('button', { type: 'button', 'aria-label': `Copy link to ${full}`, onclick: (ev) => openShare(full, `/v1/files/${encodeURIComponent(f.id)}/signed-url`, ev.currentTarget), text: 'Copy link' }),
    previewKind(f) ? el('button', { type: 'button', 'aria-label': `Preview ${full}`, onclick: (ev) => openPreview({ ...f, name: full }, ev.currentTarget), text: 'Preview' }) : null,
    el('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${full}`, onclick: () => remove(f), text: 'Delete' }))
  // The name is the link to the file's details (details.js): its whole name, never an id.
  return el('tr', { 'data-id': f.id },
    el('td', { class: 'pick' }, pick),
    el('td', { class: 'name', 'data-label': 'Name' },
      el('a', { href: detailsHref(f.id), class: 'file-link', title: full }, ...nameNodes(full)),
      el('span', { class: 'help bucket-of', text: state.bucket ? '' : ` (${f.bucket})` })),
    el('td', { 'data-label': 'Size', text: bytes(f.size) }),
    el('td', { 'data-label': 'Type', text: f.content_type }),
    el('td', { 'data-label': 'Created' }, el('time', { datetime: f.created_at, text: when(f.created_at) })),
    actions)
}

// The bytes come with the credential header, so the browser cannot be pointed at the URL
// itself; the body becomes a blob and is saved under the file's name.
export async function download (f) {
  say(`Downloading ${f.name}…`)
  try {
    const resp = await request(`/v1/files/${encodeURIComponent(f.id)}/content?download=true`)
    const url = URL.createObjectURL(await resp.blob())
    const a = el('a', { href: url, download: f.name, hidden: true })
    document.body.append(a)
    a.click()
    a.remove()
    setTimeout(() => URL.revokeObjectURL(url), 60000)
    say(`Downloaded ${f.name}.`)
  } catch (e) {
    // A body cut off half-way is a TypeError from the browser ("network error").
    say(`Download of ${f.name} failed: ${e instanceof ApiError ? e.message : 'the connection was lost'}`, true)
  }
}

async function remove (f) {
  const full = fullName(f)
  if (!window.confirm(visible(`Delete ${full}? This cannot be undone.`))) return
  try {
    await request(`/v1/files/${encodeURIComponent(f.id)}`, { method: 'DELETE' })
    awaited.expect(f.id, false)
    say(`Deleted ${full}.`)
    await loadFiles()
    document.getElementById('files-filter').focus()
  } catch (e) {
    say(`Delete failed: ${e.message}`, true)
  }
}

function showSelection () {
  const n = chosen.size
  document.getElementById('selection').textContent = n ? `${n} file(s) selected` : 'No files selected'
  document.getElementById('selection-clear').disabled = n === 0
}

// The ids of the selected files, for a task.
export function selected () { return [...chosen.keys()] }

export function clearSelection () {
  chosen.clear()
  for (const box of document.querySelectorAll('#files tbody input[type=checkbox]')) box.checked = false
  showSelection()
}

// Rename or move one file: PATCH /v1/files/{id} with the new name and/or bucket, in a
// modal dialog; focus returns to the button that opened it.
function openEdit (f, opener) {
  const dialog = document.getElementById('edit')
  const form = document.getElementById('edit-form')
  const full = fullName(f)
  document.getElementById('edit-title').textContent = visible(`Rename or move ${full}`)
  form.name.value = f.name
  const buckets = [...document.querySelectorAll('#bucket-pick option')].map(o => o.value).filter(Boolean)
  form.bucket.replaceChildren(...[...new Set([f.bucket, ...buckets])].map(b => el('option', { value: b, text: b })))
  form.bucket.value = f.bucket
  document.getElementById('edit-error').textContent = ''
  form.onsubmit = async (ev) => {
    ev.preventDefault()
    const body = {}
    const name = form.name.value.trim()
    // An object (a file with a key) is renamed by its key, in the same folder, as on the
    // Objects tab: its name alone would change, its key (what the Objects tab and the S3
    // paths show) would not. The server copies it to the new key: a new id.
    const key = f.key ? f.key.slice(0, f.key.lastIndexOf('/') + 1) + name : null
    if (f.key ? key !== f.key : name !== f.name) body[f.key ? 'key' : 'name'] = f.key ? key : name
    if (form.bucket.value !== f.bucket) body.bucket = form.bucket.value
    if (!name) { document.getElementById('edit-error').textContent = 'A name is needed.'; return }
    if (!Object.keys(body).length) { dialog.close(); return }
    try {
      await json(`/v1/files/${encodeURIComponent(f.id)}`, { method: 'PATCH', body })
    } catch (e) {
      document.getElementById('edit-error').textContent = visible(`Could not change ${full}: ${e.message}`)
      return
    }
    dialog.close()
    if (f.key) awaited.expect(f.id, false) // its successor arrives with its FileCreated
    else changed(f.id, name, form.bucket.value)
    const as = body.key || (body.name && fullName({ ...f, name: body.name })) // whole names, as listed
    say(body.bucket ? `Moved ${full} to ${body.bucket}${as ? ' as ' + as : ''}.` : `Renamed ${full} to ${as}.`)
    await loadFiles()
  }
  document.getElementById('edit-cancel').onclick = () => dialog.close()
  dialog.addEventListener('close', () => { if (opener && opener.isConnected) opener.focus() }, { once: true })
  dialog.showModal()
  form.name.select()
}

export function setupFiles (onBucket) {
  document.getElementById('selection-clear').addEventListener('click', clearSelection)
  showSelection()
  const pick = document.getElementById('bucket-pick')
  pick.addEventListener('change', () => {
    state.bucket = pick.value; state.offset = 0; onBucket(pick.value); loadFiles()
  })
  document.getElementById('files-prev').addEventListener('click', () => {
    state.offset = Math.max(0, state.offset - PAGE); loadFiles()
  })
  document.getElementById('files-next').addEventListener('click', () => {
    state.offset += PAGE; loadFiles()
  })
  const filter = document.getElementById('files-filter')
  filter.addEventListener('input', debounce(() => {
    state.prefix = filter.value; state.offset = 0; loadFiles()
  }, 250))
}

export function resetFiles () {
  state.offset = 0; state.prefix = ''; state.bucket = ''
  awaited.clear()
  chosen.clear()
  showSelection()
  document.getElementById('files-filter').value = ''
  document.querySelector('#files tbody').replaceChildren()
}
