// Rate limiting (API.md §8, §2.1 order of checks, §2.2 problem documents, §11.1 fail-open):
// the per-client-IP limit and the failed-login throttle, under Redis and under the database
// session store, plus a Redis outage on a throwaway redis-server of this file's own.
//
// Window expiry is not tested by waiting: the per-IP window is one minute and
// LOGIN_FAIL_WINDOW_SECONDS is at least 60, so a test would have to sleep a minute or more.
// Instead every 429 is checked for a Retry-After within the window (1..60 s for the per-IP
// limit, 1..LOGIN_FAIL_WINDOW_SECONDS for the throttle), close to its full length right after
// the window opened, and never growing while the client keeps knocking (fixed windows).
//
// Every test uses client addresses of its own (`remoteAddress` in app.inject) and emails of
// its own, because the counters of one store mode are shared by all apps of this file. The two
// store modes and the outage run side by side (buffered subtests) to keep the file short.
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyBaseLogger, FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { buildApp } from '../../app.ts'
import { buildTestApp, PASSWORD, STORE_MODES, testConfig, uniqueEmail } from '../fixtures/app.ts'
import { ThrowawayRedis } from '../faults/throwaway.ts'
import { assertNoStore, assertProblem, assertSecurityHeaders, header } from '../http/helpers.ts'

const AUTH = '/api/v1/auth'
const NEW_PASSWORD = 'velvet harbour quantum lantern 73'
// The two store set-ups this file runs under; the embedded database holds the same tables as
// the PostgreSQL one (the database store), so it adds start-up time and no new code path.
const MODES = ['PostgreSQL + Redis', 'PostgreSQL, sessions in the database'] as const

// Fresh client addresses: IPv4 from 10/8 and one IPv6 /64 (of 2001:db8::/32) per call.
let addressSeq = 0
const nextIPv4 = () => { addressSeq++; return `10.${(addressSeq >> 16) & 255}.${(addressSeq >> 8) & 255}.${addressSeq & 255}` }
const nextPrefix64 = () => { addressSeq++; return `2001:db8:${(addressSeq >> 16).toString(16)}:${(addressSeq & 0xffff).toString(16)}` }

type Res = LightMyRequestResponse

function send (app: FastifyInstance, remoteAddress: string, options: InjectOptions): Promise<Res> {
  return app.inject({ ...options, remoteAddress })
}

/** A request that answers without hashing or store work: GET /me without a token (401). */
const cheap = (app: FastifyInstance, ip: string, headers: Record<string, string> = {}) =>
  send(app, ip, { method: 'GET', url: `${AUTH}/me`, headers })

function loginAs (app: FastifyInstance, ip: string, email: string, password: string, extra: Record<string, unknown> = {}) {
  return send(app, ip, { method: 'POST', url: `${AUTH}/login`, payload: { email, password, ...extra } })
}

function changePassword (app: FastifyInstance, ip: string, accessToken: string, currentPassword: string) {
  return send(app, ip, {
    method: 'POST',
    url: `${AUTH}/password`,
    headers: { authorization: `Bearer ${accessToken}` },
    payload: { current_password: currentPassword, new_password: NEW_PASSWORD }
  })
}

/** Retry-After as whole seconds (NaN when absent or not a plain integer). */
function retryAfter (res: Res): number {
  const value = header(res.headers, 'retry-after')
  return value !== undefined && /^[0-9]+$/.test(value) ? Number(value) : NaN
}

/** A 429 of API.md §8: problem document, code, Retry-After within [min, max], only defined headers. */
function assertTooMany (t: Test, res: Res, max: number, min = 1, label = '429'): number {
  t.equal(res.statusCode, 429, `${label}: status 429`, { body: res.body })
  if (res.statusCode !== 429) return NaN
  const body = assertProblem(t, res, 429, 'too_many_requests')
  t.equal(body.status, 429, `${label}: status member is the number 429`)
  const seconds = retryAfter(res)
  t.ok(Number.isInteger(seconds), `${label}: Retry-After is whole seconds (got ${header(res.headers, 'retry-after')})`)
  t.ok(seconds >= min && seconds <= max, `${label}: Retry-After ${seconds} within ${min}..${max}`)
  const rateLimitHeaders = Object.keys(res.headers).filter((h) => /^x-ratelimit|^ratelimit/i.test(h))
  t.same(rateLimitHeaders, [], `${label}: no X-RateLimit-* / RateLimit-* headers`)
  t.notOk('access_token' in body, `${label}: no access_token`)
  assertSecurityHeaders(t, res, label)
  return seconds
}

function assertNot429 (t: Test, res: Res, label: string, expected?: number): void {
  if (expected === undefined) t.not(res.statusCode, 429, `${label}: not rate limited (${res.statusCode})`, { body: res.body })
  else t.equal(res.statusCode, expected, `${label}: ${expected}`, { body: res.body })
}

