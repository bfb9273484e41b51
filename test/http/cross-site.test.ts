// API.md §2.6: cross-site protection of cookie-authenticated refresh and logout. With
// REFRESH_IN_COOKIE=true, a POST /refresh or /logout whose body has no refresh_token and whose
// Origin is neither listed in CORS_ORIGINS nor the service's own origin is 403
// origin_not_allowed, before any store access: nothing rotated or revoked, no Set-Cookie.
//
// "Nothing rotated" is shown two ways: the session's last_used_at (moved by every rotation) is
// unchanged, and, with REFRESH_GRACE_SECONDS=1, the cookie presented to the refused requests
// still refreshes more than a second later. Had a refused request rotated it, that cookie would
// then be a previous token past its grace window: 401 refresh_reused (API.md §6, rule 3).
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, InjectOptions } from 'fastify'
import t, { type Test } from 'tap'
import { buildTestApp, login, signup, type LoggedIn } from '../fixtures/app.ts'
import { freePort } from '../fixtures/ports.ts'
import { assertProblem, header, parseSetCookie, setCookies, type Answer } from './helpers.ts'

const AUTH = '/api/v1/auth'
const LISTED = 'http://localhost:3000'
const HOST = 'auth.example.test:8443'
const OWN = `http://${HOST}`
const GRACE = { REFRESH_GRACE_SECONDS: '1' }
// Origins that are neither listed (with CORS_ORIGINS=http://localhost:3000) nor the own origin.
const FOREIGN = ['https://evil.example', 'null', 'http://localhost:3000.evil.example', 'https://localhost:3000', 'http://localhost:30000',
  'http://localhost', 'HTTP://LOCALHOST:3000', 'http://localhost:3000/', `https://${HOST}`, 'http://auth.example.test', `${LISTED}, https://evil.example`]

type Headers = Record<string, string>

/** POST /refresh or /logout as a browser would send it: the cookie, no body, the Host header. */
function cookieRequest (app: FastifyInstance, route: 'refresh' | 'logout', cookie: string | undefined, headers: Headers = {}, body: Pick<InjectOptions, 'headers' | 'payload'> = {}) {
  return app.inject({
    method: 'POST',
    url: `${AUTH}/${route}`,
    headers: { host: HOST, ...(cookie ? { cookie } : {}), ...headers, ...(body.headers as Headers | undefined) },
    payload: body.payload
  })
}

function bodyRequest (app: FastifyInstance, route: 'refresh' | 'logout', token: string, headers: Headers = {}) {
  return app.inject({ method: 'POST', url: `${AUTH}/${route}`, headers: { host: HOST, ...headers }, payload: { refresh_token: token } })
}

/** The `refresh_token=...` pair of a response's refresh cookie (undefined when none was set). */
function newCookie (res: Answer): string | undefined {
  const cookie = setCookies(res).map(parseSetCookie).find((c) => c.name === 'refresh_token' && c.value !== '')
  return cookie ? `refresh_token=${cookie.value}` : undefined
}

async function lastUsedAt (app: FastifyInstance, session: LoggedIn): Promise<string | undefined> {
  const res = await app.inject({ method: 'GET', url: `${AUTH}/sessions`, headers: { authorization: `Bearer ${session.accessToken}` } })
  if (res.statusCode !== 200) return undefined
  return (res.json().sessions as Array<{ current: boolean, last_used_at: string }>).find((s) => s.current)?.last_used_at
}

function me (app: FastifyInstance, session: LoggedIn) {
  return app.inject({ method: 'GET', url: `${AUTH}/me`, headers: { authorization: `Bearer ${session.accessToken}` } })
}

/** A 403 origin_not_allowed problem document without Set-Cookie (assertProblem checks that). */
function assertRefused (t: Test, res: Answer, label: string): void {
  t.equal(res.statusCode, 403, `${label}: 403`, { body: res.body })
  assertProblem(t, res, 403, 'origin_not_allowed')
  t.same(setCookies(res), [], `${label}: no Set-Cookie`)
}

/** The session's cookie was neither rotated nor revoked by what happened since `before`. */
async function assertUntouched (t: Test, app: FastifyInstance, session: LoggedIn, before: string | undefined, label: string): Promise<string | undefined> {
  t.equal(await lastUsedAt(app, session), before, `${label}: last_used_at unchanged (nothing rotated)`)
  t.equal((await me(app, session)).statusCode, 200, `${label}: the session is alive (its access token works)`)
  await sleep(1100) // past REFRESH_GRACE_SECONDS=1
  const res = await cookieRequest(app, 'refresh', session.cookie)
  t.equal(res.statusCode, 200, `${label}: the same cookie still refreshes without Origin, past the grace window`, { body: res.body })
  return newCookie(res)
}

