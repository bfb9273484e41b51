// API.md §2.1: JSON-only bodies, optional bodies, malformed JSON, the 1 MiB limit, strict
// validation (no unknown properties, no coercion, required fields named) and the order of checks.
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { buildTestApp, login, PASSWORD, signup, signupAndLogin, uniqueEmail } from '../fixtures/app.ts'
import { assertProblem, header } from './helpers.ts'

const AUTH = '/api/v1/auth'
const JSON_TYPE = { 'content-type': 'application/json' }
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

type Method = 'POST' | 'GET' | 'DELETE'
function post (app: FastifyInstance, path: string, payload: string | undefined, headers: Record<string, string> = {}, method: Method = 'POST') {
  return app.inject({ method, url: `${AUTH}${path}`, headers, ...(payload === undefined ? {} : { payload }) })
}

async function sessionsOf (app: FastifyInstance, accessToken: string) {
  const res = await app.inject({ method: 'GET', url: `${AUTH}/sessions`, headers: { authorization: `Bearer ${accessToken}` } })
  return res.json().sessions as Array<{ id: string, last_used_at: string, current: boolean }>
}

t.test('request bodies (API.md §2.1)', async (t) => {
  // A one-second grace window lets the tests tell "not rotated" from "rotated" (section 6, rule 3).
  const app = await buildTestApp(t, { REFRESH_GRACE_SECONDS: '1' })
  const user = await signup(app)
  const validSignup = () => JSON.stringify({ email: uniqueEmail(), password: PASSWORD, name: 'Ada Lovelace' })
  const validLogin = JSON.stringify({ email: user.email, password: PASSWORD })

  await t.test('non-JSON media types are 415 unsupported_media_type on every body route', async (t) => {
    const { accessToken } = await login(app, user.email)
    const bearer = { authorization: `Bearer ${accessToken}` }
    const bodies: Array<[string, string, string]> = [
      ['text/plain', 'text/plain', validLogin],
      ['text/plain; charset=utf-8', 'text/plain with charset', validLogin],
      ['application/x-www-form-urlencoded', 'form-encoded', `email=${encodeURIComponent(user.email)}&password=${encodeURIComponent(PASSWORD)}`],
      ['multipart/form-data; boundary=XyZ', 'multipart', `--XyZ\r\nContent-Disposition: form-data; name="email"\r\n\r\n${user.email}\r\n--XyZ--\r\n`],
      ['application/xml', 'xml', '<login/>']
    ]
    for (const route of ['/signup', '/login', '/refresh', '/logout', '/logout-all']) {
      for (const [contentType, label, payload] of bodies) {
        const res = await post(app, route, payload, { 'content-type': contentType, ...bearer })
        t.comment(`${route} ${label}`)
        assertProblem(t, res, 415, 'unsupported_media_type')
      }
    }
    // The session is untouched by all of that.
    t.equal((await app.inject({ method: 'GET', url: `${AUTH}/me`, headers: bearer })).statusCode, 200, 'logout-all as text/plain revoked nothing')
  })

  await t.test('a cookie refresh or logout sent as text/plain is refused before the cookie is read', async (t) => {
    const session = await login(app, user.email)
    const before = (await sessionsOf(app, session.accessToken)).find((s) => s.current)
    await sleep(5)
    for (const route of ['/refresh', '/logout']) {
      const res = await post(app, route, '{}', { 'content-type': 'text/plain', cookie: session.cookie })
      assertProblem(t, res, 415, 'unsupported_media_type')
      t.equal(header(res.headers, 'set-cookie'), undefined, `${route}: no Set-Cookie`)
    }
    const after = (await sessionsOf(app, session.accessToken)).find((s) => s.current)
    t.ok(after, 'the session still exists after the 415 logout')
    t.equal(after?.last_used_at, before?.last_used_at, 'nothing was rotated (last_used_at unchanged)')
    // Past the grace window a rotated token would be a reuse (401 refresh_reused); the cookie
    // is still the current token, so it simply refreshes.
    await sleep(1100)
    const res = await post(app, '/refresh', undefined, { cookie: session.cookie })
    t.equal(res.statusCode, 200, 'the cookie still refreshes afterwards')
    t.match(String(header(res.headers, 'set-cookie')), /^refresh_token=[A-Za-z0-9_-]{86};/, 'and is rotated by that refresh')
  })

  await t.test('a charset parameter is accepted', async (t) => {
    for (const contentType of ['application/json; charset=utf-8', 'application/json;charset=UTF-8', 'application/json; charset="utf-8"']) {
      const res = await post(app, '/signup', validSignup(), { 'content-type': contentType })
      t.equal(res.statusCode, 201, `signup with ${contentType}`)
    }
    const res = await post(app, '/login', validLogin, { 'content-type': 'application/json; charset=utf-8' })
    t.equal(res.statusCode, 200, 'login with a charset')
  })

  await t.test('refresh, logout and logout-all take no body, or an empty application/json body, as {}', async (t) => {
    for (const headers of [{}, JSON_TYPE]) {
      const label = 'content-type' in headers ? 'empty application/json body' : 'no body, no Content-Type'
      const payload = 'content-type' in headers ? '' : undefined

      let res = await post(app, '/refresh', payload, headers)
      assertProblem(t, res, 401, 'invalid_refresh_token')
      t.comment(`refresh without a token (${label}) is 401, not 400`)

      const session = await login(app, user.email)
      res = await post(app, '/refresh', payload, { ...headers, cookie: session.cookie })
      t.equal(res.statusCode, 200, `refresh with the cookie (${label})`)
      const rotated = String(header(res.headers, 'set-cookie')).split(';')[0] ?? ''

      res = await post(app, '/logout', payload, headers)
      t.equal(res.statusCode, 204, `logout without a token (${label})`)
      res = await post(app, '/logout', payload, { ...headers, cookie: rotated })
      t.equal(res.statusCode, 204, `logout with the cookie (${label})`)
      t.equal((await app.inject({ method: 'GET', url: `${AUTH}/me`, headers: { authorization: `Bearer ${session.accessToken}` } })).statusCode, 401, `the cookie's session ended (${label})`)

      const other = await login(app, user.email)
      res = await post(app, '/logout-all', payload, { ...headers, authorization: `Bearer ${other.accessToken}` })
      t.equal(res.statusCode, 204, `logout-all (${label})`)
    }
  })

  await t.test('malformed JSON is 400 malformed_json', async (t) => {
    const examples = ['{"email":', '{"email": "a@example.com", }', '[not json', '{', 'nul', "{'email': 'a@example.com'}", '{"email": "a@example.com"} x']
    for (const route of ['/signup', '/login', '/refresh', '/logout', '/logout-all']) {
      for (const payload of examples) {
        const res = await post(app, route, payload, JSON_TYPE)
        t.comment(`${route} ${payload}`)
        assertProblem(t, res, 400, 'malformed_json')
      }
    }
  })

  await t.test('the body limit is 1 MiB: one byte more is 413 payload_too_large', async (t) => {
    const frame = (name: string) => JSON.stringify({ email: uniqueEmail(), password: PASSWORD, name })
    const overhead = Buffer.byteLength(frame(''))
    const exact = frame('a'.repeat(1_048_576 - overhead))
    t.equal(Buffer.byteLength(exact), 1_048_576)
    let res = await post(app, '/signup', exact, JSON_TYPE)
    assertProblem(t, res, 400, 'validation_failed', { field: 'name' })
    t.comment('a body of exactly 1,048,576 bytes is read (and the name is too long)')

    const over = frame('a'.repeat(1_048_576 - overhead + 1))
    res = await post(app, '/signup', over, JSON_TYPE)
    assertProblem(t, res, 413, 'payload_too_large')

    // e.g. a 1 MiB name, at every body route
    const big = JSON.stringify({ email: uniqueEmail(), password: PASSWORD, name: 'a'.repeat(1_048_576) })
    for (const route of ['/signup', '/login', '/refresh', '/logout', '/logout-all']) {
      res = await post(app, route, big, JSON_TYPE)
      t.comment(route)
      assertProblem(t, res, 413, 'payload_too_large')
    }
  })

  await t.test('a 413 on a cookie refresh rotates nothing', async (t) => {
    const session = await login(app, user.email)
    const before = (await sessionsOf(app, session.accessToken)).find((s) => s.current)
    await sleep(5)
    const res = await post(app, '/refresh', JSON.stringify({ refresh_token: 'x'.repeat(1_100_000) }), { ...JSON_TYPE, cookie: session.cookie })
    assertProblem(t, res, 413, 'payload_too_large')
    const after = (await sessionsOf(app, session.accessToken)).find((s) => s.current)
    t.equal(after?.last_used_at, before?.last_used_at, 'nothing rotated')
  })

  await t.test('the body must be a JSON object', async (t) => {
    const { accessToken } = await login(app, user.email)
    for (const route of ['/signup', '/login', '/refresh', '/logout', '/logout-all']) {
      for (const payload of ['[]', '["a@b.c"]', '"a string"', 'null', '42', 'true']) {
        const res = await post(app, route, payload, { ...JSON_TYPE, authorization: `Bearer ${accessToken}` })
        t.comment(`${route} ${payload}`)
        assertProblem(t, res, 400, 'validation_failed')
      }
    }
  })

  await t.test('unknown properties are 400 naming the property', async (t) => {
    const { accessToken } = await login(app, user.email)
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['/signup', { email: uniqueEmail(), password: PASSWORD, name: 'Ada', role: 'admin' }, 'role'],
      ['/login', { email: user.email, password: PASSWORD, is_admin: true }, 'is_admin'],
      ['/refresh', { refresh_token: 'x', extra: 1 }, 'extra'],
      ['/logout', { refresh_token: 'x', Extra_2: null }, 'Extra_2'],
      ['/logout-all', { x: 1 }, 'x'],
      ['/signup', { email: uniqueEmail(), password: PASSWORD, name: 'Ada', ['a'.repeat(64)]: 1 }, 'a'.repeat(64)]
    ]
    for (const [route, body, field] of cases) {
      const res = await post(app, route, JSON.stringify(body), { ...JSON_TYPE, authorization: `Bearer ${accessToken}` })
      t.comment(`${route} ${field}`)
      assertProblem(t, res, 400, 'validation_failed', { field })
    }
    t.equal((await app.inject({ method: 'GET', url: `${AUTH}/me`, headers: { authorization: `Bearer ${accessToken}` } })).statusCode, 200, 'logout-all with an unknown property revoked nothing')
  })

  await t.test('unknown property names that are not plain names are reported as (unknown), never echoed', async (t) => {
    const odd = ['em ail', 'a'.repeat(65), '$where', '<script>alert(1)</script>', 'naïve', 'x-y', '', 'a.b', '__proto__x\n']
    for (const name of odd) {
      for (const route of ['/signup', '/login', '/refresh']) {
        const base: Record<string, unknown> = route === '/signup'
          ? { email: uniqueEmail(), password: PASSWORD, name: 'Ada' }
          : route === '/login' ? { email: user.email, password: PASSWORD } : {}
        const payload = JSON.stringify({ ...base, [name]: 1 })
        const res = await post(app, route, payload, JSON_TYPE)
        t.comment(`${route} ${JSON.stringify(name)}`)
        const body = assertProblem(t, res, 400, 'validation_failed', { field: '(unknown)' })
        if (name.length >= 3) t.notOk(JSON.stringify(body).includes(JSON.stringify(name).slice(1, -1)), 'the name is not echoed')
      }
    }
  })

  await t.test('no type coercion', async (t) => {
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['/login', { email: user.email, password: PASSWORD, return_refresh_in_body: 'true' }, 'return_refresh_in_body'],
      ['/login', { email: user.email, password: PASSWORD, return_refresh_in_body: 'yes' }, 'return_refresh_in_body'],
      ['/login', { email: user.email, password: PASSWORD, return_refresh_in_body: 1 }, 'return_refresh_in_body'],
      ['/login', { email: user.email, password: PASSWORD, return_refresh_in_body: null }, 'return_refresh_in_body'],
      ['/signup', { email: uniqueEmail(), password: PASSWORD, name: 12345 }, 'name'],
      ['/signup', { email: uniqueEmail(), password: PASSWORD, name: true }, 'name'],
      ['/signup', { email: uniqueEmail(), password: PASSWORD, name: ['Ada'] }, 'name'],
      ['/signup', { email: ['a@b.c'], password: PASSWORD, name: 'Ada' }, 'email'],
      ['/signup', { email: uniqueEmail(), password: 12345678, name: 'Ada' }, 'password'],
      ['/signup', { email: null, password: PASSWORD, name: 'Ada' }, 'email'],
      ['/login', { email: user.email, password: 12345678 }, 'password'],
      ['/login', { email: { address: user.email }, password: PASSWORD }, 'email'],
      ['/login', { email: user.email, password: PASSWORD, device_name: 12345 }, 'device_name'],
      ['/refresh', { refresh_token: 12345 }, 'refresh_token'],
      ['/logout', { refresh_token: ['x'] }, 'refresh_token']
    ]
    for (const [route, body, field] of cases) {
      const res = await post(app, route, JSON.stringify(body), JSON_TYPE)
      t.comment(`${route} ${JSON.stringify(body[field])}`)
      assertProblem(t, res, 400, 'validation_failed', { field })
    }
  })

  await t.test('missing required properties are 400 naming the field', async (t) => {
    const email = uniqueEmail()
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['/signup', { password: PASSWORD, name: 'Ada' }, 'email'],
      ['/signup', { email, name: 'Ada' }, 'password'],
      ['/signup', { email, password: PASSWORD }, 'name'],
      ['/signup', {}, 'email'],
      ['/login', { password: PASSWORD }, 'email'],
      ['/login', { email: user.email }, 'password']
    ]
    for (const [route, body, field] of cases) {
      const res = await post(app, route, JSON.stringify(body), JSON_TYPE)
      t.comment(`${route} ${JSON.stringify(body)}`)
      assertProblem(t, res, 400, 'validation_failed', { field })
      t.ok(res.body.includes(field), `the body contains the word ${field}`)
    }
    // Signup and login require a body at all.
    for (const route of ['/signup', '/login']) {
      assertProblem(t, await post(app, route, undefined), 400, 'validation_failed')
      assertProblem(t, await post(app, route, '', JSON_TYPE), 400, 'validation_failed', { field: 'email' })
    }
  })

  await t.test('validation comes before authentication, credentials and state changes', async (t) => {
    // logout-all: a body other than {} is a 400 even with a bad or missing Bearer token.
    for (const authorization of ['Bearer not-a-token', 'Basic Zm9vOmJhcg==', undefined]) {
      const headers: Record<string, string> = { ...JSON_TYPE, ...(authorization ? { authorization } : {}) }
      const res = await post(app, '/logout-all', '{"x":1}', headers)
      t.comment(`logout-all {"x":1} with ${authorization ?? 'no Authorization'}`)
      assertProblem(t, res, 400, 'validation_failed', { field: 'x' })
    }
    // ... and media type, size and syntax come before authentication too.
    assertProblem(t, await post(app, '/logout-all', '{}', { 'content-type': 'text/plain', authorization: 'Bearer nope' }), 415, 'unsupported_media_type')
    assertProblem(t, await post(app, '/logout-all', '{"x":', { ...JSON_TYPE, authorization: 'Bearer nope' }), 400, 'malformed_json')
    assertProblem(t, await post(app, '/logout-all', JSON.stringify({ x: 'a'.repeat(1_048_576) }), { ...JSON_TYPE, authorization: 'Bearer nope' }), 413, 'payload_too_large')

    // login: an invalid field is a 400 before the credential check (unknown email, wrong password).
    let res = await post(app, '/login', JSON.stringify({ email: uniqueEmail(), password: 'wrong password', device_name: 'a\nb' }), JSON_TYPE)
    assertProblem(t, res, 400, 'validation_failed', { field: 'device_name' })
    res = await post(app, '/login', JSON.stringify({ email: user.email, password: 'wrong password', extra: 1 }), JSON_TYPE)
    assertProblem(t, res, 400, 'validation_failed', { field: 'extra' })

    // signup: an existing email with an invalid body is a 400, not a 409.
    res = await post(app, '/signup', JSON.stringify({ email: user.email, password: PASSWORD, name: 'Ada', role: 'admin' }), JSON_TYPE)
    assertProblem(t, res, 400, 'validation_failed', { field: 'role' })
    res = await post(app, '/signup', JSON.stringify({ email: user.email, password: 'short', name: 'Ada' }), JSON_TYPE)
    assertProblem(t, res, 400, 'validation_failed', { field: 'password' })

    // refresh: a valid cookie with an invalid body is a 400 and rotates nothing.
    const session = await login(app, user.email)
    const before = (await sessionsOf(app, session.accessToken)).find((s) => s.current)
    await sleep(5)
    for (const payload of ['{"refresh_token":""}', `{"refresh_token":"${'x'.repeat(513)}"}`, '{"other":1}']) {
      res = await post(app, '/refresh', payload, { ...JSON_TYPE, cookie: session.cookie })
      assertProblem(t, res, 400, 'validation_failed')
      res = await post(app, '/logout', payload, { ...JSON_TYPE, cookie: session.cookie })
      assertProblem(t, res, 400, 'validation_failed')
    }
    const after = (await sessionsOf(app, session.accessToken)).find((s) => s.current)
    t.equal(after?.last_used_at, before?.last_used_at, 'nothing rotated or revoked by the 400s')
  })

  await t.test('the accepted bodies still work', async (t) => {
    const s = await signupAndLogin(app)
    let res = await post(app, '/refresh', JSON.stringify({ refresh_token: s.refreshToken }), JSON_TYPE)
    t.equal(res.statusCode, 200, 'refresh with the token in the body')
    res = await post(app, '/logout-all', '{}', { ...JSON_TYPE, authorization: `Bearer ${s.accessToken}` })
    t.equal(res.statusCode, 204, 'logout-all with {}')
  })
})
