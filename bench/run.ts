// `npm run bench`: the built service against two yardsticks measured in the same run, in
// interleaved rounds; see docs/PERFORMANCE.md for the method. The Markdown report goes to
// stdout, progress to stderr, and everything as JSON to bench/results/<timestamp>.json.
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import argon2 from 'argon2'
import { CpuMeter } from './cpu.ts'
import { runLoad, startLoad, percentile, type Plan, type RunStats } from './load.ts'
import { parseOptions, type BenchOptions } from './options.ts'
import {
  type Child, httpStatus, type Memory, memoryOf, postJson, ROOT, runArgon2, serviceEnv, startService, startYardstick, stopChild
} from './processes.ts'
import { type CpuProfile, profileMarkdown, profileTimeline, summarizeProfile } from './profile.ts'
import { cpuTable, markdownTable, median, pairedRatio, type Row, type Runs, summarize, tableLines, type Target, targetsTable } from './report.ts'
import { createStores, type SessionSample } from './stores.ts'
import { claimNames, mintAccessToken, PASSWORD, RefreshQueue, sessionId, shuffle, USER_AGENT, userEmail, userId } from './tokens.ts'

const ARGON2_OPTIONS = { type: argon2.argon2id, memoryCost: 19 * 1024, timeCost: 2, parallelism: 1 } as const
const AUTH = '/api/v1/auth'
const CLAIMS = { issuer: 'auth-api', audience: 'api', lifetimeSeconds: 15 * 60 }
const SUCCESSOR = /"refresh_token":"([A-Za-z0-9_-]{86})"/
const PAUSE_MS = 500

const log = (line: string) => process.stderr.write(`${line}\n`)
const fmtRate = (r: RunStats) => `${Math.round(r.rate)} req/s, p99 ${r.p99.toFixed(2)} ms${r.non2xx + r.errors > 0 ? `, ${r.non2xx} non-2xx, ${r.errors} errors` : ''}`

/** Everything the scenarios need: the processes, the secret, the token pools. */
interface Bench {
  options: BenchOptions
  secret: string
  env: Record<string, string>
  service: Child
  hello?: Child
  verify?: Child
  /** Users stored 1..users; the seeded sessions are those of users 1..seeded. */
  users: number
  seeded: number
  accessTokens: string[]
  refresh: RefreshQueue
  signups: number
  loginCursor: number
  runTag: string
  runs: Runs
  cpu: CpuMeter
}

function record (bench: Bench, key: string, stats: RunStats): void {
  const list = bench.runs.get(key) ?? []
  list.push(stats)
  bench.runs.set(key, list)
}

/** Access tokens for `count` distinct seeded sessions, minted now (valid 15 minutes, like the service's). */
function mintAccessTokens (bench: Bench): void {
  const count = Math.min(bench.options.meTokens, bench.seeded)
  const picks = shuffle(Array.from({ length: bench.seeded }, (_, i) => i + 1)).slice(0, count)
  bench.accessTokens = picks.map((i) => mintAccessToken(bench.secret, userId(i), sessionId(i), CLAIMS))
}

function bearerPlan (tokens: string[]): Plan {
  let i = 0
  return { method: 'GET', path: `${AUTH}/me`, next: () => ({ headers: { authorization: `Bearer ${tokens[i++ % tokens.length]}` } }) }
}

function refreshPlan (queue: RefreshQueue): Plan {
  // A well-formed token of no session: answered 401, counted as a failure, when the queue runs dry.
  const unknown = Buffer.alloc(64, 7).toString('base64url')
  return {
    method: 'POST',
    path: `${AUTH}/refresh`,
    headers: { 'content-type': 'application/json' },
    next: () => ({ body: `{"refresh_token":"${queue.take() ?? unknown}"}` }),
    onResponse: (status, body) => {
      const successor = status === 200 ? SUCCESSOR.exec(body)?.[1] : undefined
      if (successor) queue.push(successor)
    }
  }
}

