// The one tus client of tests/bench (tus-js-client, its Node build), for Cairn and for the
// @tus/server reference server alike. One argument: a JSON object of options. Prints one
// JSON object on stdout when done; on an error prints it on stderr and exits 1.
//
// Common options: endpoint (the creation URL), headers (e.g. Authorization for Cairn),
// check (Cairn's base URL: after an upload succeeds, poll GET /v1/uploads/{id} until it
// names its file_id; the time when it does is reported as fileAt), tag (for file names).
//
// mode "files": upload every path of `files` at once, each streamed from disk (an
//   fs.ReadStream: tus-js-client reads each chunk as its own stream of the file's range) in
//   PATCHes of `chunkSize` bytes. Reports every request of every upload with its timing.
// mode "small": `concurrency` workers upload fresh random buffers of `size` bytes, each
//   in its creation request (uploadDataDuringCreation), until `count` uploads are done or
//   `seconds` have passed. Reports the rate and each upload's latency.
//
// Times are seconds since this process started (performance.now()); an upload's wall time
// runs from the start of its first request to the end of its last response.
import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'
import { performance } from 'node:perf_hooks'

import { Upload } from 'tus-js-client'

const opts = JSON.parse(process.argv[2])
const headers = opts.headers ?? {}
const now = () => performance.now() / 1000

function fail(err) {
  process.stderr.write(`${JSON.stringify({ error: String(err?.stack ?? err) })}\n`)
  process.exit(1)
}

// GET a JSON document over the same keep-alive agent tus-js-client uses (no fetch(): its
// first call in a process costs tens of ms of set-up, which would be billed to Cairn).
function getJson(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      const parts = []
      res.on('data', (d) => parts.push(d))
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8')
        if (res.statusCode !== 200) reject(new Error(`GET ${url}: HTTP ${res.statusCode} ${text}`))
        else resolve(JSON.parse(text))
      })
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}

// Cairn: the tus upload id is the Cairn upload id; poll until it has become a file.
async function waitForFile(url) {
  const id = new URL(url, opts.endpoint).pathname.split('/').filter(Boolean).pop()
  const deadline = now() + (opts.checkTimeout ?? 120)
  let polls = 0
  for (;;) {
    polls += 1
    const t = now()
    const body = await getJson(`${opts.check}/v1/uploads/${id}`)
    if (body.file_id) return { fileAt: now(), fileId: body.file_id, polls, lastPoll: now() - t }
    if (now() > deadline) throw new Error(`upload ${id} has no file_id after ${polls} polls`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

function upload(input, options, rec) {
  const sent = new Map()
  return new Promise((resolve, reject) => {
    const up = new Upload(input, {
      endpoint: opts.endpoint,
      headers,
      retryDelays: null, // a failed request is an error, never silently retried
      storeFingerprintForResuming: false,
      ...options,
      onBeforeRequest(req) {
        const t = now()
        rec.start ??= t
        sent.set(req, t)
      },
      onAfterResponse(req, res) {
        const t = now()
        rec.requestCount = (rec.requestCount ?? 0) + 1
        if (rec.requests) {
          rec.requests.push({
            method: req.getMethod(),
            status: res.getStatus(),
            start: sent.get(req),
            seconds: t - sent.get(req),
            offset: Number(req.getHeader('Upload-Offset') ?? 0),
            newOffset: Number(res.getHeader('Upload-Offset') ?? 0),
          })
        }
        sent.delete(req)
      },
      onSuccess() {
        rec.end = now()
        rec.url = up.url
        resolve(rec)
      },
      onError: reject,
    })
    up.start()
  })
}

async function files() {
  const uploads = await Promise.all(
    opts.files.map(async (file, k) => {
      const rec = { file, size: fs.statSync(file).size, start: null, requests: [] }
      await upload(
        fs.createReadStream(file),
        {
          chunkSize: opts.chunkSize,
          metadata: {
            filename: `${opts.tag ?? 'tus'}-${k}-${path.basename(file)}`,
            filetype: 'application/octet-stream',
          },
        },
        rec,
      )
      if (opts.check) Object.assign(rec, await waitForFile(rec.url))
      return rec
    }),
  )
  const start = Math.min(...uploads.map((u) => u.start))
  const out = {
    mode: 'files',
    bytes: uploads.reduce((n, u) => n + u.size, 0),
    seconds: Math.max(...uploads.map((u) => u.end)) - start,
    uploads,
  }
  if (opts.check) out.fileSeconds = Math.max(...uploads.map((u) => u.fileAt)) - start
  return out
}

async function small() {
  const deadline = now() + opts.seconds
  let next = 0
  let requests = 0
  const latencies = []
  let last = null
  async function worker() {
    while (now() < deadline && next < opts.count) {
      const k = next++
      const rec = { start: null }
      const t = now()
      await upload(
        randomBytes(opts.size),
        {
          uploadDataDuringCreation: true,
          metadata: { filename: `${opts.tag ?? 'small'}-${k}` },
        },
        rec,
      )
      requests += rec.requestCount
      latencies.push(now() - t)
      last = rec.url
    }
  }
  const t0 = now()
  await Promise.all(Array.from({ length: opts.concurrency }, worker))
  const seconds = now() - t0
  const out = { mode: 'small', files: latencies.length, seconds, requests, latencies }
  // A sanity check outside the measurement: the last upload did become a file.
  if (opts.check && last) out.lastFile = await waitForFile(last)
  return out
}

try {
  const out = opts.mode === 'small' ? await small() : await files()
  out.clientMaxRssBytes = process.resourceUsage().maxRSS * 1024
  process.stdout.write(`${JSON.stringify(out)}\n`)
} catch (err) {
  fail(err)
}
