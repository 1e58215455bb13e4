// Stock @hocuspocus/provider 4.8 clients against weft's /hocuspocus endpoint: live editing with
// y-websocket clients on the same documents, many documents on one socket, per-document auth,
// SyncStatus only once durable, stateless messages, and hostile frames.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import * as encoding from 'lib0/encoding'
import { startWeft, tempDataDir } from './lib/server.mjs'
import { connectClient, waitFor } from './lib/clients.mjs'
import { hocuspocusClient, hocuspocusSocket, mintToken, rawAuth, rawMessage, rawSocket } from './lib/hocuspocus.mjs'
import { HocuspocusProvider } from '@hocuspocus/provider'
import * as Y from 'yjs'

const SECRET = 'a-hocuspocus-test-secret-long-enough'
const servers = []
const closers = []
after(async () => {
  for (const close of closers) { try { close() } catch {} }
  for (const s of servers) if (s.proc.exitCode === null) await s.kill()
})

async function start (opts) {
  const server = await startWeft(opts)
  servers.push(server)
  return server
}

function track (client) {
  closers.push(() => client.close())
  return client
}

test('a Hocuspocus provider and a y-websocket client edit one document live', async () => {
  const server = await start({ dataDir: tempDataDir() })
  const hp = track(hocuspocusClient(server.url, 'shared/doc'))
  await waitFor('the provider to sync', () => hp.provider.isSynced)
  const yws = await connectClient(server.url, 'shared/doc')
  closers.push(() => yws.close())
  hp.doc.getText('text').insert(0, 'from hocuspocus;')
  await waitFor('the y-websocket client to see it', () => yws.doc.getText('text').toString() === 'from hocuspocus;')
  yws.doc.getText('text').insert(0, 'from y-websocket;')
  await waitFor('the provider to see it', () => hp.text() === 'from y-websocket;from hocuspocus;')
  assert.deepEqual(hp.events.authenticated, ['read-write'])
  await waitFor('every change acknowledged', () => hp.provider.unsyncedChanges === 0)

  // Presence crosses protocols, both ways.
  hp.provider.setAwarenessField('user', { name: 'Tiptap Tess' })
  yws.awareness.setLocalStateField('user', { name: 'Websocket Walt' })
  const names = states => [...states.values()].map(s => s.user?.name).filter(Boolean).sort()
  await waitFor('y-websocket to see the provider', () => names(yws.awareness.getStates()).includes('Tiptap Tess'))
  await waitFor('the provider to see y-websocket', () => names(hp.provider.awareness.getStates()).includes('Websocket Walt'))

  // Concurrent edits from both protocols converge.
  const more = [track(hocuspocusClient(server.url, 'shared/doc')), await connectClient(server.url, 'shared/doc')]
  closers.push(() => more[1].close())
  await waitFor('the second provider to sync', () => more[0].provider.isSynced)
  const all = [hp, yws, ...more]
  for (let round = 0; round < 30; round++) {
    all.forEach((c, i) => {
      const text = c.doc.getText('text')
      text.insert(Math.floor(Math.random() * (text.length + 1)), `[${i}.${round}]`)
      c.doc.getMap('map').set(`k${i}`, round)
    })
  }
  // Map keys come out in arrival order: sort them.
  const snapshot = c => JSON.stringify([c.doc.getText('text').toString(), Object.entries(c.doc.getMap('map').toJSON()).sort()])
  await waitFor('all four to converge', () => all.every(c => snapshot(c) === snapshot(all[0])), { timeoutMs: 20000 })
  for (let i = 0; i < 4; i++) assert.match(hp.text(), new RegExp(`\\[${i}\\.29\\]`))
  await waitFor('the providers acknowledged', () => hp.provider.unsyncedChanges === 0 && more[0].provider.unsyncedChanges === 0)
})

test('SyncStatus means durable: acknowledged edits survive kill -9', async () => {
  const dataDir = tempDataDir()
  const server = await start({ dataDir })
  const hp = track(hocuspocusClient(server.url, 'durable/doc'))
  await waitFor('the provider to sync', () => hp.provider.isSynced)
  for (let i = 0; i < 20; i++) hp.doc.getText('text').insert(0, `${i};`)
  const expected = hp.text()
  await waitFor('every change acknowledged', () => hp.provider.unsyncedChanges === 0)
  await server.kill()
  hp.close()
  const again = await start({ dataDir })
  const check = await connectClient(again.url, 'durable/doc')
  closers.push(() => check.close())
  assert.equal(check.doc.getText('text').toString(), expected)
})

