// The live event stream (GET /v1/events, Server-Sent Events) read with fetch(), because
// EventSource cannot send an Authorization or X-API-Key header and the credential must
// never go into a URL. Reconnects resume exactly after the last event seen (Last-Event-ID),
// with a growing delay so a server that is down is not hammered. Before any event, the
// position is the one the server's first comment names (": cairn events after position
// N"), so a stream cut before the first event still misses none. A position the server
// never handed out (a restored database) is dropped, and the lists are read afresh.

import { authHeaders } from './api.js'

export class EventStream {
  constructor (onEvent, onState, onResync = () => {}) {
    this.onEvent = onEvent
    this.onState = onState
    this.onResync = onResync
    this.lastId = null
    this.controller = null
    this.stopped = true
  }

  start () {
    this.stopped = false
    this.run()
  }

  stop () {
    this.stopped = true
    if (this.controller) this.controller.abort()
    this.onState('off')
  }

  async run () {
    let delay = 1000
    while (!this.stopped) {
      this.controller = new AbortController()
      try {
        const headers = { ...authHeaders(), Accept: 'text/event-stream' }
        if (this.lastId !== null) headers['Last-Event-ID'] = this.lastId
        const resp = await fetch('/v1/events', { headers, signal: this.controller.signal, cache: 'no-store' })
        if (resp.status === 401) {
          let code = null
          try { code = (await resp.json()).error.code } catch { /* not the API's shape */ }
          window.dispatchEvent(new CustomEvent('cairn:unauthorized', { detail: { code } }))
          return
        }
        if (resp.status === 400 && this.lastId !== null && await this.unknownPosition(resp)) {
          this.lastId = null
          this.onResync()
          continue
        }
        if (!resp.ok) throw new Error(`events: ${resp.status}`)
        this.onState('live')
        delay = 1000
        await this.read(resp.body)
      } catch (e) {
        if (this.stopped) return
      }
      if (this.stopped) return
      this.onState('reconnecting')
      await new Promise(resolve => setTimeout(resolve, delay))
      delay = Math.min(delay * 2, 30000)
    }
  }

  async read (body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader()
    let buffer = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) return
      buffer += value.replace(/\r\n?/g, '\n')
      let cut
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, cut)
        buffer = buffer.slice(cut + 2)
        this.dispatch(block)
      }
    }
  }

  // 400 last_event_id_beyond_head or invalid_last_event_id: the resume position is no good.
  async unknownPosition (resp) {
    let code = null
    try { code = (await resp.json()).error.code } catch { /* not the API's shape */ }
    return code === 'last_event_id_beyond_head' || code === 'invalid_last_event_id'
  }

  dispatch (block) {
    let id = null; let type = 'message'; const data = []
    for (const line of block.split('\n')) {
      const start = /^: cairn events after position (\d+)/.exec(line)
      if (start && this.lastId === null) this.lastId = start[1]
      if (!line || line.startsWith(':')) continue
      const i = line.indexOf(':')
      const field = i < 0 ? line : line.slice(0, i)
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '')
      if (field === 'id') id = value
      else if (field === 'event') type = value
      else if (field === 'data') data.push(value)
    }
    if (!data.length) return
    if (id !== null) this.lastId = id
    let payload
    try { payload = JSON.parse(data.join('\n')) } catch { return }
    this.onEvent(type, payload)
  }
}
