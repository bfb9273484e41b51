// The processes the bench measures, each a child of its own: the built service
// (`node dist/server.js`), the two yardsticks and the raw argon2 runs.
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, readFileSync } from 'node:fs'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { SETTING_NAMES } from '../config.ts'
import type { BenchOptions } from './options.ts'
import { PASSWORD } from './tokens.ts'

export const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CHILDREN = join(ROOT, 'bench', 'children')

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/** The status of GET <path>, or 0 when the connection fails. */
export function httpStatus (port: number, path = '/', headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', () => resolve(0))
    req.setTimeout(2000, () => req.destroy())
    req.end()
  })
}

/** POSTs JSON; the status and the parsed body. */
export function postJson (port: number, path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body)
    const req = request({
      host: '127.0.0.1',
      port,
      path,
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...headers }
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        let parsed: Record<string, unknown> = {}
        try {
          parsed = JSON.parse(text) as Record<string, unknown>
        } catch {}
        resolve({ status: res.statusCode ?? 0, body: parsed })
      })
    })
    req.on('error', reject)
    req.end(payload)
  })
}

export interface Child {
  process: ChildProcess
  port: number
  pid: number
  /** Milliseconds from spawn to the first 200 on GET / (services) or to READY (yardsticks). */
  readyMs: number
  /** performance.now() just before the spawn. */
  spawnedAt: number
}

/** The service's environment: every setting named, so neither our environment nor `.env` leaks in. */
export function serviceEnv (options: BenchOptions, extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {}
  for (const name of ['PATH', 'HOME', 'LANG', 'TZ']) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  for (const name of SETTING_NAMES) env[name] = ''
  Object.assign(env, {
    HOST: '127.0.0.1',
    APP_ENV: 'dev',
    LOG_LEVEL: 'warn',
    RATE_LIMIT_IP_PER_MINUTE: '0',
    MIGRATE_ON_START: 'true'
  })
  if (!options.embedded) {
    env.DATABASE_URL = options.databaseUrl
    env.REDIS_URL = options.redisUrl
    env.REDIS_KEY_PREFIX = options.redisPrefix
  }
  return { ...env, ...extra }
}

function exited (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => child.once('exit', () => resolve()))
}

export async function stopChild (child: ChildProcess, timeoutMs = 12_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  await exited(child)
  clearTimeout(timer)
}

/**
 * Starts `node [nodeArgs] dist/server.js` and waits for the first 200 on GET /; readyMs runs from
 * just before the exec. Output goes to `logFile`.
 */
export async function startService (env: Record<string, string>, logFile: string, nodeArgs: string[] = []): Promise<Child> {
  const port = Number(env.PORT) || await freePort()
  const log = createWriteStream(logFile, { flags: 'a' })
  const start = performance.now()
  const child = spawn(process.execPath, [...nodeArgs, join(ROOT, 'dist', 'server.js')], {
    cwd: ROOT,
    env: { ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  child.stdout?.pipe(log, { end: false })
  child.stderr?.pipe(log, { end: false })
  child.once('exit', () => setTimeout(() => log.end(), 100))
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the service exited with ${child.exitCode ?? child.signalCode} before answering; see ${logFile}`)
    }
    if (await httpStatus(port) === 200) break
    if (performance.now() - start > 120_000) {
      await stopChild(child)
      throw new Error(`the service did not answer GET / within 120 s; see ${logFile}`)
    }
    await sleep(2)
  }
  return { process: child, port, pid: child.pid ?? 0, readyMs: performance.now() - start, spawnedAt: start }
}

/** Starts a yardstick (bench/children/<name>.mjs) and waits for its READY line. */
export async function startYardstick (name: 'hello' | 'verify', env: Record<string, string>): Promise<Child> {
  const start = performance.now()
  const child = spawn(process.execPath, [join(CHILDREN, `${name}.mjs`)], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const port = await new Promise<number>((resolve, reject) => {
    let text = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      text += chunk.toString()
      const match = /READY (\d+)/.exec(text)
      if (match) resolve(Number(match[1]))
    })
    child.once('exit', (code) => reject(new Error(`yardstick ${name} exited with ${code}`)))
  })
  return { process: child, port, pid: child.pid ?? 0, readyMs: performance.now() - start, spawnedAt: start }
}

export interface Argon2Run {
  mode: 'hash' | 'verify'
  concurrency: number
  ops: number
  seconds: number
  latencies: number[]
}

/** Raw argon2id rate in a child process of its own (bench/children/argon2.mjs). */
export async function runArgon2 (mode: 'hash' | 'verify', concurrency: number, seconds: number, warmupSeconds: number): Promise<Argon2Run> {
  const child = spawn(process.execPath, [join(CHILDREN, 'argon2.mjs')], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      MODE: mode,
      PASSWORD,
      CONCURRENCY: String(concurrency),
      DURATION_MS: String(Math.round(seconds * 1000)),
      WARMUP_MS: String(Math.round(warmupSeconds * 1000))
    },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  let text = ''
  child.stdout?.on('data', (chunk: Buffer) => { text += chunk.toString() })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  if (code !== 0) throw new Error(`argon2 ${mode} run exited with ${code}`)
  return JSON.parse(text) as Argon2Run
}

export interface Memory {
  rssMiB: number
  peakMiB: number
  /** RSS by kind of mapping, MiB (from /proc/<pid>/smaps). */
  breakdown: Record<string, number>
}

const ARENA_KIB = 64 * 1024 // glibc's HEAP_MAX_SIZE: a thread arena reserves 64 MiB, the unused part PROT_NONE

/**
 * RSS by kind of mapping: the node binary, other files, the main malloc arena ([heap]), thread
 * malloc arenas (an anonymous rw-p mapping followed by a ---p one, 64 MiB together: glibc's
 * layout, where argon2's 19 MiB blocks land) and the remaining anonymous memory (V8's heap,
 * Buffers and the rest).
 */
function smapsBreakdown (pid: number): Record<string, number> {
  const mappings: Array<{ kib: number, perms: string, path: string, rss: number }> = []
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line)
    if (header) {
      mappings.push({ kib: (parseInt(header[2] as string, 16) - parseInt(header[1] as string, 16)) / 1024, perms: header[3] as string, path: header[4] ?? '', rss: 0 })
      continue
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line)
    const last = mappings[mappings.length - 1]
    if (rss && last) last.rss = Number(rss[1])
  }
  const out: Record<string, number> = {}
  const add = (kind: string, kib: number) => { out[kind] = (out[kind] ?? 0) + kib / 1024 }
  mappings.forEach((m, i) => {
    const next = mappings[i + 1]
    if (m.path === process.execPath || m.path.endsWith('/bin/node')) add('node binary', m.rss)
    else if (m.path === '[heap]') add('main malloc arena ([heap])', m.rss)
    else if (m.path.startsWith('/')) add('other files (libraries)', m.rss)
    else if (m.path === '' && m.perms.startsWith('rw') && next?.path === '' && next.perms.startsWith('---') && m.kib + next.kib === ARENA_KIB) add('thread malloc arenas', m.rss)
    else if (m.path === '') add('other anonymous (V8 heap, Buffers, ...)', m.rss)
    else add('other', m.rss)
  })
  return out
}

/** Resident and peak resident memory of a process in MiB, and where it lies (Linux /proc). */
export function memoryOf (pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rssMiB: kib('VmRSS') / 1024, peakMiB: kib('VmHWM') / 1024, breakdown: smapsBreakdown(pid) }
}
