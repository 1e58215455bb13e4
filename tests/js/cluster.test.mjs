// Cluster mode: three real weft nodes sharing one PostgreSQL and one Redis, real npm yjs +
// y-websocket clients spread over them. Needs WEFT_TEST_POSTGRES_URL and WEFT_TEST_REDIS_URL
// (tests/run.sh starts throwaway servers with tests/cluster-services.sh); fails without them.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { startWeft, tempDataDir } from './lib/server.mjs'
import { connectClient, waitFor, sleep } from './lib/clients.mjs'

// Every y-websocket provider adds a process 'exit' listener; this file makes more than ten.
process.setMaxListeners(100)

const postgres = process.env.WEFT_TEST_POSTGRES_URL
const redis = process.env.WEFT_TEST_REDIS_URL
if (!postgres || !redis) {
  throw new Error('cluster tests need WEFT_TEST_POSTGRES_URL and WEFT_TEST_REDIS_URL: run them through tests/run.sh (which starts both)')
}

const servers = []
const clients = []
after(async () => {
  for (const c of clients) c.close()
  for (const s of servers) if (s.proc.exitCode === null) await s.kill()
})

/** Starts `count` nodes of one cluster (its own Redis key prefix, so tests do not mix). */
async function startCluster (count, prefix = `weft-test-${randomUUID()}:`) {
  const nodes = []
  for (let i = 0; i < count; i++) {
    const node = await startWeft({
      dataDir: tempDataDir(),
      args: ['--store', postgres, '--redis', redis, '--redis-prefix', prefix, '--idle-unload', '2s']
    })
    servers.push(node)
    nodes.push(node)
  }
  return { nodes, prefix }
}

async function client (url, room, opts) {
  const c = await connectClient(url, room, opts)
  clients.push(c)
  return c
}

const names = c => [...c.awareness.getStates().values()].map(s => s.user?.name).filter(Boolean).sort()
const text = c => c.doc.getText('text').toString()

/**
 * Inserts `count` markers `[id-k]` a few ms apart, each at a random marker boundary (never
 * inside another marker, which would split it); returns the markers.
 */
async function typeMarkers (c, id, count, pauseMs = 5) {
  const markers = []
  for (let k = 0; k < count; k++) {
    const t = c.doc.getText('text')
    const current = t.toString()
    const boundaries = [0]
    for (let i = 0; i < current.length; i++) if (current[i] === ']') boundaries.push(i + 1)
    const marker = `[${id}-${k}]`
    t.insert(boundaries[Math.floor(Math.random() * boundaries.length)], marker)
    markers.push(marker)
    await sleep(pauseMs)
  }
  return markers
}

test('clients on three nodes edit one document concurrently, converge and see each other', async () => {
  const { nodes } = await startCluster(3)
  const room = `cluster-${randomUUID()}`
  const all = []
  for (const [i, node] of nodes.entries()) {
    for (let j = 0; j < 2; j++) all.push(await client(node.url, room))
    all.at(-2).id = `n${i}a`
    all.at(-1).id = `n${i}b`
  }
  for (const c of all) c.awareness.setLocalStateField('user', { name: c.id })
  const written = (await Promise.all(all.map(c => typeMarkers(c, c.id, 40)))).flat()

  await waitFor('every client to hold every marker', () =>
    all.every(c => written.every(m => text(c).includes(m))), { timeoutMs: 20000 })
  await waitFor('identical texts', () => all.every(c => text(c) === text(all[0])))
  const everyone = all.map(c => c.id).sort()
  await waitFor('every client to see all six users', () =>
    all.every(c => JSON.stringify(names(c)) === JSON.stringify(everyone)), { timeoutMs: 10000 })

  // A client that joins later, on any node, gets the text and the presence of all six.
  const late = await client(nodes[2].url, room)
  assert.equal(text(late), text(all[0]))
  await waitFor('the late joiner to see everyone', () =>
    JSON.stringify(names(late)) === JSON.stringify(everyone), { timeoutMs: 10000 })
})

test('a node killed mid-edit: its clients move to another node, nothing is lost, restart keeps it', async () => {
  const { nodes, prefix } = await startCluster(3)
  const room = `failover-${randomUUID()}`
  const all = []
  for (const [i, node] of nodes.entries()) {
    for (let j = 0; j < 2; j++) {
      const c = await client(node.url, room)
      c.id = `n${i}${'ab'[j]}`
      c.node = i
      all.push(c)
    }
  }
  // One client of node 0 will not reconnect: its presence must vanish from the other nodes.
  const ghost = await client(nodes[0].url, room)
  ghost.awareness.setLocalStateField('user', { name: 'ghost' })
  await waitFor('others to see the ghost', () => all.filter(c => c.node !== 0).every(c => names(c).includes('ghost')))

  // Everyone types; node 0 dies while they do.
  const typing = all.map(c => typeMarkers(c, c.id, 60, 10))
  await sleep(250)
  await nodes[0].kill()
  ghost.provider.destroy()
  // Node 0's clients keep typing offline, then move to node 1 with the same documents.
  for (const c of all.filter(c => c.node === 0)) {
    c.provider.destroy()
    const moved = await client(nodes[1].url, room, { doc: c.doc })
    c.provider = moved.provider
    c.awareness = moved.awareness
  }
  const written = (await Promise.all(typing)).flat()

  await waitFor('every surviving client to hold every marker', () =>
    all.every(c => written.every(m => text(c).includes(m))), { timeoutMs: 20000 })
  await waitFor('identical texts', () => all.every(c => text(c) === text(all[0])))
  await waitFor("the dead node's presence to be dropped", () =>
    all.filter(c => c.node !== 0).every(c => !names(c).includes('ghost')), { timeoutMs: 15000 })
  const final = text(all[0])

  // Restart the whole cluster: the state is intact on every node.
  for (const c of all) c.provider.destroy()
  for (const node of nodes.slice(1)) {
    const { code } = await node.stop()
    assert.equal(code, 0)
  }
  const { nodes: restarted } = await startCluster(3, prefix)
  for (const node of restarted) {
    const fresh = await client(node.url, room)
    assert.equal(text(fresh), final, 'state after restarting every node')
  }
})
