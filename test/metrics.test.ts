// GET /metrics (API.md §12.3, §1.2 METRICS, §2.3 headers, §8 never rate limited, §12.2 not in
// the OpenAPI document): a flow of auth events moves the right counters by the right amounts,
// requests are labelled by route template (`unmatched` when no route matches), and nothing in
// the scrape names a user, a session or a token.
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { buildTestApp, login, PASSWORD, refreshWithBody, signup, signupAndLogin, uniqueEmail } from './fixtures/app.ts'
import { assertProblem, assertSecurityHeaders, header } from './http/helpers.ts'

const AUTH = '/api/v1/auth'
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i

// Route labels the service can produce: its route templates, and `unmatched`.
const TEMPLATES = new Set([
  '/', '/health/ready', '/.well-known/jwks.json', '/metrics', 'unmatched', '*',
  `${AUTH}/signup`, `${AUTH}/login`, `${AUTH}/me`, `${AUTH}/refresh`, `${AUTH}/logout`, `${AUTH}/logout-all`,
  `${AUTH}/sessions`, `${AUTH}/sessions/:id`, `${AUTH}/password`
])

/** The value of one sample of the Prometheus text format, matched on all its labels; undefined when absent. */
function sample (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match?.[1] !== name) continue
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]))
    const wanted = Object.entries(labels)
    if (wanted.length === Object.keys(found).length && wanted.every(([k, v]) => found[k] === v)) return Number(match[3])
  }
  return undefined
}

function labelValues (text: string, label: string): Set<string> {
  return new Set([...text.matchAll(new RegExp(`[{,]${label}="((?:[^"\\\\]|\\\\.)*)"`, 'g'))].map((m) => m[1] ?? ''))
}

async function scrape (t: Test, app: FastifyInstance, remoteAddress?: string): Promise<string> {
  const res = await app.inject({ method: 'GET', url: '/metrics', ...(remoteAddress ? { remoteAddress } : {}) })
  t.equal(res.statusCode, 200, 'GET /metrics answers 200')
  return res.body
}

function postJson (app: FastifyInstance, url: string, payload: Record<string, unknown>): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url, payload })
}

