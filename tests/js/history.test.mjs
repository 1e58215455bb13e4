// The editor's History panel in a real browser (Debian's chromium driven by playwright-core)
// against the real weft binary: two people name versions through the UI, one views the newer
// version with the other's insertion highlighted in their colour and name, restores the older
// one, and both editors show it; a read token lists and views versions but gets no restore or
// naming buttons; with history off the panel says so.
//
// People's names: the editor keeps the "Your name" field in localStorage under `weft:name`;
// each page sets that key before the page loads (with auth off the server records the awareness
// user name as the author). Tokens: the editor reads `#token=<jwt>` from the page URL.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { chromium } from 'playwright-core'
import { startWeft, tempDataDir, weftBin } from './lib/server.mjs'
import { waitFor } from './lib/clients.mjs'

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium'
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync']
// Automatic versions are kept at most hourly here, so the versions are the ones the test names.
const HISTORY_ARGS = ['--history-interval', '1h']

let browser
const servers = []

before(async () => {
  assert.ok(existsSync(CHROMIUM), `browser tests need chromium at ${CHROMIUM} (apt-get install chromium)`)
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS })
})

after(async () => {
  await browser?.close()
  for (const server of servers) if (server.proc.exitCode === null) await server.kill()
})

async function start (args = []) {
  const server = await startWeft({ dataDir: tempDataDir(), args: [...HISTORY_ARGS, ...args] })
  servers.push(server)
  return server
}

