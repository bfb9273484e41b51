// API.md §4.3 and §5.5: the refresh cookie's exact attributes (dev and prod), its value, the
// clearing cookie, REFRESH_IN_COOKIE=false, no Set-Cookie on any error, and the exact login body.
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { buildTestApp, login, PASSWORD, signup, uniqueEmail } from '../fixtures/app.ts'
import { assertProblem, parseSetCookie, setCookies, type Answer } from './helpers.ts'

const AUTH = '/api/v1/auth'
const TOKEN = /^[A-Za-z0-9_-]{86}$/
const DEFAULT_MAX_AGE = 1_209_600
const EPOCH = 'Thu, 01 Jan 1970 00:00:00 GMT'

function loginRes (app: FastifyInstance, email: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url: `${AUTH}/login`, headers, payload: { email, password: PASSWORD, ...extra } })
}

/** The one Set-Cookie of a response, parsed; fails the test when there is not exactly one. */
function theCookie (t: Test, res: Answer) {
  const all = setCookies(res)
  t.equal(all.length, 1, 'exactly one Set-Cookie')
  return parseSetCookie(all[0] ?? '')
}

function assertRefreshCookie (t: Test, res: Answer, opts: { secure: boolean, maxAge?: number }) {
  const started = Date.now()
  const cookie = theCookie(t, res)
  t.equal(cookie.name, 'refresh_token', 'named refresh_token')
  t.match(cookie.value, TOKEN, 'the value is an 86-character base64url token, not encoded further')
  const names = [...cookie.attributes.keys()].map((k) => k.toLowerCase()).sort()
  t.same(names, ['expires', 'httponly', 'max-age', 'path', 'samesite', ...(opts.secure ? ['secure'] : [])].sort(), 'exactly the documented attributes (no Domain)')
  const get = (name: string) => [...cookie.attributes.entries()].find(([k]) => k.toLowerCase() === name)?.[1]
  t.equal(get('path'), '/api/v1/auth', 'Path=/api/v1/auth')
  t.equal(get('samesite'), 'Strict', 'SameSite=Strict')
  t.equal(get('httponly'), '', 'HttpOnly')
  t.equal(get('domain'), undefined, 'no Domain')
  const maxAge = Number(get('max-age'))
  t.equal(maxAge, opts.maxAge ?? DEFAULT_MAX_AGE, 'Max-Age')
  const expires = Date.parse(get('expires') ?? '')
  t.ok(Math.abs(expires - (started + maxAge * 1000)) < 5000, `Expires is the instant Max-Age designates (${get('expires')})`)
  if (opts.secure) t.equal(get('secure'), '', 'Secure')
  else t.equal(get('secure'), undefined, 'no Secure under dev')
  return cookie
}

function assertClearingCookie (t: Test, res: Answer, opts: { secure: boolean }) {
  const cookie = theCookie(t, res)
  t.equal(cookie.name, 'refresh_token', 'same name')
  t.equal(cookie.value, '', 'empty value')
  const attributes = Object.fromEntries([...cookie.attributes.entries()].map(([k, v]) => [k.toLowerCase(), v]))
  t.same(attributes, { path: '/api/v1/auth', 'max-age': '0', expires: EPOCH, httponly: '', samesite: 'Strict', ...(opts.secure ? { secure: '' } : {}) }, 'exactly the clearing attributes, same Path')
}