function loginPlan (bench: Bench): Plan {
  return {
    method: 'POST',
    path: `${AUTH}/login`,
    headers: { 'content-type': 'application/json', 'user-agent': USER_AGENT },
    next: () => {
      bench.loginCursor = bench.loginCursor % bench.seeded + 1
      return { body: JSON.stringify({ email: userEmail(bench.loginCursor), password: PASSWORD }) }
    }
  }
}

function signupPlan (bench: Bench): Plan {
  return {
    method: 'POST',
    path: `${AUTH}/signup`,
    headers: { 'content-type': 'application/json' },
    next: () => ({ body: JSON.stringify({ email: `signup-${bench.runTag}-${++bench.signups}@bench.example`, password: PASSWORD, name: 'Bench Signup' }) })
  }
}

const ROOT_PLAN: Plan = { method: 'GET', path: '/' }

/** A warm-up run (discarded), then the measured run, with the CPU it took. */
async function measure (bench: Bench, target: 'service' | 'hello' | 'verify', plan: Plan, connections: number): Promise<RunStats> {
  const { options } = bench
  const child = bench[target]
  if (!child) throw new Error(`${target} is not running`)
  if (options.warmup > 0) await runLoad(child.port, plan, { connections, seconds: options.warmup })
  await sleep(PAUSE_MS)
  const withStores = target === 'service'
  const before = await bench.cpu.snapshot(child.pid, withStores)
  const stats = await runLoad(child.port, plan, { connections, seconds: options.duration })
  stats.cpu = await bench.cpu.since(before, child.pid, withStores, stats.ok)
  await sleep(PAUSE_MS)
  return stats
}

function argon2Stats (run: { ops: number, seconds: number, latencies: number[] }): RunStats {
  const sorted = Float64Array.from(run.latencies).sort()
  return {
    seconds: run.seconds,
    rate: run.ops / run.seconds,
    ok: run.ops,
    non2xx: 0,
    errors: 0,
    timeouts: 0,
    statusCodes: {},
    p50: percentile(sorted, 50),
    p97_5: percentile(sorted, 97.5),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1] ?? NaN,
    autocannonP99: NaN
  }
}

/** The raw argon2 rate; its CPU is the machine's (the child is not followed). */
async function measureArgon2 (bench: Bench, mode: 'hash' | 'verify'): Promise<RunStats> {
  const { options } = bench
  const before = await bench.cpu.snapshot(0, false)
  const stats = argon2Stats(await runArgon2(mode, options.argon2Connections, options.duration, options.warmup))
  stats.cpu = await bench.cpu.since(before, 0, false, stats.ok)
  return stats
}

/** GET / probed at a fixed rate while /login is flooded; the flood ramps up during the warm-up. */
async function flood (bench: Bench, measured?: (from: number, to: number) => void): Promise<{ probe: RunStats, login: RunStats }> {
  const { options } = bench
  const ramp = Math.max(1, options.warmup)
  const flooding = startLoad(bench.service.port, loginPlan(bench), { connections: options.floodConnections, seconds: ramp + options.duration + 5 })
  await sleep(ramp * 1000)
  const from = performance.now()
  const before = await bench.cpu.snapshot(bench.service.pid, true)
  const probe = await runLoad(bench.service.port, ROOT_PLAN, { connections: 2, seconds: options.duration, overallRate: options.probeRate })
  measured?.(from, performance.now())
  flooding.stop()
  const login = await flooding.done
  probe.cpu = await bench.cpu.since(before, bench.service.pid, true, probe.ok + login.ok)
  await sleep(PAUSE_MS)
  return { probe, login }
}

type Step = [key: string, run: () => Promise<RunStats>]

async function runRounds (bench: Bench, phase: string, steps: Step[]): Promise<void> {
  for (let round = 1; round <= bench.options.rounds; round++) {
    // Every other round runs backwards, so no scenario always follows the same one.
    const order = round % 2 === 1 ? steps : [...steps].reverse()
    for (const [key, run] of order) {
      const stats = await run()
      record(bench, key, stats)
      log(`[${phase} ${round}/${bench.options.rounds}] ${key}: ${fmtRate(stats)}`)
    }
  }
}

