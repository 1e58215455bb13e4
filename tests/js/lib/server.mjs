// Starts and stops a real `weft` binary for end-to-end tests.
//
// The binary is $WEFT_BIN, or target/release/weft of this checkout. Each server gets a port
// picked by the OS (--addr 127.0.0.1:0); the address is read from its "weft listening on" line.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
export const weftBin = process.env.WEFT_BIN || join(here, '..', '..', '..', 'target', 'release', 'weft')

const tempDirs = []
process.once('exit', () => { for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true }) })

/** A fresh, empty data directory, removed when the process exits. */
export function tempDataDir () {
  const dir = mkdtempSync(join(tmpdir(), 'weft-e2e-'))
  tempDirs.push(dir)
  return dir
}

/**
 * Starts weft on `dataDir`. Resolves once it listens, with
 * { url, httpUrl, port, proc, logs(), stop(), kill() }.
 * `addr` reuses a previous server's address (for restarts).
 */
export function startWeft ({ dataDir, addr = '127.0.0.1:0', args = [], env = {} } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(weftBin, ['--addr', addr, '--data-dir', dataDir, ...args], {
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let output = ''
    let started = false
    const timer = setTimeout(() => {
      if (!started) { proc.kill('SIGKILL'); reject(new Error('weft did not start:\n' + output)) }
    }, 20000)
    const onData = chunk => {
      output += chunk.toString()
      const m = !started && output.match(/weft listening on http:\/\/([0-9.]+):(\d+)/)
      if (m) {
        started = true
        clearTimeout(timer)
        const port = Number(m[2])
        const exited = new Promise(resolve => proc.once('exit', (code, signal) => resolve({ code, signal })))
        resolve({
          port,
          addr: `${m[1]}:${port}`,
          url: `ws://${m[1]}:${port}`,
          httpUrl: `http://${m[1]}:${port}`,
          proc,
          logs: () => output,
          exited,
          /** SIGTERM, then wait for the exit; resolves with { code, signal }. */
          stop: async () => { proc.kill('SIGTERM'); return exited },
          /** SIGKILL, then wait for the exit. */
          kill: async () => { proc.kill('SIGKILL'); return exited }
        })
      }
    }
    proc.stdout.on('data', onData)
    proc.stderr.on('data', onData)
    proc.once('exit', code => {
      if (!started) { clearTimeout(timer); reject(new Error(`weft exited with ${code}:\n${output}`)) }
    })
  })
}