// A limiter fails open when its store does not answer in time (API.md §8): on a loaded machine
// a counter command can time out, and the requests of that moment go uncounted. Every app here
// logs through `logger`, which notes such trouble; a scenario that met it is run again with
// fresh addresses and emails, and only the assertions of its last run are reported.
const ATTEMPTS = 3
let storeTrouble = 0
const logger = pino({ level: 'warn' }, { write: (line: string) => { if (/unavailable/i.test(line)) storeTrouble++ } }) as unknown as FastifyBaseLogger
const build = (t: Test, overrides: Record<string, string>) => buildTestApp(t, overrides, { logger })

/** A stand-in Test that records assertions, to report them later (teardowns go through). */
function recorder (t: Test): { test: Test, replay: () => void } {
  const calls: Array<[string, unknown[]]> = []
  const test = new Proxy({}, {
    get (_target, name) {
      if (name === 'teardown') return t.teardown.bind(t)
      if (typeof name !== 'string' || name === 'then') return undefined
      return (...args: unknown[]) => { calls.push([name, args]); return true }
    }
  }) as Test
  const replay = () => {
    const real = t as unknown as Record<string, (...args: unknown[]) => unknown>
    for (const [name, args] of calls) real[name]?.call(t, ...args)
  }
  return { test, replay }
}

/** A subtest whose outcome depends on counting: run again when the store had trouble meanwhile. */
async function counting (t: Test, name: string, scenario: (t: Test) => Promise<void>): Promise<void> {
  await t.test(name, async (t) => {
    for (let attempt = 1; ; attempt++) {
      const before = storeTrouble
      const { test, replay } = recorder(t)
      try {
        await scenario(test)
      } finally {
        if (storeTrouble === before || attempt === ATTEMPTS) replay()
      }
      if (storeTrouble === before) return
      if (attempt === ATTEMPTS) {
        t.comment(`the session store had trouble during all ${ATTEMPTS} runs; the last one is reported`)
        return
      }
      t.comment(`run ${attempt}: the session store timed out meanwhile, so the limiters failed open; running again`)
    }
  })
}

t.jobs = 3

// The per-IP limit of the apps that have one.
const LIMIT = 5

for (const mode of MODES) {
  t.test(mode, { buffered: true }, async (t) => {
    const settings = STORE_MODES[mode]
    if (!settings) throw new Error(`no store mode ${mode}`)
    // Four instances on one store, built side by side: two with the per-IP limit (the second
    // also trusting X-Forwarded-For), and two without it for the failed-login throttle, with
    // the default settings and with LOGIN_FAIL_MAX=2 and a 60 s window.
    const [app, proxied, defaults, small] = await Promise.all([
      build(t, { ...settings(), RATE_LIMIT_IP_PER_MINUTE: String(LIMIT) }),
      build(t, { ...settings(), RATE_LIMIT_IP_PER_MINUTE: String(LIMIT), TRUST_PROXY: 'true' }),
      build(t, { ...settings(), RATE_LIMIT_IP_PER_MINUTE: '0' }),
      build(t, { ...settings(), RATE_LIMIT_IP_PER_MINUTE: '0', LOGIN_FAIL_MAX: '2', LOGIN_FAIL_WINDOW_SECONDS: '60' })
    ])
    await t.test('per-client-IP limit (RATE_LIMIT_IP_PER_MINUTE)', (t) => perIpLimit(t, mode, app, proxied))
    await t.test('failed-login throttle, default settings (10 failures, 900 s)', (t) => throttleDefaults(t, defaults))
    await t.test('failed-login throttle, LOGIN_FAIL_MAX=2 and LOGIN_FAIL_WINDOW_SECONDS=60', (t) => throttleTwoKeys(t, small))
  })
}

// request.ip does not depend on the store: a list of trusted proxies is tried under one mode.
t.test('TRUST_PROXY as a list of CIDRs', { buffered: true }, async (t) => {
  const cidr = await build(t, { RATE_LIMIT_IP_PER_MINUTE: String(LIMIT), TRUST_PROXY: '10.0.0.0/8' })
  await counting(t, 'X-Forwarded-For counts from the listed proxies only', async (t) => {
    const behind = `198.51.100.${addressSeq++ & 0xff}`
    for (let i = 0; i < LIMIT; i++) assertNot429(t, await cheap(cidr, nextIPv4(), { 'x-forwarded-for': behind }), `request ${i + 1} via a trusted proxy`, 401)
    assertTooMany(t, await cheap(cidr, nextIPv4(), { 'x-forwarded-for': behind }), 60, 1, 'the client behind the trusted proxies is limited')
    assertNot429(t, await cheap(cidr, `192.0.2.${addressSeq++ & 0xff}`, { 'x-forwarded-for': behind }), 'an untrusted sender naming that client is counted as itself', 401)
  })
})

/** Signs a user up from an address of its own (not counted against any test's address). */
async function signup (app: FastifyInstance): Promise<{ email: string }> {
  const email = uniqueEmail()
  const res = await send(app, nextIPv4(), { method: 'POST', url: `${AUTH}/signup`, payload: { email, password: PASSWORD, name: 'Ada Lovelace' } })
  if (res.statusCode !== 201) throw new Error(`signup failed: ${res.statusCode} ${res.body}`)
  return { email }
}

