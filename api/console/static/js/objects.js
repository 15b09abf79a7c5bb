// Objects of a bucket (GET /v1/buckets/{name}/objects?prefix=&delimiter=/): folders are
// the common prefixes, navigated by a breadcrumb; a name filter narrows the folder (it
// extends the prefix); pages follow the server's cursor ("More"). The column headers sort
// by name, size or modified time: in the browser, over the rows loaded so far, as the API
// lists in key order only (folders stay first). Each object: download,
// copy a signed URL, rename/move (a new key and/or bucket), delete; every request but the
// signed URL of an ordinary key addresses the object by its file id (keys.js says why). The listing is a read model: an object event from the stream
// re-reads the folder shown.

import { json, request } from './api.js'
import { el, bytes, when, say, debounce, visible } from './util.js'
import { download } from './files.js'
import { openShare } from './share.js'
import { openPreview, previewKind } from './preview.js'
import { CatchUp } from './catchup.js'
import { remember, detailsHref } from './names.js'
import { objectUrl } from './keys.js'

const PAGE = 100
const state = { bucket: '', prefix: '', filter: '', cursor: null }
// What is loaded (all pages so far) and how it is shown; loading and sorting both render.
const loaded = { prefixes: [], items: [] }
const sort = { by: 'name', dir: 1 }
const enc = (s) => encodeURIComponent(s)
// The listing is a read model: catch up with what the stream (or our delete) said.
const awaited = new CatchUp(() => loadObjects(false))

export async function loadObjects (more = false) {
  const tbody = document.querySelector('#objects tbody')
  const empty = document.getElementById('objects-empty')
  if (!state.bucket) {
    loaded.prefixes = []; loaded.items = []
    tbody.replaceChildren()
    empty.textContent = 'Choose a bucket to list its objects.'
    empty.hidden = false
    document.getElementById('objects-more').hidden = true
    crumbs()
    return
  }
  const q = new URLSearchParams({ prefix: state.prefix + state.filter, delimiter: '/', limit: PAGE })
  if (more && state.cursor) q.set('cursor', state.cursor)
  let page
  try {
    page = await json(`/v1/buckets/${enc(state.bucket)}/objects?${q}`)
  } catch (e) {
    say(`Could not list objects: ${e.message}`, true)
    return
  }
  const items = page.items.filter(o => !awaited.hides(o.id))
  if (more) {
    loaded.prefixes.push(...page.common_prefixes)
    loaded.items.push(...items)
  } else {
    loaded.prefixes = [...page.common_prefixes]
    loaded.items = items
  }
  render()
  state.cursor = page.next_cursor
  document.getElementById('objects-more').hidden = !page.next_cursor
  document.getElementById('objects-sort-help').hidden = !page.next_cursor
  empty.textContent = state.filter ? `Nothing here starts with “${state.filter}”.`
    : state.prefix ? 'This folder is empty.' : 'This bucket is empty.'
  empty.hidden = tbody.children.length > 0
  crumbs()
  if (!more) awaited.settle(new Set(page.items.map(o => o.id)), !page.next_cursor)
}

// Code-point order, as the API orders keys: name ascending is the listing's own order.
const byText = (a, b) => (a < b ? -1 : a > b ? 1 : 0)
const KEYS = {
  name: (a, b) => byText(a.key, b.key),
  size: (a, b) => a.size - b.size,
  modified: (a, b) => Date.parse(a.last_modified) - Date.parse(b.last_modified)
}

function render () {
  const { by, dir } = sort
  // Ties (same size, same time) by key, so the order is always the same.
  const items = [...loaded.items].sort((a, b) => dir * (KEYS[by](a, b) || KEYS.name(a, b)))
  // Folders have no size or time: they stay first, by name (reversed with a name sort).
  const prefixes = [...loaded.prefixes].sort((a, b) => (by === 'name' ? dir : 1) * byText(a, b))
  document.querySelector('#objects tbody').replaceChildren(
    ...prefixes.map(folderRow), ...items.map(objectRow))
  for (const b of document.querySelectorAll('#objects thead button.sort')) {
    const on = b.dataset.sort === by
    b.parentElement.setAttribute('aria-sort', on ? (dir > 0 ? 'ascending' : 'descending') : 'none')
  }
}

// A header's button: sort by its column, ascending; again: the other way.
function sortBy (by) {
  sort.dir = sort.by === by ? -sort.dir : 1
  sort.by = by
  render()
  say(`Objects sorted by ${by}, ${sort.dir > 0 ? 'ascending' : 'descending'}.`)
}

export const reloadObjects = debounce(() => loadObjects(false), 150)

// The part of a key or prefix below the folder shown.
const below = (s) => s.slice(state.prefix.length)