t.test('refresh cookie under APP_ENV=dev (the default)', async (t) => {
  const app = await buildTestApp(t)
  const user = await signup(app)

  await t.test('login sets the cookie with exactly the documented attributes; the body has no refresh_token', async (t) => {
    const res = await loginRes(app, user.email)
    t.equal(res.statusCode, 200)
    assertRefreshCookie(t, res, { secure: false })
    const body = res.json()
    t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'token_type', 'user'], 'exactly these members, no refresh_token at all')
    t.equal(body.token_type, 'bearer')
    t.equal(body.expires_in, 900)
    t.same(Object.keys(body.user).sort(), ['email', 'id', 'name'], 'user has exactly id, email, name')
    t.same(body.user, { id: user.id, email: user.email, name: user.name })
    t.notOk(JSON.stringify(body).match(/pass|hash|salt|secret/i), 'no secret-looking members')

    const explicit = await loginRes(app, user.email, { return_refresh_in_body: false })
    t.same(Object.keys(explicit.json()).sort(), ['access_token', 'expires_in', 'token_type', 'user'], 'return_refresh_in_body: false is the same')
    assertRefreshCookie(t, explicit, { secure: false })
  })

  await t.test('with return_refresh_in_body the body adds refresh_token, equal to the cookie value', async (t) => {
    const res = await loginRes(app, user.email, { return_refresh_in_body: true })
    t.equal(res.statusCode, 200)
    const body = res.json()
    t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'refresh_token', 'token_type', 'user'], 'exactly the members plus refresh_token')
    t.match(body.refresh_token, TOKEN)
    const cookie = assertRefreshCookie(t, res, { secure: false })
    t.equal(cookie.value, body.refresh_token, 'the cookie carries the same token')
  })

  await t.test('refresh sets a new cookie whatever the token source; body and cookie agree', async (t) => {
    const session = await login(app, user.email)
    let res = await app.inject({ method: 'POST', url: `${AUTH}/refresh`, payload: { refresh_token: session.refreshToken } })
    t.equal(res.statusCode, 200)
    let cookie = assertRefreshCookie(t, res, { secure: false })
    t.equal(cookie.value, res.json().refresh_token, 'body and cookie carry the same successor')
    t.not(cookie.value, session.refreshToken, 'a successor')

    res = await app.inject({ method: 'POST', url: `${AUTH}/refresh`, headers: { cookie: `refresh_token=${cookie.value}` } })
    t.equal(res.statusCode, 200)
    t.notOk('refresh_token' in res.json(), 'no refresh_token in the body for a cookie refresh')
    cookie = assertRefreshCookie(t, res, { secure: false })

    res = await app.inject({ method: 'POST', url: `${AUTH}/logout`, headers: { cookie: `refresh_token=${cookie.value}` } })
    t.equal(res.statusCode, 204)
    assertClearingCookie(t, res, { secure: false })
  })

  await t.test('every 204 of logout and logout-all clears the cookie', async (t) => {
    const session = await login(app, user.email)
    assertClearingCookie(t, await app.inject({ method: 'POST', url: `${AUTH}/logout` }), { secure: false })
    assertClearingCookie(t, await app.inject({ method: 'POST', url: `${AUTH}/logout`, payload: { refresh_token: 'garbage' } }), { secure: false })
    assertClearingCookie(t, await app.inject({ method: 'POST', url: `${AUTH}/logout`, headers: { cookie: 'refresh_token=garbage' } }), { secure: false })
    const res = await app.inject({ method: 'POST', url: `${AUTH}/logout-all`, headers: { authorization: `Bearer ${session.accessToken}` } })
    t.equal(res.statusCode, 204)
    assertClearingCookie(t, res, { secure: false })
  })

  await t.test('signup never sets a cookie', async (t) => {
    const res = await app.inject({ method: 'POST', url: `${AUTH}/signup`, payload: { email: uniqueEmail(), password: PASSWORD, name: 'Ada' } })
    t.equal(res.statusCode, 201)
    t.same(setCookies(res), [])
  })

  await t.test('no error response carries Set-Cookie', async (t) => {
    const session = await login(app, user.email)
    const cookie = { cookie: session.cookie }
    const errors: Array<[string, () => Promise<Answer>, number, string]> = [
      ['login, wrong password', () => loginRes(app, user.email, { password: 'wrong password' }), 401, 'invalid_credentials'],
      ['login, unknown email', () => loginRes(app, uniqueEmail()), 401, 'invalid_credentials'],
      ['login, wrong password, with a live cookie', () => loginRes(app, user.email, { password: 'wrong password' }, cookie), 401, 'invalid_credentials'],
      ['refresh, garbage cookie', () => app.inject({ method: 'POST', url: `${AUTH}/refresh`, headers: { cookie: 'refresh_token=garbage' } }), 401, 'invalid_refresh_token'],
      ['refresh, no token', () => app.inject({ method: 'POST', url: `${AUTH}/refresh` }), 401, 'invalid_refresh_token'],
      ['me, no token', () => app.inject({ method: 'GET', url: `${AUTH}/me`, headers: cookie }), 401, 'invalid_token'],
      ['signup, taken', () => app.inject({ method: 'POST', url: `${AUTH}/signup`, headers: cookie, payload: { email: user.email, password: PASSWORD, name: 'Ada' } }), 409, 'email_taken'],
      ['login, unknown property', () => loginRes(app, user.email, { x: 1 }, cookie), 400, 'validation_failed'],
      ['login, malformed JSON', () => app.inject({ method: 'POST', url: `${AUTH}/login`, headers: { ...cookie, 'content-type': 'application/json' }, payload: '{' }), 400, 'malformed_json'],
      ['refresh, invalid body, live cookie', () => app.inject({ method: 'POST', url: `${AUTH}/refresh`, headers: cookie, payload: { refresh_token: '' } }), 400, 'validation_failed'],
      ['refresh, text/plain, live cookie', () => app.inject({ method: 'POST', url: `${AUTH}/refresh`, headers: { ...cookie, 'content-type': 'text/plain' }, payload: '{}' }), 415, 'unsupported_media_type'],
      ['logout, text/plain, live cookie', () => app.inject({ method: 'POST', url: `${AUTH}/logout`, headers: { ...cookie, 'content-type': 'text/plain' }, payload: '{}' }), 415, 'unsupported_media_type'],
      ['login, form-encoded', () => app.inject({ method: 'POST', url: `${AUTH}/login`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `email=${user.email}&password=x` }), 415, 'unsupported_media_type'],
      ['logout, over 1 MiB', () => app.inject({ method: 'POST', url: `${AUTH}/logout`, headers: { ...cookie, 'content-type': 'application/json' }, payload: JSON.stringify({ refresh_token: 'x'.repeat(1_100_000) }) }), 413, 'payload_too_large'],
      ['unknown route', () => app.inject({ method: 'GET', url: `${AUTH}/unknown`, headers: cookie }), 404, 'not_found']
    ]
    for (const [label, send, status, code] of errors) {
      const res = await send()
      t.comment(label)
      assertProblem(t, res, status, code)
      t.same(setCookies(res), [], `${label}: no Set-Cookie`)
    }
  })

  await t.test('the 409 of a duplicate within the grace window neither sets nor clears the cookie', async (t) => {
    const session = await login(app, user.email)
    const first = await app.inject({ method: 'POST', url: `${AUTH}/refresh`, payload: { refresh_token: session.refreshToken } })
    t.equal(first.statusCode, 200)
    const second = await app.inject({ method: 'POST', url: `${AUTH}/refresh`, payload: { refresh_token: first.json().refresh_token } })
    t.equal(second.statusCode, 200)
    const res = await app.inject({ method: 'POST', url: `${AUTH}/refresh`, headers: { cookie: session.cookie } })
    assertProblem(t, res, 409, 'refresh_in_progress')
    t.same(setCookies(res), [], 'no Set-Cookie on the 409')
  })
})