t.test('CORS_ORIGINS=http://localhost:3000 (the example of §2.6)', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: LISTED, ...GRACE })
  const { email } = await signup(app)

  await t.test('cookie refresh with the listed Origin: 200 with Allow-Origin and Allow-Credentials', async (t) => {
    const session = await login(app, email)
    const res = await cookieRequest(app, 'refresh', session.cookie, { origin: LISTED })
    t.equal(res.statusCode, 200, 'refreshed', { body: res.body })
    t.equal(header(res.headers, 'access-control-allow-origin'), LISTED, 'Access-Control-Allow-Origin: the listed origin')
    t.equal(header(res.headers, 'access-control-allow-credentials'), 'true', 'Access-Control-Allow-Credentials: true')
    const body = res.json()
    t.type(body.access_token, 'string', 'a new access token')
    t.notOk('refresh_token' in body, 'no refresh_token in the body (the token came from the cookie)')
    const next = newCookie(res)
    t.ok(next !== undefined && next !== session.cookie, 'a new refresh cookie carrying the successor')
    // The listed origin may log out with the cookie too.
    const out = await cookieRequest(app, 'logout', next, { origin: LISTED })
    t.equal(out.statusCode, 204, 'cookie logout with the listed Origin: 204')
    t.ok(setCookies(out).some((c) => parseSetCookie(c).value === '' && /Max-Age=0/i.test(c)), 'the cookie is cleared')
    t.equal((await me(app, session)).statusCode, 401, 'and the session ended')
  })

  await t.test('cookie refresh and logout with a foreign Origin: 403, nothing rotated or revoked', async (t) => {
    const session = await login(app, email)
    const before = await lastUsedAt(app, session)
    for (const origin of FOREIGN) {
      for (const route of ['refresh', 'logout'] as const) {
        const res = await cookieRequest(app, route, session.cookie, { origin })
        assertRefused(t, res, `${route} with Origin ${origin}`)
        t.equal(header(res.headers, 'access-control-allow-origin'), undefined, `${route} with Origin ${origin}: no Allow-Origin`)
        t.equal(header(res.headers, 'access-control-allow-credentials'), undefined, `${route} with Origin ${origin}: no Allow-Credentials`)
      }
    }
    await assertUntouched(t, app, session, before, 'after the refused requests')
  })

  await t.test('Origin: null (a sandboxed or file page) → 403', async (t) => {
    const session = await login(app, email)
    assertRefused(t, await cookieRequest(app, 'refresh', session.cookie, { origin: 'null' }), 'refresh, Origin null')
    assertRefused(t, await cookieRequest(app, 'logout', session.cookie, { origin: 'null' }), 'logout, Origin null')
    t.equal((await me(app, session)).statusCode, 200, 'the session is alive')
  })

  await t.test('logout with a foreign Origin: 403 and the session stays alive', async (t) => {
    const session = await login(app, email)
    const before = await lastUsedAt(app, session)
    const res = await cookieRequest(app, 'logout', session.cookie, { origin: 'https://evil.example' })
    assertRefused(t, res, 'logout')
    t.notOk(setCookies(res).some((c) => parseSetCookie(c).name === 'refresh_token'), 'the cookie is not cleared')
    t.equal(await lastUsedAt(app, session), before, 'the session is still listed, unchanged')
    t.equal((await me(app, session)).statusCode, 200, 'its access token still works')
    t.equal((await cookieRequest(app, 'refresh', session.cookie)).statusCode, 200, 'its cookie still refreshes')
  })

  await t.test('the check applies whether or not a cookie is present', async (t) => {
    const refresh = await cookieRequest(app, 'refresh', undefined, { origin: 'https://evil.example' })
    assertRefused(t, refresh, 'refresh without a cookie (not 401)')
    const logout = await cookieRequest(app, 'logout', undefined, { origin: 'https://evil.example' })
    assertRefused(t, logout, 'logout without a cookie (not 204)')
    for (const [label, extra] of [
      ['an empty JSON body', { headers: { 'content-type': 'application/json' }, payload: '' }],
      ['{}', { payload: {} }]
    ] as const) {
      assertRefused(t, await cookieRequest(app, 'refresh', undefined, { origin: 'https://evil.example' }, extra), `refresh with ${label}`)
    }
  })

  await t.test('no Origin header → proceeds', async (t) => {
    const session = await login(app, email)
    const res = await cookieRequest(app, 'refresh', session.cookie)
    t.equal(res.statusCode, 200, 'cookie refresh without Origin: 200')
    t.equal(header(res.headers, 'access-control-allow-origin'), undefined, 'no CORS headers without Origin')
    const out = await cookieRequest(app, 'logout', newCookie(res))
    t.equal(out.statusCode, 204, 'cookie logout without Origin: 204')
  })

  await t.test('the own origin (request.protocol://request.host) → proceeds', async (t) => {
    const session = await login(app, email)
    const res = await cookieRequest(app, 'refresh', session.cookie, { origin: OWN })
    t.equal(res.statusCode, 200, `Origin ${OWN} with Host ${HOST}: 200`, { body: res.body })
    t.equal(header(res.headers, 'access-control-allow-origin'), undefined, 'same-origin: no CORS headers (the own origin is not listed)')
    // Another Host makes another own origin.
    const other = await cookieRequest(app, 'refresh', newCookie(res), { origin: 'http://other.example.test', host: 'other.example.test' })
    t.equal(other.statusCode, 200, 'Origin http://other.example.test with Host other.example.test: 200', { body: other.body })
    // X-Forwarded-Proto and -Host count only under TRUST_PROXY (not set here).
    const forwarded = await cookieRequest(app, 'refresh', newCookie(other), { origin: 'https://public.example', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.example' })
    assertRefused(t, forwarded, 'X-Forwarded-Proto/-Host without TRUST_PROXY')
  })

  await t.test('a refresh token in the body is exempt, whatever the Origin', async (t) => {
    const session = await login(app, email)
    const res = await bodyRequest(app, 'refresh', session.refreshToken, { origin: 'https://evil.example' })
    t.equal(res.statusCode, 200, 'body refresh with a foreign Origin: 200', { body: res.body })
    const successor = String(res.json().refresh_token)
    // A body token wins over a cookie, and with it the request is exempt too.
    const both = await app.inject({
      method: 'POST',
      url: `${AUTH}/refresh`,
      headers: { host: HOST, origin: 'https://evil.example', cookie: session.cookie },
      payload: { refresh_token: successor }
    })
    t.equal(both.statusCode, 200, 'body token plus cookie with a foreign Origin: 200', { body: both.body })
    const out = await bodyRequest(app, 'logout', String(both.json().refresh_token), { origin: 'https://evil.example' })
    t.equal(out.statusCode, 204, 'body logout with a foreign Origin: 204')
    t.equal((await me(app, session)).statusCode, 401, 'and that logged the session out')
    // Garbage in the body is exempt as well: 401/204 as usual, never 403.
    const garbage = await bodyRequest(app, 'refresh', 'garbage', { origin: 'https://evil.example' })
    t.equal(garbage.statusCode, 401, 'body refresh with garbage and a foreign Origin: 401')
    t.equal(garbage.json().code, 'invalid_refresh_token')
  })

  await t.test('Bearer-authenticated requests are not subject to it', async (t) => {
    const session = await login(app, email)
    const headers = { host: HOST, origin: 'https://evil.example', authorization: `Bearer ${session.accessToken}` }
    t.equal((await app.inject({ method: 'GET', url: `${AUTH}/me`, headers })).statusCode, 200, 'GET /me with a foreign Origin: 200')
    t.equal((await app.inject({ method: 'GET', url: `${AUTH}/sessions`, headers })).statusCode, 200, 'GET /sessions with a foreign Origin: 200')
    // logout-all reads no refresh token; it carries the cookie here as a browser would.
    const all = await app.inject({ method: 'POST', url: `${AUTH}/logout-all`, headers: { ...headers, cookie: session.cookie } })
    t.equal(all.statusCode, 204, 'POST /logout-all with a foreign Origin: 204')
  })

  await t.test('415, 413 and 400 come before the check', async (t) => {
    const session = await login(app, email)
    const before = await lastUsedAt(app, session)
    const origin = 'https://evil.example'
    const cases: Array<[string, number, string, Pick<InjectOptions, 'headers' | 'payload'>]> = [
      ['text/plain body', 415, 'unsupported_media_type', { headers: { 'content-type': 'text/plain' }, payload: '{}' }],
      ['form-encoded body', 415, 'unsupported_media_type', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'refresh_token=x' }],
      ['multipart body', 415, 'unsupported_media_type', { headers: { 'content-type': 'multipart/form-data; boundary=x' }, payload: '--x--\r\n' }],
      ['body over 1 MiB', 413, 'payload_too_large', { headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ refresh_token: 'a'.repeat(1_048_577) }) }],
      ['malformed JSON', 400, 'malformed_json', { headers: { 'content-type': 'application/json' }, payload: '{"refresh_token":' }],
      ['an unknown property', 400, 'validation_failed', { payload: { extra: 1 } }],
      ['an empty refresh_token', 400, 'validation_failed', { payload: { refresh_token: '' } }]
    ]
    for (const route of ['refresh', 'logout'] as const) {
      for (const [label, status, code, extra] of cases) {
        const res = await cookieRequest(app, route, session.cookie, { origin }, extra)
        t.equal(res.statusCode, status, `${route}, ${label}, foreign Origin: ${status}, not 403`, { body: res.body })
        assertProblem(t, res, status, code)
      }
    }
    await assertUntouched(t, app, session, before, 'after them')
  })
})

