// `npm run soak`: a long steady run of the built service (`node dist/server.js`) on a real
// PostgreSQL and Redis. A pool of virtual users signs up, logs in (refresh token in the body, or
// in the cookie), calls /me, rotates its refresh token, replays it within the grace window, logs
// out and logs in again, at a steady total rate. It tracks every status per operation (5xx and
// lost sessions must be zero), latency percentiles, and the service's RSS every 10 s. At the end
// every live refresh token must still rotate, the stores must hold exactly the live sessions,
// and SIGTERM must stop the service with status 0 within 10 s.
//
//   npm run soak -- --minutes 10 --rate 60 --users 200
//
// Flags win over SOAK_* environment variables (SOAK_MINUTES, SOAK_RATE, SOAK_USERS,
// SOAK_MAX_IN_FLIGHT, SOAK_ADMIN_DATABASE_URL, SOAK_DATABASE, SOAK_REDIS_URL, SOAK_REDIS_PREFIX).
// A Markdown summary goes to stdout, the figures to bench/results/soak-<timestamp>.json and the
// service's log to bench/results/soak-<timestamp>.log. Exit status 1 when a check failed.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { cpus, hostname, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import postgres from 'postgres'
import { SETTING_NAMES } from '../config.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const RESULTS = join(ROOT, 'bench', 'results')
const API = '/api/v1/auth'
const ACCESS_MIN = 15
const SHUTDOWN_LIMIT_MS = 10_000
const RSS_INTERVAL_MS = 10_000
const REQUEST_TIMEOUT_MS = 30_000

// ---------------------------------------------------------------------------------------------
// Options

const { values: flags } = parseArgs({
  options: {
    minutes: { type: 'string' },
    rate: { type: 'string' },
    users: { type: 'string' },
    'max-in-flight': { type: 'string' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false }
  }
})
if (flags.help === true) {
  console.log('npm run soak -- [--minutes N] [--rate OPS_PER_S] [--users N] [--max-in-flight N] [--keep]')
  process.exit(0)
}

function numberOption (flag: string | undefined, envName: string, fallback: number): number {
  const text = flag ?? process.env[envName]
  if (text === undefined || text === '') return fallback
  const value = Number(text)
  if (!Number.isFinite(value) || value <= 0) {
    console.error(`${envName} / --${envName.slice(5).toLowerCase().replaceAll('_', '-')} must be a positive number, got ${JSON.stringify(text)}`)
    process.exit(2)
  }
  return value
}

const options = {
  minutes: numberOption(flags.minutes, 'SOAK_MINUTES', 10),
  /** Operations started per second, over the whole pool. */
  rate: numberOption(flags.rate, 'SOAK_RATE', 60),
  /** Virtual users signed up before the steady phase; more sign up during it. */
  users: Math.round(numberOption(flags.users, 'SOAK_USERS', 200)),
  /** Cap on operations in flight; a due operation beyond it is counted as missed. */
  maxInFlight: Math.round(numberOption(flags['max-in-flight'], 'SOAK_MAX_IN_FLIGHT', 64)),
  adminDatabaseUrl: process.env.SOAK_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  database: process.env.SOAK_DATABASE ?? 'auth_soak',
  redisUrl: process.env.SOAK_REDIS_URL ?? 'redis://127.0.0.1:6379',
  redisPrefix: process.env.SOAK_REDIS_PREFIX ?? 'soak:',
  keep: flags.keep === true
}
if (!/^[a-z_][a-z0-9_]*$/.test(options.database)) {
  console.error('SOAK_DATABASE must be a plain lower-case identifier')
  process.exit(2)
}
if (options.redisPrefix.length < 2 || options.redisPrefix.includes('*')) {
  console.error('SOAK_REDIS_PREFIX must be at least 2 characters, without *')
  process.exit(2)
}
const databaseUrl = (() => {
  const url = new URL(options.adminDatabaseUrl)
  url.pathname = `/${options.database}`
  return url.toString()
})()

// ---------------------------------------------------------------------------------------------
// Statistics

type Op =
  | 'signup' | 'login' | 'me' | 'refresh' | 'refresh_replay' | 'logout' | 'me_after_logout'
  | 'relogin_cookie' | 'me_after_replace' | 'final_refresh'

/** What each operation must answer; anything else is unexpected. */
const EXPECTED: Record<Op, number> = {
  signup: 201,
  login: 200,
  me: 200,
  refresh: 200,
  refresh_replay: 200,
  logout: 204,
  me_after_logout: 401,
  relogin_cookie: 200,
  me_after_replace: 401,
  final_refresh: 200
}

