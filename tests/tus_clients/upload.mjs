// Uploads one file to a tus server with tus-js-client (its Node build), driven by
// tests/api/test_tus.py. One argument: a JSON object of options (see `opts` below).
// Reports on stdout, one JSON object per line: {"event": "url" | "resuming" | "stalled" |
// "success" | "error", ...}; traces its requests, timed, on stderr.
//
// `stallAt` (a byte offset of the file) makes the upload stop sending in the middle of the
// PATCH that carries that byte, without ending the request: the test then kills this
// process mid-upload, and a fresh process resumes the upload from the URL stored for the
// file's fingerprint (`storage`, a FileUrlStorage path).
import * as fs from 'node:fs'
import { Readable } from 'node:stream'

import { FileUrlStorage, Upload, defaultOptions } from 'tus-js-client'

const opts = JSON.parse(process.argv[2])

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`)
}

// Each request and response, timed, on stderr: what a test reports when this client hangs.
function trace(obj) {
  process.stderr.write(`${JSON.stringify({ ...obj, t: Date.now() })}\n`)
}

// A stream that passes `limit` bytes of `source` on, then goes silent (never ends).
function stallAfter(source, limit, onStall) {
  let sent = 0
  const out = new Readable({ read() {} })
  source.on('data', (buf) => {
    if (sent >= limit) return
    const take = buf.subarray(0, Math.min(buf.length, limit - sent))
    sent += take.length
    out.push(take)
    if (sent >= limit) {
      source.destroy()
      onStall(sent)
    }
  })
  source.on('end', () => {
    if (sent < limit) out.push(null)
  })
  source.on('error', (err) => out.destroy(err))
  out.size = source.size
  return out
}

// Wraps the default file reader so that the slice holding byte `stallAt` stalls there.
function stallingReader(stallAt) {
  const inner = defaultOptions.fileReader
  return {
    async openFile(input, chunkSize) {
      const source = await inner.openFile(input, chunkSize)
      return {
        size: source.size,
        async slice(start, end) {
          const res = await source.slice(start, end)
          if (stallAt >= start && stallAt < end) {
            res.value = stallAfter(res.value, stallAt - start, () =>
              emit({ event: 'stalled', offset: stallAt }),
            )
          }
          return res
        },
        close() {
          source.close()
        },
      }
    },
  }
}

function input() {
  if (!opts.deferred) return fs.createReadStream(opts.file)
  // A plain stream of unknown length: the upload defers its length to the end.
  return Readable.from(
    (function* () {
      const data = fs.readFileSync(opts.file)
      for (let i = 0; i < data.length; i += 256 * 1024) yield data.subarray(i, i + 256 * 1024)
    })(),
  )
}

const options = {
  endpoint: opts.endpoint,
  headers: { Authorization: `Bearer ${opts.token}` },
  metadata: opts.metadata ?? {},
  retryDelays: [0, 100, 300, 1000],
  onUploadUrlAvailable() {
    emit({ event: 'url', url: upload.url })
  },
  onBeforeRequest(req) {
    trace({ request: req.getMethod(), offset: req.getHeader('Upload-Offset') })
  },
  onAfterResponse(req, res) {
    trace({ response: req.getMethod(), status: res.getStatus(), offset: res.getHeader('Upload-Offset') })
  },
  onSuccess() {
    emit({ event: 'success', url: upload.url })
    trace({ success: upload.url })
  },
  onError(err) {
    emit({ event: 'error', message: String(err) })
    process.exit(1)
  },
}
if (opts.chunkSize) options.chunkSize = opts.chunkSize
if (opts.parallelUploads) options.parallelUploads = opts.parallelUploads
if (opts.uploadDataDuringCreation) options.uploadDataDuringCreation = true
if (opts.deferred) options.uploadLengthDeferred = true
if (opts.overridePatchMethod) options.overridePatchMethod = true
if (opts.storage) {
  options.urlStorage = new FileUrlStorage(opts.storage)
  options.storeFingerprintForResuming = true
}
if (opts.stallAt != null) options.fileReader = stallingReader(opts.stallAt)

const upload = new Upload(input(), options)
if (opts.storage) {
  const previous = await upload.findPreviousUploads()
  if (previous.length > 0) {
    upload.resumeFromPreviousUpload(previous[0])
    emit({ event: 'resuming', url: previous[0].uploadUrl })
  }
}
upload.start()