test('many documents on one socket, each with its own token; closing one leaves the others', async () => {
  const server = await start({ dataDir: tempDataDir(), args: ['--auth-secret', SECRET] })
  const socket = hocuspocusSocket(server.url)
  closers.push(() => socket.destroy())
  const a = track(hocuspocusClient(server.url, 'multi/a', { socket, token: mintToken(SECRET, { doc: 'multi/a' }) }))
  const b = track(hocuspocusClient(server.url, 'multi/b', { socket, token: mintToken(SECRET, { doc: 'multi/b', perm: 'read' }) }))
  const c = track(hocuspocusClient(server.url, 'multi/c', { socket, token: mintToken(SECRET, { doc: 'multi/other' }) }))
  const expired = track(hocuspocusClient(server.url, 'multi/d', { socket, token: mintToken(SECRET, { doc: 'multi/d', ttl: '1s' }) }))
  await waitFor('a to sync', () => a.provider.isSynced)
  await waitFor('b to be authenticated', () => b.events.authenticated.length === 1)
  assert.deepEqual(a.events.authenticated, ['read-write'])
  assert.deepEqual(b.events.authenticated, ['readonly'])
  await waitFor('c to be refused', () => c.events.authFailed.length === 1)
  assert.match(c.events.authFailed[0], /does not grant access/)

  // A writer on each document, over y-websocket.
  const writerB = await connectClient(server.url, 'multi/b', { params: { token: mintToken(SECRET, { doc: 'multi/b' }) } })
  closers.push(() => writerB.close())
  writerB.doc.getText('text').insert(0, 'written to b')
  await waitFor('b to receive', () => b.text() === 'written to b')
  // The read-only session's edit changes nothing and is never acknowledged.
  b.doc.getText('text').insert(0, 'read-only says ')
  a.doc.getText('text').insert(0, 'a still works')
  await waitFor('a acknowledged', () => a.provider.unsyncedChanges === 0)
  const readerA = await connectClient(server.url, 'multi/a', { params: { token: mintToken(SECRET, { doc: 'multi/a', perm: 'read' }) } })
  closers.push(() => readerA.close())
  assert.equal(readerA.doc.getText('text').toString(), 'a still works')
  assert.equal(writerB.doc.getText('text').toString(), 'written to b')
  assert.ok(b.provider.unsyncedChanges > 0, 'the refused edit is not acknowledged')
  await waitFor('the refused edit to be answered', () => b.events.authFailed.some(r => /read-only/.test(r)))

  // Closing a leaves b open on the same socket.
  a.provider.destroy()
  writerB.doc.getText('text').insert(0, 'more ')
  await waitFor('b to receive more', () => b.text().includes('more '))
  // The short-lived token's document ends the connection when it expires (4401); the provider
  // reconnects and opens its documents again.
  expired.doc.getText('text').insert(0, 'x')
  await waitFor('the expired token to be refused', () => expired.events.authFailed.some(r => /expired/.test(r)), { timeoutMs: 15000 })
  writerB.doc.getText('text').insert(0, 'after ')
  await waitFor('b to receive after the reconnect', () => b.text().includes('after '), { timeoutMs: 15000 })
})

test('stateless messages reach the other providers; read tokens need the stateless claim', async () => {
  const server = await start({ dataDir: tempDataDir(), args: ['--auth-secret', SECRET] })
  const writer = track(hocuspocusClient(server.url, 'talk', { token: mintToken(SECRET, { doc: 'talk' }) }))
  const reader = track(hocuspocusClient(server.url, 'talk', { token: mintToken(SECRET, { doc: 'talk', perm: 'read' }) }))
  const speaker = track(hocuspocusClient(server.url, 'talk', { token: mintToken(SECRET, { doc: 'talk', perm: 'read', extra: ['--allow-stateless'] }) }))
  const yws = await connectClient(server.url, 'talk', { params: { token: mintToken(SECRET, { doc: 'talk' }) } })
  closers.push(() => yws.close())
  for (const c of [writer, reader, speaker]) await waitFor('authenticated', () => c.events.authenticated.length === 1)
  writer.provider.sendStateless('hello from the writer')
  await waitFor('the readers to hear the writer', () => reader.events.stateless.includes('hello from the writer') && speaker.events.stateless.includes('hello from the writer'))
  assert.deepEqual(writer.events.stateless, [], 'not echoed to its sender')
  reader.provider.sendStateless('from a plain reader')
  speaker.provider.sendStateless('from an allowed reader')
  await waitFor('the allowed reader to be heard', () => writer.events.stateless.includes('from an allowed reader'))
  assert.ok(!writer.events.stateless.includes('from a plain reader'), 'a plain read token may not send stateless messages')
  // The y-websocket client on the same document is unaffected.
  writer.doc.getText('text').insert(0, 'still in sync')
  await waitFor('y-websocket to see the edit', () => yws.doc.getText('text').toString() === 'still in sync')
})

test('a deleted document closes its Hocuspocus session and stays deleted', async () => {
  const server = await start({ dataDir: tempDataDir() })
  const hp = track(hocuspocusClient(server.url, 'doomed'))
  await waitFor('the provider to sync', () => hp.provider.isSynced)
  hp.doc.getText('text').insert(0, 'soon gone')
  await waitFor('acknowledged', () => hp.provider.unsyncedChanges === 0)
  const response = await fetch(`${server.httpUrl}/api/docs/doomed`, { method: 'DELETE' })
  assert.equal(response.status, 204)
  await waitFor('the session to be closed', () => hp.events.closes.length > 0)
  // Opening it again over Hocuspocus is refused, and nothing is written back.
  const again = track(hocuspocusClient(server.url, 'doomed'))
  await waitFor('the reopen to be refused', () => again.events.authFailed.length > 0)
  assert.match(again.events.authFailed[0], /deleted/)
  const gone = await fetch(`${server.httpUrl}/api/docs/doomed/json`)
  assert.equal(gone.status, 404, 'nothing was written back')
})

