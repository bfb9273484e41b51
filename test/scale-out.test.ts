// Scale-out (API.md §1.2 notes, §6, §7, §8, §10): two instances of the service on one
// PostgreSQL and one session store behave as one service.
// - Two real processes, started at the same moment with the same settings on an empty
//   database (so their migrations race under the advisory lock, §1.1): a token pair from A
//   works on B (/me, refresh), a logout on A ends the session on B at once, and the refresh
//   race split over both processes.
// - Then, under 'PostgreSQL + Redis' and 'PostgreSQL, sessions in the database', two in-process
//   apps on this file's database and key prefix, each listening on its own port: the same
//   checks, plus the shared rate limits (the per-IP limit and the failed-login throttle count
//   requests made to either instance).
// - The embedded database is single-process by design (§1.1): a second app on the same
//   DATA_DIR is refused, naming the lock file.
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { buildTestApp, JWT_SECRET, KEY_PREFIX, PASSWORD, REDIS_URL, STORE_MODES, testDatabaseUrl, uniqueEmail } from './fixtures/app.ts'
import { decodeJwt } from './fixtures/jwt.ts'
import { freePort } from './fixtures/ports.ts'
import { start, waitForHttp } from './fixtures/process.ts'

interface Answer {
  status: number
  body: Record<string, unknown> | null
  headers: Headers | null
  error?: string
}

async function call (url: string, init: RequestInit = {}): Promise<Answer> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(20_000) })
    const text = await res.text()
    return { status: res.status, body: text === '' ? null : JSON.parse(text), headers: res.headers }
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause
    return { status: 0, body: null, headers: null, error: cause?.code ?? String(error) }
  }
}

const post = (body: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body)
})
const bearer = (token: unknown, headers: Record<string, string> = {}): RequestInit =>
  ({ headers: { authorization: `Bearer ${String(token)}`, ...headers } })

const describe = (a: Answer) => `${a.status}${typeof a.body?.code === 'string' ? ` ${a.body.code}` : ''}${a.error ? ` ${a.error}` : ''}`

function tally (answers: Answer[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const a of answers) counts[describe(a)] = (counts[describe(a)] ?? 0) + 1
  return counts
}

/** An instance's `/api/v1/auth` base URL. */
function authBase (app: FastifyInstance): string {
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('not listening on TCP')
  return `http://127.0.0.1:${address.port}/api/v1/auth`
}

