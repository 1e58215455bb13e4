// Tiptap in a real browser: @tiptap/core with the Collaboration extension over
// @hocuspocus/provider, in Debian's Chromium, editing together with y-websocket clients on a
// Y.XmlFragment document; and the built-in editor (y-websocket, Y.Text) editing together with a
// Hocuspocus provider.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { createServer } from 'node:http'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as Y from 'yjs'
import { build } from 'esbuild'
import { chromium } from 'playwright-core'
import { startWeft, tempDataDir } from './lib/server.mjs'
import { connectClient, waitFor } from './lib/clients.mjs'
import { hocuspocusClient } from './lib/hocuspocus.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium'
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync']

let browser
let weft
let pages
const closers = []

/** Serves the bundled Tiptap page from its own origin (a product's app, not Weft). */
async function servePages () {
  const bundled = await build({
    entryPoints: [join(here, 'pages', 'tiptap.mjs')],
    bundle: true,
    format: 'esm',
    write: false,
    logLevel: 'error'
  })
  const script = bundled.outputFiles[0].text
  const html = '<!doctype html><meta charset="utf-8"><div id="editor"></div><script type="module" src="/tiptap.js"></script>'
  const server = createServer((req, res) => {
    if (req.url.startsWith('/tiptap.js')) {
      res.writeHead(200, { 'content-type': 'text/javascript' })
      return res.end(script)
    }
    res.writeHead(200, { 'content-type': 'text/html' })
    res.end(html)
  })
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  return { server, origin: `http://127.0.0.1:${server.address().port}` }
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `browser tests need chromium at ${CHROMIUM} (apt-get install chromium)`)
  pages = await servePages()
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS })
  // The app's pages are another origin than Weft's: allowed explicitly.
  weft = await startWeft({ dataDir: tempDataDir(), args: ['--allowed-origins', pages.origin] })
})

after(async () => {
  for (const close of closers) { try { close() } catch {} }
  await browser?.close()
  pages?.server.close()
  if (weft?.proc.exitCode === null) await weft.kill()
})

async function newPage (name) {
  const context = await browser.newContext({ viewport: { width: 800, height: 600 } })
  const page = await context.newPage()
  page.on('pageerror', e => console.error(`[${name}] page error:`, e))
  return page
}

test('Tiptap over Hocuspocus edits a Y.XmlFragment document with y-websocket clients', async () => {
  const doc = `tiptap/xml-${Date.now()}`
  const page = await newPage('tiptap')
  await page.goto(`${pages.origin}/?ws=${encodeURIComponent(weft.url + '/hocuspocus')}&doc=${encodeURIComponent(doc)}`)
  await page.waitForFunction(() => window.tiptap?.provider.isSynced, null, { timeout: 15000 })

  const yws = await connectClient(weft.url, doc)
  closers.push(() => yws.close())
  const fragment = yws.doc.getXmlFragment('default')

  // Typing in Tiptap reaches the y-websocket client as ProseMirror paragraphs.
  await page.locator('.ProseMirror').click()
  await page.keyboard.type('Hello from Tiptap', { delay: 5 })
  await waitFor('the y-websocket client to see the paragraph', () => fragment.toString().includes('<paragraph>Hello from Tiptap</paragraph>'))

  // A paragraph written by the y-websocket client appears in the editor.
  const paragraph = new Y.XmlElement('paragraph')
  paragraph.insert(0, [new Y.XmlText('Written over y-websocket')])
  fragment.push([paragraph])
  await waitFor('Tiptap to show it', async () => (await page.evaluate(() => window.tiptap.editor.getText())).includes('Written over y-websocket'))

  // Both keep typing at once and converge; the provider's changes are all on disk.
  await page.keyboard.press('Control+End')
  const typing = page.keyboard.type(' and more', { delay: 5 })
  for (let i = 0; i < 5; i++) {
    const p = new Y.XmlElement('paragraph')
    p.insert(0, [new Y.XmlText(`line ${i}`)])
    fragment.push([p])
  }
  await typing
  await waitFor('convergence', async () => {
    const shown = await page.evaluate(() => window.tiptap.editor.getText())
    return shown.includes('and more') && shown.includes('line 4') && fragment.toString().includes('and more')
  })
  await waitFor('every Tiptap change acknowledged as durable', () => page.evaluate(() => window.tiptap.provider.unsyncedChanges === 0))
  const check = await connectClient(weft.url, doc)
  closers.push(() => check.close())
  assert.equal(check.doc.getXmlFragment('default').toString(), fragment.toString())
})

test('the built-in editor (y-websocket, Y.Text) edits together with a Hocuspocus provider', async () => {
  const doc = `tiptap/text-${Date.now()}`
  const page = await newPage('built-in')
  await page.goto(`${weft.httpUrl}/d/${doc}`)
  await page.locator('#status[data-state="online"]').waitFor({ timeout: 15000 })
  const hp = hocuspocusClient(weft.url, doc)
  closers.push(() => hp.close())
  await waitFor('the provider to sync', () => hp.provider.isSynced)

  await page.locator('.cm-content').click()
  await page.keyboard.type('typed in the built-in editor', { delay: 5 })
  // The built-in editor keeps its text in the Y.Text named `codemirror`.
  const text = hp.doc.getText('codemirror')
  await waitFor('the provider to see it', () => text.toString() === 'typed in the built-in editor')
  text.insert(0, 'From Hocuspocus: ')
  await waitFor('the editor to show it', async () =>
    (await page.evaluate(() => window.weft.view.state.doc.toString())) === 'From Hocuspocus: typed in the built-in editor')
  await waitFor('acknowledged as durable', () => hp.provider.unsyncedChanges === 0)
})