async function perIpLimit (t: Test, mode: string, app: FastifyInstance, proxied: FastifyInstance): Promise<void> {
  await counting(t, 'the request after the limit is 429 too_many_requests with Retry-After 1..60', async (t) => {
    const ip = nextIPv4()
    for (let i = 1; i <= LIMIT; i++) assertNot429(t, await cheap(app, ip), `request ${i}`, 401)
    const limited = await cheap(app, ip, { origin: 'https://app.example' })
    const first = assertTooMany(t, limited, 60, 40, `request ${LIMIT + 1}`)
    assertNoStore(t, limited, 'the 429 under /api/v1/auth')
    // Browser clients can read Retry-After (API.md §2.5: CORS headers on error responses too).
    t.equal(header(limited.headers, 'access-control-allow-origin'), '*', 'the 429 carries CORS headers')
    t.match(String(header(limited.headers, 'access-control-expose-headers')), /Retry-After/, 'Retry-After is exposed to browsers')
    // Fixed window: knocking on does not extend it.
    for (let i = 0; i < 3; i++) {
      const seconds = assertTooMany(t, await cheap(app, ip), 60, 1, `request ${LIMIT + 2 + i}`)
      t.ok(seconds <= first, `Retry-After does not grow (${seconds} <= ${first})`)
    }
  })

  await counting(t, 'every route under /api/v1/auth counts, whatever its outcome; the limit comes before the body is read', async (t) => {
    const email = uniqueEmail()
    let token = ''
    const auth = () => ({ authorization: `Bearer ${token}` })
    // One request to each route, with many outcomes.
    const requests: Array<[string, number, () => InjectOptions]> = [
      ['signup 201', 201, () => ({ method: 'POST', url: `${AUTH}/signup`, payload: { email, password: PASSWORD, name: 'Ada Lovelace' } })],
      ['signup 400', 400, () => ({ method: 'POST', url: `${AUTH}/signup`, payload: { email, password: PASSWORD, name: 'Ada', role: 'admin' } })],
      ['signup 415', 415, () => ({ method: 'POST', url: `${AUTH}/signup`, headers: { 'content-type': 'text/plain' }, payload: 'x' })],
      ['login 401', 401, () => ({ method: 'POST', url: `${AUTH}/login`, payload: { email, password: 'wrong password' } })],
      ['login 200', 200, () => ({ method: 'POST', url: `${AUTH}/login`, payload: { email, password: PASSWORD } })],
      ['me 200', 200, () => ({ method: 'GET', url: `${AUTH}/me`, headers: auth() })],
      ['me 401', 401, () => ({ method: 'GET', url: `${AUTH}/me` })],
      ['refresh 401', 401, () => ({ method: 'POST', url: `${AUTH}/refresh` })],
      ['logout 204', 204, () => ({ method: 'POST', url: `${AUTH}/logout` })],
      ['sessions 200', 200, () => ({ method: 'GET', url: `${AUTH}/sessions`, headers: auth() })],
      ['DELETE sessions/{id} 404', 404, () => ({ method: 'DELETE', url: `${AUTH}/sessions/${randomUUID()}`, headers: auth() })],
      ['password 401', 401, () => ({ method: 'POST', url: `${AUTH}/password`, payload: { current_password: 'x', new_password: NEW_PASSWORD } })],
      ['logout-all 413', 413, () => ({ method: 'POST', url: `${AUTH}/logout-all`, headers: { ...auth(), 'content-type': 'application/json' }, payload: JSON.stringify({ x: 'a'.repeat(1_048_577) }) })],
      ['logout-all 204', 204, () => ({ method: 'POST', url: `${AUTH}/logout-all`, headers: auth() })],
      ['malformed JSON 400', 400, () => ({ method: 'POST', url: `${AUTH}/login`, headers: { 'content-type': 'application/json' }, payload: '{"email":' })]
    ]
    // In groups of LIMIT from one address each: had any request of a group not been counted,
    // the request after that group would pass.
    let ip = ''
    for (let start = 0; start < requests.length; start += LIMIT) {
      ip = nextIPv4()
      const group = requests.slice(start, start + LIMIT)
      for (const [label, status, options] of group) {
        const res = await send(app, ip, options())
        assertNot429(t, res, label, status)
        if (label === 'login 200') token = String(res.json().access_token)
      }
      for (let i = group.length; i < LIMIT; i++) assertNot429(t, await cheap(app, ip), `filler request ${i + 1}`, 401)
      assertTooMany(t, await cheap(app, ip), 60, 1, `the request after ${group.map(([label]) => label).join(', ')}`)
    }
    // Limited: every route answers 429, before authentication and before the body is looked
    // at (a body over 1 MiB or a text/plain one is 429, not 413/415; API.md §2.1).
    const after: Array<[string, InjectOptions]> = [
      ['signup', { method: 'POST', url: `${AUTH}/signup`, payload: { email: uniqueEmail(), password: PASSWORD, name: 'Ada Lovelace' } }],
      ['login with the right password', { method: 'POST', url: `${AUTH}/login`, payload: { email, password: PASSWORD } }],
      ['signup over 1 MiB', { method: 'POST', url: `${AUTH}/signup`, headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ name: 'a'.repeat(1_048_577) }) }],
      ['signup as text/plain', { method: 'POST', url: `${AUTH}/signup`, headers: { 'content-type': 'text/plain' }, payload: 'x' }],
      ['malformed JSON', { method: 'POST', url: `${AUTH}/login`, headers: { 'content-type': 'application/json' }, payload: '{"email":' }],
      ['me with a valid token', { method: 'GET', url: `${AUTH}/me`, headers: auth() }],
      ['refresh', { method: 'POST', url: `${AUTH}/refresh` }],
      ['logout', { method: 'POST', url: `${AUTH}/logout` }],
      ['sessions', { method: 'GET', url: `${AUTH}/sessions`, headers: auth() }],
      ['DELETE sessions/{id}', { method: 'DELETE', url: `${AUTH}/sessions/${randomUUID()}`, headers: auth() }],
      ['password', { method: 'POST', url: `${AUTH}/password`, headers: auth(), payload: { current_password: PASSWORD, new_password: NEW_PASSWORD } }],
      ['logout-all', { method: 'POST', url: `${AUTH}/logout-all`, headers: auth() }]
    ]
    for (const [label, options] of after) assertTooMany(t, await send(app, ip, options), 60, 1, `${label} beyond the limit`)
  })

  // API.md §5.11: any id of up to 1,024 characters that is not a live session of the caller is
  // 404 session_not_found, never 400 (and never 500). Not a rate-limit rule, but met here.
  await t.test('DELETE /sessions/{id} with an id that is not a UUID: 404', async (t) => {
    const ip = nextIPv4()
    const email = uniqueEmail()
    await send(app, ip, { method: 'POST', url: `${AUTH}/signup`, payload: { email, password: PASSWORD, name: 'Ada Lovelace' } })
    const token = String((await loginAs(app, ip, email, PASSWORD)).json().access_token)
    for (const id of ['nope', 'x'.repeat(1024)]) {
      const res = await send(app, ip, { method: 'DELETE', url: `${AUTH}/sessions/${id}`, headers: { authorization: `Bearer ${token}` } })
      t.equal(res.statusCode, 404, `DELETE /sessions/${id.slice(0, 8)}… → 404`, { body: res.body })
      t.equal(res.json().code, 'session_not_found', 'session_not_found')
    }
  })

  await counting(t, 'another client address has its own counter', async (t) => {
    const a = nextIPv4()
    const b = nextIPv4()
    for (let i = 0; i <= LIMIT; i++) await cheap(app, a)
    assertTooMany(t, await cheap(app, a), 60, 1, 'address A is limited')
    for (let i = 1; i <= LIMIT; i++) assertNot429(t, await cheap(app, b), `address B request ${i}`, 401)
    assertTooMany(t, await cheap(app, b), 60, 1, `address B request ${LIMIT + 1}`)
    assertTooMany(t, await cheap(app, a), 60, 1, 'address A is still limited')
  })

  await counting(t, 'IPv6 clients are counted by /64', async (t) => {
    const p = nextPrefix64()
    const other = nextPrefix64()
    // Different addresses of one /64, in different spellings (case, leading zeros).
    const sameNet = [`${p}::1`, `${p}:ffff:ffff:ffff:ffff`, `${p}:1:2:3:4`, `${p.toUpperCase()}::ABCD`, `${p.replace('2001:db8', '2001:0db8')}::5`]
    for (let i = 0; i < LIMIT; i++) {
      const ip = sameNet[i % sameNet.length] ?? ''
      assertNot429(t, await cheap(app, ip), `${ip} (request ${i + 1})`, 401)
    }
    assertTooMany(t, await cheap(app, `${p}::9`), 60, 1, `${p}::9 shares the /64 counter`)
    assertNot429(t, await cheap(app, `${other}::1`), `${other}::1, another /64, is not limited`, 401)
    assertNot429(t, await cheap(app, `${other}:ffff::2`), `${other}:ffff::2, same other /64`, 401)
  })

  await counting(t, 'an IPv4-mapped IPv6 address counts as its IPv4 address', async (t) => {
    const ip = nextIPv4()
    for (let i = 0; i < LIMIT; i++) assertNot429(t, await cheap(app, i % 2 === 0 ? ip : `::ffff:${ip}`), `request ${i + 1}`, 401)
    assertTooMany(t, await cheap(app, `::ffff:${ip}`), 60, 1, 'the mapped form is limited with the plain one')
  })

  // Canonical (RFC 5952) addresses whose /64 prefix itself holds the compressed zeros:
  // H:0:0:5:1:2:3:4 is written `H::5:1:2:3:4`, which is how Node reports such a socket address.
  await counting(t, 'IPv6 /64 of an address whose `::` lies inside the prefix', async (t) => {
    addressSeq++
    const h = (0x2400 + (addressSeq & 0xff)).toString(16)
    for (let i = 0; i < LIMIT; i++) assertNot429(t, await cheap(app, `${h}::5:1:2:3:${i + 1}`), `${h}::5:1:2:3:${i + 1}`, 401)
    // Same /64 (h:0:0:5), the other canonical spelling: must be limited.
    const same = await cheap(app, `${h}:0:0:5::9`)
    t.equal(same.statusCode, 429, `${h}:0:0:5::9 is in the /64 of ${h}::5:1:2:3:1, so it is limited`)
    // Another /64 (h:0:0:6): must not share that counter.
    const other = await cheap(app, `${h}::6:1:2:3:4`)
    t.equal(other.statusCode, 401, `${h}::6:1:2:3:4 is another /64, so it is not limited`)
  })

  await counting(t, 'GET /, /health/ready, jwks, unknown routes and preflights are never limited or counted', async (t) => {
    const ip = nextIPv4()
    const free: Array<[string, InjectOptions, number]> = [
      ['GET /', { method: 'GET', url: '/' }, 200],
      ['GET /health/ready', { method: 'GET', url: '/health/ready' }, 200],
      ['GET /.well-known/jwks.json', { method: 'GET', url: '/.well-known/jwks.json' }, 200],
      ['GET /api/v1/auth/unknown', { method: 'GET', url: `${AUTH}/unknown` }, 404],
      ['POST /api/v1/auth/login/extra', { method: 'POST', url: `${AUTH}/login/extra`, payload: {} }, 404],
      ['GET /nowhere', { method: 'GET', url: '/nowhere' }, 404],
      ['OPTIONS /api/v1/auth/login (preflight)', { method: 'OPTIONS', url: `${AUTH}/login`, headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } }, 204],
      ['OPTIONS /api/v1/auth/sessions/x (preflight)', { method: 'OPTIONS', url: `${AUTH}/sessions/x`, headers: { origin: 'https://app.example', 'access-control-request-method': 'DELETE' } }, 204],
      ['OPTIONS /api/v1/auth/login (not a preflight: 404)', { method: 'OPTIONS', url: `${AUTH}/login` }, 404]
    ]
    for (let round = 0; round < LIMIT + 2; round++) {
      for (const [label, options, status] of free) assertNot429(t, await send(app, ip, options), `${label} round ${round + 1}`, status)
    }
    // None of them counted: the address still has its whole allowance.
    for (let i = 1; i <= LIMIT; i++) assertNot429(t, await cheap(app, ip), `auth request ${i} after them`, 401)
    assertTooMany(t, await cheap(app, ip), 60, 1, `auth request ${LIMIT + 1}`)
    // And while the address is limited, they still answer.
    for (const [label, options, status] of free) assertNot429(t, await send(app, ip, options), `${label} while limited`, status)
  })

  await counting(t, 'X-Forwarded-For is ignored without TRUST_PROXY', async (t) => {
    const proxy = nextIPv4()
    for (let i = 0; i < LIMIT; i++) assertNot429(t, await cheap(app, proxy, { 'x-forwarded-for': nextIPv4() }), `request ${i + 1} with a new X-Forwarded-For`, 401)
    assertTooMany(t, await cheap(app, proxy, { 'x-forwarded-for': nextIPv4() }), 60, 1, 'a new forwarded address does not escape the limit')
  })

  await counting(t, 'X-Forwarded-For counts with TRUST_PROXY=true', async (t) => {
    const [proxyA, proxyB, client, another] = [nextIPv4(), nextIPv4(), nextIPv4(), nextIPv4()]
    for (let i = 0; i < LIMIT; i++) {
      assertNot429(t, await cheap(proxied, i % 2 === 0 ? proxyA : proxyB, { 'x-forwarded-for': client }), `client request ${i + 1} via proxy ${i % 2 === 0 ? 'A' : 'B'}`, 401)
    }
    assertTooMany(t, await cheap(proxied, proxyB, { 'x-forwarded-for': client }), 60, 1, 'the forwarded client is limited, whichever proxy it comes through')
    assertNot429(t, await cheap(proxied, proxyA, { 'x-forwarded-for': another }), 'another forwarded client through the same proxy is not', 401)
    // The /64 rule applies to forwarded IPv6 clients too.
    const p = nextPrefix64()
    for (let i = 0; i < LIMIT; i++) await cheap(proxied, proxyA, { 'x-forwarded-for': `${p}::${i + 1}` })
    assertTooMany(t, await cheap(proxied, proxyA, { 'x-forwarded-for': `${p}::ff` }), 60, 1, 'forwarded IPv6 clients share their /64')
  })

  await counting(t, 'instances sharing the session store share the counters', async (t) => {
    const ip = nextIPv4()
    for (let i = 0; i < LIMIT; i++) assertNot429(t, await cheap(i % 2 === 0 ? app : proxied, ip), `request ${i + 1} to instance ${i % 2 === 0 ? 1 : 2}`, 401)
    assertTooMany(t, await cheap(proxied, ip), 60, 1, 'instance 2 counts the requests of both')
    assertTooMany(t, await cheap(app, ip), 60, 1, 'instance 1 too')
  })
}

