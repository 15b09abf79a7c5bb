// An object's address by its key (/v1/buckets/{name}/objects/{key}), or null when a browser
// cannot send it: this module exists so that every request built from a key goes through
// one check. WHATWG URL parsing (fetch() included) resolves `.` and `..` path segments, and
// takes `%2e`, `.%2e`, `%2e.`, `%2e%2e` (any case) for them too, so no spelling of the key
// `a/../b` reaches that object: the request would go to `b`, another object. For such a key
// the caller uses the file-id routes (/v1/files/{id}…: the id is the row's, derived from
// bucket and key, so it names the same object) or offers nothing. Each segment is otherwise
// percent-encoded whole (`/` stays the separator; `%`, `?`, `#`, `\` are escaped).

const enc = (s) => encodeURIComponent(s)

// The key's path part, or null. A lone surrogate cannot be encoded (encodeURIComponent
// throws); the server refuses such keys, so none is listed, but none is guessed at either.
function keyPath (key) {
  const segments = key.split('/')
  if (segments.some(s => s === '.' || s === '..')) return null
  try {
    return segments.map(enc).join('/')
  } catch {
    return null
  }
}

// The object's URL (with `suffix`, e.g. '/signed-url'), or null when it cannot be sent.
export function objectUrl (bucket, key, suffix = '') {
  const path = keyPath(key)
  return path === null ? null : `/v1/buckets/${enc(bucket)}/objects/${path}${suffix}`
}

// The `x-amz-copy-source` value naming the object (`/BUCKET/KEY`, percent-encoded as a
// path, which the server decodes), or null where objectUrl is: a copy source is a header,
// not resolved by the browser, but it only ever goes with a PUT to the same key.
export function copySource (bucket, key) {
  const path = keyPath(key)
  return path === null ? null : `/${enc(bucket)}/${path}`
}