t.test('CORS_ORIGINS=* lists no origin for this purpose', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: '*', ...GRACE })
  const { email } = await signup(app)
  const session = await login(app, email)
  const before = await lastUsedAt(app, session)
  for (const origin of ['https://evil.example', LISTED, 'null', 'http://localhost']) {
    for (const route of ['refresh', 'logout'] as const) {
      const res = await cookieRequest(app, route, session.cookie, { origin })
      assertRefused(t, res, `${route} with Origin ${origin}`)
      t.equal(header(res.headers, 'access-control-allow-origin'), '*', `${route} with Origin ${origin}: the 403 carries Allow-Origin * (wildcard CORS)`)
      t.equal(header(res.headers, 'access-control-allow-credentials'), undefined, `${route} with Origin ${origin}: never Allow-Credentials`)
    }
  }
  const next = await assertUntouched(t, app, session, before, 'after the refused requests')
  const own = await cookieRequest(app, 'refresh', next, { origin: OWN })
  t.equal(own.statusCode, 200, 'the own origin still proceeds', { body: own.body })
  const body = await bodyRequest(app, 'refresh', (await login(app, email)).refreshToken, { origin: 'https://evil.example' })
  t.equal(body.statusCode, 200, 'a body token with a foreign Origin: 200')
})

t.test('TRUST_PROXY=true: X-Forwarded-Proto and -Host make the own origin', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: LISTED, TRUST_PROXY: 'true' })
  const { email } = await signup(app)
  const session = await login(app, email)
  const forwarded = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.example' }
  const res = await cookieRequest(app, 'refresh', session.cookie, { ...forwarded, origin: 'https://public.example' })
  t.equal(res.statusCode, 200, 'Origin https://public.example behind a trusted proxy: 200', { body: res.body })
  assertRefused(t, await cookieRequest(app, 'refresh', newCookie(res), { ...forwarded, origin: OWN }), 'the Host header\'s origin is not the own origin behind the proxy')
  assertRefused(t, await cookieRequest(app, 'refresh', newCookie(res), { ...forwarded, origin: 'http://public.example' }), 'the wrong scheme')
})