/** Operations presenting a token of a session the virtual user believes alive: a 401 is a lost session. */
const LIVE_TOKEN_OPS = new Set<Op>(['me', 'refresh', 'refresh_replay', 'final_refresh'])

interface Unexpected { at: string, op: Op, status: number, code: string | undefined, note?: string }

const statuses = new Map<Op, Map<number, number>>()
const latencies = new Map<Op, number[]>()
const unexpected: Unexpected[] = []
let unexpectedCount = 0
let serverErrors = 0
let lostSessions = 0
let networkErrors = 0
let missed = 0
let phaseStart = 0

interface MinuteBucket { ops: number, failures: number, lat: number[] }
const minutes: MinuteBucket[] = []

function record (op: Op, status: number, ms: number, code: string | undefined, note?: string): void {
  let byStatus = statuses.get(op)
  if (byStatus === undefined) statuses.set(op, byStatus = new Map())
  byStatus.set(status, (byStatus.get(status) ?? 0) + 1)
  let list = latencies.get(op)
  if (list === undefined) latencies.set(op, list = [])
  list.push(ms)
  const ok = status === EXPECTED[op] && note === undefined
  if (op !== 'final_refresh' && phaseStart > 0) {
    // By completion time; the drain after the last minute counts toward that minute.
    const index = Math.min(Math.floor((performance.now() - phaseStart) / 60_000), Math.max(0, Math.ceil(options.minutes) - 1))
    while (minutes.length <= index) minutes.push({ ops: 0, failures: 0, lat: [] })
    const bucket = minutes[index]!
    bucket.ops++
    bucket.lat.push(ms)
    if (!ok) bucket.failures++
  }
  if (status >= 500) serverErrors++
  if (status === 0) networkErrors++
  if (status === 401 && LIVE_TOKEN_OPS.has(op)) lostSessions++
  if (!ok) {
    unexpectedCount++
    if (unexpected.length < 50) unexpected.push({ at: new Date().toISOString(), op, status, code, ...(note === undefined ? {} : { note }) })
  }
}

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil((p / 100) * sorted.length) - 1
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!
}

function summarise (values: number[]) {
  const sorted = [...values].sort((a, b) => a - b)
  const sum = sorted.reduce((a, b) => a + b, 0)
  return {
    count: sorted.length,
    mean: round(sum / Math.max(1, sorted.length)),
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.at(-1) ?? NaN)
  }
}

function round (value: number, digits = 1): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}

/** Least-squares slope of y over x. */
function slope (points: Array<{ x: number, y: number }>): number {
  const n = points.length
  if (n < 2) return NaN
  const mx = points.reduce((a, p) => a + p.x, 0) / n
  const my = points.reduce((a, p) => a + p.y, 0) / n
  let num = 0
  let den = 0
  for (const p of points) {
    num += (p.x - mx) * (p.y - my)
    den += (p.x - mx) ** 2
  }
  return den === 0 ? NaN : num / den
}

// ---------------------------------------------------------------------------------------------
// HTTP

let base = ''

interface Answer { status: number, body: Record<string, unknown>, setCookie: string[], ms: number }

async function call (method: string, path: string, init: { json?: unknown, bearer?: string, cookie?: string } = {}): Promise<Answer> {
  const headers: Record<string, string> = { 'user-agent': 'auth-api-soak' }
  if (init.json !== undefined) headers['content-type'] = 'application/json'
  if (init.bearer !== undefined) headers.authorization = `Bearer ${init.bearer}`
  if (init.cookie !== undefined) headers.cookie = `refresh_token=${init.cookie}`
  const start = performance.now()
  try {
    // Node's fetch (undici) keeps connections alive by default.
    const response = await fetch(base + path, {
      method,
      headers,
      body: init.json === undefined ? undefined : JSON.stringify(init.json),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS)
    })
    const text = await response.text()
    const ms = performance.now() - start
    let body: Record<string, unknown> = {}
    if (text !== '') {
      try {
        body = JSON.parse(text) as Record<string, unknown>
      } catch {}
    }
    return { status: response.status, body, setCookie: response.headers.getSetCookie(), ms }
  } catch {
    return { status: 0, body: {}, setCookie: [], ms: performance.now() - start }
  }
}

/** The refresh cookie set by an answer: its value, '' when cleared, undefined when not set. */
function refreshCookie (answer: Answer): string | undefined {
  for (const line of answer.setCookie) {
    const match = /^refresh_token=([^;]*)/.exec(line)
    if (match === null) continue
    return /max-age=0\b/i.test(line) ? '' : match[1]!
  }
  return undefined
}

