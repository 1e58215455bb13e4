// Real yjs + y-websocket clients in Node, and polling helpers.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

/**
 * Connects a Y.Doc (a new one unless `doc` is given) to `room` on `url`; resolves once the
 * provider reports "synced".
 */
export async function connectClient (url, room, { params = {}, timeoutMs = 10000, doc = new Y.Doc() } = {}) {
  const provider = new WebsocketProvider(url, room, doc, { WebSocketPolyfill: WebSocket, params, disableBc: true })
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      provider.destroy()
      doc.destroy()
      reject(new Error(`client did not sync with ${url}/${room}`))
    }, timeoutMs)
    provider.on('sync', synced => { if (synced) { clearTimeout(timer); resolve() } })
  })
  return { doc, provider, awareness: provider.awareness, close: () => { provider.destroy(); doc.destroy() } }
}

/** Polls `check` until it returns truthy, or fails after `timeoutMs` with `what`. */
export async function waitFor (what, check, { timeoutMs = 10000, intervalMs = 20 } = {}) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    let last
    try { last = await check() } catch (e) { last = e }
    if (last && !(last instanceof Error)) return last
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last instanceof Error ? ': ' + last.message : ''}`)
    await new Promise(resolve => setTimeout(resolve, intervalMs))
  }
}

/** A comparable snapshot of the shared types the tests use. */
export function contents (doc) {
  return JSON.stringify({
    text: doc.getText('text').toString(),
    // Key order of a Y.Map depends on arrival order: sort for comparison.
    map: Object.fromEntries(Object.entries(doc.getMap('map').toJSON()).sort(([a], [b]) => a < b ? -1 : 1)),
    array: doc.getArray('array').toJSON()
  })
}

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
