// The activity feed: the newest of the caller's events from the live stream, newest first.
// Each is labelled by a name where one exists: a file's whole name, an upload's file name,
// a fetch's URL. Many events carry only their stream's id (a chunk stored, a file
// deleted), so the name an earlier event of that stream carried is kept, and a file's is
// also known from the lists; only a stream never named shows its id (selectable whole).

import { el } from './util.js'
import { fullName, knownName } from './names.js'

const MAX = 30
const labels = new Map() // stream id -> the name its events carried

function label (type, envelope) {
  const data = envelope.data || {}
  const stream = envelope.stream_id || ''
  let own = type.startsWith('File') && data.name ? fullName(data) : data.file_name || data.name || data.url
  // An object's new version: the event has its last name part, not its key.
  if (type === 'FileReplaced') own = labels.get(stream) || knownName(stream.slice(5)) || own
  if (own) labels.set(stream, own)
  const name = own || labels.get(stream) || (stream.startsWith('file-') && knownName(stream.slice(5))) || null
  // An upload or a fetch that became a file (UploadCompleted, FetchCompleted carry its id)
  // names that file's events until they carry a name of their own.
  if (name && data.file_id && !labels.has(`file-${data.file_id}`)) labels.set(`file-${data.file_id}`, name)
  return name
}

export function addActivity (type, envelope) {
  const list = document.getElementById('activity')
  const at = envelope.occurred_at ? new Date(envelope.occurred_at) : new Date()
  const name = label(type, envelope)
  const item = el('li', { 'data-type': type },
    el('time', { datetime: at.toISOString(), text: at.toLocaleTimeString() }),
    el('span', { class: 'type', text: type }),
    name ? el('span', { class: 'what', text: name }) : el('code', { class: 'what id', text: envelope.stream_id || '' }))
  list.prepend(item)
  while (list.children.length > MAX) list.lastElementChild.remove()
}

export function clearActivity () {
  labels.clear()
  document.getElementById('activity').replaceChildren()
}
