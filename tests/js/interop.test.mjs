// Interop: the real npm yjs + y-websocket clients against the real weft binary.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import { startWeft, tempDataDir } from './lib/server.mjs'
import { connectClient, waitFor, contents, sleep } from './lib/clients.mjs'

const servers = []
const clients = []
after(async () => {
  for (const c of clients) c.close()
  for (const s of servers) if (s.proc.exitCode === null) await s.kill()
})

async function start (opts) {
  const server = await startWeft(opts)
  servers.push(server)
  return server
}

async function client (url, room, opts) {
  const c = await connectClient(url, room, opts)
  clients.push(c)
  return c
}

/** Each client makes `rounds` rounds of edits to text, map and array, interleaved with the others. */
async function editConcurrently (all, rounds) {
  for (let round = 0; round < rounds; round++) {
    all.forEach((c, i) => {
      const text = c.doc.getText('text')
      c.doc.transact(() => {
        text.insert(Math.floor(Math.random() * (text.length + 1)), `[${i}:${round}]`)
        if (round % 5 === 4 && text.length > 10) text.delete(Math.floor(Math.random() * (text.length - 3)), 2)
        c.doc.getMap('map').set(`k${round % 7}`, `${i}-${round}`)
        c.doc.getMap('map').set(`client${i}`, round)
        c.doc.getArray('array').push([`${i}.${round}`])
      })
    })
    if (round % 10 === 0) await sleep(1)
  }
}

async function converged (all) {
  await waitFor('all clients to converge', () => {
    const first = contents(all[0].doc)
    return all.every(c => contents(c.doc) === first)
  }, { timeoutMs: 20000 })
  return all[0].doc
}

test('several clients editing text, map and array concurrently converge', async () => {
  const server = await start({ dataDir: tempDataDir() })
  const all = await Promise.all([0, 1, 2, 3, 4].map(() => client(server.url, 'interop/converge')))
  await editConcurrently(all, 60)
  const doc = await converged(all)
  assert.equal(doc.getArray('array').length, 5 * 60)
  for (let i = 0; i < 5; i++) {
    assert.equal(doc.getMap('map').get(`client${i}`), 59)
    assert.match(doc.getText('text').toString(), new RegExp(`\\[${i}:59\\]`))
  }
  // A late joiner gets exactly the same state.
  const late = await client(server.url, 'interop/converge')
  assert.equal(contents(late.doc), contents(doc))
})

test('awareness states fan out to every client and disappear when a client leaves', async () => {
  const server = await start({ dataDir: tempDataDir() })
  const all = await Promise.all([0, 1, 2, 3].map(() => client(server.url, 'interop/presence')))
  all.forEach((c, i) => c.awareness.setLocalStateField('user', { name: `user-${i}` }))
  const names = c => [...c.awareness.getStates().values()].map(s => s.user?.name).filter(Boolean).sort()
  for (const c of all) {
    await waitFor('every presence', () => names(c).length === 4)
  }
  assert.deepEqual(names(all[0]), ['user-0', 'user-1', 'user-2', 'user-3'])
  // A client disconnects without saying goodbye: the server removes its state for the others.
  const leaver = all[3]
  leaver.provider.ws.terminate?.()
  leaver.provider.shouldConnect = false
  leaver.provider.ws.close()
  for (const c of all.slice(0, 3)) {
    await waitFor('the leaver to disappear', () => !names(c).includes('user-3'))
  }
  // A newcomer is told the current states on connect.
  const newcomer = await client(server.url, 'interop/presence')
  await waitFor('newcomer sees the others', () => names(newcomer).length === 3)
})

test('state survives a graceful restart and a kill -9 right after convergence', async () => {
  const dataDir = tempDataDir()
  let server = await start({ dataDir })
  const room = 'interop/durable'
  const writers = await Promise.all([0, 1, 2].map(() => client(server.url, room)))
  await editConcurrently(writers, 30)
  const expected = contents(await converged(writers))

  // Graceful: SIGTERM, exit 0, restart on the same address, a fresh client sees it all.
  const { code } = await server.stop()
  assert.equal(code, 0, 'weft exits 0 on SIGTERM')
  for (const w of writers) w.close()
  server = await start({ dataDir })
  const reader = await client(server.url, room)
  assert.equal(contents(reader.doc), expected)

  // kill -9 the moment the clients have converged: everything they saw was stored first.
  const more = await Promise.all([0, 1, 2].map(() => client(server.url, room)))
  await editConcurrently(more, 40)
  const expectedAfter = contents(await converged(more))
  await server.kill()
  for (const c of [reader, ...more]) c.close()
  server = await start({ dataDir })
  const after9 = await client(server.url, room)
  assert.equal(contents(after9.doc), expectedAfter)
  const state = Y.encodeStateAsUpdate(after9.doc)
  assert.ok(state.length > 100)
})

test('y-websocket passes a token through params; read-only clients cannot change the document', async () => {
  const { execFileSync } = await import('node:child_process')
  const { weftBin } = await import('./lib/server.mjs')
  const secret = 'interop-secret'
  const server = await start({ dataDir: tempDataDir(), args: ['--auth-secret', secret] })
  const token = perm => execFileSync(weftBin, ['token', '--doc', 'team/*', '--perm', perm, '--ttl', '10m', '--auth-secret', secret]).toString().trim()

  const writer = await client(server.url, 'team/doc', { params: { token: token('write') } })
  writer.doc.getText('text').insert(0, 'signed in')
  const reader = await client(server.url, 'team/doc', { params: { token: token('read') } })
  await waitFor('the reader to see the writer', () => reader.doc.getText('text').toString() === 'signed in')
  // The reader's edit stays local: the server refuses it and nobody else sees it.
  reader.doc.getText('text').insert(0, 'VANDAL ')
  await sleep(300)
  const check = await client(server.url, 'team/doc', { params: { token: token('read') } })
  assert.equal(check.doc.getText('text').toString(), 'signed in')
  assert.equal(writer.doc.getText('text').toString(), 'signed in')

  // Without a token the upgrade is refused: the provider never syncs.
  await assert.rejects(connectClient(server.url, 'team/doc', { timeoutMs: 1500 }), /did not sync/)
})

test('a document deleted over HTTP stays deleted while a stock provider keeps reconnecting', async () => {
  const server = await start({ dataDir: tempDataDir() })
  const room = 'interop/deleted'
  const holder = await client(server.url, room)
  holder.doc.getText('text').insert(0, 'the whole document')
  const check = await client(server.url, room)
  await waitFor('the text stored and relayed', () => check.doc.getText('text').toString() === 'the whole document')
  check.close()

  // Count the holder's reconnection attempts: y-websocket retries as soon as it is closed, and
  // would upload its whole state on the first that succeeds.
  let attempts = 0
  holder.provider.on('status', ({ status }) => { if (status === 'connecting') attempts++ })
  const deleted = await fetch(`${server.httpUrl}/api/docs/${room}`, { method: 'DELETE' })
  assert.equal(deleted.status, 204)
  await waitFor('several reconnection attempts', () => attempts >= 3, { timeoutMs: 15000 })
  const json = await fetch(`${server.httpUrl}/api/docs/${room}/json`)
  assert.equal(json.status, 404, 'the provider did not bring it back')
  assert.equal(holder.provider.wsconnected, false)

  // Created again: the provider's next attempt connects (and, as a CRDT client does, merges its
  // copy into the new document).
  const created = await fetch(`${server.httpUrl}/api/docs/${room}`, { method: 'PUT' })
  assert.equal(created.status, 201)
  await waitFor('the provider reconnected', () => holder.provider.wsconnected, { timeoutMs: 15000 })
})