async function listening (t: Test, overrides: Record<string, string>, logger?: FastifyBaseLogger): Promise<string> {
  const app = await buildTestApp(t, overrides, logger ? { logger } : {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  return authBase(app)
}

interface Tokens { email: string, userId: string, access: string, refresh: string }

async function signupAndLoginAt (signupBase: string, loginBase = signupBase, headers: Record<string, string> = {}): Promise<Tokens> {
  const email = uniqueEmail()
  const created = await call(`${signupBase}/signup`, post({ email, password: PASSWORD, name: 'Ada Lovelace' }, headers))
  if (created.status !== 201) throw new Error(`signup: ${describe(created)}`)
  const logged = await call(`${loginBase}/login`, post({ email, password: PASSWORD, return_refresh_in_body: true }, headers))
  if (logged.status !== 200) throw new Error(`login: ${describe(logged)}`)
  return {
    email,
    userId: String(created.body?.id),
    access: String(logged.body?.access_token),
    refresh: String(logged.body?.refresh_token)
  }
}

/** A token pair from A works on B, both ways, and a logout on A ends the session on B at once. */
async function tokensAcrossInstances (t: Test, a: string, b: string): Promise<void> {
  await t.test('a token pair from A works on B; a logout on A is seen on B at once', async (t) => {
    const user = await signupAndLoginAt(a)
    const meOnB = await call(`${b}/me`, bearer(user.access))
    t.equal(meOnB.status, 200, 'A\'s access token works at /me on B')
    t.equal(meOnB.body?.id, user.userId, 'for the same user')

    const onB = await call(`${b}/refresh`, post({ refresh_token: user.refresh }))
    t.equal(onB.status, 200, 'A\'s refresh token refreshes on B')
    const successor = String(onB.body?.refresh_token)
    t.not(successor, user.refresh, 'a new successor')
    t.equal(decodeJwt(String(onB.body?.access_token)).payload.sid, decodeJwt(user.access).payload.sid, 'for the same session')
    t.equal((await call(`${a}/me`, bearer(onB.body?.access_token))).status, 200, 'B\'s new access token works on A')
    const onA = await call(`${a}/refresh`, post({ refresh_token: successor }))
    t.equal(onA.status, 200, 'B\'s successor refreshes on A')
    const latest = String(onA.body?.refresh_token)
    const latestAccess = String(onA.body?.access_token)
    t.equal((await call(`${b}/me`, bearer(latestAccess))).status, 200, 'the newest access token works on B')

    // Another session of the same user, which the logout must leave alone.
    const other = await call(`${b}/login`, post({ email: user.email, password: PASSWORD, return_refresh_in_body: true }))
    t.equal(other.status, 200)

    t.equal((await call(`${a}/logout`, post({ refresh_token: latest }))).status, 204, 'logout on A: 204')
    const after = await call(`${b}/me`, bearer(latestAccess))
    t.equal(after.status, 401, 'at once, the access token is 401 on B')
    t.equal(after.body?.code, 'invalid_token')
    t.equal((await call(`${b}/me`, bearer(user.access))).status, 401, 'so is the session\'s first access token')
    for (const [name, token] of [['newest', latest], ['earlier', successor], ['first', user.refresh]]) {
      const res = await call(`${b}/refresh`, post({ refresh_token: token }))
      t.equal(res.status, 401, `the ${name} refresh token is 401 on B (${describe(res)})`)
    }
    t.equal((await call(`${a}/me`, bearer(other.body?.access_token))).status, 200, 'the user\'s other session still works on A')
    t.equal((await call(`${a}/refresh`, post({ refresh_token: other.body?.refresh_token }))).status, 200, 'and refreshes on A')
  })
}

/** 20 concurrent refreshes of one token, 10 to each instance. */
async function refreshRaceAcrossInstances (t: Test, a: string, b: string): Promise<void> {
  await t.test('20 concurrent refreshes of one token, 10 on A and 10 on B: one successor', async (t) => {
    const user = await signupAndLoginAt(a)
    const token = user.refresh
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) =>
      call(`${i % 2 === 0 ? a : b}/refresh`, post({ refresh_token: token }))))
    const counts = tally(answers)
    const unexpected = Object.keys(counts).filter((k) => k !== '200' && k !== '409 refresh_in_progress')
    t.same(unexpected, [], `only 200 and 409 refresh_in_progress, never 401 or 5xx (${JSON.stringify(counts)})`)
    const ok = answers.filter((x) => x.status === 200)
    t.ok(ok.length >= 1, `at least one 200 (${ok.length})`)
    const successors = new Set(ok.map((x) => String(x.body?.refresh_token)))
    t.equal(successors.size, 1, 'every 200 carries the identical successor, whichever instance answered')
    const [successor = ''] = [...successors]
    t.match(successor, /^[A-Za-z0-9_-]{86}$/)
    t.not(successor, token)
    for (const [i, x] of answers.entries()) {
      if (x.status !== 200) continue
      const me = await call(`${i % 2 === 0 ? b : a}/me`, bearer(x.body?.access_token))
      if (me.status !== 200) t.fail(`an access token from the race → ${describe(me)} on the other instance`)
    }

    // Exactly one live successor: the presented token is now previous (within grace it hands
    // out that same successor again), and the successor is current (it rotates).
    const again = await call(`${b}/refresh`, post({ refresh_token: token }))
    t.equal(again.status, 200, 'the raced token again, on B, within grace: 200')
    t.equal(again.body?.refresh_token, successor, 'with the same successor')
    const next = await call(`${a}/refresh`, post({ refresh_token: successor }))
    t.equal(next.status, 200, 'the successor rotates on A')
    const second = String(next.body?.refresh_token)
    t.not(second, successor)
    const stale = await call(`${b}/refresh`, post({ refresh_token: token }))
    t.equal(describe(stale), '409 refresh_in_progress', 'the raced token after its successor rotated: 409 on B')
    const duplicate = await call(`${b}/refresh`, post({ refresh_token: successor }))
    t.equal(duplicate.status, 200, 'the successor again on B, within grace: 200')
    t.equal(duplicate.body?.refresh_token, second, 'with the one successor A issued')
    t.equal((await call(`${a}/refresh`, post({ refresh_token: second }))).status, 200, 'the newest token refreshes')
  })
}

