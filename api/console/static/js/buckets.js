// Buckets (GET/POST/DELETE /v1/buckets): list, create (public or private), delete (a
// non-empty bucket only after a second, explicit confirmation: force=true deletes its
// objects). The bucket picker on the Files tab filters the list and targets uploads.

import { json, request } from './api.js'
import { el, when, say, debounce } from './util.js'
import { CatchUp } from './catchup.js'
import { setObjectBuckets } from './objects.js'

let names = []
let openBucket = () => {}
let browseBucket = () => {}
// The list is a read model: catch up with what the stream (or our own change) said.
const awaited = new CatchUp(() => loadBuckets())

export async function loadBuckets () {
  let items = []
  try {
    let cursor = null
    do { // every page: the picker needs all names
      const q = new URLSearchParams({ limit: 1000 })
      if (cursor) q.set('cursor', cursor)
      const page = await json(`/v1/buckets?${q}`)
      items = items.concat(page.items)
      cursor = page.next_cursor
    } while (cursor)
  } catch (e) {
    say(`Could not list buckets: ${e.message}`, true)
    return
  }
  const all = new Set(items.map(b => b.name))
  items = items.filter(b => !awaited.hides(b.name))
  names = items.map(b => b.name)
  document.querySelector('#buckets tbody').replaceChildren(...items.map(row))
  document.getElementById('buckets-empty').hidden = items.length > 0
  fillPicker()
  setObjectBuckets(names)
  awaited.settle(all)
}

export const reloadBuckets = debounce(loadBuckets, 150)

// Whether `name` is a bucket the list shows (GET /v1/buckets: yours, everyone's for an
// admin), that is one whose objects you may write: the details view offers an object's
// owner-only edits by it (details.js), as the Objects tab, which browses these buckets only,
// offers rename and delete.
export const listedBucket = (name) => names.includes(name)

function fillPicker (notify = true) {
  const pick = document.getElementById('bucket-pick')
  const chosen = pick.value
  const options = [el('option', { value: '', text: 'All (uploads go to default)' }),
    el('option', { value: 'default', text: 'default' }),
    ...names.filter(n => n !== 'default').map(n => el('option', { value: n, text: n }))]
  pick.replaceChildren(...options)
  pick.value = names.includes(chosen) || chosen === 'default' ? chosen : ''
  if (notify && pick.value !== chosen) pick.dispatchEvent(new Event('change'))
}

function row (b) {
  return el('tr', { 'data-name': b.name },
    el('td', { class: 'name', 'data-label': 'Name', text: b.name }),
    el('td', { 'data-label': 'Access', text: b.public ? 'public' : 'private' }),
    el('td', { 'data-label': 'Created' }, el('time', { datetime: b.created_at, text: when(b.created_at) })),
    el('td', { class: 'actions' },
      el('button', { type: 'button', 'aria-label': `Open ${b.name}`, onclick: () => openBucket(b.name), text: 'Open' }),
      el('button', { type: 'button', 'aria-label': `Browse objects of ${b.name}`, onclick: () => browseBucket(b.name), text: 'Browse' }),
      el('button', { type: 'button', class: 'danger', 'aria-label': `Delete bucket ${b.name}`, onclick: () => remove(b.name), text: 'Delete' })))
}

async function remove (name) {
  if (!window.confirm(`Delete bucket ${name}?`)) return
  try {
    await request(`/v1/buckets/${encodeURIComponent(name)}`, { method: 'DELETE' })
  } catch (e) {
    if (e.code !== 'bucket_not_empty') { say(`Delete failed: ${e.message}`, true); return }
    const n = e.details.objects
    if (!window.confirm(`Bucket ${name} holds ${n ?? 'some'} object(s). Delete them all, and the bucket?`)) return
    try {
      await request(`/v1/buckets/${encodeURIComponent(name)}?force=true`, { method: 'DELETE' })
    } catch (e2) { say(`Delete failed: ${e2.message}`, true); return }
  }
  awaited.expect(name, false)
  say(`Deleted bucket ${name}.`)
  await loadBuckets()
  document.getElementById('bucket-name').focus()
}

export function setupBuckets (onOpen, onBrowse) {
  openBucket = onOpen
  browseBucket = onBrowse
  const form = document.getElementById('bucket-form')
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const error = document.getElementById('bucket-error')
    error.textContent = ''
    const name = form.name.value.trim()
    if (!form.name.checkValidity()) {
      error.textContent = 'Names are 3 to 63 characters: lower-case letters, digits, dots and hyphens.'
      form.name.focus()
      return
    }
    try {
      await request('/v1/buckets', { method: 'POST', body: { name, public: form.public.checked } })
    } catch (e) {
      error.textContent = `Could not create ${name}: ${e.message}`
      form.name.focus()
      return
    }
    awaited.expect(name, true)
    form.reset()
    say(`Created bucket ${name}.`)
    await loadBuckets()
  })
}

export function bucketEvent (type, envelope) {
  const name = (envelope.stream_id || '').replace(/^bucket-/, '')
  if (type === 'BucketCreated') awaited.expect(name, true)
  if (type === 'BucketDeleted') awaited.expect(name, false)
  reloadBuckets()
}

export function resetBuckets () {
  awaited.clear()
  names = []
  document.querySelector('#buckets tbody').replaceChildren()
  fillPicker(false)
}
