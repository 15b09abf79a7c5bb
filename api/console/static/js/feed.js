// The activity feed: the newest of the caller's events from the live stream, newest first.

import { el } from './util.js'

const MAX = 30

export function addActivity (type, envelope) {
  const list = document.getElementById('activity')
  const at = envelope.occurred_at ? new Date(envelope.occurred_at) : new Date()
  const data = envelope.data || {}
  const what = data.file_name || data.name || data.url || envelope.stream_id || ''
  const item = el('li', { 'data-type': type },
    el('time', { datetime: at.toISOString(), text: at.toLocaleTimeString() }),
    el('span', { class: 'type', text: type }),
    el('span', { class: 'what', text: what }))
  list.prepend(item)
  while (list.children.length > MAX) list.lastElementChild.remove()
}

export function clearActivity () {
  document.getElementById('activity').replaceChildren()
}