t.test('REFRESH_IN_COOKIE=false: the check does not apply', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: LISTED, REFRESH_IN_COOKIE: 'false' })
  const { email } = await signup(app)
  const session = await login(app, email)
  const origin = 'https://evil.example'
  const refresh = await cookieRequest(app, 'refresh', session.cookie, { origin })
  t.equal(refresh.statusCode, 401, 'refresh without a body token, foreign Origin: 401 (the cookie is not read), not 403', { body: refresh.body })
  t.equal(refresh.json().code, 'invalid_refresh_token')
  const logout = await cookieRequest(app, 'logout', session.cookie, { origin })
  t.equal(logout.statusCode, 204, 'logout without a body token, foreign Origin: 204 (nothing to end), not 403', { body: logout.body })
  t.same(setCookies(logout), [], 'no Set-Cookie at all')
  t.equal((await me(app, session)).statusCode, 200, 'the session is alive (the cookie was not read)')
  const body = await bodyRequest(app, 'refresh', session.refreshToken, { origin })
  t.equal(body.statusCode, 200, 'body refresh with a foreign Origin: 200', { body: body.body })
  t.same(setCookies(body), [], 'no Set-Cookie')
})

t.test('the check comes before any store access (Redis unreachable)', async (t) => {
  // A session store that does not answer: the service starts anyway (API.md §1.1).
  const healthy = await buildTestApp(t)
  const session = await login(healthy, (await signup(healthy)).email)
  const app = await buildTestApp(t, { CORS_ORIGINS: LISTED, REDIS_URL: `redis://127.0.0.1:${await freePort()}` })
  for (const route of ['refresh', 'logout'] as const) {
    assertRefused(t, await cookieRequest(app, route, session.cookie, { origin: 'https://evil.example' }), `${route} with a foreign Origin: 403, not 503`)
    const allowed = await cookieRequest(app, route, session.cookie, { origin: LISTED })
    t.equal(allowed.statusCode, 503, `${route} with the listed Origin reaches the store: 503`, { body: allowed.body })
  }
})
