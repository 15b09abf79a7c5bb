// An object's stored headers in its details view (details.js): S3's "system metadata"
// (Cache-Control, Content-Disposition, Content-Encoding, Content-Language, Expires), which
// its GET answers. Shown as a table when it has any. The owner edits them the way S3 has
// it: a CopyObject of the object onto itself (PUT with `x-amz-copy-source` naming it, no
// body) with `x-amz-metadata-directive: REPLACE`. REPLACE takes everything from the
// request, so the content type and every metadata entry are sent again as shown; an
// object whose metadata would not come back unchanged as X-Amz-Meta-* headers (metadata
// set through PATCH /v1/files may be any string) gets no form, and says why, rather than
// a save that alters its metadata. Every value goes in as text or an input's value, never
// as HTML: the headers are whatever a client sent.

import { request } from './api.js'
import { el, visible } from './util.js'
import { objectUrl, copySource } from './keys.js'

// The stored names (lower-case, as the API has them) and how they are written, in the
// order the server answers them (domain/files/headers.py).
const HEADERS = [
  ['cache-control', 'Cache-Control'],
  ['content-disposition', 'Content-Disposition'],
  ['content-encoding', 'Content-Encoding'],
  ['content-language', 'Content-Language'],
  ['expires', 'Expires']
]
const SPELLED = new Map(HEADERS)
const ORDER = HEADERS.map(([name]) => name)
// What the server keeps of a stored header: visible ASCII and spaces (no tab, no control).
const STORABLE = /^[\x20-\x7e]*$/
// An X-Amz-Meta-* entry sent and stored exactly (api/http/amzmeta.py): the server lowercases
// names, and a value keeps no whitespace at either end.
const META_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/
const META_VALUE = /^(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?$/

const rank = (name) => { const i = ORDER.indexOf(name); return i < 0 ? ORDER.length : i }

// The "Stored headers" heading and table, or nothing when the object has none.
export function headersTable (f) {
  const entries = Object.entries(f.headers || {})
    .sort(([a], [b]) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0))
  if (!entries.length) return []
  return [
    el('h3', { id: 'details-headers-title', class: 'sub', text: 'Stored headers' }),
    el('table', { class: 'list stored-headers', 'aria-labelledby': 'details-headers-title' },
      el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: 'Header' }), el('th', { scope: 'col', text: 'Value' }))),
      el('tbody', {}, ...entries.map(([k, v]) => el('tr', {},
        el('td', { 'data-label': 'Header', text: SPELLED.get(k) || k }),
        el('td', { 'data-label': 'Value', text: String(v) })))))
  ]
}

// Why the headers of `f` cannot be edited here, or null if they can.
function unsaveable (f) {
  // The browser resolves `.` and `..` segments of a URL (keys.js): the PUT would reach
  // another key, and no file-id route does a CopyObject.
  if (objectUrl(f.bucket, f.key) === null) return 'its key has a "." or ".." segment, which a browser cannot address'
  const meta = Object.entries(f.metadata || {})
  if (meta.some(([k, v]) => !META_NAME.test(k) || !META_VALUE.test(v))) {
    return 'its metadata has an entry that would not come back unchanged as an X-Amz-Meta-* header (set through the API, not a PUT)'
  }
  return null
}