// Rate limits: the in-process apps trust the test as a proxy, so that every scenario gets client
// addresses of its own (X-Forwarded-For) while the counters stay shared by both instances.
let addressSeq = 0
const nextAddress = () => { addressSeq++; return `10.99.${(addressSeq >> 8) & 255}.${addressSeq & 255}` }

// The limiters fail open when their store does not answer in time (API.md §8); on a loaded
// machine that can leave a request uncounted. The apps log through `logger`, which notes such
// trouble; a scenario that met it is run again with fresh addresses.
let storeTrouble = 0
const logger = pino({ level: 'warn' }, { write: (line: string) => { if (/unavailable/i.test(line)) storeTrouble++ } }) as unknown as FastifyBaseLogger

async function untroubled<T> (scenario: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const before = storeTrouble
    const result = await scenario()
    if (storeTrouble === before || attempt === 3) return result
  }
}

const retryAfter = (a: Answer) => Number(a.headers?.get('retry-after'))

async function sharedRateLimits (t: Test, a: string, b: string): Promise<void> {
  await t.test('RATE_LIMIT_IP_PER_MINUTE=4: requests alternating between A and B, the 5th is 429', async (t) => {
    const answers = await untroubled(async () => {
      const ip = { 'x-forwarded-for': nextAddress() }
      const out: Answer[] = []
      // GET /me without a token: a 401 that needs no store but the counter.
      for (let i = 0; i < 6; i++) out.push(await call(`${i % 2 === 0 ? a : b}/me`, { headers: ip }))
      return out
    })
    t.same(answers.slice(0, 4).map((x) => x.status), [401, 401, 401, 401], 'the first 4 (A, B, A, B) pass the limit')
    t.equal(answers[4]?.status, 429, 'the 5th (on A) is 429')
    t.equal(answers[4]?.body?.code, 'too_many_requests')
    t.equal(answers[5]?.status, 429, 'and so is the 6th, on B')
    for (const x of answers.slice(4)) t.ok(retryAfter(x) >= 1 && retryAfter(x) <= 60, `Retry-After ${retryAfter(x)} within the minute`)
  })

  await t.test('LOGIN_FAIL_MAX=2: one failure on A and one on B throttle the login on both', async (t) => {
    const answers = await untroubled(async () => {
      // The account is made from another address, so the 4 requests below stay within the
      // per-IP limit of 4: their 429s are the failed-login throttle's (a 900 s window).
      const user = await signupAndLoginAt(a, b, { 'x-forwarded-for': nextAddress() })
      const ip = { 'x-forwarded-for': nextAddress() }
      return [
        await call(`${a}/login`, post({ email: user.email, password: 'wrong password 1' }, ip)),
        await call(`${b}/login`, post({ email: user.email, password: 'wrong password 2' }, ip)),
        await call(`${a}/login`, post({ email: user.email, password: PASSWORD }, ip)),
        await call(`${b}/login`, post({ email: user.email, password: PASSWORD }, ip))
      ]
    })
    t.same(answers.slice(0, 2).map(describe), ['401 invalid_credentials', '401 invalid_credentials'], 'a failure on A, then one on B')
    t.same(answers.slice(2).map(describe), ['429 too_many_requests', '429 too_many_requests'],
      'then the correct password is throttled on A and on B')
    for (const x of answers.slice(2)) {
      t.ok(retryAfter(x) > 60 && retryAfter(x) <= 900, `Retry-After ${retryAfter(x)}: the failed-login window, not the per-IP minute`)
      t.notOk(x.body !== null && 'access_token' in x.body, 'no access token')
    }
  })
}