t.test('METRICS=true: an auth flow moves the counters, labelled by route template, naming no one', async (t) => {
  const app = await buildTestApp(t, { METRICS: 'true', LOGIN_FAIL_MAX: '1', REFRESH_GRACE_SECONDS: '1' })

  const first = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(first.statusCode, 200)
  t.match(String(header(first.headers, 'content-type')), /^text\/plain; version=0\.0\.4; charset=utf-8$/, 'Prometheus text format')
  assertSecurityHeaders(t, first, 'GET /metrics')
  t.equal(header(first.headers, 'cache-control'), undefined, 'not under /api/v1/auth: no Cache-Control of §2.3')
  t.equal(sample(first.body, 'auth_signups_total', { outcome: 'succeeded' }), 0, 'auth counters start at 0, present before any event')
  t.equal(sample(first.body, 'auth_rate_limited_total', { limiter: 'ip' }), 0)
  t.ok(sample(first.body, 'process_cpu_user_seconds_total') !== undefined, 'default process metrics')

  // Signup (and one refused duplicate), login ok, login failed, then throttled (LOGIN_FAIL_MAX=1).
  const user = await signup(app)
  const duplicate = await postJson(app, `${AUTH}/signup`, { email: user.email, password: PASSWORD, name: 'Ada Lovelace' })
  t.equal(duplicate.statusCode, 409)
  const session = await login(app, user.email)
  const failed = await postJson(app, `${AUTH}/login`, { email: user.email, password: 'not the password at all' })
  t.equal(failed.statusCode, 401)
  const throttled = await postJson(app, `${AUTH}/login`, { email: user.email, password: PASSWORD })
  assertProblem(t, throttled, 429, 'too_many_requests')

  // Refresh, then logout with the successor.
  const refreshed = await refreshWithBody(app, session.refreshToken)
  t.equal(refreshed.statusCode, 200)
  const successor = refreshed.json().refresh_token as string
  const logout = await postJson(app, `${AUTH}/logout`, { refresh_token: successor })
  t.equal(logout.statusCode, 204)

  // Another user: one session deleted by id, the rest by logout-all.
  const other = await signupAndLogin(app)
  const second = await login(app, other.email)
  const secondSessionId = (await app.inject({ method: 'GET', url: `${AUTH}/sessions`, headers: { authorization: `Bearer ${other.accessToken}` } }))
    .json().sessions.find((s: { current: boolean }) => !s.current).id as string
  const deleted = await app.inject({ method: 'DELETE', url: `${AUTH}/sessions/${secondSessionId}`, headers: { authorization: `Bearer ${other.accessToken}` } })
  t.equal(deleted.statusCode, 204)
  const missing = await app.inject({ method: 'DELETE', url: `${AUTH}/sessions/${randomUUID()}`, headers: { authorization: `Bearer ${other.accessToken}` } })
  t.equal(missing.statusCode, 404)
  const all = await app.inject({ method: 'POST', url: `${AUTH}/logout-all`, headers: { authorization: `Bearer ${other.accessToken}` } })
  t.equal(all.statusCode, 204)

  // A third user's refresh token presented again after the grace window: reuse detected.
  const third = await signupAndLogin(app)
  t.equal((await refreshWithBody(app, third.refreshToken)).statusCode, 200)
  await sleep(1500)
  const reused = await refreshWithBody(app, third.refreshToken)
  assertProblem(t, reused, 401, 'refresh_reused')

  // Unknown routes, one of them with an id in its URL.
  const unknownId = randomUUID()
  t.equal((await app.inject({ method: 'GET', url: `/no/such/${unknownId}` })).statusCode, 404)
  t.equal((await app.inject({ method: 'GET', url: `${AUTH}/unknown` })).statusCode, 404)

  const text = await scrape(t, app)
  const auth = (name: string, labels: Record<string, string> = {}) => sample(text, name, labels)
  t.equal(auth('auth_signups_total', { outcome: 'succeeded' }), 3, 'three signups')
  t.equal(auth('auth_signups_total', { outcome: 'failed' }), 1, 'one refused signup (email taken)')
  t.equal(auth('auth_logins_total', { outcome: 'succeeded' }), 4, 'four logins succeeded')
  t.equal(auth('auth_logins_total', { outcome: 'failed' }), 1, 'one login failed')
  t.equal(auth('auth_refreshes_total'), 2, 'two refreshes')
  t.equal(auth('auth_refresh_reuse_detected_total'), 1, 'one reuse detected')
  t.equal(auth('auth_sessions_ended_total', { reason: 'logout' }), 1, 'one logout')
  t.equal(auth('auth_sessions_ended_total', { reason: 'deleted' }), 1, 'one session deleted by id')
  t.equal(auth('auth_sessions_ended_total', { reason: 'logout_all' }), 1, 'one logout-all')
  t.equal(auth('auth_sessions_ended_total', { reason: 'reuse_detected' }), 1, 'one session ended by reuse')
  t.equal(auth('auth_rate_limited_total', { limiter: 'failed_login' }), 1, 'one throttled login')
  t.equal(auth('auth_rate_limited_total', { limiter: 'ip' }), 0, 'no per-IP 429 (limit off here)')
  t.equal(auth('auth_password_changes_total', { outcome: 'succeeded' }), 0)

  const http = (method: string, route: string, status: number) => sample(text, 'http_requests_total', { method, route, status_code: String(status) })
  t.equal(http('POST', `${AUTH}/signup`, 201), 3)
  t.equal(http('POST', `${AUTH}/signup`, 409), 1)
  t.equal(http('POST', `${AUTH}/login`, 200), 4)
  t.equal(http('POST', `${AUTH}/login`, 401), 1)
  t.equal(http('POST', `${AUTH}/login`, 429), 1)
  t.equal(http('POST', `${AUTH}/refresh`, 401), 1)
  t.equal(http('DELETE', `${AUTH}/sessions/:id`, 204), 1, 'the route template, not the URL with the id')
  t.equal(http('DELETE', `${AUTH}/sessions/:id`, 404), 1)
  t.equal(http('GET', 'unmatched', 404), 2, 'requests matching no route are labelled unmatched')
  t.equal(http('GET', '/metrics', 200), 1, 'the earlier scrape is counted; this one is still in flight')
  const duration = (labels: Record<string, string>) => ({
    count: sample(text, 'http_request_duration_seconds_count', labels),
    sum: sample(text, 'http_request_duration_seconds_sum', labels),
    inf: sample(text, 'http_request_duration_seconds_bucket', { ...labels, le: '+Inf' })
  })
  const loginOk = duration({ method: 'POST', route: `${AUTH}/login`, status_code: '200' })
  t.equal(loginOk.count, 4, 'latency histogram: one observation per login')
  t.equal(loginOk.inf, 4)
  t.ok((loginOk.sum ?? 0) > 0, 'latency histogram: time was measured (argon2 takes some)')
  t.equal(duration({ method: 'GET', route: 'unmatched', status_code: '404' }).count, 2)

  for (const route of labelValues(text, 'route')) t.ok(TEMPLATES.has(route), `route label ${route} is a template or unmatched`)
  t.notOk(text.includes('/no/such'), 'no raw URL of an unknown route')

  // Nothing that names a user, a session or a token.
  t.notMatch(text, UUID, 'no user id, session id or request id (all UUIDs)')
  t.notOk(text.includes('@'), 'no email')
  const secrets = [
    user.email, other.email, third.email, user.id, other.userId, third.userId, secondSessionId, unknownId,
    session.accessToken, session.refreshToken, successor, other.accessToken, second.refreshToken, third.refreshToken
  ]
  for (const secret of secrets) t.notOk(text.includes(secret), 'no email, id or token in the scrape')
  for (const token of [session.accessToken, successor]) {
    for (const part of token.split('.')) if (part.length >= 16) t.notOk(text.includes(part), 'not even a part of a token')
  }
})