function codeOf (answer: Answer): string | undefined {
  return typeof answer.body.code === 'string' ? answer.body.code : undefined
}

function stringMember (answer: Answer, name: string): string | undefined {
  const value = answer.body[name]
  return typeof value === 'string' ? value : undefined
}

// ---------------------------------------------------------------------------------------------
// Virtual users

interface Session {
  /** 'body': the refresh token travels in JSON bodies; 'cookie': in the refresh_token cookie. */
  mode: 'body' | 'cookie'
  /** The live refresh token: the latest of the chain. */
  refresh: string
  /** The token it replaced (for the grace-window replay), if any. */
  previous: string | undefined
  rotations: number
  access: string
  accessAt: number
}

interface VirtualUser {
  index: number
  email: string
  password: string
  signedUp: boolean
  session: Session | undefined
  busy: boolean
  logins: number
  longestChain: number
}

const runId = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`
const users: VirtualUser[] = []
let signupsDuringRun = 0

function newUser (): VirtualUser {
  const index = users.length
  const user: VirtualUser = {
    index,
    email: `soak-${runId}-${index}@example.com`,
    password: randomBytes(15).toString('base64url'),
    signedUp: false,
    session: undefined,
    busy: false,
    logins: 0,
    longestChain: 0
  }
  users.push(user)
  return user
}

async function signup (user: VirtualUser): Promise<void> {
  const answer = await call('POST', `${API}/signup`, { json: { email: user.email, password: user.password, name: `Soak ${user.index}` } })
  record('signup', answer.status, answer.ms, codeOf(answer))
  if (answer.status === 201) user.signedUp = true
}

function endSession (user: VirtualUser): void {
  if (user.session !== undefined) user.longestChain = Math.max(user.longestChain, user.session.rotations)
  user.session = undefined
}

async function login (user: VirtualUser, op: 'login' | 'relogin_cookie'): Promise<void> {
  const old = user.session
  // A third of the logins keep their refresh token in the cookie only; a re-login sends the
  // cookie of the live session, which that login must end (API.md §7).
  const mode = op === 'relogin_cookie' ? 'cookie' : Math.random() < 1 / 3 ? 'cookie' : 'body'
  const answer = await call('POST', `${API}/login`, {
    json: mode === 'body' ? { email: user.email, password: user.password, return_refresh_in_body: true } : { email: user.email, password: user.password },
    cookie: op === 'relogin_cookie' ? old?.refresh : undefined
  })
  const cookie = refreshCookie(answer)
  const access = stringMember(answer, 'access_token')
  const refresh = mode === 'body' ? stringMember(answer, 'refresh_token') : cookie
  let note: string | undefined
  if (answer.status === 200) {
    if (access === undefined || refresh === undefined || refresh === '') note = 'no access or refresh token in the answer'
    else if (mode === 'body' && cookie !== refresh) note = 'the cookie differs from the body refresh_token'
  }
  record(op, answer.status, answer.ms, codeOf(answer), note)
  if (answer.status !== 200 || access === undefined || refresh === undefined || refresh === '') return
  endSession(user)
  user.session = { mode, refresh, previous: undefined, rotations: 0, access, accessAt: Date.now() }
  user.logins++
  if (op === 'relogin_cookie' && old !== undefined) {
    // The replaced session's access token must be refused at once.
    const check = await call('GET', `${API}/me`, { bearer: old.access })
    record('me_after_replace', check.status, check.ms, codeOf(check))
  }
}

async function me (user: VirtualUser, session: Session): Promise<void> {
  const answer = await call('GET', `${API}/me`, { bearer: session.access })
  const note = answer.status === 200 && answer.body.email !== user.email ? 'another user' : undefined
  record('me', answer.status, answer.ms, codeOf(answer), note)
  if (answer.status === 401) endSession(user)
}

async function refresh (user: VirtualUser, session: Session, op: 'refresh' | 'final_refresh'): Promise<void> {
  const answer = session.mode === 'body'
    ? await call('POST', `${API}/refresh`, { json: { refresh_token: session.refresh } })
    : await call('POST', `${API}/refresh`, { cookie: session.refresh })
  const cookie = refreshCookie(answer)
  const successor = session.mode === 'body' ? stringMember(answer, 'refresh_token') : cookie
  const access = stringMember(answer, 'access_token')
  let note: string | undefined
  if (answer.status === 200) {
    if (successor === undefined || successor === '' || access === undefined) note = 'no successor or access token'
    else if (successor === session.refresh) note = 'the successor equals the presented token'
    else if (cookie !== successor) note = 'the cookie differs from the successor'
  }
  record(op, answer.status, answer.ms, codeOf(answer), note)
  if (answer.status === 200 && successor !== undefined && successor !== '' && access !== undefined) {
    session.previous = session.refresh
    session.refresh = successor
    session.rotations++
    session.access = access
    session.accessAt = Date.now()
  } else if (answer.status === 401) {
    endSession(user)
  }
}

/** Rotates, then presents the replaced token again at once: the same successor must come back (§6 rule 2). */
async function refreshReplay (user: VirtualUser, session: Session): Promise<void> {
  await refresh(user, session, 'refresh')
  if (user.session !== session || session.previous === undefined) return
  const answer = await call('POST', `${API}/refresh`, { json: { refresh_token: session.previous } })
  const successor = stringMember(answer, 'refresh_token')
  const note = answer.status === 200 && successor !== session.refresh ? 'a different successor within the grace window' : undefined
  record('refresh_replay', answer.status, answer.ms, codeOf(answer), note)
  if (answer.status === 200 && typeof answer.body.access_token === 'string') {
    session.access = answer.body.access_token
    session.accessAt = Date.now()
  } else if (answer.status === 401) {
    endSession(user)
  }
}

async function logout (user: VirtualUser, session: Session): Promise<void> {
  const answer = session.mode === 'body'
    ? await call('POST', `${API}/logout`, { json: { refresh_token: session.refresh } })
    : await call('POST', `${API}/logout`, { cookie: session.refresh })
  const note = answer.status === 204 && refreshCookie(answer) !== '' ? 'the cookie was not cleared' : undefined
  record('logout', answer.status, answer.ms, codeOf(answer), note)
  if (answer.status !== 204) return
  endSession(user)
  const check = await call('GET', `${API}/me`, { bearer: session.access })
  record('me_after_logout', check.status, check.ms, codeOf(check))
}

/** One step of a virtual user, chosen by its state. */
async function step (user: VirtualUser): Promise<void> {
  if (!user.signedUp) return await signup(user)
  const session = user.session
  if (session === undefined) return await login(user, 'login')
  // An access token close to its expiry is renewed rather than used.
  if (Date.now() - session.accessAt > (ACCESS_MIN - 1) * 60_000) return await refresh(user, session, 'refresh')
  const r = Math.random()
  if (r < 0.55) return await me(user, session)
  if (r < 0.88) return await refresh(user, session, 'refresh')
  if (r < 0.92) return await refreshReplay(user, session)
  if (r < 0.96 || session.mode === 'body') return await logout(user, session)
  return await login(user, 'relogin_cookie')
}

// ---------------------------------------------------------------------------------------------
// The service and the stores

async function freePort (): Promise<number> {
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

function rssMiB (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) / 1024
}

const logCounts: Record<string, number> = {}
const logSamples: string[] = []
const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' }

function watchLog (child: ChildProcess, file: string): void {
  const out = createWriteStream(file)
  let pending = ''
  const onData = (chunk: Buffer): void => {
    out.write(chunk)
    pending += chunk.toString()
    const lines = pending.split('\n')
    pending = lines.pop() ?? ''
    for (const line of lines) {
      if (line.trim() === '') continue
      let level = 'unparsed'
      try {
        const parsed = JSON.parse(line) as { level?: number }
        level = LEVELS[parsed.level ?? 0] ?? String(parsed.level)
      } catch {}
      logCounts[level] = (logCounts[level] ?? 0) + 1
      if (level !== 'info' && logSamples.length < 20) logSamples.push(line.slice(0, 500))
    }
  }
  child.stdout?.on('data', onData)
  child.stderr?.on('data', onData)
  child.once('exit', () => setTimeout(() => out.end(), 100))
}

async function startService (port: number, logFile: string): Promise<ChildProcess> {
  // Every setting is named, so neither this shell's environment nor a `.env` file leaks in.
  const env: Record<string, string> = {}
  for (const name of ['PATH', 'HOME', 'LANG', 'TZ']) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  for (const name of SETTING_NAMES) env[name] = ''
  Object.assign(env, {
    APP_ENV: 'dev',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: databaseUrl,
    REDIS_URL: options.redisUrl,
    REDIS_KEY_PREFIX: options.redisPrefix,
    JWT_SECRET: randomBytes(48).toString('base64url'),
    RATE_LIMIT_IP_PER_MINUTE: '0',
    LOG_LEVEL: 'warn'
  })
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'server.js')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  watchLog(child, logFile)
  const start = performance.now()
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the service exited (${child.exitCode ?? child.signalCode}) before answering; see ${logFile}`)
    try {
      const response = await fetch(`http://127.0.0.1:${port}/health/ready`, { signal: AbortSignal.timeout(2000) })
      await response.arrayBuffer()
      if (response.status === 200) return child
    } catch {}
    if (performance.now() - start > 90_000) {
      child.kill('SIGKILL')
      throw new Error(`the service was not ready within 90 s; see ${logFile}`)
    }
    await sleep(200)
  }
}

