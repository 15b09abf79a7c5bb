// ARIA tabs: click or arrow keys (Home/End too) move between panels; only the selected tab
// is in the tab order, so Tab goes from the tab list straight into the panel.

export function setupTabs (onShow) {
  const tabs = [...document.querySelectorAll('[role=tab]')]
  const select = (tab, focus) => {
    for (const t of tabs) {
      const on = t === tab
      t.setAttribute('aria-selected', on)
      t.tabIndex = on ? 0 : -1
      document.getElementById(t.getAttribute('aria-controls')).hidden = !on
    }
    if (focus) tab.focus()
    onShow(tab.id.replace('tab-', ''))
  }
  for (const tab of tabs) {
    tab.addEventListener('click', () => select(tab, false))
    tab.addEventListener('keydown', (ev) => {
      const i = tabs.indexOf(tab)
      const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[ev.key]
      if (to === undefined) return
      ev.preventDefault()
      select(tabs[(to + tabs.length) % tabs.length], true)
    })
  }
  return (name) => select(document.getElementById(`tab-${name}`), false)
}