function folderRow (prefix) {
  return el('tr', { 'data-prefix': prefix, class: 'folder-row' },
    el('td', { class: 'name folder', 'data-label': 'Name' },
      el('button', { type: 'button', 'aria-label': `Open folder ${below(prefix)}`, onclick: () => go(prefix), text: below(prefix) })),
    el('td', { 'data-label': 'Size', text: '' }),
    el('td', { 'data-label': 'Modified', text: '' }),
    el('td', { class: 'actions' }))
}

function objectRow (o) {
  remember(o) // its key names its events in the activity feed
  const name = below(o.key)
  const leaf = o.key.split('/').pop() || o.key
  return el('tr', { 'data-key': o.key, 'data-id': o.id },
    // The name links to the object's details (details.js), as a file's does in Files.
    el('td', { class: 'name', 'data-label': 'Name' },
      el('a', { href: detailsHref(o.id), class: 'file-link', title: o.key }, el('span', { class: 'leaf', text: name }))),
    el('td', { 'data-label': 'Size', text: bytes(o.size) }),
    el('td', { 'data-label': 'Modified' }, el('time', { datetime: o.last_modified, text: when(o.last_modified) })),
    el('td', { class: 'actions' },
      previewKind(o) ? el('button', { type: 'button', 'aria-label': `Preview ${o.key}`, onclick: (ev) => openPreview({ id: o.id, name: o.key, size: o.size, content_type: o.content_type }, ev.currentTarget), text: 'Preview' }) : null,
      el('button', { type: 'button', 'aria-label': `Download ${o.key}`, onclick: () => download({ id: o.id, name: leaf }), text: 'Download' }),
      el('button', { type: 'button', 'aria-label': `Copy link to ${o.key}`, onclick: (ev) => openShare(o.key, signer(o), ev.currentTarget), text: 'Copy link' }),
      el('button', { type: 'button', 'aria-label': `Rename or move ${o.key}`, onclick: (ev) => openMove(o, ev.currentTarget), text: 'Rename/move' }),
      el('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${o.key}`, onclick: () => remove(o), text: 'Delete' })))
}

function crumbs () {
  const nav = document.getElementById('objects-path')
  if (!state.bucket) { nav.replaceChildren(); return }
  const parts = state.prefix.split('/').filter(Boolean)
  const items = [el('button', { type: 'button', 'aria-label': `Top of ${state.bucket}`, onclick: () => go(''), text: state.bucket })]
  parts.forEach((p, i) => {
    const prefix = parts.slice(0, i + 1).join('/') + '/'
    items.push(el('span', { 'aria-hidden': 'true', text: '/' }))
    items.push(i === parts.length - 1
      ? el('span', { 'aria-current': 'location', text: p })
      : el('button', { type: 'button', onclick: () => go(prefix), text: p }))
  })
  nav.replaceChildren(...items)
}

function go (prefix) {
  awaited.clear()
  state.prefix = prefix
  state.filter = ''
  state.cursor = null
  document.getElementById('objects-filter').value = ''
  loadObjects().then(() => {
    const first = document.querySelector('#objects tbody button') || document.getElementById('objects-filter')
    first.focus()
  })
}

// Where "Copy link" asks for a signed URL: the object's own (a link naming bucket and key,
// as S3's presigned URLs do, answering its X-Amz-Meta-* headers too); for a key a browser
// cannot address by its path (keys.js), the file's (/v1/files/{id}/content: the same
// object, the id being the key's, its current version, without the X-Amz-Meta-* headers).
// The server's object link for such a key would not work in a browser either.
const signer = (o) => objectUrl(state.bucket, o.key, '/signed-url') || `/v1/files/${enc(o.id)}/signed-url`

// Deleted by its file id (DELETE /v1/files/{id}), for every key: the id is the key's
// (derived from bucket and key, the one the listing gave), so this is the object DELETE's
// command and event (DeleteFile, FileDeleted; an object already gone is no error either),
// and its URL holds nothing a browser rewrites. By the key's path, a key with a `..`
// segment (`a/../b`) would have deleted another object (`b`).
async function remove (o) {
  if (!window.confirm(visible(`Delete ${o.key}? This cannot be undone.`))) return
  try {
    await request(`/v1/files/${enc(o.id)}`, { method: 'DELETE' })
  } catch (e) {
    say(`Delete failed: ${e.message}`, true)
    return
  }
  say(`Deleted ${o.key}.`)
  awaited.expect(o.id, false)
  await loadObjects()
  document.getElementById('objects-filter').focus()
}

// Rename or move one object: PATCH /v1/files/{id} with the new key and/or bucket, in the
// files' modal dialog (its name field holds the whole key). The server copies the object
// to the new key (same chunks) and deletes the old one: a new id, so the list waits for
// the old id to leave and, when it lands in the folder shown, for the new one to appear.
function openMove (o, opener) {
  const dialog = document.getElementById('edit')
  const form = document.getElementById('edit-form')
  const error = document.getElementById('edit-error')
  const bucket = state.bucket
  document.getElementById('edit-title').textContent = visible(`Rename or move ${o.key}`)
  document.querySelector('label[for=edit-name]').textContent = 'New key'
  form.name.value = o.key
  const buckets = [...document.querySelectorAll('#objects-bucket option')].map(x => x.value).filter(Boolean)
  form.bucket.replaceChildren(...[...new Set([bucket, ...buckets])].map(b => el('option', { value: b, text: b })))
  form.bucket.value = bucket
  error.textContent = ''
  form.onsubmit = async (ev) => {
    ev.preventDefault()
    const key = form.name.value
    const body = {}
    if (key !== o.key) body.key = key
    if (form.bucket.value !== bucket) body.bucket = form.bucket.value
    if (!key) { error.textContent = 'A key is needed.'; return }
    if (!Object.keys(body).length) { dialog.close(); return }
    let moved
    try {
      moved = await json(`/v1/files/${enc(o.id)}`, { method: 'PATCH', body })
    } catch (e) {
      error.textContent = visible(`Could not move ${o.key}: ${e.message}`)
      return
    }
    dialog.close()
    awaited.expect(o.id, false)
    if (moved.bucket === state.bucket && moved.key.startsWith(state.prefix + state.filter) &&
        !moved.key.slice(state.prefix.length).includes('/')) awaited.expect(moved.id, true)
    say(body.bucket ? `Moved ${o.key} to ${moved.bucket} as ${moved.key}.` : `Renamed ${o.key} to ${moved.key}.`)
    await loadObjects()
  }
  document.getElementById('edit-cancel').onclick = () => dialog.close()
  dialog.addEventListener('close', () => {
    document.querySelector('label[for=edit-name]').textContent = 'New name'
    const back = opener && opener.isConnected ? opener : document.getElementById('objects-filter')
    back.focus()
  }, { once: true })
  dialog.showModal()
  form.name.select()
}

// Shows a bucket (from the picker or a bucket's "Browse" button).
export function browse (bucket) {
  const pick = document.getElementById('objects-bucket')
  if (![...pick.options].some(o => o.value === bucket)) pick.append(el('option', { value: bucket, text: bucket }))
  pick.value = bucket
  state.bucket = bucket
  go('')
}

// The bucket names for the picker (from buckets.js, on every reload of the bucket list).
export function setObjectBuckets (names) {
  const pick = document.getElementById('objects-bucket')
  const chosen = pick.value
  pick.replaceChildren(el('option', { value: '', text: 'Choose a bucket' }),
    ...names.map(n => el('option', { value: n, text: n })))
  pick.value = names.includes(chosen) ? chosen : ''
  if (pick.value !== state.bucket) { state.bucket = pick.value; go('') }
}

export function objectEvent (type, envelope) {
  const data = envelope.data || {}
  const id = (envelope.stream_id || '').replace(/^file-/, '')
  if (!state.bucket) return
  if (type === 'FileDeleted') awaited.expect(id, false)
  // A new object right in the folder shown (not under a subfolder of it) is awaited there.
  const here = state.prefix + state.filter
  if (type === 'FileCreated' && data.bucket === state.bucket && typeof data.key === 'string' &&
      data.key.startsWith(here) && !data.key.slice(state.prefix.length).includes('/')) {
    awaited.expect(id, true)
  }
  // Only the bucket shown matters; events without a bucket (a delete) re-read it too.
  if (!data.bucket || data.bucket === state.bucket) reloadObjects()
}

export function setupObjects () {
  document.getElementById('objects-bucket').addEventListener('change', (ev) => {
    state.bucket = ev.target.value
    go('')
  })
  document.getElementById('objects-more').addEventListener('click', () => loadObjects(true))
  for (const b of document.querySelectorAll('#objects thead button.sort')) {
    b.addEventListener('click', () => sortBy(b.dataset.sort))
  }
  const filter = document.getElementById('objects-filter')
  filter.addEventListener('input', debounce(() => {
    state.filter = filter.value
    state.cursor = null
    loadObjects()
  }, 250))
  loadObjects() // no bucket yet: says to choose one
}

export function resetObjects () {
  awaited.clear()
  state.bucket = ''; state.prefix = ''; state.filter = ''; state.cursor = null
  loaded.prefixes = []; loaded.items = []
  document.getElementById('objects-filter').value = ''
  loadObjects()
}
