// The README walkthrough as nested subtests: signup -> login -> me -> refresh -> replay -> logout,
// under every store set-up (PostgreSQL + Redis, PostgreSQL holding the sessions, the embedded
// database), one app per set-up.
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { buildTestApp, PASSWORD, STORE_MODES, uniqueEmail } from '../fixtures/app.ts'

t.test('signup -> login -> me -> refresh -> logout', async (t) => {
  for (const [mode, settings] of Object.entries(STORE_MODES)) {
    await t.test(mode, async (t) => walkthrough(t, await buildTestApp(t, settings())))
  }
})

async function walkthrough (t: Test, app: FastifyInstance): Promise<void> {
  const email = uniqueEmail()
  let userId = ''
  let createdAt = ''
  let accessToken = ''
  let cookie = ''

  await t.test('signup creates the user and starts no session', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/signup', payload: { email: `  ${email.toUpperCase()} `, password: PASSWORD, name: 'Ada Lovelace' } })
    t.equal(res.statusCode, 201)
    const body = res.json()
    t.same(Object.keys(body).sort(), ['created_at', 'email', 'id', 'name'])
    t.equal(body.email, email, 'email is normalised')
    t.match(body.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)
    t.match(body.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    t.notOk(res.headers['set-cookie'], 'no cookie at signup')
    userId = body.id
    createdAt = body.created_at
  })

  await t.test('the same email again is 409 email_taken', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/signup', payload: { email, password: PASSWORD, name: 'Someone' } })
    t.equal(res.statusCode, 409)
    t.equal(res.json().code, 'email_taken')
  })

  await t.test('login sets the refresh cookie and returns no refresh token by default', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email, password: PASSWORD } })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['cache-control'], 'no-store')
    const body = res.json()
    t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'token_type', 'user'])
    t.equal(body.token_type, 'bearer')
    t.equal(body.expires_in, 900)
    t.same(body.user, { id: userId, email, name: 'Ada Lovelace' })
    const setCookie = String(res.headers['set-cookie'])
    t.match(setCookie, /^refresh_token=[A-Za-z0-9_-]{86}; /)
    for (const attribute of ['Max-Age=1209600', 'Path=/api/v1/auth', 'HttpOnly', 'SameSite=Strict', 'Expires=']) {
      t.ok(setCookie.includes(attribute), attribute)
    }
    t.notOk(/Domain=|Secure/i.test(setCookie), 'host-only, not Secure under dev')
    accessToken = body.access_token
    cookie = setCookie.split(';')[0]!
  })

  await t.test('me answers the user with the signup created_at', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { authorization: `Bearer ${accessToken}` } })
    t.equal(res.statusCode, 200)
    t.same(res.json(), { id: userId, email, name: 'Ada Lovelace', created_at: createdAt })
  })

  let previousCookie = ''
  await t.test('refresh through the cookie rotates it', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/refresh', headers: { cookie } })
    t.equal(res.statusCode, 200)
    const body = res.json()
    t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'token_type'], 'no refresh_token in the body for a cookie request')
    const next = String(res.headers['set-cookie']).split(';')[0]!
    t.not(next, cookie, 'a new refresh token')
    t.equal((await app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { authorization: `Bearer ${body.access_token}` } })).statusCode, 200)
    previousCookie = cookie
    cookie = next
    accessToken = body.access_token
  })

  await t.test('logout ends the session and clears the cookie', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { cookie } })
    t.equal(res.statusCode, 204)
    t.equal(res.body, '')
    t.match(String(res.headers['set-cookie']), /^refresh_token=; Max-Age=0; Path=\/api\/v1\/auth; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Strict$/)
  })

  await t.test('after logout the refresh tokens and the access token are dead', async (t) => {
    for (const c of [cookie, previousCookie]) {
      const res = await app.inject({ method: 'POST', url: '/api/v1/auth/refresh', headers: { cookie: c } })
      t.equal(res.statusCode, 401)
      t.equal(res.json().code, 'invalid_refresh_token')
      t.notOk(res.headers['set-cookie'])
    }
    const res = await app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { authorization: `Bearer ${accessToken}` } })
    t.equal(res.statusCode, 401)
    t.equal(res.json().code, 'invalid_token')
  })
}