async function throttleDefaults (t: Test, app: FastifyInstance): Promise<void> {
  const MAX = 10
  const WINDOW = 900
  let knownThrottled: Res | undefined

  await counting(t, 'RATE_LIMIT_IP_PER_MINUTE=0 disables the per-IP limit', async (t) => {
    const ip = nextIPv4()
    const statuses = new Set<number>()
    for (let i = 0; i < 50; i++) statuses.add((await cheap(app, ip)).statusCode)
    t.same([...statuses], [401], '50 requests from one address, none limited')
  })

  await counting(t, 'ten wrong passwords, then the right one: 429 with Retry-After, no tokens', async (t) => {
    const { email } = await signup(app)
    const a = nextIPv4()
    for (let i = 1; i <= MAX; i++) {
      const res = await loginAs(app, a, email, `wrong password ${i}`)
      t.equal(res.statusCode, 401, `failure ${i}: 401`)
      t.equal(res.json().code, 'invalid_credentials', `failure ${i}: invalid_credentials`)
    }
    const right = await loginAs(app, a, email, PASSWORD, { return_refresh_in_body: true })
    const first = assertTooMany(t, right, WINDOW, WINDOW - 60, 'the correct password while throttled')
    t.notOk('refresh_token' in right.json(), 'no refresh_token')
    knownThrottled = right
    const wrong = await loginAs(app, a, email, 'wrong again')
    const seconds = assertTooMany(t, wrong, WINDOW, 1, 'a wrong password while throttled (429, not 401: no password oracle)')
    t.ok(seconds <= first, 'throttled attempts do not extend the window')
    // Only this address is blocked for this email (10 < 5 × 10 on the email's own counter).
    t.equal((await loginAs(app, nextIPv4(), email, PASSWORD)).statusCode, 200, 'the owner logs in from another address')
    assertTooMany(t, await loginAs(app, a, email, PASSWORD), WINDOW, 1, 'the first address stays throttled after that')
  })

  await counting(t, 'an unknown email is throttled exactly like a known one', async (t) => {
    const unknown = uniqueEmail()
    const a = nextIPv4()
    for (let i = 1; i <= MAX; i++) {
      const res = await loginAs(app, a, unknown, 'wrong password')
      t.equal(res.statusCode, 401, `failure ${i}: 401`)
      t.equal(res.json().code, 'invalid_credentials', `failure ${i}: invalid_credentials`)
    }
    const res = await loginAs(app, a, unknown, PASSWORD, { return_refresh_in_body: true })
    assertTooMany(t, res, WINDOW, WINDOW - 60, 'the unknown email after ten failures')
    if (knownThrottled === undefined) return
    const strip = (r: Res) => { const { request_id: _id, ...rest } = r.json(); return rest }
    t.same(strip(res), strip(knownThrottled), 'the same body as for a known email, apart from request_id')
    const names = (r: Res) => Object.keys(r.headers).sort()
    t.same(names(res), names(knownThrottled), 'the same header names')
  })

  await counting(t, 'a successful login clears the counters: 9 failures, success, 9 failures, success', async (t) => {
    const { email } = await signup(app)
    const a = nextIPv4()
    for (let round = 1; round <= 2; round++) {
      for (let i = 1; i < MAX; i++) t.equal((await loginAs(app, a, email, 'wrong')).statusCode, 401, `round ${round}, failure ${i}`)
      t.equal((await loginAs(app, a, email, PASSWORD)).statusCode, 200, `round ${round}: ${MAX - 1} failures, then the right password → 200`)
    }
  })
}