function serviceSteps (bench: Bench, suffix: string): Step[] {
  const { options } = bench
  return [
    [`me.${suffix}`, () => measure(bench, 'service', bearerPlan(bench.accessTokens), options.connections)],
    [`refresh.${suffix}`, () => measure(bench, 'service', refreshPlan(bench.refresh), options.connections)]
  ]
}

function yardstickSteps (bench: Bench, suffix: string): Step[] {
  const { options } = bench
  return [
    [`hello.${suffix}`, () => measure(bench, 'hello', ROOT_PLAN, options.connections)],
    [`verify.${suffix}`, () => measure(bench, 'verify', bearerPlan(bench.accessTokens), options.connections)]
  ]
}

function argon2Steps (bench: Bench): Step[] {
  const { options } = bench
  const c = options.argon2Connections
  return [
    ['argon2.hash', () => measureArgon2(bench, 'hash')],
    ['signup', () => measure(bench, 'service', signupPlan(bench), c)],
    ['argon2.verify', () => measureArgon2(bench, 'verify')],
    ['login', () => measure(bench, 'service', loginPlan(bench), c)],
    ['flood.probe', async () => {
      const { probe, login } = await flood(bench)
      record(bench, 'flood.login', login)
      return probe
    }]
  ]
}

/** One real login and one request of each kind, so a broken setup fails loudly before measuring. */
async function sanityCheck (bench: Bench): Promise<Record<string, unknown>> {
  const port = bench.service.port
  const login = await postJson(port, `${AUTH}/login`, { email: userEmail(1), password: PASSWORD, return_refresh_in_body: true })
  if (login.status !== 200 || typeof login.body.access_token !== 'string') throw new Error(`login of a seeded user answered ${login.status}`)
  const real = claimNames(login.body.access_token)
  const minted = claimNames(bench.accessTokens[0] ?? '')
  if (JSON.stringify(real) !== JSON.stringify(minted)) {
    throw new Error(`the bench mints tokens unlike the service: ${JSON.stringify(minted)} vs ${JSON.stringify(real)}`)
  }
  for (const [name, target] of [['service', port], ['verify-only yardstick', bench.verify?.port ?? 0]] as const) {
    const status = await httpStatus(target, `${AUTH}/me`, { authorization: `Bearer ${bench.accessTokens[0]}` })
    if (status !== 200) throw new Error(`GET /me with a minted token: ${name} answered ${status}`)
  }
  const token = bench.refresh.take()
  const refreshed = await postJson(port, `${AUTH}/refresh`, { refresh_token: token })
  if (refreshed.status !== 200 || typeof refreshed.body.refresh_token !== 'string') throw new Error(`refresh of a seeded session answered ${refreshed.status}`)
  bench.refresh.push(refreshed.body.refresh_token)
  const signup = await postJson(port, `${AUTH}/signup`, { email: `signup-${bench.runTag}-0@bench.example`, password: PASSWORD, name: 'Bench Signup' })
  if (signup.status !== 201) throw new Error(`signup answered ${signup.status}: ${JSON.stringify(signup.body)}`)
  return { tokenHeader: real.header, tokenClaims: real.claims }
}

async function timeStartups (options: BenchOptions, env: Record<string, string>, logFile: string): Promise<number[]> {
  const times: number[] = []
  for (let i = 0; i < options.starts; i++) {
    const child = await startService(env, logFile)
    times.push(child.readyMs)
    log(`[start-up ${i + 1}/${options.starts}] ${child.readyMs.toFixed(0)} ms`)
    await stopChild(child.process)
    await sleep(300)
  }
  return times
}

interface RssReading extends Memory { label: string, workload: string }