test('hostile Hocuspocus frames close that connection only', async () => {
  const server = await start({ dataDir: tempDataDir(), args: ['--auth-secret', SECRET, '--max-message-bytes', '65536'] })
  const bystander = track(hocuspocusClient(server.url, 'calm', { token: mintToken(SECRET, { doc: 'calm' }) }))
  await waitFor('the bystander to sync', () => bystander.provider.isSynced)
  const token = mintToken(SECRET, { doc: '*' })
  const cases = [
    ['an unknown message type', [rawAuth('calm', token), rawMessage('calm', 99)], 1007],
    ['BroadcastStateless from a client', [rawMessage('calm', 6, e => encoding.writeVarString(e, 'x'))], 1007],
    ['a truncated address', [new Uint8Array([0x7f, 1, 2])], 1007],
    ['more than 256 documents', Array.from({ length: 300 }, (_, i) => rawAuth(`flood/${i}`, 'forged')), 1008],
    ['a flood of messages before Auth', Array.from({ length: 100 }, () => rawMessage('later', 3)), 1008],
    ['an Auth larger than the message limit', [rawAuth('calm', 'x'.repeat(100000))], 1009]
  ]
  for (const [what, messages, code] of cases) {
    const { ws, closed } = await rawSocket(server.url)
    for (const m of messages) ws.send(m)
    assert.equal(await closed, code, what)
  }
  // Without a token, with a forged one: refused per document, nothing stored.
  const { ws, received, closed } = await rawSocket(server.url)
  ws.send(rawAuth('calm', ''))
  ws.send(rawAuth('calm/2', token.slice(0, -4) + 'AAAA'))
  await waitFor('two refusals', () => received.length >= 2)
  for (const frame of received) assert.equal(frame[frame[0] + 1], 2, 'an Auth message')
  for (const frame of received) assert.equal(frame[frame[0] + 2], 1, 'PermissionDenied')
  ws.close()
  await closed
  // The bystander was never disturbed.
  assert.deepEqual(bystander.events.closes, [])
  bystander.doc.getText('text').insert(0, 'unharmed')
  await waitFor('acknowledged', () => bystander.provider.unsyncedChanges === 0)
})

test('a socket that opens no document is closed', async () => {
  const server = await start({ dataDir: tempDataDir(), args: ['--client-timeout', '1s', '--ping-interval', '200ms'] })
  const started = Date.now()
  const { closed } = await rawSocket(server.url)
  // ws answers the server's pings, so only the missing document can end it.
  assert.equal(await closed, 1008)
  assert.ok(Date.now() - started < 5000, 'within a few pings of --client-timeout')
})

test('one socket may hold the same document twice (sessionAwareness)', async () => {
  const server = await start({ dataDir: tempDataDir() })
  const socket = hocuspocusSocket(server.url)
  closers.push(() => socket.destroy())
  const twins = [0, 1].map(() => {
    const doc = new Y.Doc()
    const provider = new HocuspocusProvider({ websocketProvider: socket, name: 'twins', document: doc, sessionAwareness: true })
    provider.attach()
    closers.push(() => provider.destroy())
    return { doc, provider }
  })
  await waitFor('both to sync', () => twins.every(t => t.provider.isSynced))
  twins[0].doc.getText('text').insert(0, 'one;')
  twins[1].doc.getText('text').insert(0, 'two;')
  const text = t => t.doc.getText('text').toString()
  await waitFor('both to converge', () => text(twins[0]).length === 8 && text(twins[0]) === text(twins[1]))
  await waitFor('both acknowledged', () => twins.every(t => t.provider.unsyncedChanges === 0))
})

test('a socket is counted before it opens a document, and may not send large messages yet', async () => {
  const server = await start({ dataDir: tempDataDir(), args: ['--max-connections-per-ip', '3'] })
  const sockets = []
  for (let i = 0; i < 3; i++) sockets.push(await rawSocket(server.url))
  await assert.rejects(rawSocket(server.url), /429/, 'the address has its share')
  for (const { ws, closed } of sockets) { ws.close(); await closed }
  // Before any Auth, a large frame is refused from its header: no token vouches for it.
  const { ws, closed } = await rawSocket(server.url)
  ws.send(rawMessage('later', 0, e => { encoding.writeVarUint(e, 2); encoding.writeVarUint8Array(e, new Uint8Array(100000)) }))
  assert.equal(await closed, 1009)
  const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text()
  const held = metrics.match(/^weft_inflight_bytes (\d+)/m)
  assert.ok(!held || Number(held[1]) === 0, 'no budget was taken')
})