async function throttleTwoKeys (t: Test, app: FastifyInstance): Promise<void> {
  const MAX = 2
  const WINDOW = 60

  await counting(t, 'a stranger blocks only their own address; the owner logs in elsewhere', async (t) => {
    const { email } = await signup(app)
    const stranger = nextIPv4()
    const owner = nextIPv4()
    for (let i = 1; i <= MAX; i++) t.equal((await loginAs(app, stranger, email, 'guess')).statusCode, 401, `stranger failure ${i}`)
    assertTooMany(t, await loginAs(app, stranger, email, PASSWORD), WINDOW, WINDOW - 30, 'the stranger\'s address, even with the right password')
    t.equal((await loginAs(app, owner, email, PASSWORD)).statusCode, 200, 'the owner, from another address')
    assertTooMany(t, await loginAs(app, stranger, email, PASSWORD), WINDOW, 1, 'the stranger\'s address stays blocked')
    // The block is per email: that address may log in to another account.
    const { email: otherEmail } = await signup(app)
    t.equal((await loginAs(app, stranger, otherEmail, PASSWORD)).statusCode, 200, 'the stranger\'s address logs in to another account')
  })

  await counting(t, 'a stranger rotating addresses within one IPv6 /64 is one address', async (t) => {
    const { email } = await signup(app)
    const p = nextPrefix64()
    for (let i = 1; i <= MAX; i++) t.equal((await loginAs(app, `${p}::${i}`, email, 'guess')).statusCode, 401, `failure ${i}, from ${p}::${i}`)
    assertTooMany(t, await loginAs(app, `${p}:1:2:3:4`, email, PASSWORD), WINDOW, 1, 'another address of that /64')
    t.equal((await loginAs(app, `${nextPrefix64()}::1`, email, PASSWORD)).statusCode, 200, 'the owner, from another /64')
  })

  await counting(t, `failures from many addresses (5 × ${MAX}) block the email from a new address too`, async (t) => {
    const { email } = await signup(app)
    const owner = nextIPv4()
    const token = String((await loginAs(app, owner, email, PASSWORD)).json().access_token)
    // One below the email's limit: a new address still logs in (which clears the count).
    for (let i = 1; i < 5 * MAX; i++) t.equal((await loginAs(app, nextIPv4(), email, 'guess')).statusCode, 401, `failure ${i}, each from a new address`)
    t.equal((await loginAs(app, nextIPv4(), email, PASSWORD)).statusCode, 200, `after ${5 * MAX - 1} spread failures a new address still logs in`)
    // At the email's limit.
    for (let i = 1; i <= 5 * MAX; i++) t.equal((await loginAs(app, nextIPv4(), email, 'guess')).statusCode, 401, `failure ${i} of the second wave, each from a new address`)
    const c = nextIPv4()
    assertTooMany(t, await loginAs(app, c, email, PASSWORD), WINDOW, WINDOW - 30, `after ${5 * MAX} spread failures, the right password from a new address C`)
    assertTooMany(t, await loginAs(app, `${nextPrefix64()}::1`, email, PASSWORD), WINDOW, 1, 'and from a new IPv6 client')
    assertTooMany(t, await changePassword(app, owner, token, PASSWORD), WINDOW, 1, 'the owner\'s password change (12.1: throttled the same way)')
    const { email: otherEmail } = await signup(app)
    t.equal((await loginAs(app, c, otherEmail, PASSWORD)).statusCode, 200, 'C logs in to another account')
  })

  await counting(t, 'spellings of one email share the counters (normalised email)', async (t) => {
    const { email } = await signup(app)
    const a = nextIPv4()
    t.equal((await loginAs(app, a, `  ${email.toUpperCase()}\t`, 'wrong')).statusCode, 401, 'failure 1, upper case with blanks')
    t.equal((await loginAs(app, a, email, 'wrong')).statusCode, 401, 'failure 2, as registered')
    assertTooMany(t, await loginAs(app, a, `\n${email.toUpperCase()}`, PASSWORD), WINDOW, 1, 'throttled whatever the spelling')
  })

  await counting(t, '400, 413 and 415 never count', async (t) => {
    const { email } = await signup(app)
    const a = nextIPv4()
    for (let i = 1; i < MAX; i++) t.equal((await loginAs(app, a, email, 'wrong')).statusCode, 401, `failure ${i}`)
    // One more counted failure would throttle; none of these may count.
    const notCounted: Array<[string, number, InjectOptions]> = [
      ['unknown property', 400, { payload: { email, password: 'wrong', is_admin: true } }],
      ['password over 128 characters', 400, { payload: { email, password: 'x'.repeat(129) } }],
      ['password of the wrong type', 400, { payload: { email, password: 12345 } }],
      ['return_refresh_in_body as a string', 400, { payload: { email, password: 'wrong', return_refresh_in_body: 'true' } }],
      ['missing password', 400, { payload: { email } }],
      ['malformed JSON', 400, { headers: { 'content-type': 'application/json' }, payload: `{"email":"${email}","password":"wrong",}` }],
      ['text/plain', 415, { headers: { 'content-type': 'text/plain' }, payload: JSON.stringify({ email, password: 'wrong' }) }],
      ['form-encoded', 415, { headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `email=${encodeURIComponent(email)}&password=wrong` }],
      ['over 1 MiB', 413, { headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ email, password: 'wrong', device_name: 'd'.repeat(1_048_577) }) }]
    ]
    for (let round = 1; round <= 2; round++) {
      for (const [label, status, options] of notCounted) {
        const res = await send(app, a, { method: 'POST', url: `${AUTH}/login`, ...options })
        t.equal(res.statusCode, status, `${label} (round ${round}): ${status}`)
      }
    }
    t.equal((await loginAs(app, a, email, PASSWORD)).statusCode, 200, `after ${MAX - 1} failure(s) and ${2 * notCounted.length} rejected requests, the login works`)
  })

  await counting(t, 'a wrong current_password at POST /password counts, and is 429 when throttled', async (t) => {
    const { email } = await signup(app)
    const a = nextIPv4()
    const token = String((await loginAs(app, a, email, PASSWORD)).json().access_token)
    for (let i = 1; i <= MAX; i++) {
      const res = await changePassword(app, a, token, 'not my password')
      assertProblem(t, res, 403, 'invalid_credentials')
      t.equal(header(res.headers, 'www-authenticate'), undefined, `failure ${i}: no WWW-Authenticate`)
    }
    assertTooMany(t, await changePassword(app, a, token, PASSWORD), WINDOW, WINDOW - 30, 'the right current_password while throttled')
    assertTooMany(t, await loginAs(app, a, email, PASSWORD), WINDOW, 1, 'login from that address shares the counter')
    // Nothing was changed: the old password still works, from another address.
    t.equal((await loginAs(app, nextIPv4(), email, PASSWORD)).statusCode, 200, 'the password is unchanged; another address logs in')
  })

  await counting(t, 'login failures and password-change failures add up', async (t) => {
    const { email } = await signup(app)
    const a = nextIPv4()
    const token = String((await loginAs(app, a, email, PASSWORD)).json().access_token)
    t.equal((await loginAs(app, a, email, 'wrong')).statusCode, 401, 'one failed login')
    t.equal((await changePassword(app, a, token, 'wrong')).statusCode, 403, 'one failed password change')
    assertTooMany(t, await loginAs(app, a, email, PASSWORD), WINDOW, 1, 'login throttled')
    assertTooMany(t, await changePassword(app, a, token, PASSWORD), WINDOW, 1, 'password change throttled')
  })

  await counting(t, 'throttled requests never verify a password', async (t) => {
    const { email } = await signup(app)
    const a = nextIPv4()
    const token = String((await loginAs(app, a, email, PASSWORD)).json().access_token)
    for (let i = 0; i < MAX; i++) await loginAs(app, a, email, 'wrong')
    const passwords = app.passwords
    const verify = passwords.verify
    let verified = 0
    passwords.verify = async (hash, password) => { verified++; return await verify.call(passwords, hash, password) }
    t.teardown(() => { passwords.verify = verify })
    const started = performance.now()
    for (let i = 0; i < 5; i++) {
      t.equal((await loginAs(app, a, email, i % 2 === 0 ? PASSWORD : 'wrong')).statusCode, 429, `throttled login ${i + 1}`)
      t.equal((await changePassword(app, a, token, PASSWORD)).statusCode, 429, `throttled password change ${i + 1}`)
    }
    const ms = performance.now() - started
    passwords.verify = verify
    t.equal(verified, 0, 'no password was verified')
    t.comment(`10 throttled requests took ${Math.round(ms)} ms`)
  })
}

