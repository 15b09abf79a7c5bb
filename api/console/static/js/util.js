// Small DOM and formatting helpers; text always goes in as textContent, never as HTML, so
// names chosen by users cannot inject markup.

// Characters that reorder the text after them (bidi embeddings, overrides and isolates:
// the "Trojan Source" set): `invoice\u202Egpj.exe` would read as `invoiceexe.jpg`. Text
// a user chose is shown with them made visible (`⟨U+202E⟩`), in its real order.
const BIDI = /[\u202A-\u202E\u2066-\u2069]/g
export const visible = (s) => String(s).replace(BIDI, (c) => `⟨U+${c.codePointAt(0).toString(16).toUpperCase()}⟩`)
const SHOWN = new Set(['title', 'aria-label', 'alt']) // attributes read as text; a value stays exact

export function el (tag, attrs = {}, ...children) {
  const node = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue
    if (k === 'text') node.textContent = visible(v)
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v)
    else node.setAttribute(k, v === true ? '' : SHOWN.has(k) ? visible(v) : v)
  }
  for (const c of children) if (c != null) node.append(typeof c === 'string' ? visible(c) : c)
  return node
}

export function bytes (n) {
  if (n == null) return '?'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${i ? n.toFixed(1) : n} ${units[i]}`
}

export function when (iso) {
  const d = new Date(iso)
  return isNaN(d) ? '' : d.toLocaleString()
}

export function say (message, isError = false) {
  const s = document.getElementById('status')
  s.textContent = visible(message)
  s.classList.toggle('error', isError)
}

// Coalesces bursts (a batch of events) into one call, so a list reloads once per burst.
export function debounce (fn, ms) {
  let t = null
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms) }
}
