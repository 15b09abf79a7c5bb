// Background tasks (/v1/tasks): started from a selection on the Files tab (compress,
// extract, copy, move, delete), then watched live on the Tasks tab: status, items and bytes,
// pause, resume, cancel, and the result files to download. Each task event on the stream
// re-reads that one task (GET /v1/tasks/{id} folds its own stream, so it is never behind
// the event that woke it; ?results=false, as the tab shows no per-item results, which
// are most of a big task's answer); nothing polls.

import { json, request } from './api.js'
import { el, bytes, say } from './util.js'
import { download } from './files.js'
import { fullName } from './names.js'

const rows = new Map() // id -> <tr>
const pending = new Map() // id -> timer: a burst of events for one task is one read
const names = new Map() // result file id -> { full, name }: its whole name and last part, read once

const ACTIONS = {
  PENDING: ['pause', 'cancel'],
  RUNNING: ['pause', 'cancel'],
  PAUSED: ['resume', 'cancel'],
  COMPLETED: [],
  FAILED: [],
  CANCELLED: []
}

const cap = (s) => s[0].toUpperCase() + s.slice(1)

function describe (t) {
  const p = t.params || {}
  const n = (p.files || []).length
  if (t.type === 'compress') return `compress ${n} file(s) into ${p.output?.file_name ?? '?'}`
  if (t.type === 'extract') return `extract into ${p.output?.bucket ?? 'default'}${p.output?.prefix ? '/' + p.output.prefix : ''}`
  if (t.type === 'copy' || t.type === 'move') return `${t.type} ${n} file(s) to ${p.to?.bucket ?? '?'}${p.to?.prefix ? ' as ' + p.to.prefix + '…' : ''}`
  return `${t.type} ${n} file(s)`
}

async function resultName (id) {
  if (names.has(id)) return names.get(id)
  try {
    const f = await json(`/v1/files/${encodeURIComponent(id)}`)
    names.set(id, { full: fullName(f), name: f.name })
    return names.get(id)
  } catch {
    return null // moved on since (deleted): no link
  }
}

async function row (t) {
  const pr = t.progress || {}
  const bar = el('progress', { max: '100', 'aria-label': `Progress of ${describe(t)}` })
  bar.value = pr.percent ?? 0
  const detail = [`${pr.items_done ?? 0} of ${pr.items_total ?? 0} items`]
  if (pr.items_failed) detail.push(`${pr.items_failed} failed`)
  if (pr.bytes_total) detail.push(`${bytes(pr.bytes_done)} of ${bytes(pr.bytes_total)}`)
  const buttons = ACTIONS[t.status].map(a => el('button', {
    type: 'button',
    'aria-label': `${cap(a)} task ${describe(t)}`,
    onclick: () => act(t, a),
    text: cap(a)
  }))
  // The result link: every file the task made (a compress makes one archive).
  for (const id of t.status === 'COMPLETED' ? (t.result_file_ids || []) : []) {
    const found = await resultName(id)
    if (found) {
      const { full, name } = found
      buttons.push(el('button', { type: 'button', class: 'result', 'data-file': id, 'aria-label': `Download result ${full}`, onclick: () => download({ id, name }), text: `Download ${full}` }))
    }
  }
  const status = el('td', { 'data-label': 'Status' }, el('span', { class: `badge s-${t.status.toLowerCase()}`, text: t.status.toLowerCase() }))
  if (t.error && t.status === 'FAILED') status.append(el('span', { class: 'help', text: ` ${t.error.message || t.error.code || ''}` }))
  return el('tr', { 'data-id': t.id, 'data-status': t.status, 'data-type': t.type, 'data-updated': t.updated_at },
    el('td', { class: 'name', 'data-label': 'Task', text: describe(t) }),
    status,
    el('td', { 'data-label': 'Progress' }, bar, el('span', { class: 'help', text: ' ' + detail.join(' · ') })),
    el('td', { class: 'actions' }, ...buttons))
}

