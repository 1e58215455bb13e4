// The History panel: the document's kept versions (newest first), naming the current text,
// viewing a version read-only with what changed since the version before it (in the colour of
// who changed it), and restoring a version for everyone.
//
// It uses the server's HTTP API under /api/docs/<name>/…: `versions` (GET: the list, with the
// header `X-Weft-Permission: read|write`; POST {label}: name the current text),
// `versions/<id>/changes`, `versions/<id>/json` (fallback) and `restore` (POST {version}).
// Everything the server sends is shown with textContent, never parsed as HTML.
import { colorFor } from './people.js'

const $ = id => document.getElementById(id)
const UNKNOWN_COLOR = '#6b7280'
const AUTO_REFRESH_MS = 20000

/** `/api/docs/<name>`, each path segment of the name percent-encoded (its slashes kept). */
export function docApiPath (name) {
  return '/api/docs/' + name.split('/').map(encodeURIComponent).join('/')
}

const formatTime = ms => new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' })

function el (tag, className, text) {
  const node = document.createElement(tag)
  if (className) node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

function swatch (color) {
  const node = el('span', 'swatch')
  node.style.background = color
  return node
}

/** An error of the API with its HTTP status and the server's `error` text. */
class ApiError extends Error {
  constructor (status, message) {
    super(message)
    this.status = status
  }
}

/**
 * Wires the History panel of document `name`. `token` (or null) goes to the API as a Bearer
 * token. `editorEl` is the live editor's element, hidden while a version is shown.
 */
export function setupHistory ({ name, token, editorEl }) {
  const base = docApiPath(name)
  const panel = $('history')
  const toggle = $('history-toggle')
  let permission = null // 'read' | 'write', from X-Weft-Permission; null while unknown
  let versions = []
  let viewing = null // the version shown, or null while editing
  let listSeq = 0
  let viewSeq = 0
  let timer = null

  async function api (method, path, body) {
    const headers = { Accept: 'application/json' }
    if (token) headers.Authorization = `Bearer ${token}`
    if (body !== undefined) headers['Content-Type'] = 'application/json'
    let res
    try {
      res = await fetch(base + path, {
        method,
        headers,
        cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body)
      })
    } catch (_) {
      throw new ApiError(0, 'the server could not be reached')
    }
    if (!res.ok) {
      let message = `${res.status} ${res.statusText}`.trim()
      try {
        const json = await res.json()
        if (json && typeof json.error === 'string') message = json.error
      } catch (_) {}
      throw new ApiError(res.status, message)
    }
    return res
  }

  /** A sentence for a failed `action` ("restore", "name versions", "list versions", …). */
  function explain (error, action) {
    if (error.status === 403) return `Read-only access: cannot ${action}. (${error.message})`
    if (error.status === 401) return `Not signed in: this server needs a link with access to the document to ${action}. (${error.message})`
    if (error.status === 404) return `Not found: history may be turned off on this server, or the version is gone. (${error.message})`
    return `Could not ${action}: ${error.message}`
  }

  function message (text, isError = false) {
    const node = $('history-msg')
    node.textContent = text || ''
    node.hidden = !text
    node.classList.toggle('error', isError)
  }

  function applyPermission () {
    const readOnly = permission === 'read'
    panel.dataset.permission = permission || 'unknown'
    $('name-version').hidden = readOnly || !$('name-form').hidden
    if (readOnly) $('name-form').hidden = true
    $('restore').hidden = readOnly
    if (readOnly) $('restore-confirm').hidden = true
  }

  // ---- the list ----------------------------------------------------------------------------

  async function load () {
    const seq = ++listSeq
    panel.setAttribute('aria-busy', 'true')
    try {
      const res = await api('GET', '/versions')
      const list = await res.json()
      if (seq !== listSeq) return
      const header = (res.headers.get('X-Weft-Permission') || '').toLowerCase()
      permission = header === 'read' || header === 'write' ? header : null
      versions = Array.isArray(list) ? list : []
      applyPermission()
      renderList()
    } catch (error) {
      if (seq !== listSeq) return
      if (error.status === 404) {
        versions = []
        renderList('This server keeps no history for this document.')
        $('name-version').hidden = true
      } else {
        message(explain(error, 'list versions'), true)
      }
    } finally {
      if (seq === listSeq) panel.removeAttribute('aria-busy')
    }
  }

  function renderList (emptyText) {
    const list = $('versions')
    list.replaceChildren()
    if (!versions.length) {
      list.append(el('li', 'empty', emptyText || 'No versions yet. One is kept automatically while the document changes; or name the current text.'))
      return
    }
    for (const version of versions) {
      const item = el('li', version.label ? 'named' : '')
      const button = el('button', 'version')
      button.type = 'button'
      button.dataset.versionId = String(version.id)
      if (viewing && String(viewing.id) === String(version.id)) button.setAttribute('aria-current', 'true')
      const top = el('span', 'version-top')
      const when = el('time', 'when', formatTime(version.at))
      when.dateTime = new Date(version.at).toISOString()
      top.append(when)
      if (version.label) top.append(el('span', 'badge', 'Named'))
      button.append(top)
      if (version.label) button.append(el('span', 'version-label', version.label))
      const authors = Array.isArray(version.authors) ? version.authors : []
      const who = el('span', 'authors')
      if (authors.length === 0) who.append(el('span', 'muted', 'no new edits'))
      for (const author of authors) {
        const person = el('span', 'author')
        person.append(swatch(colorFor(String(author))), document.createTextNode(String(author)))
        who.append(person)
      }
      button.append(who)
      button.addEventListener('click', () => show(version))
      item.append(button)
      list.append(item)
    }
  }

  function open () {
    panel.hidden = false
    toggle.setAttribute('aria-expanded', 'true')
    message('')
    load()
    clearInterval(timer)
    timer = setInterval(() => { if (!document.hidden) load() }, AUTO_REFRESH_MS)
  }

  function close () {
    panel.hidden = true
    toggle.setAttribute('aria-expanded', 'false')
    clearInterval(timer)
    timer = null
  }

  toggle.hidden = false
  toggle.addEventListener('click', () => (panel.hidden ? open() : close()))
  $('history-close').addEventListener('click', close)
  $('history-refresh').addEventListener('click', () => { message(''); load() })
  panel.addEventListener('keydown', event => {
    if (event.key === 'Escape') {
      close()
      toggle.focus()
    }
  })

  // ---- naming the current text -----------------------------------------------------------

  $('name-version').addEventListener('click', () => {
    $('name-form').hidden = false
    $('name-version').hidden = true
    message('')
    $('version-label').focus()
  })
  const cancelNaming = () => {
    $('name-form').reset()
    $('name-form').hidden = true
    applyPermission()
  }
  $('name-cancel').addEventListener('click', cancelNaming)
  $('name-form').addEventListener('keydown', event => {
    if (event.key === 'Escape') {
      event.stopPropagation()
      cancelNaming()
    }
  })
  $('name-form').addEventListener('submit', async event => {
    event.preventDefault()
    const label = $('version-label').value.trim()
    if (!label) return
    $('name-save').disabled = true
    try {
      await api('POST', '/versions', { label })
      cancelNaming()
      message(`Named this version “${label}”.`)
      await load()
    } catch (error) {
      if (error.status === 403) {
        permission = 'read'
        cancelNaming()
      }
      message(explain(error, 'name versions'), true)
    } finally {
      $('name-save').disabled = false
    }
  })

  // ---- viewing a version -------------------------------------------------------------------

  const view = $('version-view')

  function versionTitle (version) {
    return version.label ? `“${version.label}” · ${formatTime(version.at)}` : `Version of ${formatTime(version.at)}`
  }

  async function show (version) {
    const seq = ++viewSeq
    viewing = version
    renderList()
    editorEl.hidden = true
    view.hidden = false
    view.dataset.versionId = String(version.id)
    delete view.dataset.loaded
    $('restore-confirm').hidden = true
    $('version-error').hidden = true
    $('version-heading').textContent = versionTitle(version)
    $('version-legend').replaceChildren()
    $('version-text').replaceChildren(el('p', 'muted', 'Loading…'))
    applyPermission()
    // At phone width the panel covers the page: get it out of the way.
    if (window.matchMedia('(max-width: 640px)').matches) close()

    const id = encodeURIComponent(version.id)
    try {
      const changes = await (await api('GET', `/versions/${id}/changes`)).json()
      if (seq !== viewSeq) return
      renderChanges(changes)
    } catch (error) {
      if (seq !== viewSeq) return
      // Without the changes, still show the text of the version.
      try {
        const json = await (await api('GET', `/versions/${id}/json`)).json()
        if (seq !== viewSeq) return
        renderPlain(json)
        versionError(`Showing the text only: ${explain(error, 'load the changes').replace(/^Could not load the changes: /, '')}`)
      } catch (_) {
        if (seq !== viewSeq) return
        $('version-text').replaceChildren()
        versionError(explain(error, 'load this version'))
      }
    }
    if (seq === viewSeq) view.dataset.loaded = 'true'
  }

  function versionError (text) {
    $('version-error').textContent = text
    $('version-error').hidden = !text
  }

  /** Root names in display order: the editor's text first. */
  const rootOrder = names => [...names].sort((a, b) => (a === 'codemirror' ? -1 : b === 'codemirror' ? 1 : a < b ? -1 : a > b ? 1 : 0))

  function renderChanges (changes) {
    const texts = (changes && typeof changes.texts === 'object' && changes.texts) || {}
    const names = rootOrder(Object.keys(texts))
    const container = $('version-text')
    container.replaceChildren()
    const tally = new Map() // author → { inserted, deleted }
    const since = changes && changes.since != null ? versions.find(v => String(v.id) === String(changes.since)) : null
    container.append(el('p', 'since muted', changes && changes.since == null
      ? 'The first version kept: all of its text is shown as added.'
      : since ? `Changes since the version of ${formatTime(since.at)}${since.label ? ` (“${since.label}”)` : ''}.` : 'Changes since the version before.'))
    if (!names.length) container.append(el('p', 'muted', 'This version has no text.'))
    for (const root of names) {
      const runs = Array.isArray(texts[root]) ? texts[root] : []
      if (names.length > 1) container.append(el('h3', 'root-name', root))
      const body = el('div', 'version-body')
      body.dataset.root = root
      for (const run of runs) {
        const text = typeof run.text === 'string' ? run.text : ''
        if (run.type === 'insert' || run.type === 'delete') {
          const author = run.author == null ? null : String(run.author)
          const color = author === null ? UNKNOWN_COLOR : colorFor(author)
          const node = el(run.type === 'insert' ? 'ins' : 'del', `run ${run.type}`, text)
          node.style.setProperty('--author', color)
          node.dataset.author = author ?? ''
          const verb = run.type === 'insert' ? 'Added' : 'Deleted'
          node.title = `${verb} by ${author ?? 'someone unknown'}${run.at ? ` · ${formatTime(run.at)}` : ''}`
          body.append(node)
          const key = author ?? ''
          const entry = tally.get(key) || { inserted: 0, deleted: 0 }
          entry[run.type === 'insert' ? 'inserted' : 'deleted'] += [...text].length
          tally.set(key, entry)
        } else {
          body.append(document.createTextNode(text))
        }
      }
      container.append(body)
    }
    renderLegend(tally)
  }

  function renderLegend (tally) {
    const legend = $('version-legend')
    legend.replaceChildren()
    if (!tally.size) {
      legend.append(el('li', 'muted', 'No changes since the version before.'))
      return
    }
    for (const [author, { inserted, deleted }] of tally) {
      const item = el('li')
      item.dataset.author = author
      item.append(swatch(author ? colorFor(author) : UNKNOWN_COLOR), el('span', 'legend-name', author || 'someone unknown'))
      const counts = []
      if (inserted) counts.push(`+${inserted}`)
      if (deleted) counts.push(`−${deleted}`)
      item.append(el('span', 'muted', counts.join(' ')))
      legend.append(item)
    }
  }

  function renderPlain (json) {
    const container = $('version-text')
    container.replaceChildren()
    const names = rootOrder(Object.keys(json || {}).filter(k => typeof json[k] === 'string'))
    for (const root of names) {
      if (names.length > 1) container.append(el('h3', 'root-name', root))
      const body = el('div', 'version-body', json[root])
      body.dataset.root = root
      container.append(body)
    }
  }

  function backToEditing () {
    ++viewSeq
    viewing = null
    view.hidden = true
    delete view.dataset.versionId
    $('version-text').replaceChildren()
    editorEl.hidden = false
    renderList()
  }
  $('back-to-editing').addEventListener('click', backToEditing)

  // ---- restoring ----------------------------------------------------------------------------

  $('restore').addEventListener('click', () => {
    $('restore-confirm').hidden = false
    $('restore-no').focus()
  })
  $('restore-no').addEventListener('click', () => { $('restore-confirm').hidden = true })
  $('restore-yes').addEventListener('click', async () => {
    if (!viewing) return
    const version = viewing
    $('restore-yes').disabled = true
    try {
      await api('POST', '/restore', { version: String(version.id) })
      backToEditing()
      if (panel.hidden) open()
      else load()
      message(`Restored ${version.label ? `“${version.label}”` : `the version of ${formatTime(version.at)}`}. The text before it is kept as a version.`)
    } catch (error) {
      $('restore-confirm').hidden = true
      if (error.status === 403) {
        permission = 'read'
        applyPermission()
      }
      versionError(explain(error, 'restore'))
    } finally {
      $('restore-yes').disabled = false
    }
  })

  return { open, close, load, show, backToEditing }
}