/** A fresh service, one round of every service scenario, then RSS after the wait. */
async function rssReplay (bench: Bench, label: string, extraEnv: Record<string, string>, logFile: string): Promise<RssReading> {
  const { options } = bench
  bench.service = await startService({ ...bench.env, ...extraEnv }, logFile)
  for (let round = 1; round <= options.rssReplayRounds; round++) {
    const steps: Step[] = [
      ['root', () => measure(bench, 'service', ROOT_PLAN, options.connections)],
      ...serviceSteps(bench, 'replay'),
      ['signup', () => measure(bench, 'service', signupPlan(bench), options.argon2Connections)],
      ['login', () => measure(bench, 'service', loginPlan(bench), options.argon2Connections)],
      ['flood', async () => (await flood(bench)).probe]
    ]
    for (const [key, run] of steps) log(`[rss replay ${label} ${round}/${options.rssReplayRounds}] ${key}: ${fmtRate(await run())}`)
  }
  await sleep(options.rssWait * 1000)
  const memory = memoryOf(bench.service.pid)
  log(`[rss replay ${label}] RSS ${memory.rssMiB.toFixed(1)} MiB (peak ${memory.peakMiB.toFixed(1)} MiB)`)
  await stopChild(bench.service.process)
  return { label, ...memory, workload: `fresh service, ${options.rssReplayRounds} round(s) of GET /, /me, refresh, signup, login and the flood` }
}

async function profileRun (bench: Bench, scenario: string, resultsDir: string, stamp: string): Promise<void> {
  const { options } = bench
  const dir = join(resultsDir, 'profiles', `${stamp}-${scenario}`)
  mkdirSync(dir, { recursive: true })
  await stopChild(bench.service.process)
  const logFile = join(dir, 'service.log')
  bench.service = await startService(bench.env, logFile, ['--cpu-prof', '--cpu-prof-dir', dir])
  const port = bench.service.port
  // Only the measured run is summarised (the start-up alone for `startup`).
  let window = { fromMs: 0, toMs: bench.service.readyMs }
  if (scenario !== 'startup') {
    const plans: Record<string, [Plan, number]> = {
      root: [ROOT_PLAN, options.connections],
      me: [bearerPlan(bench.accessTokens), options.connections],
      refresh: [refreshPlan(bench.refresh), options.connections],
      login: [loginPlan(bench), options.argon2Connections],
      signup: [signupPlan(bench), options.argon2Connections]
    }
    if (scenario === 'flood') {
      const { probe, login } = await flood(bench, (from, to) => { window = { fromMs: from - bench.service.spawnedAt, toMs: to - bench.service.spawnedAt } })
      log(`flood: GET / ${fmtRate(probe)}; login ${fmtRate(login)}`)
    } else {
      const [plan, connections] = plans[scenario]!
      if (options.warmup > 0) await runLoad(port, plan, { connections, seconds: options.warmup })
      const from = performance.now()
      const stats = await runLoad(port, plan, { connections, seconds: options.duration })
      window = { fromMs: from - bench.service.spawnedAt, toMs: performance.now() - bench.service.spawnedAt }
      log(`${scenario}: ${fmtRate(stats)}`)
    }
  }
  await stopChild(bench.service.process)
  const file = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(dir, f))[0]
  if (!file) throw new Error(`no .cpuprofile was written in ${dir}`)
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  let markdown = profileMarkdown(`Service profile: ${scenario} (${new Date().toISOString()}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')})`, summarizeProfile(profile, 20, window))
  if (scenario === 'startup') markdown += `\nReady after ${bench.service.readyMs.toFixed(0)} ms. Timeline (innermost package or app file on the stack):\n\n${profileTimeline(profile, 100, window.toMs)}\n`
  writeFileSync(join(dir, 'summary.md'), markdown)
  process.stdout.write(`${markdown}\nProfile: ${file}\n`)
}