async function put (t) {
  const fresh = await row(t)
  const old = rows.get(t.id)
  // Reads race (an event's and our own): an older answer never replaces a newer one.
  if (old && Date.parse(old.dataset.updated) > Date.parse(t.updated_at)) return
  // Keep keyboard focus on the same action across the re-render.
  const focused = old && old.contains(document.activeElement) ? document.activeElement.textContent : null
  if (old) old.replaceWith(fresh)
  else document.querySelector('#tasks tbody').prepend(fresh)
  rows.set(t.id, fresh)
  if (focused) {
    const again = [...fresh.querySelectorAll('button')].find(b => b.textContent === focused)
    if (again) again.focus()
  }
  document.getElementById('tasks-empty').hidden = rows.size > 0
}

export async function loadTasks () {
  try {
    const page = await json('/v1/tasks?limit=50')
    rows.clear()
    document.querySelector('#tasks tbody').replaceChildren()
    for (const t of page.items.slice().reverse()) await put(t)
    document.getElementById('tasks-empty').hidden = rows.size > 0
    document.getElementById('tab-tasks').hidden = false
  } catch (e) {
    // A server without tasks (an older Cairn) has no such route: no tab for it.
    if (e.status === 404) document.getElementById('tab-tasks').hidden = true
    else say(`Could not list tasks: ${e.message}`, true)
  }
}

async function refresh (id) {
  try {
    await put(await json(`/v1/tasks/${encodeURIComponent(id)}?results=false`))
  } catch (e) {
    if (e.status !== 404) say(`Could not read a task: ${e.message}`, true)
  }
}

export function taskEvent (envelope) {
  const id = (envelope.stream_id || '').replace(/^task-/, '')
  if (!id || pending.has(id)) return
  pending.set(id, setTimeout(() => { pending.delete(id); refresh(id) }, 150))
}

async function act (t, action) {
  try {
    await request(`/v1/tasks/${encodeURIComponent(t.id)}/${action}`, { method: 'POST' })
    say(`${cap(action)}: ${describe(t)}`)
    await refresh(t.id)
  } catch (e) {
    say(`Could not ${action} the task: ${e.message}`, true)
  }
}

// The task form on the Files tab: which fields show depends on the type; the selection is
// the checked rows of the file list (selected() from files.js).
function params (form, files) {
  const type = form.type.value
  const bucket = form.bucket.value.trim() || 'default'
  const prefix = form.prefix.value.trim()
  if (type === 'compress') {
    const name = form.archive.value.trim() || `archive.${form.format.value === 'zip' ? 'zip' : 'tar.gz'}`
    return { files, format: form.format.value, output: { file_name: name, bucket } }
  }
  if (type === 'extract') return { file: files[0], output: { bucket, prefix } }
  if (type === 'copy' || type === 'move') return { files, to: { bucket, prefix } }
  return { files }
}

function showFields (form) {
  const type = form.type.value
  for (const f of form.querySelectorAll('[data-for]')) {
    f.hidden = !f.dataset.for.split(' ').includes(type)
  }
}

export function setupTasks (selected, afterStart) {
  const form = document.getElementById('task-form')
  form.type.addEventListener('change', () => showFields(form))
  showFields(form)
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const error = document.getElementById('task-error')
    error.textContent = ''
    const files = selected()
    const type = form.type.value
    if (!files.length) { error.textContent = 'Select one or more files in the list first.'; return }
    if (type === 'extract' && files.length !== 1) { error.textContent = 'Extract takes exactly one archive: select one file.'; return }
    if (type === 'delete' && !window.confirm(`Delete ${files.length} file(s)? This cannot be undone.`)) return
    let made
    try {
      made = await json('/v1/tasks', { method: 'POST', body: { type, params: params(form, files) } })
    } catch (e) {
      error.textContent = `Could not start the task: ${e.message}`
      return
    }
    say(`Started a ${type} task; it is on the Tasks tab.`)
    await refresh(made.id)
    afterStart()
  })
}

export function resetTasks () {
  rows.clear()
  names.clear()
  for (const t of pending.values()) clearTimeout(t)
  pending.clear()
  document.querySelector('#tasks tbody').replaceChildren()
}
