// Stock @hocuspocus/provider clients against weft's /hocuspocus endpoint, and raw Hocuspocus
// frames for the hostile cases.
import * as Y from 'yjs'
import WebSocket from 'ws'
import * as encoding from 'lib0/encoding'
import { execFileSync } from 'node:child_process'
import { HocuspocusProvider, HocuspocusProviderWebsocket } from '@hocuspocus/provider'
import { weftBin } from './server.mjs'

/** One Hocuspocus socket to `url` (ws://host:port), for several providers. */
export function hocuspocusSocket (url) {
  return new HocuspocusProviderWebsocket({ url: `${url}/hocuspocus`, WebSocketPolyfill: WebSocket, delay: 100, minDelay: 50 })
}

/**
 * A provider for document `name` on `socket` (its own socket when none is given). Collects what
 * the server tells it in `events`.
 */
export function hocuspocusClient (url, name, { token = '', socket, doc = new Y.Doc() } = {}) {
  const own = !socket
  const websocketProvider = socket ?? hocuspocusSocket(url)
  const events = { authenticated: [], authFailed: [], stateless: [], closes: [], unsynced: [] }
  const provider = new HocuspocusProvider({
    websocketProvider,
    name,
    document: doc,
    token,
    onAuthenticated: ({ scope }) => events.authenticated.push(scope),
    onAuthenticationFailed: ({ reason }) => events.authFailed.push(reason),
    onStateless: ({ payload }) => events.stateless.push(payload),
    onClose: ({ event }) => events.closes.push(event),
    onUnsyncedChanges: ({ number }) => events.unsynced.push(number)
  })
  provider.attach()
  return {
    doc,
    provider,
    events,
    text: () => doc.getText('text').toString(),
    close: () => { provider.destroy(); if (own) websocketProvider.destroy(); doc.destroy() }
  }
}

/** A token from `weft token` with `secret`. */
export function mintToken (secret, { doc, perm = 'write', ttl = '1h', sub = 'hp-test', extra = [] }) {
  return execFileSync(weftBin, ['token', '--auth-secret', secret, '--doc', doc, '--perm', perm, '--ttl', ttl, '--sub', sub, ...extra]).toString().trim()
}

/** A raw Hocuspocus message: the address, the type, then `write(encoder)`. */
export function rawMessage (address, type, write = () => {}) {
  const encoder = encoding.createEncoder()
  encoding.writeVarString(encoder, address)
  encoding.writeVarUint(encoder, type)
  write(encoder)
  return encoding.toUint8Array(encoder)
}

/** A raw Auth message for `address` with `token`. */
export function rawAuth (address, token = '') {
  return rawMessage(address, 2, e => { encoding.writeVarUint(e, 0); encoding.writeVarString(e, token); encoding.writeVarString(e, '4.8.0') })
}

/** A plain WebSocket to /hocuspocus; resolves once open, with `closed` (the close code). */
export function rawSocket (url) {
  const ws = new WebSocket(`${url}/hocuspocus`)
  const received = []
  ws.on('message', data => received.push(new Uint8Array(data)))
  const closed = new Promise(resolve => ws.on('close', code => resolve(code)))
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, closed, received }))
    ws.once('error', reject)
  })
}
