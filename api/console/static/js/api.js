// The console's one door to the API: every call carries the credential as a header (never
// in a URL, so it stays out of logs and history), and every error is the API's one error
// shape, surfaced as an ApiError with its code and message.

const KEY = 'cairn.credential'

export class ApiError extends Error {
  constructor (status, code, message, details) {
    super(message)
    this.status = status
    this.code = code
    this.details = details || {}
  }
}

// sessionStorage: this tab only, forgotten when it closes; never localStorage or a cookie.
export function credential () {
  try { return JSON.parse(sessionStorage.getItem(KEY)) } catch { return null }
}

export function setCredential (kind, secret) {
  sessionStorage.setItem(KEY, JSON.stringify({ kind, secret }))
}

export function clearCredential () {
  sessionStorage.removeItem(KEY)
}

export function authHeaders (cred = credential()) {
  if (!cred) return {}
  return cred.kind === 'token'
    ? { Authorization: `Bearer ${cred.secret}` }
    : { 'X-API-Key': cred.secret }
}

async function errorOf (resp) {
  let body = null
  try { body = await resp.json() } catch { /* not JSON: keep the status */ }
  const e = body && body.error
  return new ApiError(resp.status, e ? e.code : 'http_' + resp.status,
    e ? e.message : `${resp.status} ${resp.statusText}`, e && e.details)
}

// A fetch with the credential; a non-2xx answer throws ApiError. 401 tells the app the
// credential is no longer good (expired token, revoked key). `cache`: the fetch cache mode,
// 'no-store' (nothing is cached) unless a request must send its own headers unchanged:
// under 'no-store' the browser adds `Cache-Control: no-cache` to a request that has none,
// which an object PUT would store as the object's Cache-Control (headers.js).
export async function request (path, { method = 'GET', headers = {}, body, signal, cred, cache = 'no-store' } = {}) {
  const h = { ...authHeaders(cred), ...headers }
  if (body !== undefined && !(body instanceof Blob) && typeof body !== 'string') {
    h['Content-Type'] = 'application/json'
    body = JSON.stringify(body)
  }
  let resp
  try {
    resp = await fetch(path, { method, headers: h, body, signal, cache })
  } catch (e) {
    if (e.name === 'AbortError') throw e
    // fetch() says only "Failed to fetch": the server is down, restarting or unreachable.
    throw new ApiError(0, 'network', 'the server could not be reached; try again in a moment')
  }
  if (!resp.ok) {
    const err = await errorOf(resp)
    if (resp.status === 401) window.dispatchEvent(new CustomEvent('cairn:unauthorized', { detail: err }))
    throw err
  }
  return resp
}

export async function json (path, opts) {
  const resp = await request(path, opts)
  const text = await resp.text()
  return text ? JSON.parse(text) : null
}