t.test('refresh cookie under APP_ENV=prod adds Secure', async (t) => {
  const app = await buildTestApp(t, { APP_ENV: 'prod' })
  const user = await signup(app)
  const res = await loginRes(app, user.email, { return_refresh_in_body: true })
  t.equal(res.statusCode, 200)
  const cookie = assertRefreshCookie(t, res, { secure: true })
  t.equal(cookie.value, res.json().refresh_token)
  const refreshed = await app.inject({ method: 'POST', url: `${AUTH}/refresh`, headers: { cookie: `refresh_token=${cookie.value}` } })
  t.equal(refreshed.statusCode, 200)
  const next = assertRefreshCookie(t, refreshed, { secure: true })
  const logout = await app.inject({ method: 'POST', url: `${AUTH}/logout`, headers: { cookie: `refresh_token=${next.value}` } })
  t.equal(logout.statusCode, 204)
  assertClearingCookie(t, logout, { secure: true })
  const again = await loginRes(app, user.email)
  const all = await app.inject({ method: 'POST', url: `${AUTH}/logout-all`, headers: { authorization: `Bearer ${again.json().access_token}` } })
  t.equal(all.statusCode, 204)
  assertClearingCookie(t, all, { secure: true })
})

t.test('Max-Age is the time until the session expires: less when the absolute lifetime ends sooner', async (t) => {
  const app = await buildTestApp(t, { REFRESH_DAYS: '3', SESSION_MAX_DAYS: '2' })
  const user = await signup(app)
  const res = await loginRes(app, user.email)
  t.equal(res.statusCode, 200)
  assertRefreshCookie(t, res, { secure: false, maxAge: 2 * 86_400 })
  const sessions = await app.inject({ method: 'GET', url: `${AUTH}/sessions`, headers: { authorization: `Bearer ${res.json().access_token}` } })
  const expiresAt = Date.parse(sessions.json().sessions[0].expires_at)
  const expires = Date.parse([...parseSetCookie(setCookies(res)[0] ?? '').attributes.entries()].find(([k]) => k.toLowerCase() === 'expires')?.[1] ?? '')
  t.ok(Math.abs(expires - expiresAt) < 2000, 'Expires matches the session\'s expires_at')

  const other = await buildTestApp(t, { REFRESH_DAYS: '3' })
  const otherUser = await signup(other)
  assertRefreshCookie(t, await loginRes(other, otherUser.email), { secure: false, maxAge: 3 * 86_400 })
})

