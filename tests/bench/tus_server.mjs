// The tus reference server for tests/bench: @tus/server with its file store (@tus/file-store),
// the way its README sets it up, on 127.0.0.1. Arguments: PORT DIRECTORY. Prints one line
// `listening <port>` once it accepts connections; stops on SIGTERM / SIGINT.
//
// Nothing is tuned: no locker, no expiration, no size limit. Note that the file store
// writes each PATCH body with a plain write stream (no fsync), so its bytes may still be
// in the page cache when it answers, unlike Cairn's pieces.
import { FileStore } from '@tus/file-store'
import { Server } from '@tus/server'

const [port, directory] = process.argv.slice(2)
if (!port || !directory) {
  process.stderr.write('usage: node tus_server.mjs PORT DIRECTORY\n')
  process.exit(2)
}

const server = new Server({
  path: '/files',
  datastore: new FileStore({ directory }),
})

const http = server.listen({ host: '127.0.0.1', port: Number(port) }, () => {
  process.stdout.write(`listening ${http.address().port}\n`)
})

function stop() {
  http.close(() => process.exit(0))
  http.closeAllConnections?.()
  setTimeout(() => process.exit(0), 2000).unref()
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
