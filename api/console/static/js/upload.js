// Uploads through tus (/v1/tus/) with the vendored Uppy Dashboard: drag and drop or the
// file picker, several files at once, progress per file and in total. Resumable after a
// reload: tus-js-client remembers each upload's URL in localStorage under the file's
// fingerprint (name, type, size, modification time), so adding the same file again asks
// the server for its offset (HEAD) and sends only the rest.
//
// Checksums: a file of up to HASH_LIMIT is hashed (SHA-256, crypto.subtle) in the browser
// while it waits and uploads; once the server has made it into a file, the server's
// sha256 (GET /v1/files/{id}, computed from the stored bytes) is compared with ours and the
// outcome listed under the Dashboard. crypto.subtle digests a whole buffer (it has no
// streaming form), so larger files, and pages not in a secure context (plain http to
// another host), only show the server's digest for the user to compare.

import { authHeaders, json } from './api.js'
import { el, say, visible } from './util.js'

export const CHUNK = 5 * 1024 * 1024 // one PATCH per 5 MiB: progress is durable per chunk
export const HASH_LIMIT = 64 * 1024 * 1024

let uppy = null
const digests = new Map() // Uppy file id -> Promise of the local sha256 (hex), or null

async function sha256 (blob) {
  const buf = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer())
  return [...new Uint8Array(buf)].map(b => b.toString(16).padStart(2, '0')).join('')
}

function localDigest (file) {
  if (!window.crypto?.subtle || !(file.data instanceof Blob) || file.size > HASH_LIMIT) return Promise.resolve(null)
  return sha256(file.data).catch(() => null)
}

// After an upload: the server's digest of the file it made, next to ours.
async function verify (file, response) {
  const uploadId = (response?.uploadURL || '').split('/').filter(Boolean).pop()
  const mine = await (digests.get(file.id) || Promise.resolve(null))
  digests.delete(file.id)
  let theirs = null
  try {
    const up = await json(`/v1/uploads/${encodeURIComponent(uploadId)}`)
    if (up.file_id) theirs = (await json(`/v1/files/${encodeURIComponent(up.file_id)}`)).sha256
  } catch { /* shown as unknown below */ }
  const item = el('li', { 'data-name': file.name, 'data-check': !theirs ? 'unknown' : !mine ? 'shown' : mine === theirs ? 'verified' : 'mismatch' })
  if (!theirs) {
    item.append(el('span', { class: 'bad', text: `${file.name}: the server's SHA-256 could not be read.` }))
  } else if (!mine) {
    item.append(visible(`${file.name}: server SHA-256 `), el('code', { class: 'digest', text: theirs }), ' (compare it with yours, e.g. sha256sum)')
  } else if (mine === theirs) {
    item.append(el('span', { class: 'ok', text: '✓ ' }), visible(`${file.name}: SHA-256 verified `), el('code', { class: 'digest', text: theirs }))
  } else {
    item.append(el('span', { class: 'bad', text: `✗ ${file.name}: SHA-256 differs! This browser: ${mine}; server: ${theirs}` }))
  }
  document.getElementById('checks').prepend(item)
}

// Why an upload failed, in words: a tus error carries the raw response, whose body is the
// API's one error shape (its message, never the JSON itself); no response at all is a
// connection that failed.
export function uploadFailure (err) {
  const resp = err && err.originalResponse
  if (resp) {
    let message = null
    try { message = JSON.parse(resp.getBody()).error.message } catch { /* not the API's shape */ }
    return message || `the server answered ${resp.getStatus()}`
  }
  if (err && (err.isNetworkError || err.originalRequest)) return 'the server could not be reached'
  return (err && err.message) || 'unknown error'
}

// The tus metadata of a file (every field of its Uppy meta is sent). Into a bucket, a file
// becomes its object keyed by its name, or by its path in a dropped folder (as `aws s3 cp`
// and `cairn upload --bucket B` do), so it is listed on the Objects tab; an object of that
// key is replaced, as by a PUT. `default` is no bucket: a plain file. Uppy's relativePath
// itself is not sent: null for a picked file, it became the string "null" in its metadata.
function sent (file) {
  const { relativePath, key, ...meta } = file.meta
  if (meta.bucket && meta.bucket !== 'default') meta.key = relativePath || file.name
  return meta
}

export function setupUploads (onUploaded) {
  const { Uppy, Dashboard, Tus } = window.CairnUppy
  uppy = new Uppy({
    id: 'cairn',
    autoProceed: false,
    onBeforeUpload: (files) => Object.fromEntries(Object.entries(files).map(([id, f]) => [id, { ...f, meta: sent(f) }]))
  })
    .use(Dashboard, {
      inline: true,
      target: '#uploader',
      width: '100%',
      height: 320,
      proudlyDisplayPoweredByUppy: false,
      showProgressDetails: true,
      note: 'Uploads resume: after a reload, add the same file again.'
    })
    .use(Tus, {
      endpoint: '/v1/tus/',
      chunkSize: CHUNK,
      limit: 3, // files in parallel
      retryDelays: [0, 1000, 3000, 5000],
      // Before Uppy shows the error (under the file and in its notice): the reason in words,
      // not tus-js-client's dump of the request and the response body.
      onError: (err) => {
        const status = err.originalResponse ? err.originalResponse.getStatus() : 0
        err.message = uploadFailure(err)
        if (status === 401) window.dispatchEvent(new CustomEvent('cairn:unauthorized'))
      },
      removeFingerprintOnSuccess: true,
      // Read at every request, so a new sign-in applies without a reload.
      onBeforeRequest: (req) => {
        for (const [k, v] of Object.entries(authHeaders())) req.setHeader(k, v)
      }
    })
  uppy.on('file-added', (file) => digests.set(file.id, localDigest(file)))
  uppy.on('file-removed', (file) => digests.delete(file.id))
  uppy.on('upload-success', (file, response) => { onUploaded(file); verify(file, response) })
  uppy.on('upload-error', (file, err) => say(`Could not upload ${file?.name ?? 'a file'}: ${err.message}`, true))
  setUploadBucket('')
  return uppy
}

// The bucket new uploads go into (tus metadata `bucket`); none chosen means `default`.
export function setUploadBucket (name) {
  if (uppy) uppy.setMeta({ bucket: name || 'default' })
}

export function resetUploads () {
  digests.clear()
  document.getElementById('checks').replaceChildren()
  if (uppy) uppy.cancelAll()
}