t.test('METRICS=true: /metrics is never rate limited, and per-IP 429s are counted', async (t) => {
  const app = await buildTestApp(t, { METRICS: 'true', RATE_LIMIT_IP_PER_MINUTE: '2' })
  const ip = `10.77.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`
  const me = () => app.inject({ method: 'GET', url: `${AUTH}/me`, remoteAddress: ip })
  t.equal((await me()).statusCode, 401)
  t.equal((await me()).statusCode, 401)
  assertProblem(t, await me(), 429, 'too_many_requests')
  for (let i = 0; i < 5; i++) {
    const res = await app.inject({ method: 'GET', url: '/metrics', remoteAddress: ip })
    t.equal(res.statusCode, 200, `scrape ${i + 1} from a limited address: not rate limited`)
  }
  const text = await scrape(t, app, ip)
  t.equal(sample(text, 'auth_rate_limited_total', { limiter: 'ip' }), 1, 'one per-IP 429')
  t.equal(sample(text, 'auth_rate_limited_total', { limiter: 'failed_login' }), 0)
  t.equal(sample(text, 'http_requests_total', { method: 'GET', route: `${AUTH}/me`, status_code: '429' }), 1)
  t.equal(sample(text, 'http_requests_total', { method: 'GET', route: `${AUTH}/me`, status_code: '401' }), 2)
  t.equal(sample(text, 'http_requests_total', { method: 'GET', route: '/metrics', status_code: '200' }), 5)
})

t.test('each app has its own registry', async (t) => {
  const one = await buildTestApp(t, { METRICS: 'true' })
  const two = await buildTestApp(t, { METRICS: 'true' })
  t.not(one.metricsRegistry, two.metricsRegistry)
  await signup(one, uniqueEmail())
  t.equal(sample(await scrape(t, one), 'auth_signups_total', { outcome: 'succeeded' }), 1)
  t.equal(sample(await scrape(t, two), 'auth_signups_total', { outcome: 'succeeded' }), 0, 'the other app counted nothing')
})

t.test('METRICS unset: /metrics is an unknown route', async (t) => {
  const app = await buildTestApp(t)
  t.equal(app.metricsRegistry, null)
  const res = await app.inject({ method: 'GET', url: '/metrics' })
  assertProblem(t, res, 404, 'not_found')
  assertSecurityHeaders(t, res, 'GET /metrics (disabled)')
  await signup(app) // auth events are audited as usual with nothing to count them
})

t.test('/metrics is not in the OpenAPI document', async (t) => {
  const app = await buildTestApp(t, { METRICS: 'true' })
  const res = await app.inject({ method: 'GET', url: '/docs/json' })
  t.equal(res.statusCode, 200)
  const paths = Object.keys(res.json().paths as Record<string, unknown>)
  t.ok(paths.includes(`${AUTH}/login`), 'the document lists the routes')
  t.notOk(paths.includes('/metrics'), '/metrics is not listed')
})
