// The editor in a real browser (Debian's chromium driven by playwright-core) against the real
// weft binary: concurrent typing, named remote cursors, restart, offline edits.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import { startWeft, tempDataDir } from './lib/server.mjs'
import { waitFor } from './lib/clients.mjs'

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium'
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync']

let browser
let server
const dataDir = tempDataDir()

before(async () => {
  assert.ok(existsSync(CHROMIUM), `browser tests need chromium at ${CHROMIUM} (apt-get install chromium)`)
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS })
  server = await startWeft({ dataDir })
})

after(async () => {
  await browser?.close()
  if (server?.proc.exitCode === null) await server.kill()
})

/** A page in its own browser context, as a person called `name`, on document `room`. */
async function openEditor (name, room) {
  const context = await browser.newContext({ viewport: { width: 640, height: 520 } })
  await context.addInitScript(n => { localStorage.setItem('weft:name', n) }, name)
  const page = await context.newPage()
  page.on('pageerror', e => console.error(`[${name}] page error:`, e))
  await page.goto(`${server.httpUrl}/d/${room}`)
  await page.locator('#status[data-state="online"]').waitFor({ timeout: 15000 })
  return page
}

const textOf = page => page.evaluate(() => window.weft.ytext.toString())
const shownText = page => page.evaluate(() => window.weft.view.state.doc.toString())

/**
 * Whether `text` is made of exactly the characters of `parts`. Two people typing at the end at
 * once may interleave (Bob's cursor lands after Alice's first letter, and the CRDT places his
 * run there: "HBob was here! ello from Alice. "), so contiguity is not something to assert.
 */
const madeOf = (text, parts) => [...text].sort().join('') === [...parts.join('')].sort().join('')

async function typeAtEnd (page, text) {
  await page.locator('.cm-content').click()
  await page.keyboard.press('Control+End')
  await page.keyboard.type(text, { delay: 10 })
}

test('two people edit one document in the browser', async () => {
  const room = `browser-${Date.now()}`
  const alice = await openEditor('Alice', room)
  const bob = await openEditor('Bob', room)

  // Home page works too.
  const home = await (await browser.newContext()).newPage()
  await home.goto(server.httpUrl + '/')
  assert.equal(await home.locator('#new-doc').isVisible(), true)

  // Both type at the same time.
  await Promise.all([typeAtEnd(alice, 'Hello from Alice. '), typeAtEnd(bob, 'Bob was here! ')])
  await waitFor('both pages to show the same text', async () => {
    const [a, b] = await Promise.all([textOf(alice), textOf(bob)])
    if (a === b && madeOf(a, ['Hello from Alice. ', 'Bob was here! '])) return true
    // Returned (not thrown) so that a timeout reports what each page had.
    return new Error(`Alice's page has ${JSON.stringify(a)}, Bob's ${JSON.stringify(b)}`)
  })
  assert.equal(await shownText(alice), await shownText(bob), 'editors display the shared text')

  // Each sees the other's named cursor and presence entry.
  await alice.locator('.cm-ySelectionInfo', { hasText: 'Bob' }).waitFor({ timeout: 10000 })
  await bob.locator('.cm-ySelectionInfo', { hasText: 'Alice' }).waitFor({ timeout: 10000 })
  await alice.locator('#people li', { hasText: 'Bob' }).waitFor()
  await bob.locator('#people li', { hasText: 'Alice' }).waitFor()

  // A screenshot of the two sessions side by side.
  const [shotA, shotB] = await Promise.all([alice.screenshot(), bob.screenshot()])
  const canvas = await (await browser.newContext({ viewport: { width: 1320, height: 540 } })).newPage()
  await canvas.setContent(`<body style="margin:0;display:flex;gap:20px;background:#d1d5db;padding:10px">
    <img src="data:image/png;base64,${shotA.toString('base64')}">
    <img src="data:image/png;base64,${shotB.toString('base64')}"></body>`)
  const shotPath = join(tmpdir(), 'weft-editor-side-by-side.png')
  await canvas.screenshot({ path: shotPath })
  console.log(`screenshot of two side-by-side sessions: ${shotPath}`)

  // The server restarts: a reload shows the same text.
  const expected = await textOf(alice)
  const addr = server.addr
  assert.equal((await server.stop()).code, 0)
  server = await startWeft({ dataDir, addr })
  await alice.reload()
  await alice.locator('#status[data-state="online"]').waitFor({ timeout: 15000 })
  assert.equal(await textOf(alice), expected)
  await bob.locator('#status[data-state="online"]').waitFor({ timeout: 15000 })

  // Offline: the server goes away, both keep typing, and the edits merge on reconnect.
  await server.kill()
  await alice.locator('#status[data-state="offline"]').waitFor({ timeout: 15000 })
  await bob.locator('#status[data-state="offline"]').waitFor({ timeout: 15000 })
  await Promise.all([typeAtEnd(alice, 'offline-A '), typeAtEnd(bob, 'offline-B ')])
  server = await startWeft({ dataDir, addr })
  await waitFor('offline edits to merge', async () => {
    const [a, b] = await Promise.all([textOf(alice), textOf(bob)])
    // Each typed a whole run offline after the same last character, so each run stays whole.
    return a === b && a.includes('offline-A ') && a.includes('offline-B ') && a.startsWith(expected)
  }, { timeoutMs: 20000 })
  await alice.locator('#status[data-state="online"]').waitFor()
  // And the merged text is durable: a fresh visitor reads it from the server.
  const carol = await openEditor('Carol', room)
  await waitFor('Carol to load the merged text', async () => (await textOf(carol)) === (await textOf(alice)))
})
