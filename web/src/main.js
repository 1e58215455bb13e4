// Weft's editor: CodeMirror 6 bound to a Y.Text with y-codemirror.next, connected to this
// server with the stock y-websocket provider.
//
// URLs: `/` is the home page (new document / open by name); `/d/<name>` opens the editor on
// document <name>. The WebSocket for <name> is `ws(s)://<host>/<name>`: the server tells the
// two apart by the Upgrade header, so page URLs and document names never collide.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { yCollab } from 'y-codemirror.next'
import { EditorView, basicSetup } from 'codemirror'
import { EditorState } from '@codemirror/state'
import { markdown } from '@codemirror/lang-markdown'
import { colorFor } from './people.js'
import { setupHistory } from './history.js'

const NAME_RE = /^[A-Za-z0-9/_.-]{1,256}$/
const ADJECTIVES = ['amber', 'brave', 'calm', 'clever', 'eager', 'gentle', 'happy', 'lucid', 'merry', 'nimble', 'quiet', 'rapid', 'silver', 'sunny', 'swift', 'witty']
const NOUNS = ['otter', 'falcon', 'maple', 'harbor', 'comet', 'meadow', 'lantern', 'river', 'pixel', 'willow', 'summit', 'ember', 'garden', 'atlas', 'breeze', 'cedar']

const $ = id => document.getElementById(id)
const pick = list => list[Math.floor(Math.random() * list.length)]

/** A random, readable, URL-safe document id such as `brave-otter-42`. */
export function randomDocName () {
  return `${pick(ADJECTIVES)}-${pick(NOUNS)}-${Math.floor(Math.random() * 90 + 10)}`
}

function remembered (key, make) {
  let value = null
  try { value = localStorage.getItem(key) } catch (_) {}
  if (!value) {
    value = make()
    try { localStorage.setItem(key, value) } catch (_) {}
  }
  return value
}

function remember (key, value) {
  try { localStorage.setItem(key, value) } catch (_) {}
}

/**
 * The access token for servers with auth on, from the page URL's fragment: `/d/<name>#token=<jwt>`
 * (a fragment never reaches the server or its logs). Sent as `?token=` on the WebSocket and as
 * `Authorization: Bearer` to the HTTP API. Null without one.
 */
function tokenFromFragment () {
  try { return new URLSearchParams(location.hash.slice(1)).get('token') || null } catch (_) { return null }
}

function docNameFromPath (path) {
  if (!path.startsWith('/d/')) return null
  try { return decodeURIComponent(path.slice(3)) } catch (_) { return '' }
}

function showHome () {
  $('home').hidden = false
  $('new-doc').addEventListener('click', () => { location.assign(`/d/${randomDocName()}`) })
  $('open-form').addEventListener('submit', event => {
    event.preventDefault()
    const name = $('open-name').value.trim()
    if (!NAME_RE.test(name)) {
      $('open-error').textContent = 'Names use letters, digits, "/", "-", "_" and "." (up to 256).'
      $('open-error').hidden = false
      return
    }
    location.assign(`/d/${name}`)
  })
}

function setStatus (state, text) {
  const el = $('status')
  el.dataset.state = state
  el.textContent = text
}

function showEditor (name) {
  document.title = `${name} · Weft`
  $('editor-page').hidden = false
  $('doc-title').hidden = false
  $('doc-name').textContent = name
  $('copy-link').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(location.href)
      $('copy-link').textContent = 'Copied'
    } catch (_) {
      $('copy-link').textContent = location.href
    }
    setTimeout(() => { $('copy-link').textContent = 'Copy link' }, 1500)
  })

  const doc = new Y.Doc()
  const ytext = doc.getText('codemirror')
  const serverUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`
  const token = tokenFromFragment()
  const provider = new WebsocketProvider(serverUrl, name, doc, token ? { params: { token } } : {})

  // The user's name, in the awareness state `user: {name, color}`: other people see it on the
  // cursor and in "Here now", and with auth off the server records it as the author of the edits
  // (the History panel shows it). It is the "Your name" field, remembered in localStorage under
  // `weft:name` (tests set that key before the page loads). The colour follows from the name
  // (colorFor), so the History panel shows a person's changes in the colour of their cursor.
  const myName = remembered('weft:name', () => `${pick(ADJECTIVES)} ${pick(NOUNS)}`.replace(/\b\w/g, c => c.toUpperCase()))
  const me = { name: myName, color: colorFor(myName), colorLight: colorFor(myName) + '33' }
  provider.awareness.setLocalStateField('user', me)
  $('my-name').value = myName
  $('my-swatch').style.background = me.color
  $('my-name').addEventListener('input', () => {
    const value = $('my-name').value.trim() || 'Anonymous'
    me.name = value
    me.color = colorFor(value)
    me.colorLight = me.color + '33'
    $('my-swatch').style.background = me.color
    remember('weft:name', value)
    provider.awareness.setLocalStateField('user', { ...me })
  })

  // Connection state, always visible.
  let everSynced = false
  const refreshStatus = () => {
    if (provider.wsconnected && provider.synced) setStatus('online', 'Connected')
    else if (provider.wsconnected || provider.wsconnecting) setStatus('connecting', everSynced ? 'Reconnecting…' : 'Connecting…')
    else setStatus('offline', 'Offline — edits kept, retrying')
  }
  provider.on('status', refreshStatus)
  provider.on('sync', synced => { if (synced) everSynced = true; refreshStatus() })
  provider.on('connection-close', refreshStatus)
  window.addEventListener('offline', refreshStatus)
  refreshStatus()

  // Who is here.
  const renderPeople = () => {
    const list = $('people')
    list.replaceChildren()
    const states = [...provider.awareness.getStates().entries()]
      .filter(([, state]) => state.user)
      .sort(([a], [b]) => (a === doc.clientID ? -1 : b === doc.clientID ? 1 : a - b))
    for (const [clientId, state] of states) {
      const item = document.createElement('li')
      const swatch = document.createElement('span')
      swatch.className = 'swatch'
      swatch.style.background = state.user.color || '#888'
      const label = document.createElement('span')
      label.className = 'person'
      label.textContent = state.user.name + (clientId === doc.clientID ? ' (you)' : '')
      item.append(swatch, label)
      list.append(item)
    }
  }
  provider.awareness.on('change', renderPeople)
  renderPeople()

  const undoManager = new Y.UndoManager(ytext)
  const view = new EditorView({
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: [
        basicSetup,
        markdown(),
        EditorView.lineWrapping,
        yCollab(ytext, provider.awareness, { undoManager })
      ]
    }),
    parent: $('editor')
  })
  view.focus()

  const history = setupHistory({ name, token, editorEl: $('editor') })

  // For debugging from the console and for the browser tests.
  window.weft = { doc, ytext, provider, view, history, colorFor }
}

const name = docNameFromPath(location.pathname)
if (name === null) {
  showHome()
} else if (!NAME_RE.test(name)) {
  showHome()
  $('open-name').value = name
  $('open-error').textContent = `"${name}" is not a valid document name.`
  $('open-error').hidden = false
} else {
  showEditor(name)
}