async function stopService (child: ChildProcess): Promise<{ code: number | null, signal: string | null, ms: number, withinLimit: boolean }> {
  const start = performance.now()
  const exited = new Promise<{ code: number | null, signal: string | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode })
    else child.once('exit', (code, signal) => resolve({ code, signal }))
  })
  child.kill('SIGTERM')
  const timeout = sleep(SHUTDOWN_LIMIT_MS).then(() => 'timeout' as const)
  const first = await Promise.race([exited, timeout])
  if (first === 'timeout') {
    child.kill('SIGKILL')
    const result = await exited
    return { ...result, ms: round(performance.now() - start, 0), withinLimit: false }
  }
  return { ...first, ms: round(performance.now() - start, 0), withinLimit: true }
}

async function deleteKeys (redis: Redis): Promise<number> {
  let deleted = 0
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${options.redisPrefix}*`, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) deleted += await redis.unlink(...keys)
  } while (cursor !== '0')
  return deleted
}

/** The keys under the prefix, by kind: session hashes, per-user indexes and the rest (counters). */
async function keyCensus (redis: Redis): Promise<{ sessions: number, indexes: number, indexMembers: number, other: number }> {
  const census = { sessions: 0, indexes: 0, indexMembers: 0, other: 0 }
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${options.redisPrefix}*`, 'COUNT', 1000)
    cursor = next
    for (const key of keys) {
      const rest = key.slice(options.redisPrefix.length)
      if (/^\{[^}]+\}:session:/.test(rest)) census.sessions++
      else if (/^\{[^}]+\}:sessions$/.test(rest)) {
        census.indexes++
        census.indexMembers += await redis.zcard(key)
      } else census.other++
    }
  } while (cursor !== '0')
  return census
}