// The process check and the embedded one share nothing: they run side by side.
t.jobs = 2

t.test('two processes with the same settings, on one PostgreSQL and one Redis', { buffered: true }, async (t) => {
  const env = {
    DATABASE_URL: await testDatabaseUrl(),
    REDIS_URL,
    REDIS_KEY_PREFIX: KEY_PREFIX,
    JWT_SECRET,
    LOG_LEVEL: 'warn',
    RATE_LIMIT_IP_PER_MINUTE: '0',
    REFRESH_GRACE_SECONDS: '60'
  }
  // Launched together on an empty database: both migrate, under the advisory lock.
  const services = [start(env, await freePort()), start(env, await freePort())]
  await Promise.all(services.map((s) => waitForHttp(s)))
  const [a, b] = services.map((s) => `http://127.0.0.1:${s.port}/api/v1/auth`) as [string, string]
  for (const s of services) t.equal((await call(`http://127.0.0.1:${s.port}/health/ready`)).status, 200, `ready on port ${s.port}`)

  await tokensAcrossInstances(t, a, b)
  await refreshRaceAcrossInstances(t, a, b)

  for (const s of services) s.child.kill('SIGTERM')
  const exits = await Promise.all(services.map((s) => s.exited))
  t.same(exits.map((e) => e.code), [0, 0], 'both exit 0 on SIGTERM')
})

t.test('embedded database: a second app on the same DATA_DIR is refused, naming auth-api.lock', { buffered: true }, async (t) => {
  const settings = STORE_MODES['embedded database']!()
  const first = await buildTestApp(t, settings)
  await t.rejects(buildTestApp(t, settings), /auth-api\.lock/, 'the second app on the DATA_DIR is refused')
  const email = uniqueEmail()
  const signed = await first.inject({ method: 'POST', url: '/api/v1/auth/signup', payload: { email, password: PASSWORD, name: 'Ada Lovelace' } })
  t.equal(signed.statusCode, 201, 'the first app still serves')
  const logged = await first.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email, password: PASSWORD, return_refresh_in_body: true } })
  t.equal(logged.statusCode, 200)
  t.equal((await first.inject({ method: 'POST', url: '/api/v1/auth/refresh', payload: { refresh_token: logged.json().refresh_token } })).statusCode, 200)
})

const MODES = ['PostgreSQL + Redis', 'PostgreSQL, sessions in the database'] as const

for (const mode of MODES) {
  t.test(`two in-process instances: ${mode}`, async (t) => {
    const settings = STORE_MODES[mode]!()
    const grace = { ...settings, REFRESH_GRACE_SECONDS: '60' }
    const limits = { ...settings, RATE_LIMIT_IP_PER_MINUTE: '4', LOGIN_FAIL_MAX: '2', TRUST_PROXY: '127.0.0.1' }
    // Two instances for tokens and races, two with the small limits; built side by side.
    const [a, b, limitedA, limitedB] = await Promise.all([
      listening(t, grace), listening(t, grace), listening(t, limits, logger), listening(t, limits, logger)
    ])
    await tokensAcrossInstances(t, a, b)
    await refreshRaceAcrossInstances(t, a, b)
    await sharedRateLimits(t, limitedA, limitedB)
  })
}
