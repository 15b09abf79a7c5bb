// Uploads through tus (/v1/tus/) with the vendored Uppy Dashboard: drag and drop or the
// file picker, several files at once, progress per file and in total. Resumable after a
// reload: tus-js-client remembers each upload's URL in localStorage under the file's
// fingerprint (name, type, size, modification time), so adding the same file again asks
// the server for its offset (HEAD) and sends only the rest.

import { authHeaders } from './api.js'

export const CHUNK = 5 * 1024 * 1024 // one PATCH per 5 MiB: progress is durable per chunk

let uppy = null

export function setupUploads (onUploaded) {
  const { Uppy, Dashboard, Tus } = window.CairnUppy
  uppy = new Uppy({ id: 'cairn', autoProceed: false })
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
      removeFingerprintOnSuccess: true,
      // Read at every request, so a new sign-in applies without a reload.
      onBeforeRequest: (req) => {
        for (const [k, v] of Object.entries(authHeaders())) req.setHeader(k, v)
      }
    })
  uppy.on('upload-success', (file) => onUploaded(file))
  setUploadBucket('')
  return uppy
}

// The bucket new uploads go into (tus metadata `bucket`); none chosen means `default`.
export function setUploadBucket (name) {
  if (uppy) uppy.setMeta({ bucket: name || 'default' })
}

export function resetUploads () {
  if (uppy) uppy.cancelAll()
}