function shell (command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return ''
  }
}

// ---------------------------------------------------------------------------------------------
// The run

async function pool<T> (items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) await work(items[next++]!)
  }))
}

async function main (): Promise<number> {
  const startedAt = new Date()
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-')
  mkdirSync(RESULTS, { recursive: true })
  const jsonFile = join(RESULTS, `soak-${stamp}.json`)
  const logFile = join(RESULTS, `soak-${stamp}.log`)
  const machine = {
    hostname: hostname(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    totalMemMiB: Math.round(totalmem() / 2 ** 20),
    node: process.version,
    commit: shell('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']),
    uptimeAtStart: shell('uptime', []),
    loadAtStart: loadavg().map((v) => round(v, 2))
  }
  console.error(`soak: ${options.minutes} min at ${options.rate} ops/s, ${options.users} users; load ${machine.loadAtStart.join(' ')}`)

  // Fresh stores: our own database and our own key prefix, nothing else.
  const admin = postgres(options.adminDatabaseUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`DROP DATABASE IF EXISTS ${options.database} WITH (FORCE)`)
  await admin.unsafe(`CREATE DATABASE ${options.database}`)
  const redis = new Redis(options.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 })
  await redis.connect()
  await deleteKeys(redis)

  const port = await freePort()
  base = `http://127.0.0.1:${port}`
  const child = await startService(port, logFile)
  const pid = child.pid ?? 0
  const state: { crashed: string | undefined, stopping: boolean } = { crashed: undefined, stopping: false }
  child.once('exit', (code, signal) => { if (!state.stopping) state.crashed = `exited with ${code ?? signal} during the run` })

  // Setup: the initial pool signs up (argon2 hashing) at a modest concurrency, then each logs in.
  for (let i = 0; i < options.users; i++) newUser()
  const setupStart = performance.now()
  await pool(users, 8, signup)
  await pool(users.filter((u) => u.signedUp), 8, (u) => login(u, 'login'))
  const setupSeconds = round((performance.now() - setupStart) / 1000)
  const setupCounts = Object.fromEntries([...statuses].map(([op, m]) => [op, Object.fromEntries(m)]))
  statuses.clear()
  latencies.clear()

  // Steady phase: operations start at a fixed rate; each picks an idle virtual user at random.
  const durationMs = options.minutes * 60_000
  const rss: Array<{ t: number, mib: number }> = []
  phaseStart = performance.now()
  rss.push({ t: 0, mib: round(rssMiB(pid), 2) })
  const rssTimer = setInterval(() => {
    try {
      rss.push({ t: round((performance.now() - phaseStart) / 60_000, 3), mib: round(rssMiB(pid), 2) })
    } catch {}
  }, RSS_INTERVAL_MS)
  let started = 0
  let inFlight = 0
  const idle = new Set(users)
  const running = new Set<Promise<void>>()
  let lastReport = 0
  while (performance.now() - phaseStart < durationMs && state.crashed === undefined) {
    const due = Math.floor(((performance.now() - phaseStart) / 1000) * options.rate)
    while (started < due) {
      started++
      if (inFlight >= options.maxInFlight) {
        missed++
        continue
      }
      let user: VirtualUser | undefined
      // About 1 % of the operations are signups of new users, who then join the pool.
      if (Math.random() < 0.01) {
        user = newUser()
        signupsDuringRun++
      } else {
        const candidates = idle.size
        if (candidates === 0) {
          missed++
          continue
        }
        let k = Math.floor(Math.random() * candidates)
        for (const u of idle) {
          if (k-- === 0) {
            user = u
            break
          }
        }
      }
      if (user === undefined) continue
      const chosen = user
      idle.delete(chosen)
      chosen.busy = true
      inFlight++
      const task = step(chosen).finally(() => {
        chosen.busy = false
        inFlight--
        idle.add(chosen)
        running.delete(task)
      })
      running.add(task)
    }
    const elapsed = performance.now() - phaseStart
    if (elapsed - lastReport >= 60_000) {
      lastReport = elapsed
      // The minute just completed (the newest bucket has barely started).
      const bucket = minutes.at(-2) ?? minutes.at(-1)
      console.error(`soak: ${round(elapsed / 60_000, 1)} min, ${started} ops started, ${serverErrors} 5xx, ${lostSessions} lost, ${unexpectedCount} unexpected, RSS ${rss.at(-1)?.mib ?? '?'} MiB, previous minute p99 ${bucket === undefined ? '?' : summarise(bucket.lat).p99} ms`)
    }
    await sleep(5)
  }
  await Promise.all(running)
  clearInterval(rssTimer)
  if (state.crashed === undefined) rss.push({ t: round((performance.now() - phaseStart) / 60_000, 3), mib: round(rssMiB(pid), 2) })
  const steadySeconds = (performance.now() - phaseStart) / 1000
  const loadAtEnd = loadavg().map((v) => round(v, 2))
  const uptimeAtEnd = shell('uptime', [])

  // Every live refresh token must still rotate.
  const live = users.filter((u) => u.session !== undefined)
  const lostBefore = lostSessions
  if (state.crashed === undefined) await pool(live, 8, async (u) => { if (u.session !== undefined) await refresh(u, u.session, 'final_refresh') })
  const finalCounts = Object.fromEntries(statuses.get('final_refresh') ?? [])
  const lostAtEnd = lostSessions - lostBefore
  for (const u of users) if (u.session !== undefined) u.longestChain = Math.max(u.longestChain, u.session.rotations)

  // The stores hold exactly what the users believe: one session per live user, one row per signup.
  const census = await keyCensus(redis)
  const liveNow = users.filter((u) => u.session !== undefined).length
  const db = postgres(databaseUrl, { max: 1, onnotice: () => {} })
  const userRows = Number((await db`SELECT count(*)::int AS n FROM users`)[0]?.n ?? NaN)
  await db.end()

  state.stopping = true
  const shutdown = state.crashed === undefined ? await stopService(child) : { code: child.exitCode, signal: child.signalCode, ms: 0, withinLimit: false }

  // Clean up our database and our keys.
  if (!options.keep) {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${options.database} WITH (FORCE)`)
    await deleteKeys(redis)
  }
  await admin.end()
  redis.disconnect()

  // Figures.
  const half = steadySeconds / 120
  const secondHalf = rss.filter((s) => s.t >= half).map((s) => ({ x: s.t, y: s.mib }))
  const memory = {
    startMiB: rss[0]?.mib ?? NaN,
    endMiB: rss.at(-1)?.mib ?? NaN,
    minMiB: Math.min(...rss.map((s) => s.mib)),
    maxMiB: Math.max(...rss.map((s) => s.mib)),
    slopeSecondHalfMiBPerMin: round(slope(secondHalf), 3),
    slopeWholeRunMiBPerMin: round(slope(rss.map((s) => ({ x: s.t, y: s.mib }))), 3),
    samples: rss
  }
  const ops = [...statuses.keys()].filter((op) => op !== 'final_refresh')
  const totalOps = ops.reduce((sum, op) => sum + (latencies.get(op)?.length ?? 0), 0)
  const signedUp = users.filter((u) => u.signedUp).length
  const checks = {
    noServerErrors: serverErrors === 0,
    noNetworkErrors: networkErrors === 0,
    noLostSessions: lostSessions === 0,
    noUnexpectedStatuses: unexpectedCount === 0,
    serviceStayedUp: state.crashed === undefined,
    sessionsInRedisMatch: census.sessions === liveNow && census.indexMembers === liveNow,
    usersInDatabaseMatch: userRows === signedUp,
    shutdownClean: shutdown.code === 0 && shutdown.withinLimit
  }
  const passed = Object.values(checks).every(Boolean)
  const result = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    options: { ...options, adminDatabaseUrl: undefined },
    machine: { ...machine, uptimeAtEnd, loadAtEnd },
    service: { pid, port, settings: { RATE_LIMIT_IP_PER_MINUTE: 0, LOG_LEVEL: 'warn', REDIS_KEY_PREFIX: options.redisPrefix, database: options.database } },
    setup: { seconds: setupSeconds, users: options.users, statuses: setupCounts },
    steady: {
      seconds: round(steadySeconds),
      opsStarted: started,
      opsCompleted: totalOps,
      opsPerSecond: round(totalOps / steadySeconds),
      missed,
      signupsDuringRun,
      usersAtEnd: users.length,
      logins: users.reduce((s, u) => s + u.logins, 0),
      longestRefreshChain: Math.max(0, ...users.map((u) => u.longestChain))
    },
    statuses: Object.fromEntries(ops.map((op) => [op, Object.fromEntries(statuses.get(op) ?? [])])),
    latencyMs: Object.fromEntries([...ops, 'final_refresh' as Op].filter((op) => latencies.has(op)).map((op) => [op, summarise(latencies.get(op)!)])),
    perMinute: minutes.map((m, i) => ({ minute: i + 1, ops: m.ops, failures: m.failures, ...summarise(m.lat), rssMiB: rss.filter((s) => s.t <= i + 1).at(-1)?.mib })),
    serverErrors,
    networkErrors,
    lostSessions: { duringRun: lostBefore, atFinalCheck: lostAtEnd },
    unexpectedCount,
    unexpected,
    finalCheck: { liveSessions: live.length, statuses: finalCounts },
    stores: { redis: census, liveSessionsExpected: liveNow, userRows, usersSignedUp: signedUp },
    memory,
    shutdown,
    crashed: state.crashed,
    serviceLog: { file: logFile, linesByLevel: logCounts, samples: logSamples },
    checks,
    passed
  }
  writeFileSync(jsonFile, JSON.stringify(result, null, 2) + '\n')
  console.log(markdown(result))
  console.log(`\nJSON: ${jsonFile}`)
  return passed ? 0 : 1
}

function markdown (r: {
  startedAt: string
  machine: { cpus: number, cpuModel: string, node: string, commit: string, loadAtStart: number[], loadAtEnd: number[] }
  setup: { seconds: number, users: number }
  steady: { seconds: number, opsCompleted: number, opsPerSecond: number, missed: number, signupsDuringRun: number, usersAtEnd: number, logins: number, longestRefreshChain: number }
  statuses: Record<string, Record<string, number>>
  latencyMs: Record<string, ReturnType<typeof summarise>>
  perMinute: Array<{ minute: number, ops: number, failures: number, p50: number, p99: number, max: number, rssMiB: number | undefined }>
  serverErrors: number
  networkErrors: number
  lostSessions: { duringRun: number, atFinalCheck: number }
  unexpected: Unexpected[]
  unexpectedCount: number
  finalCheck: { liveSessions: number, statuses: Record<string, number> }
  stores: { redis: { sessions: number, indexMembers: number, other: number }, liveSessionsExpected: number, userRows: number, usersSignedUp: number }
  memory: { startMiB: number, endMiB: number, minMiB: number, maxMiB: number, slopeSecondHalfMiBPerMin: number, slopeWholeRunMiBPerMin: number }
  shutdown: { code: number | null, signal: string | null, ms: number, withinLimit: boolean }
  crashed: string | undefined
  serviceLog: { linesByLevel: Record<string, number> }
  checks: Record<string, boolean>
  passed: boolean
}): string {
  const lines: string[] = []
  lines.push(`## Soak ${r.passed ? 'PASSED' : 'FAILED'}: ${round(r.steady.seconds / 60, 1)} min, ${r.startedAt}`)
  lines.push('')
  lines.push(`Machine: ${r.machine.cpus} × ${r.machine.cpuModel}, Node ${r.machine.node}, commit ${r.machine.commit}; load average ${r.machine.loadAtStart.join(' ')} at start, ${r.machine.loadAtEnd.join(' ')} at end.`)
  lines.push(`Setup: ${r.setup.users} users signed up and logged in in ${r.setup.seconds} s. Steady phase: ${r.steady.opsCompleted} operations, ${r.steady.opsPerSecond} ops/s, ${r.steady.missed} missed (in-flight cap or no idle user), ${r.steady.signupsDuringRun} signups during the run (${r.steady.usersAtEnd} users), ${r.steady.logins} logins, longest refresh chain ${r.steady.longestRefreshChain}.`)
  lines.push('')
  lines.push('| operation | expected | statuses | p50 ms | p90 ms | p99 ms | max ms |')
  lines.push('|---|---|---|---|---|---|---|')
  for (const [op, lat] of Object.entries(r.latencyMs)) {
    const counts = op === 'final_refresh' ? r.finalCheck.statuses : r.statuses[op] ?? {}
    const text = Object.entries(counts).map(([s, n]) => `${s}: ${n}`).join(', ')
    lines.push(`| ${op} | ${EXPECTED[op as Op]} | ${text} | ${lat.p50} | ${lat.p90} | ${lat.p99} | ${lat.max} |`)
  }
  lines.push('')
  lines.push('| minute | ops | failures | p50 ms | p99 ms | max ms | RSS MiB |')
  lines.push('|---|---|---|---|---|---|---|')
  for (const m of r.perMinute) lines.push(`| ${m.minute} | ${m.ops} | ${m.failures} | ${m.p50} | ${m.p99} | ${m.max} | ${m.rssMiB ?? ''} |`)
  lines.push('')
  lines.push(`- 5xx: **${r.serverErrors}**; network errors: ${r.networkErrors}; unexpected statuses: ${r.unexpectedCount}`)
  lines.push(`- Lost sessions: **${r.lostSessions.duringRun}** during the run, **${r.lostSessions.atFinalCheck}** of ${r.finalCheck.liveSessions} live refresh tokens at the final rotation`)
  lines.push(`- RSS: ${r.memory.startMiB} MiB at the start of the steady phase, ${r.memory.endMiB} MiB at its end (min ${r.memory.minMiB}, max ${r.memory.maxMiB}); slope **${r.memory.slopeSecondHalfMiBPerMin} MiB/min** over the second half (${r.memory.slopeWholeRunMiBPerMin} over the whole run)`)
  lines.push(`- Stores at the end: ${r.stores.redis.sessions} session hashes and ${r.stores.redis.indexMembers} index members in Redis for ${r.stores.liveSessionsExpected} live sessions (${r.stores.redis.other} other keys); ${r.stores.userRows} user rows for ${r.stores.usersSignedUp} signups`)
  lines.push(`- SIGTERM: ${r.shutdown.withinLimit ? `exited with ${r.shutdown.code ?? r.shutdown.signal} after ${r.shutdown.ms} ms` : `did not exit within ${SHUTDOWN_LIMIT_MS / 1000} s (killed)`}${r.crashed === undefined ? '' : `; the service ${r.crashed}`}`)
  lines.push(`- Service log lines by level: ${JSON.stringify(r.serviceLog.linesByLevel)}`)
  lines.push(`- Checks: ${Object.entries(r.checks).map(([k, v]) => `${k} ${v ? 'ok' : 'FAILED'}`).join(', ')}`)
  if (r.unexpected.length > 0) {
    lines.push('')
    lines.push('Unexpected answers (first 50):')
    for (const u of r.unexpected) lines.push(`- ${u.at} ${u.op} → ${u.status}${u.code === undefined ? '' : ` ${u.code}`}${u.note === undefined ? '' : ` (${u.note})`}`)
  }
  return lines.join('\n')
}

process.exitCode = await main()