async function main (): Promise<void> {
  const options = parseOptions(process.argv.slice(2), process.env)
  if (!existsSync(join(ROOT, 'dist', 'server.js'))) throw new Error('dist/server.js is missing: run `npm run build` first')
  const started = new Date()
  const stamp = started.toISOString().replace(/[:.]/g, '-')
  const resultsDir = join(ROOT, 'bench', 'results')
  mkdirSync(resultsDir, { recursive: true })
  const logFile = join(resultsDir, `${stamp}-service.log`)
  const loadStart = loadavg()
  log(`auth-api bench ${stamp}: ${options.embedded ? 'embedded database' : 'PostgreSQL + Redis'}, ${options.rounds} round(s) of ${options.duration} s (+${options.warmup} s warm-up); load average ${loadStart.map((l) => l.toFixed(2)).join(' ')}`)

  const stores = createStores(options)
  const secret = randomBytes(36).toString('base64url')
  const env = serviceEnv(options, { JWT_SECRET: secret, DATA_DIR: stores.dataDir })
  const passwordHash = await argon2.hash(PASSWORD.normalize('NFKC'), ARGON2_OPTIONS)
  await stores.reset()

  const seedStart = performance.now()
  // PostgreSQL: the first start migrates the database. Embedded: seeding migrates it.
  let service = stores.exclusive ? undefined : await startService(env, logFile)
  const seeded = await stores.seed(1, options.baseUsers, passwordHash)
  const seedBaseMs = performance.now() - seedStart
  service ??= await startService(env, logFile)
  log(`seeded ${options.baseUsers} users and sessions in ${(seedBaseMs / 1000).toFixed(1)} s`)

  const bench: Bench = {
    options,
    secret,
    env,
    service,
    users: seeded.users,
    seeded: options.baseUsers,
    accessTokens: [],
    refresh: new RefreshQueue(),
    signups: 0,
    loginCursor: 0,
    runTag: randomBytes(4).toString('hex'),
    runs: new Map(),
    cpu: new CpuMeter(stores)
  }
  for (const token of seeded.tokens) bench.refresh.push(token)
  bench.refresh.shuffle()
  mintAccessTokens(bench)

  try {
    if (options.profile !== undefined) {
      bench.verify = await startYardstick('verify', { JWT_SECRET: secret })
      await sanityCheck(bench)
      await stopChild(bench.verify.process)
      await profileRun(bench, options.profile, resultsDir, stamp)
      return
    }
    bench.hello = await startYardstick('hello', {})
    bench.verify = await startYardstick('verify', { JWT_SECRET: secret })
    const tokenShape = await sanityCheck(bench)

    // Phase 1: the small store. GET /, /me and refresh against the yardsticks.
    await runRounds(bench, `${options.baseUsers} users`, [
      yardstickSteps(bench, 'base')[0]!,
      ['root', () => measure(bench, 'service', ROOT_PLAN, options.connections)],
      yardstickSteps(bench, 'base')[1]!,
      ...serviceSteps(bench, 'base')
    ])
    // Phase 2: argon2-bound routes against the raw argon2 rate, and GET / under a login flood.
    await runRounds(bench, 'argon2', argon2Steps(bench))

    // Phase 3: the large store.
    if (stores.exclusive) await stopChild(bench.service.process)
    const scaleStart = performance.now()
    const more = await stores.seed(options.baseUsers + 1, options.scaleUsers, passwordHash)
    const seedScaleMs = performance.now() - scaleStart
    if (stores.exclusive) bench.service = await startService(env, logFile)
    bench.users = more.users
    bench.seeded = options.scaleUsers
    log(`seeded ${options.scaleUsers - options.baseUsers} more users and sessions in ${(seedScaleMs / 1000).toFixed(1)} s (${more.users} users stored)`)
    for (const token of more.tokens) bench.refresh.push(token)
    bench.refresh.shuffle()
    mintAccessTokens(bench)
    await runRounds(bench, `${options.scaleUsers} users`, [...yardstickSteps(bench, 'scale'), ...serviceSteps(bench, 'scale')])
    const sessionBytes: SessionSample | null = await stores.sessionBytes(options.scaleUsers, 1000)

    log(`waiting ${options.rssWait} s before reading the service's RSS`)
    await sleep(options.rssWait * 1000)
    const afterBench = memoryOf(bench.service.pid)
    log(`RSS ${afterBench.rssMiB.toFixed(1)} MiB (peak ${afterBench.peakMiB.toFixed(1)} MiB)`)
    await stopChild(bench.service.process)
    await stopChild(bench.hello.process)
    await stopChild(bench.verify.process)

    const startups = await timeStartups(options, env, logFile)
    const replays: RssReading[] = []
    if (options.rssReplayRounds > 0) {
      mintAccessTokens(bench)
      replays.push(await rssReplay(bench, 'default malloc', {}, logFile))
      replays.push(await rssReplay(bench, 'MALLOC_ARENA_MAX=2', { MALLOC_ARENA_MAX: '2' }, logFile))
      // Not asked for, but what the arenas suggest: glibc raises its mmap threshold to the size of
      // the first large block freed (argon2's 19 MiB), after which those blocks stay in the
      // arenas; a fixed threshold keeps them mmap()ed and returns them on free().
      replays.push(await rssReplay(bench, 'MALLOC_MMAP_THRESHOLD_=131072', { MALLOC_MMAP_THRESHOLD_: '131072' }, logFile))
    }
    const loadEnd = loadavg()

    const report = buildReport({ bench, started, stamp, loadStart, loadEnd, seedBaseMs, seedScaleMs, sessionBytes, afterBench, replays, startups, tokenShape, storesDescribe: stores.describe })
    writeFileSync(join(resultsDir, `${stamp}.json`), JSON.stringify(report.json, null, 2))
    process.stdout.write(`${report.markdown}\n\nJSON: bench/results/${stamp}.json\n`)
  } finally {
    for (const child of [bench.service, bench.hello, bench.verify]) if (child) await stopChild(child.process)
    if (!options.keep) await stores.cleanup()
    await stores.close()
  }
}