t.test('fail-open: Redis down (API.md §8, §11.1)', { buffered: true }, async (t) => {
  const redis = await ThrowawayRedis.create(t)
  await redis.start()
  const app = await buildApp(await testConfig({ REDIS_URL: redis.url, RATE_LIMIT_IP_PER_MINUTE: '3' }), { logger: pino({ level: 'silent' }) as FastifyBaseLogger })
  t.teardown(() => app.close())
  await app.ready()
  const { email } = await signup(app)

  const before = nextIPv4()
  for (let i = 0; i < 3; i++) await cheap(app, before)
  assertTooMany(t, await cheap(app, before), 60, 1, 'limited while Redis is up')

  await redis.kill('SIGKILL')
  const ip = nextIPv4()
  for (let i = 1; i <= 6; i++) {
    const started = performance.now()
    const res = await send(app, ip, { method: 'POST', url: `${AUTH}/signup`, payload: { email: uniqueEmail(), password: PASSWORD, name: 'Ada Lovelace' } })
    const ms = performance.now() - started
    t.equal(res.statusCode, 201, `signup ${i} of 6 from one address with Redis down: 201 (the limit fails open)`, { body: res.body })
    t.ok(ms < 5000, `signup ${i} in ${Math.round(ms)} ms`)
  }
  for (let i = 1; i <= 4; i++) {
    const started = performance.now()
    const res = await loginAs(app, ip, email, PASSWORD, { return_refresh_in_body: true })
    const ms = performance.now() - started
    assertProblem(t, res, 503, 'service_unavailable')
    t.notOk('access_token' in res.json(), `login ${i}: no access_token`)
    t.ok(ms < 5000, `login ${i} with Redis down: 503 (not 429, not 500) in ${Math.round(ms)} ms`)
  }
  t.equal((await send(app, ip, { method: 'GET', url: '/' })).statusCode, 200, 'GET / is 200')

  // Back up: the limit applies again (probed from fresh addresses, as counts may be lost).
  await redis.start()
  const deadline = performance.now() + 20_000
  const interim: number[] = []
  let status = 0
  while (performance.now() < deadline) {
    const probe = nextIPv4()
    for (let i = 0; i < 3; i++) interim.push((await cheap(app, probe)).statusCode)
    status = (await cheap(app, probe)).statusCode
    if (status === 429) break
    interim.push(status)
    await sleep(200)
  }
  t.equal(status, 429, 'the limit applies again once Redis is back (within 20 s)')
  t.same(interim.filter((s) => s !== 401), [], 'only 401 (never 429 early, never 500) while reconnecting')
})
