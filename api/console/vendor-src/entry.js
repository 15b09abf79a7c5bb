// The only Uppy pieces the console uses, exposed as one global (window.CairnUppy) so the
// console's own script needs no bundler: core, the Dashboard (drag and drop, file picker,
// per-file and total progress) and the tus uploader (resumable, parallel).
import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import Tus from '@uppy/tus'

window.CairnUppy = { Uppy, Dashboard, Tus }
