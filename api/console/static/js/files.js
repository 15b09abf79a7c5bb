// The caller's files (GET /v1/files): a page at a time, a name filter, download, preview,
// delete. The list reloads when the live stream says a file appeared or went away.

import { json, request } from './api.js'
import { el, bytes, when, say, debounce } from './util.js'
import { openPreview, previewKind } from './preview.js'
import { CatchUp } from './catchup.js'

const PAGE = 25
const state = { offset: 0, total: 0, prefix: '', bucket: '' }

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
  awaited.settle(ids, state.offset === 0 && !state.prefix)
}

// A file event from the live stream: what the list should show once it catches up.
export function fileEvent (type, envelope) {
  const id = (envelope.stream_id || '').replace(/^file-/, '')
  if (type === 'FileDeleted') awaited.expect(id, false)
  const data = envelope.data || {}
  // A new file is awaited in the list only if it belongs there (the bucket shown).
  if (type === 'FileCreated' && (!state.bucket || data.bucket === state.bucket)) awaited.expect(id, true)
  reloadFiles()
}

export const reloadFiles = debounce(loadFiles, 150)

function render (items) {
  const tbody = document.querySelector('#files tbody')
  tbody.replaceChildren(...items.map(row))
  document.getElementById('files-empty').hidden = items.length > 0
  const pages = Math.max(1, Math.ceil(state.total / PAGE))
  const at = Math.floor(state.offset / PAGE) + 1
  document.getElementById('files-page').textContent = `Page ${at} of ${pages} (${state.total} files)`
  document.getElementById('files-prev').disabled = state.offset === 0
  document.getElementById('files-next').disabled = state.offset + PAGE >= state.total
}

function row (f) {
  const actions = el('td', { class: 'actions' },
    el('button', { type: 'button', 'aria-label': `Download ${f.name}`, onclick: () => download(f), text: 'Download' }),
    previewKind(f) ? el('button', { type: 'button', 'aria-label': `Preview ${f.name}`, onclick: (ev) => openPreview(f, ev.currentTarget), text: 'Preview' }) : null,
    el('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${f.name}`, onclick: () => remove(f), text: 'Delete' }))
  return el('tr', { 'data-id': f.id },
    el('td', { class: 'name', 'data-label': 'Name' }, el('span', { text: f.name, title: `sha256 ${f.sha256}` })),
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
    say(`Download failed: ${e.message}`, true)
  }
}

async function remove (f) {
  if (!window.confirm(`Delete ${f.name}? This cannot be undone.`)) return
  try {
    await request(`/v1/files/${encodeURIComponent(f.id)}`, { method: 'DELETE' })
    awaited.expect(f.id, false)
    say(`Deleted ${f.name}.`)
    await loadFiles()
    document.getElementById('files-filter').focus()
  } catch (e) {
    say(`Delete failed: ${e.message}`, true)
  }
}

export function setupFiles (onBucket) {
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
  document.getElementById('files-filter').value = ''
  document.querySelector('#files tbody').replaceChildren()
}