/** A page in its own browser context, as a person called `name`, on document `room`. */
async function openEditor (server, name, room, { token, viewport = { width: 1100, height: 700 } } = {}) {
  const context = await browser.newContext({ viewport })
  await context.addInitScript(n => { localStorage.setItem('weft:name', n) }, name)
  const page = await context.newPage()
  page.on('pageerror', e => console.error(`[${name}] page error:`, e))
  await page.goto(`${server.httpUrl}/d/${room}${token ? `#token=${token}` : ''}`)
  await page.locator('#status[data-state="online"]').waitFor({ timeout: 15000 })
  return page
}

const textOf = page => page.evaluate(() => window.weft.ytext.toString())
const shownText = page => page.evaluate(() => window.weft.view.state.doc.toString())

async function typeAtEnd (page, text) {
  await page.locator('.cm-content').click()
  await page.keyboard.press('Control+End')
  await page.keyboard.type(text, { delay: 10 })
}

async function waitForText (pages, expected, what) {
  await waitFor(what, async () => {
    const texts = await Promise.all(pages.map(async p => [await textOf(p), await shownText(p)]))
    if (texts.every(([doc, shown]) => doc === expected && shown === expected)) return true
    return new Error(`the pages have ${JSON.stringify(texts)}`)
  }, { timeoutMs: 15000 })
}

async function openHistory (page) {
  if (await page.locator('#history').isHidden()) await page.locator('#history-toggle').click()
  await page.locator('#history').waitFor()
  await page.locator('#history:not([aria-busy])').waitFor()
}

/** The list entry of version `id`. */
const versionButton = (page, id) => page.locator(`#versions .version[data-version-id="${id}"]`)

/** Names the current text `label` through the panel's inline form; resolves with the POST's answer. */
async function nameVersion (page, label) {
  await openHistory(page)
  await page.locator('#name-version').click()
  await page.locator('#version-label').fill(label)
  const [response] = await Promise.all([
    page.waitForResponse(r => r.request().method() === 'POST' && /\/versions$/.test(new URL(r.url()).pathname)),
    page.locator('#name-save').click()
  ])
  assert.equal(response.status(), 201, `naming a version: ${await response.text()}`)
  const version = await response.json()
  assert.equal(version.label, label)
  await versionButton(page, version.id).waitFor({ timeout: 10000 })
  assert.match(await versionButton(page, version.id).textContent(), new RegExp(label.replace(/[^\w ]/g, '\\$&')))
  return version
}

/** Clicks version `id` in the list and waits until its changes are shown. */
async function viewVersion (page, id) {
  await versionButton(page, id).click()
  await page.locator(`#version-view[data-version-id="${id}"][data-loaded="true"]`).waitFor({ timeout: 10000 })
  assert.equal(await page.locator('#version-error').isHidden(), true,
    `the version loaded without an error: ${await page.locator('#version-error').textContent()}`)
}

/** The runs shown for the version: [{ kind, text, author, title, color }]. */
const shownRuns = page => page.evaluate(() => [...document.querySelectorAll('#version-text .version-body .run')].map(node => ({
  kind: node.classList.contains('insert') ? 'insert' : 'delete',
  text: node.textContent,
  author: node.dataset.author,
  title: node.title,
  color: node.style.getPropertyValue('--author')
})))

test('two people name versions, view who changed what, and restore one for everyone', async () => {
  const server = await start()
  const room = `history/${Date.now()}`
  const alice = await openEditor(server, 'Alice', room)
  const bob = await openEditor(server, 'Bob', room)
  const colorOf = name => alice.evaluate(n => window.weft.colorFor(n), name)

  await typeAtEnd(alice, 'Hello')
  await waitForText([alice, bob], 'Hello', 'both pages to show "Hello"')
  const greeting = await nameVersion(alice, 'Greeting')
  assert.deepEqual(greeting.authors, ['Alice'], 'the first version is all Alice\'s')

  await typeAtEnd(bob, ' world')
  // Through the server to Alice: then the server has it too, before Bob names the version.
  await waitForText([alice, bob], 'Hello world', 'both pages to show "Hello world"')
  const world = await nameVersion(bob, 'Greeting to the world')
  assert.deepEqual(world.authors, ['Bob'], 'the second version\'s new edits are Bob\'s')

  // Alice's list: newest first, both named, with authors.
  await openHistory(alice)
  await alice.locator('#history-refresh').click()
  await versionButton(alice, world.id).waitFor()
  const first = alice.locator('#versions .version').first()
  assert.equal(await first.getAttribute('data-version-id'), String(world.id), 'the newest version comes first')
  assert.match(await first.textContent(), /Greeting to the world/)
  assert.match(await first.textContent(), /Bob/)
  assert.equal(await alice.locator('#versions li.named').count() >= 2, true, 'named versions are marked')

  // The newest version: Bob's " world" highlighted in his colour, with his name.
  await viewVersion(alice, world.id)
  assert.equal(await alice.locator('#editor').isHidden(), true, 'the version replaces the editor while shown')
  const runs = await shownRuns(alice)
  const bobs = runs.filter(r => r.kind === 'insert' && r.author === 'Bob')
  assert.equal(bobs.map(r => r.text).join(''), ' world', `Bob's insertion is shown: ${JSON.stringify(runs)}`)
  const bobColor = await colorOf('Bob')
  for (const run of bobs) {
    assert.equal(run.color, bobColor, 'in Bob\'s colour')
    assert.match(run.title, /Bob/, 'with Bob\'s name on hover')
  }
  assert.equal(runs.some(r => r.author === 'Alice'), false, `Alice changed nothing in it: ${JSON.stringify(runs)}`)
  assert.equal(await alice.locator('#version-text .version-body').textContent(), 'Hello world')
  await alice.locator('#version-legend li[data-author="Bob"]').waitFor()
  const insertColor = await alice.locator('#version-text ins.run[data-author="Bob"]').first()
    .evaluate(node => getComputedStyle(node).textDecorationColor)
  assert.equal(insertColor, await alice.evaluate(hex => {
    const probe = document.createElement('span')
    probe.style.color = hex
    document.body.append(probe)
    const rgb = getComputedStyle(probe).color
    probe.remove()
    return rgb
  }, bobColor), 'the highlight is drawn in Bob\'s colour')

  // Restore the first version: both editors show "Hello" again.
  await viewVersion(alice, greeting.id)
  await alice.locator('#restore').click()
  await alice.locator('#restore-confirm').waitFor()
  const [restoreResponse] = await Promise.all([
    alice.waitForResponse(r => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith('/restore')),
    alice.locator('#restore-yes').click()
  ])
  assert.equal(restoreResponse.status(), 200, `restore: ${await restoreResponse.text()}`)
  const restored = await restoreResponse.json()
  assert.equal(restored.restored, String(greeting.id))
  await alice.locator('#version-view').waitFor({ state: 'hidden' })
  assert.equal(await alice.locator('#editor').isVisible(), true, 'back to the live editor')
  await waitForText([alice, bob], 'Hello', 'both editors to show the restored "Hello"')
  // The text before the restore is kept as a version and listed.
  assert.ok(restored.before, `the state before the restore is kept: ${JSON.stringify(restored)}`)
  await versionButton(alice, restored.before).waitFor({ timeout: 10000 })

  // The live editor still works after a restore.
  await typeAtEnd(bob, '!')
  await waitForText([alice, bob], 'Hello!', 'an edit after the restore to reach both')

  // At phone width the panel covers the page; choosing a version shows it, and back again.
  const carol = await openEditor(server, 'Carol', room, { viewport: { width: 390, height: 740 } })
  await openHistory(carol)
  const box = await carol.locator('#history').boundingBox()
  assert.equal(Math.round(box.width), 390, 'the panel is full-width on a phone')
  await viewVersion(carol, world.id)
  assert.equal(await carol.locator('#history').isHidden(), true, 'the panel gets out of the way of the version')
  await carol.locator('#back-to-editing').click()
  await carol.locator('#editor .cm-content').waitFor()
  assert.equal(await carol.locator('#version-view').isHidden(), true)

  // Server text is shown as text, never as HTML.
  await nameVersion(carol, '<img src=x onerror="window.pwned=1">')
  assert.equal(await carol.evaluate(() => window.pwned), undefined)
  assert.equal(await carol.locator('#versions img').count(), 0)
})

/** A token from `weft token` with `secret`. */
const mintToken = (secret, { doc, perm = 'write', sub }) =>
  execFileSync(weftBin, ['token', '--auth-secret', secret, '--doc', doc, '--perm', perm, '--ttl', '1h', '--sub', sub]).toString().trim()

test('a read token lists and views versions but cannot restore or name them', async () => {
  const secret = 'history-browser-test-secret-0123456789'
  const server = await start(['--auth-secret', secret])
  const room = `history-auth-${Date.now()}`
  const writer = await openEditor(server, 'Writer', room, { token: mintToken(secret, { doc: room, sub: 'wanda' }) })
  const reader = await openEditor(server, 'Reader', room, { token: mintToken(secret, { doc: room, perm: 'read', sub: 'rudi' }) })

  await typeAtEnd(writer, 'Shared words')
  await waitForText([writer, reader], 'Shared words', 'the reader to see the writer\'s text')
  const draft = await nameVersion(writer, 'Draft')
  assert.deepEqual(draft.authors, ['wanda'], 'with auth on, the author is the token\'s sub')
  assert.equal(await writer.locator('#history').getAttribute('data-permission'), 'write')

  await openHistory(reader)
  await reader.locator('#history[data-permission="read"]').waitFor()
  await versionButton(reader, draft.id).waitFor()
  assert.equal(await reader.locator('#name-version').isHidden(), true, 'no "Name this version" for a reader')
  await viewVersion(reader, draft.id)
  assert.equal(await reader.locator('#restore').isHidden(), true, 'no "Restore this version" for a reader')
  const runs = await shownRuns(reader)
  // With auth on, a version is kept as soon as a user starts writing under a new client id
  // (the claim must be durable), so "Draft" may hold only the rest of the typing.
  const inserted = runs.filter(r => r.kind === 'insert' && r.author === 'wanda').map(r => r.text).join('')
  assert.ok(inserted.length > 0 && 'Shared words'.endsWith(inserted),
    `the writer's text, attributed to the writer: ${JSON.stringify(runs)}`)
  assert.equal(runs.filter(r => r.kind !== 'keep' && r.author !== 'wanda').length, 0,
    `nobody else is credited: ${JSON.stringify(runs)}`)

  // The server refuses them too (the buttons are only hidden): 403 with the read token.
  const refused = await reader.evaluate(async ({ room, id }) => {
    const token = new URLSearchParams(location.hash.slice(1)).get('token')
    const post = (path, body) => fetch(`/api/docs/${room}${path}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body)
    }).then(r => r.status)
    return [await post('/restore', { version: id }), await post('/versions', { label: 'nope' })]
  }, { room, id: String(draft.id) })
  assert.deepEqual(refused, [403, 403])
  await reader.locator('#back-to-editing').click()
  assert.equal(await textOf(writer), 'Shared words')
})

test('with history off the panel says so and offers nothing to do', async () => {
  const server = await start(['--history-retention', '0s'])
  const page = await openEditor(server, 'Alice', `history-off-${Date.now()}`)
  await openHistory(page)
  await page.locator('#versions .empty', { hasText: 'keeps no history' }).waitFor()
  assert.equal(await page.locator('#name-version').isHidden(), true)
  assert.equal(await page.locator('#versions .version').count(), 0)
})