const ROWS: Row[] = [
  { label: 'yardstick: bare Fastify GET /', key: 'hello.base' },
  { label: 'GET /', key: 'root', hello: 'hello.base' },
  { label: 'yardstick: verify-only route (small store)', key: 'verify.base', hello: 'hello.base' },
  { label: 'GET /api/v1/auth/me (small store)', key: 'me.base', hello: 'hello.base', verify: 'verify.base' },
  { label: 'POST /api/v1/auth/refresh (small store)', key: 'refresh.base', hello: 'hello.base', verify: 'verify.base' },
  { label: 'yardstick: bare Fastify GET / (large store phase)', key: 'hello.scale' },
  { label: 'yardstick: verify-only route (large store phase)', key: 'verify.scale', hello: 'hello.scale' },
  { label: 'GET /api/v1/auth/me (large store)', key: 'me.scale', hello: 'hello.scale', verify: 'verify.scale' },
  { label: 'POST /api/v1/auth/refresh (large store)', key: 'refresh.scale', hello: 'hello.scale', verify: 'verify.scale' },
  { label: 'raw argon2id hash (ceiling of signup)', key: 'argon2.hash' },
  { label: 'POST /api/v1/auth/signup', key: 'signup', ceiling: 'argon2.hash' },
  { label: 'raw argon2id verify (ceiling of login)', key: 'argon2.verify' },
  { label: 'POST /api/v1/auth/login', key: 'login', ceiling: 'argon2.verify' },
  { label: 'GET / during a /login flood (fixed rate)', key: 'flood.probe' },
  { label: 'POST /api/v1/auth/login, the flood itself', key: 'flood.login', ceiling: 'argon2.verify' }
]

interface ReportInput {
  bench: Bench
  started: Date
  stamp: string
  loadStart: number[]
  loadEnd: number[]
  seedBaseMs: number
  seedScaleMs: number
  sessionBytes: SessionSample | null
  afterBench: Memory
  replays: RssReading[]
  startups: number[]
  tokenShape: Record<string, unknown>
  storesDescribe: string
}

