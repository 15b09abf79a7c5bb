// The console's entry: sign-in and sign-out, and wiring of the screens to the live stream.

import { json, credential, setCredential, clearCredential } from './api.js'
import { EventStream } from './events.js'
import { addActivity, clearActivity } from './feed.js'
import { setupFiles, loadFiles, reloadFiles, resetFiles, fileEvent, selected, clearSelection } from './files.js'
import { setupUploads, resetUploads, setUploadBucket } from './upload.js'
import { setupBuckets, loadBuckets, bucketEvent, resetBuckets } from './buckets.js'
import { setupTabs } from './tabs.js'
import { setupFetches, loadFetches, fetchEvent, resetFetches } from './fetches.js'
import { setupTasks, loadTasks, taskEvent, resetTasks } from './tasks.js'
import { setupObjects, objectEvent, resetObjects, reloadObjects, browse } from './objects.js'
import { say } from './util.js'
import { setupDetails, detailsEvent, closeDetails, route } from './details.js'
import { forgetNames } from './names.js'

const stream = new EventStream(onEvent, (s) => {
  const live = document.getElementById('live')
  live.dataset.state = s
  live.textContent = s === 'live' ? 'live' : s === 'off' ? 'offline' : 'reconnecting…'
}, () => {
  // The stream starts again from now: what happened before is read from the lists.
  loadFiles(); loadBuckets(); loadFetches(); loadTasks(); reloadObjects()
})

function onEvent (type, envelope) {
  if (type === 'end') return // the server closed the stream; EventStream reconnects
  addActivity(type, envelope)
  if (type.startsWith('File')) { fileEvent(type, envelope); objectEvent(type, envelope); detailsEvent(type, envelope) }
  if (type.startsWith('Bucket')) bucketEvent(type, envelope)
  if (type.startsWith('Fetch')) fetchEvent(envelope)
  if (type.startsWith('Task')) taskEvent(envelope)
}

// A JWT's shape: three base64url parts, the header a JSON object ('{"' is 'eyJ').
const JWT = /^eyJ[\w-]*\.[\w-]+\.[\w-]*$/

async function signIn (kind, secret) {
  // Checked against the API before it is kept: a wrong key never looks signed in.
  try {
    await json('/v1/files?limit=1', { cred: { kind, secret } })
  } catch (e) {
    // A token pasted with "API key" chosen (the default) is a token: tried as one.
    if (e.status !== 401 || kind !== 'key' || !JWT.test(secret)) throw e
    kind = 'token'
    await json('/v1/files?limit=1', { cred: { kind, secret } })
  }
  setCredential(kind, secret)
}

function show (signedIn) {
  document.getElementById('signin').hidden = signedIn
  document.getElementById('app').hidden = !signedIn
  document.getElementById('signout').hidden = !signedIn
  const who = document.getElementById('who')
  who.hidden = !signedIn
  const cred = credential()
  who.textContent = signedIn && cred ? `Signed in with ${cred.kind === 'token' ? 'a token' : 'an API key'}` : ''
}

async function enter () {
  show(true)
  stream.start()
  await Promise.all([loadFiles(), loadBuckets(), loadFetches(), loadTasks()])
  document.getElementById('main').focus()
  route() // an address naming a file's details (#file/<id>) opens them, after sign-in too
}

function signOut (message) {
  stream.stop()
  closeDetails()
  // Any other dialog too (a preview, a link, a rename): a session that ends behind one (a
  // 401) must not leave a file on screen, nor the sign-in form inert under a modal.
  for (const d of document.querySelectorAll('dialog[open]')) d.close()
  clearCredential()
  resetUploads()
  resetFiles()
  resetBuckets()
  resetFetches()
  resetTasks()
  resetObjects()
  showTab('files')
  clearActivity()
  forgetNames()
  show(false)
  say(message || 'Signed out.')
  document.getElementById('secret').focus()
}

let showTab = () => {}

function setup () {
  showTab = setupTabs(() => {})
  setupFiles(setUploadBucket)
  setupFetches()
  setupTasks(selected, clearSelection)
  setupObjects()
  setupDetails()
  setupBuckets((name) => {
    const pick = document.getElementById('bucket-pick')
    pick.value = name
    pick.dispatchEvent(new Event('change'))
    showTab('files')
    pick.focus()
  }, (name) => {
    showTab('objects')
    browse(name)
  })
  setupUploads(() => reloadFiles())
  const form = document.getElementById('signin-form')
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault()
    const secret = form.secret.value.trim()
    const error = document.getElementById('signin-error')
    error.textContent = ''
    if (!secret) { error.textContent = 'Enter an API key or a token.'; return }
    try {
      await signIn(form.kind.value, secret)
    } catch (e) {
      error.textContent = e.code === 'token_expired' ? 'That token has expired; make a new one.'
        : e.status === 401 ? 'That key or token was refused.' : `Sign-in failed: ${e.message}`
      form.secret.focus()
      form.secret.select()
      return
    }
    form.reset()
    say('Signed in.')
    await enter()
  })
  document.getElementById('signout').addEventListener('click', () => signOut())
  // An expired token (the API's token_expired) is said so: signing in again needs a new one.
  window.addEventListener('cairn:unauthorized', (ev) => {
    if (credential()) {
      signOut(ev.detail?.code === 'token_expired' ? 'Your token has expired; sign in again with a new one.'
        : 'Your session ended (the key or token was refused); sign in again.')
    }
  })
  if (credential()) enter()
  else show(false)
  document.body.dataset.ready = 'true' // for tests and scripts: the console is wired up
  performance.mark('cairn:ready') // time to interactive, read by just bench console.load
}

// uppy.js is a deferred classic script; module scripts run after it, so it is there.
setup()
