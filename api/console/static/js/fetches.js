// URL fetches (/v1/fetches): add a URL, watch it live (status, bytes, speed, ETA), pause,
// resume, cancel, retry, download the result. Each event of a fetch re-reads that one fetch
// (GET /v1/fetches/{id} answers from its aggregate, so it is never behind the stream).

import { json, request } from './api.js'
import { el, bytes, say } from './util.js'
import { download } from './files.js'

const rows = new Map() // id -> <tr>
const pending = new Map() // id -> timer: a burst of events for one fetch is one read

const ACTIONS = {
  PENDING: ['pause', 'cancel'],
  IN_PROGRESS: ['pause', 'cancel'],
  PAUSED: ['resume', 'cancel'],
  FAILED: ['retry'],
  CANCELLED: [],
  COMPLETED: []
}

function seconds (s) {
  if (s == null) return ''
  if (s < 60) return `${Math.round(s)} s`
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`
}

function row (f) {
  const pct = f.progress == null ? null : f.progress
  const bar = el('progress', { max: '100', 'aria-label': `Progress of ${f.url}` })
  if (pct != null) bar.value = pct
  // No value is an indeterminate (moving) bar: right while it runs without a known size,
  // wrong for a fetch that has stopped.
  else if (!['PENDING', 'IN_PROGRESS'].includes(f.status)) bar.value = f.status === 'COMPLETED' ? 100 : 0
  const detail = [`${bytes(f.bytes)}${f.total != null ? ' of ' + bytes(f.total) : ''}`]
  if (f.speed_bytes_per_second) detail.push(`${bytes(f.speed_bytes_per_second)}/s`)
  if (f.eta_seconds != null) detail.push(`ETA ${seconds(f.eta_seconds)}`)
  const buttons = ACTIONS[f.status].map(a => el('button', {
    type: 'button',
    'aria-label': `${a[0].toUpperCase() + a.slice(1)} ${f.url}`,
    onclick: () => act(f, a),
    text: a[0].toUpperCase() + a.slice(1)
  }))
  if (f.status === 'COMPLETED' && f.file_id) {
    buttons.push(el('button', { type: 'button', 'aria-label': `Download ${f.file_name || f.url}`, onclick: () => download({ id: f.file_id, name: f.file_name || 'download' }), text: 'Download' }))
  }
  const status = el('td', { 'data-label': 'Status', class: 'status-cell' }, el('span', { class: `badge s-${f.status.toLowerCase()}`, text: f.status.replace('_', ' ').toLowerCase() }))
  // While it runs, the error is the last try's and another follows: said so, or a fetch
  // 'in progress' next to an error reads as stuck or failed.
  const retrying = ['PENDING', 'IN_PROGRESS'].includes(f.status)
  if (f.last_error && f.status !== 'COMPLETED') status.append(el('span', { class: 'help', text: ` ${retrying ? 'retrying after: ' : ''}${f.last_error}` }))
  return el('tr', { 'data-id': f.id, 'data-status': f.status },
    el('td', { class: 'name', 'data-label': 'URL', text: f.url }),
    status,
    el('td', { 'data-label': 'Progress' }, bar, el('span', { class: 'help', text: ' ' + detail.join(' · ') })),
    el('td', { class: 'actions' }, ...buttons))
}

function put (f) {
  const tbody = document.querySelector('#fetches tbody')
  const fresh = row(f)
  const old = rows.get(f.id)
  // Keep keyboard focus on the same action across the re-render.
  const focused = old && old.contains(document.activeElement) ? document.activeElement.textContent : null
  if (old) old.replaceWith(fresh)
  else tbody.prepend(fresh)
  rows.set(f.id, fresh)
  if (focused) {
    const again = [...fresh.querySelectorAll('button')].find(b => b.textContent === focused)
    if (again) again.focus()
  }
  document.getElementById('fetches-empty').hidden = rows.size > 0
}

export async function loadFetches () {
  try {
    const page = await json('/v1/fetches?limit=100')
    rows.clear()
    document.querySelector('#fetches tbody').replaceChildren()
    for (const f of page.items.slice().reverse()) put(f)
    document.getElementById('fetches-empty').hidden = rows.size > 0
    document.getElementById('tab-fetches').hidden = false
  } catch (e) {
    // A server without URL fetches (an older Cairn) has no such route: no tab for it.
    if (e.status === 404) document.getElementById('tab-fetches').hidden = true
    else say(`Could not list fetches: ${e.message}`, true)
  }
}

async function refresh (id) {
  try {
    put(await json(`/v1/fetches/${encodeURIComponent(id)}`))
  } catch (e) {
    if (e.status !== 404) say(`Could not read a fetch: ${e.message}`, true)
  }
}

export function fetchEvent (envelope) {
  const id = (envelope.stream_id || '').replace(/^fetch-/, '')
  if (!id || pending.has(id)) return
  pending.set(id, setTimeout(() => { pending.delete(id); refresh(id) }, 150))
}

async function act (f, action) {
  try {
    await request(`/v1/fetches/${encodeURIComponent(f.id)}/${action}`, { method: 'POST' })
    say(`${action[0].toUpperCase() + action.slice(1)}: ${f.url}`)
    await refresh(f.id)
  } catch (e) {
    say(`Could not ${action} the fetch: ${e.message}`, true)
  }
}

export function setupFetches () {
  const form = document.getElementById('fetch-form')
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const error = document.getElementById('fetch-error')
    error.textContent = ''
    const url = form.url.value.trim()
    if (!form.url.checkValidity()) {
      error.textContent = 'Enter a full http:// or https:// URL.'
      form.url.focus()
      return
    }
    let made
    try {
      made = await json('/v1/fetches', { method: 'POST', body: { url } })
    } catch (e) {
      error.textContent = `Could not fetch ${url}: ${e.message}`
      form.url.focus()
      return
    }
    form.reset()
    say(made.reused ? `Already fetched: ${url}` : `Fetching ${url}`)
    await refresh(made.id)
  })
}

export function resetFetches () {
  rows.clear()
  for (const t of pending.values()) clearTimeout(t)
  pending.clear()
  document.querySelector('#fetches tbody').replaceChildren()
}