function buildReport (input: ReportInput): { markdown: string, json: unknown } {
  const { bench, started, loadStart, loadEnd, sessionBytes, afterBench, replays, startups } = input
  const { options, runs } = bench
  const small = options.baseUsers.toLocaleString('en-US')
  const large = options.scaleUsers.toLocaleString('en-US')
  const rows = ROWS.map((row) => ({ ...row, label: row.label.replace('small store', `${small} users`).replace('large store', `${large} users`) }))
  const lines = tableLines(runs, rows)
  const rate = (key: string) => summarize(runs.get(key) ?? []).rate
  const ratio = (key: string, yardstick: string) => pairedRatio(runs, key, yardstick)
  const probe = summarize(runs.get('flood.probe') ?? [])
  const probeAutocannonP99 = median((runs.get('flood.probe') ?? []).map((r) => r.autocannonP99))
  const probeP99 = Math.max(probe.p99, probeAutocannonP99)
  const meScale = rate('me.scale') / rate('me.base')
  const meScaleNormalized = ratio('me.scale', 'verify.scale') / ratio('me.base', 'verify.base')
  const startup = median(startups)
  const x = (v: number) => `${v.toFixed(2)}×`
  const targets: Target[] = [
    { name: `GET /me vs verify-only, ${small} users`, goal: '≥ 0.60×', value: ratio('me.base', 'verify.base'), met: ratio('me.base', 'verify.base') >= 0.6, measured: x(ratio('me.base', 'verify.base')) },
    { name: `GET /me vs verify-only, ${large} users`, goal: '≥ 0.60×', value: ratio('me.scale', 'verify.scale'), met: ratio('me.scale', 'verify.scale') >= 0.6, measured: x(ratio('me.scale', 'verify.scale')) },
    { name: `POST /refresh vs verify-only, ${small} users`, goal: '≥ 0.30×', value: ratio('refresh.base', 'verify.base'), met: ratio('refresh.base', 'verify.base') >= 0.3, measured: x(ratio('refresh.base', 'verify.base')) },
    { name: `POST /refresh vs verify-only, ${large} users`, goal: '≥ 0.30×', value: ratio('refresh.scale', 'verify.scale'), met: ratio('refresh.scale', 'verify.scale') >= 0.3, measured: x(ratio('refresh.scale', 'verify.scale')) },
    { name: 'POST /login vs raw argon2 verify', goal: '≥ 0.90×', value: ratio('login', 'argon2.verify'), met: ratio('login', 'argon2.verify') >= 0.9, measured: x(ratio('login', 'argon2.verify')) },
    { name: 'POST /signup vs raw argon2 hash', goal: '≥ 0.90×', value: ratio('signup', 'argon2.hash'), met: ratio('signup', 'argon2.hash') >= 0.9, measured: x(ratio('signup', 'argon2.hash')) },
    {
      name: 'GET / p99 during a /login flood',
      goal: '≤ 10 ms',
      value: probeP99,
      met: probeP99 <= 10,
      measured: `${probeP99.toFixed(2)} ms`,
      note: `exact p99 ${probe.p99.toFixed(2)} ms, autocannon's coordinated-omission-corrected p99 ${probeAutocannonP99} ms; the larger counts`
    },
    {
      name: `GET /me rate, ${large} vs ${small} users`,
      goal: '≥ 0.95',
      value: meScale,
      met: meScale >= 0.95,
      measured: meScale.toFixed(2),
      note: `against the verify-only yardstick of each phase: ${meScaleNormalized.toFixed(2)}`
    },
    { name: 'RSS 10 s after the bench', goal: '≤ 200 MiB', value: afterBench.rssMiB, met: afterBench.rssMiB <= 200, measured: `${afterBench.rssMiB.toFixed(1)} MiB` },
    { name: 'start-up, exec to first 200 on GET /', goal: '≤ 500 ms', value: startup, met: startup <= 500, measured: `${startup.toFixed(0)} ms`, note: `median of ${startups.length}` }
  ]

  const load = (l: number[]) => l.map((v) => v.toFixed(2)).join(' / ')
  const where = (m: Memory) => Object.entries(m.breakdown).filter(([, mib]) => mib >= 0.5).sort((a, b) => b[1] - a[1])
    .map(([kind, mib]) => `${kind} ${mib.toFixed(0)}`).join('; ')
  const memoryLines = [
    '| service | workload | RSS MiB | peak RSS MiB | where the RSS lies, MiB |',
    '|---|---|---:|---:|---|',
    `| default malloc | the whole bench, ${options.rssWait} s later | ${afterBench.rssMiB.toFixed(1)} | ${afterBench.peakMiB.toFixed(1)} | ${where(afterBench)} |`,
    ...replays.map((r) => `| ${r.label} | ${r.workload}, ${options.rssWait} s later | ${r.rssMiB.toFixed(1)} | ${r.peakMiB.toFixed(1)} | ${where(r)} |`)
  ]
  const sessionLine = sessionBytes === null
    ? 'Redis bytes per session: not measured (sessions in the database).'
    : `Redis bytes per session (MEMORY USAGE of the session hash + its share of the user's index, ${sessionBytes.sessions} sampled sessions of the ${large} store): ` +
      `**${sessionBytes.meanBytes.toFixed(0)} B** (hash ${sessionBytes.meanHashBytes.toFixed(0)} B + index share ${sessionBytes.meanIndexShareBytes.toFixed(0)} B); ` +
      `never rotated ${sessionBytes.fresh.meanBytes.toFixed(0)} B (${sessionBytes.fresh.sessions}), rotated ${sessionBytes.rotated.meanBytes.toFixed(0)} B (${sessionBytes.rotated.sessions}).`
  const markdown = [
    `## auth-api bench, ${started.toISOString()}`,
    '',
    `${options.embedded ? 'Embedded database (PGlite), sessions in it' : 'PostgreSQL + Redis'}; ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}; ` +
      `${options.rounds} interleaved round(s) of ${options.duration} s after ${options.warmup} s of warm-up, medians over rounds; ` +
      `${options.connections} connections (login/signup and raw argon2: ${options.argon2Connections}; flood: ${options.floodConnections} on /login, GET / probed at ${options.probeRate} req/s). ` +
      `Load average (1/5/15 min) at start ${load(loadStart)}, at end ${load(loadEnd)}.`,
    '',
    markdownTable(lines),
    '',
    'Ratios are medians of per-round ratios to the yardstick measured in the same round; req/s counts 2xx answers only.',
    '',
    cpuTable(runs, rows),
    '',
    'CPU per request: the measured process is the service, a yardstick, or nothing for raw argon2 (its child is not followed); Redis is the whole server; for the flood, per GET / and login answered together.',
    '',
    targetsTable(targets),
    '',
    sessionLine,
    '',
    ...memoryLines,
    '',
    `Start-up (exec of \`node dist/server.js\` to the first 200 on GET /, migrated database with ${bench.users.toLocaleString('en-US')} users): ` +
      `median ${startup.toFixed(0)} ms over ${startups.length} starts (${startups.map((t) => t.toFixed(0)).join(', ')} ms).`,
    '',
    `Seeding: ${small} users and sessions in ${(input.seedBaseMs / 1000).toFixed(1)} s, ${(options.scaleUsers - options.baseUsers).toLocaleString('en-US')} more in ${(input.seedScaleMs / 1000).toFixed(1)} s.`
  ].join('\n')

  const json = {
    date: started.toISOString(),
    host: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version, loadAverageStart: loadStart, loadAverageEnd: loadEnd },
    options: { ...options, databaseUrl: undefined, adminDatabaseUrl: undefined },
    stores: input.storesDescribe,
    tokenShape: input.tokenShape,
    table: lines,
    targets,
    runs: Object.fromEntries(runs),
    sessionBytes,
    memory: { afterBench, replays, rssWaitSeconds: options.rssWait },
    startupMs: { median: startup, all: startups },
    seeding: { baseMs: input.seedBaseMs, scaleMs: input.seedScaleMs, usersStored: bench.users }
  }
  return { markdown, json }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  process.exitCode = 1
})