// For an object the caller may write: the "Edit headers" button (for the actions row) and
// its form (hidden until the button opens it), or a line saying why there is none.
// `saved`: reads the details again once a save is done.
export function headersEditor (f, saved) {
  const why = unsaveable(f)
  if (why) return { note: el('p', { class: 'help', id: 'details-headers-form', text: `Its stored headers cannot be edited here: ${why}.` }) }
  const error = el('p', { class: 'error', id: 'details-headers-error', role: 'alert' })
  const fields = HEADERS.flatMap(([name, label]) => [
    el('label', { for: `details-h-${name}`, text: label }),
    el('input', { type: 'text', id: `details-h-${name}`, name, value: (f.headers || {})[name] || '', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'details-headers-help details-headers-error' })
  ])
  const button = el('button', { type: 'button', 'aria-expanded': 'false', 'aria-controls': 'details-headers-form', text: 'Edit headers' })
  const form = el('form', { class: 'inline-form headers-form', id: 'details-headers-form', novalidate: true, hidden: true, 'aria-labelledby': 'details-headers-edit' },
    el('h3', { id: 'details-headers-edit', class: 'sub', text: 'Edit stored headers' }),
    el('p', { class: 'help', id: 'details-headers-help', text: 'Empty: none. Saved as a copy of the object onto itself (REPLACE), which sends its content type and metadata again unchanged.' }),
    ...fields, error,
    el('div', { class: 'row' },
      el('button', { type: 'submit', text: 'Save headers' }),
      el('button', { type: 'button', onclick: () => { form.reset(); show(false); button.focus() }, text: 'Cancel' })))
  const show = (open) => { form.hidden = !open; button.setAttribute('aria-expanded', String(open)); error.textContent = '' }
  button.addEventListener('click', () => {
    show(form.hidden)
    if (!form.hidden) form.elements[HEADERS[0][0]].focus()
  })
  // A re-render (a live event, a refresh) keeps what an open form held (editsOf).
  const keep = (kept) => {
    show(true)
    for (const [name, value] of Object.entries(kept.typed)) form.elements[name].value = value
    error.textContent = kept.error
    if (kept.focus && form.elements[kept.focus]) form.elements[kept.focus].focus()
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault()
    error.textContent = ''
    const sent = {}
    for (const [name, label] of HEADERS) {
      const value = form.elements[name].value.trim()
      if (!STORABLE.test(value)) {
        error.textContent = `${label} may hold visible ASCII and spaces only.`
        form.elements[name].focus()
        return
      }
      if (value) sent[label] = value
    }
    const before = f.headers || {}
    const same = HEADERS.every(([name, label]) => (sent[label] || '') === (before[name] || ''))
    if (same) { show(false); button.focus(); return }
    try {
      await request(objectUrl(f.bucket, f.key), {
        method: 'PUT',
        // The browser may not add a Cache-Control of its own (api.js): it would be stored.
        cache: 'default',
        headers: {
          ...sent,
          'x-amz-copy-source': copySource(f.bucket, f.key),
          'x-amz-metadata-directive': 'REPLACE',
          // Only over the version shown: one written meanwhile is 412, not copied over.
          'x-amz-copy-source-if-match': `"${f.sha256}"`,
          'Content-Type': f.content_type,
          ...Object.fromEntries(Object.entries(f.metadata || {}).map(([k, v]) => [`x-amz-meta-${k}`, v]))
        }
      })
    } catch (e) {
      const at = e.details && form.elements[e.details.header]
      if (at) at.focus()
      if (e.status !== 412) { error.textContent = visible(`Could not save the headers: ${e.message}`); return }
      // Written meanwhile (a PUT, another save): shown again as it is now, the edit kept.
      error.textContent = 'The object was changed since it was shown (shown now as it is): check, then save again.'
      await saved()
      return
    }
    // Saved: the fields are no longer an edit in progress (kept across a re-render).
    for (const [name] of HEADERS) form.elements[name].defaultValue = form.elements[name].value
    show(false)
    await saved()
  })
  return { button, form, keep }
}

// What an open form holds that a re-render (a live event, a refresh) must not lose: the
// values typed and not saved, its error line, the field with the focus.
export function editsOf (body) {
  const form = body.querySelector('form.headers-form')
  if (!form || form.hidden) return null
  const typed = {}
  for (const [name] of HEADERS) {
    const input = form.elements[name]
    if (input.value !== input.defaultValue) typed[name] = input.value
  }
  const active = document.activeElement
  return { typed, error: form.querySelector('.error').textContent, focus: form.contains(active) ? active.name : null }
}

