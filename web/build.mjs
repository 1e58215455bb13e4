// Builds the editor into dist/: one hashed JS bundle, one hashed CSS file, and index.html
// pointing at them. Deterministic: the same sources and lockfile give the same bytes, which CI
// checks against the committed dist/.
import * as esbuild from 'esbuild'
import { readFileSync, writeFileSync, rmSync, mkdirSync } from 'node:fs'
import { basename } from 'node:path'

rmSync('dist', { recursive: true, force: true })
mkdirSync('dist/assets', { recursive: true })

const result = await esbuild.build({
  entryPoints: ['src/main.js', 'src/style.css'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020'],
  outdir: 'dist/assets',
  entryNames: '[name]-[hash]',
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning'
})

const outputs = Object.keys(result.metafile.outputs).map(p => basename(p))
const js = outputs.find(f => f.startsWith('main-') && f.endsWith('.js'))
const css = outputs.find(f => f.startsWith('style-') && f.endsWith('.css'))
const html = readFileSync('index.html', 'utf8')
  .replace('%STYLE%', `/assets/${css}`)
  .replace('%SCRIPT%', `/assets/${js}`)
writeFileSync('dist/index.html', html)
console.log(`built dist/index.html, dist/assets/${js}, dist/assets/${css}`)
