// A file's whole name as a person knows it, in one place for every screen that labels a
// file. An object's name is its key (`photos/2024/a.jpg`). A plain file's `name` cannot
// hold a `/` (the API refuses it), so `cairn upload DIR` keeps each file's path relative
// to DIR in its metadata `key`: its folder is that key's folder, and its last part is the
// file's current name (a rename changes the name, not the metadata). Showing only `name`
// made `photos/2024/a.jpg` and `photos/2025/a.jpg` look alike.

import { el } from './util.js'

export function fullName (f) {
  if (typeof f.key === 'string' && f.key) return f.key
  const kept = f.metadata && f.metadata.key
  if (typeof kept === 'string' && kept.includes('/')) return kept.slice(0, kept.lastIndexOf('/') + 1) + f.name
  return f.name
}

// `photos/2024/` and `a.jpg` (a key ending in `/` keeps it in its last part).
export function splitName (full) {
  const cut = full.lastIndexOf('/', full.length - 2) + 1
  return [full.slice(0, cut), full.slice(cut)]
}

// The whole name as text, its folder part de-emphasised (CSS), nothing cut: long names wrap.
export function nameNodes (full) {
  const [folder, leaf] = splitName(full)
  const last = el('span', { class: 'leaf', text: leaf })
  return folder ? [el('span', { class: 'folder', text: folder }), last] : [last]
}

// The details view's address (details.js); a link to it opens it.
export const detailsHref = (id) => `#file/${encodeURIComponent(id)}`

// Names of the files seen in this tab (lists, details), for events that carry only an id
// (a FileDeleted): the activity feed labels them by name.
const known = new Map()

export function remember (f) {
  if (f && f.id) known.set(f.id, fullName(f))
}

export const knownName = (id) => known.get(id)

export function forgetNames () { known.clear() }
