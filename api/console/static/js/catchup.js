// Lists come from read models, which can trail the event stream (and our own writes) by a
// moment. A CatchUp remembers what the list should show (ids present, ids gone), hides the
// gone ones at once, and while a fresh read does not show it yet asks for another read,
// further apart each time, a bounded number of times: reads driven by events, not polling.

export class CatchUp {
  constructor (reload) {
    this.reload = reload
    this.present = new Set()
    this.absent = new Set()
    this.changed = new Map() // id -> a test the listed item must pass (a rename, a move)
    this.tries = 0
    this.timer = null
  }

  expect (id, present) {
    (present ? this.present : this.absent).add(id);
    (present ? this.absent : this.present).delete(id)
    this.tries = 0
  }

  // A change to an item (a rename): awaited until `ok(item)` holds for the item listed.
  expectChange (id, ok) {
    this.changed.set(id, ok)
    this.tries = 0
  }

  hides (id) { return this.absent.has(id) }

  // After a read that returned `ids`; `complete`: a missing id would have been in it;
  // `items`: id -> item of that read, for the awaited changes.
  settle (ids, complete = true, items = new Map()) {
    clearTimeout(this.timer)
    for (const id of this.absent) if (!ids.has(id)) this.absent.delete(id)
    for (const id of this.present) if (ids.has(id) || !complete) this.present.delete(id)
    for (const [id, ok] of this.changed) if (!items.has(id) || ok(items.get(id))) this.changed.delete(id)
    if ((this.absent.size || this.present.size || this.changed.size) && this.tries < 6) {
      this.timer = setTimeout(() => this.reload(), 100 * 2 ** this.tries++)
    } else {
      this.clear()
    }
  }

  clear () {
    clearTimeout(this.timer)
    this.tries = 0
    this.present.clear()
    this.absent.clear()
    this.changed.clear()
  }
}