t.test('REFRESH_IN_COOKIE=false: no Set-Cookie at all, the token always in the body, the cookie ignored', async (t) => {
  const app = await buildTestApp(t, { REFRESH_IN_COOKIE: 'false' })
  const user = await signup(app)

  for (const extra of [{}, { return_refresh_in_body: false }, { return_refresh_in_body: true }]) {
    const res = await loginRes(app, user.email, extra)
    t.equal(res.statusCode, 200)
    t.same(setCookies(res), [], `login ${JSON.stringify(extra)}: no Set-Cookie`)
    t.same(Object.keys(res.json()).sort(), ['access_token', 'expires_in', 'refresh_token', 'token_type', 'user'], `login ${JSON.stringify(extra)}: refresh_token always in the body`)
    t.match(res.json().refresh_token, TOKEN)
  }

  const res = await loginRes(app, user.email)
  const token: string = res.json().refresh_token
  const access: string = res.json().access_token

  // The cookie is not read: a cookie-only refresh has no token, a cookie-only logout ends nothing.
  let r = await app.inject({ method: 'POST', url: `${AUTH}/refresh`, headers: { cookie: `refresh_token=${token}` } })
  assertProblem(t, r, 401, 'invalid_refresh_token')
  r = await app.inject({ method: 'POST', url: `${AUTH}/logout`, headers: { cookie: `refresh_token=${token}` } })
  t.equal(r.statusCode, 204)
  t.same(setCookies(r), [], 'logout: no clearing cookie')
  t.equal((await app.inject({ method: 'GET', url: `${AUTH}/me`, headers: { authorization: `Bearer ${access}` } })).statusCode, 200, 'the cookie-only logout ended nothing')

  // A login carrying that cookie does not end the session either (the cookie is not read).
  const relog = await loginRes(app, user.email, {}, { cookie: `refresh_token=${token}` })
  t.equal(relog.statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: `${AUTH}/me`, headers: { authorization: `Bearer ${access}` } })).statusCode, 200, 'a login with the cookie ended nothing')

  r = await app.inject({ method: 'POST', url: `${AUTH}/refresh`, payload: { refresh_token: token } })
  t.equal(r.statusCode, 200, 'refresh with the body token')
  t.same(setCookies(r), [], 'refresh: no Set-Cookie')
  t.same(Object.keys(r.json()).sort(), ['access_token', 'expires_in', 'refresh_token', 'token_type'])

  r = await app.inject({ method: 'POST', url: `${AUTH}/logout`, payload: { refresh_token: r.json().refresh_token } })
  t.equal(r.statusCode, 204)
  t.same(setCookies(r), [], 'logout with the body token: no Set-Cookie')
  t.equal((await app.inject({ method: 'GET', url: `${AUTH}/me`, headers: { authorization: `Bearer ${access}` } })).statusCode, 401, 'that session ended')

  r = await app.inject({ method: 'POST', url: `${AUTH}/logout-all`, headers: { authorization: `Bearer ${relog.json().access_token}` } })
  t.equal(r.statusCode, 204)
  t.same(setCookies(r), [], 'logout-all: no Set-Cookie')
  r = await app.inject({ method: 'POST', url: `${AUTH}/logout` })
  t.equal(r.statusCode, 204)
  t.same(setCookies(r), [], 'bodiless logout: no Set-Cookie')
})
