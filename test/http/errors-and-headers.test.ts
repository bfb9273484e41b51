// API.md §2.2–2.4 and §13: problem documents with exactly the documented members, security
// headers on every response (including those produced before routing), Cache-Control on
// /api/v1/auth, unknown routes, non-preflight OPTIONS, and the 414/404 of long session ids.
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { buildTestApp, PASSWORD, signupAndLogin, uniqueEmail } from '../fixtures/app.ts'
import { assertNoLeaks, assertNoStore, assertProblem, assertSecurityHeaders, get, header, listen, rawRequest } from './helpers.ts'

const AUTH = '/api/v1/auth'
const JSON_TYPE = { 'content-type': 'application/json' }

t.test('errors and headers', async (t) => {
  const app = await buildTestApp(t)
  const port = await listen(app)
  const session = await signupAndLogin(app)
  const bearer = { authorization: `Bearer ${session.accessToken}` }

  // Every response of this file, labelled, for the checks that apply to all of them.
  const seen: Array<[string, LightMyRequestResponse]> = []
  const inject = async (label: string, options: InjectOptions): Promise<LightMyRequestResponse> => {
    const res = await app.inject(options)
    seen.push([label, res])
    return res
  }

  await t.test('GET / is 200 {"status":"ready"} with the security headers', async (t) => {
    const res = await inject('GET /', { method: 'GET', url: '/' })
    t.equal(res.statusCode, 200)
    t.match(String(header(res.headers, 'content-type')), /^application\/json(;|$)/)
    t.equal(res.body, '{"status":"ready"}')
    assertSecurityHeaders(t, res, 'GET /')
  })

  await t.test('successes under /api/v1/auth carry the security headers and no-store', async (t) => {
    const email = uniqueEmail()
    const checks: Array<[string, LightMyRequestResponse, number]> = [
      ['signup', await inject('signup', { method: 'POST', url: `${AUTH}/signup`, payload: { email, password: PASSWORD, name: 'Ada' } }), 201],
      ['login', await inject('login', { method: 'POST', url: `${AUTH}/login`, payload: { email, password: PASSWORD, return_refresh_in_body: true } }), 200],
      ['me', await inject('me', { method: 'GET', url: `${AUTH}/me`, headers: bearer }), 200],
      ['sessions', await inject('sessions', { method: 'GET', url: `${AUTH}/sessions`, headers: bearer }), 200],
      // Routed like /api/v1/auth/me: the header follows the decoded path, not the raw URL.
      ['me, percent-encoded path', await inject('me', { method: 'GET', url: '/api/v1/%61uth/me', headers: bearer }), 200]
    ]
    const refresh = await inject('refresh', { method: 'POST', url: `${AUTH}/refresh`, payload: { refresh_token: checks[1]![1].json().refresh_token } })
    checks.push(['refresh', refresh, 200])
    checks.push(['logout', await inject('logout', { method: 'POST', url: `${AUTH}/logout`, payload: { refresh_token: refresh.json().refresh_token } }), 204])
    for (const [label, res, status] of checks) {
      t.equal(res.statusCode, status, label)
      assertSecurityHeaders(t, res, label)
      assertNoStore(t, res, label)
    }
  })

  await t.test('401s are problem documents with WWW-Authenticate, security headers and no-store', async (t) => {
    const cases: Array<[string, Record<string, string>]> = [
      ['no Authorization', {}],
      ['garbage token', { authorization: 'Bearer garbage' }],
      ['not Bearer', { authorization: 'Basic Zm9vOmJhcg==' }],
      ['refresh token as Bearer', { authorization: `Bearer ${session.refreshToken}` }]
    ]
    for (const [label, headers] of cases) {
      for (const url of [`${AUTH}/me`, `${AUTH}/sessions`]) {
        const res = await inject(`401 ${url} ${label}`, { method: 'GET', url, headers })
        t.comment(`${url} ${label}`)
        assertProblem(t, res, 401, 'invalid_token')
        t.match(String(header(res.headers, 'www-authenticate')), /^Bearer\b/, 'WWW-Authenticate')
        assertSecurityHeaders(t, res, label)
        assertNoStore(t, res, label)
      }
    }
    const res = await inject('401 login', { method: 'POST', url: `${AUTH}/login`, payload: { email: session.email, password: 'wrong password' } })
    assertProblem(t, res, 401, 'invalid_credentials')
    assertSecurityHeaders(t, res)
    assertNoStore(t, res)
  })

  await t.test('unknown routes are 404 not_found problem documents (API.md §2.4)', async (t) => {
    const cases: Array<[string, string, boolean]> = [
      ['GET', `${AUTH}/unknown`, true],
      ['POST', `${AUTH}/unknown`, true],
      ['GET', `${AUTH}/signup`, true], // known path, unknown method
      ['PUT', `${AUTH}/login`, true],
      ['PATCH', `${AUTH}/sessions`, true],
      ['GET', `${AUTH}`, true],
      ['GET', `${AUTH}/`, true],
      ['GET', '/nope', false],
      ['GET', '/api/v2/auth/login', false],
      ['DELETE', '/', false]
    ]
    for (const [method, url, underAuth] of cases) {
      const res = await inject(`404 ${method} ${url}`, { method: method as 'GET', url, headers: bearer })
      t.comment(`${method} ${url}`)
      assertProblem(t, res, 404, 'not_found')
      assertSecurityHeaders(t, res, `${method} ${url}`)
      if (underAuth) assertNoStore(t, res, `${method} ${url}`)
    }
  })

  await t.test('OPTIONS that is not a preflight is a 404 problem', async (t) => {
    const cases: Array<[string, Record<string, string>]> = [
      ['/', {}],
      [`${AUTH}/login`, {}],
      [`${AUTH}/login`, { origin: 'https://evil.example' }],
      [`${AUTH}/login`, { 'access-control-request-method': 'POST' }],
      [`${AUTH}/sessions/abc`, bearer]
    ]
    for (const [url, headers] of cases) {
      const res = await inject(`OPTIONS ${url}`, { method: 'OPTIONS', url, headers })
      t.comment(`OPTIONS ${url} ${JSON.stringify(Object.keys(headers))}`)
      assertProblem(t, res, 404, 'not_found')
      assertSecurityHeaders(t, res, `OPTIONS ${url}`)
      if (url.startsWith(AUTH)) assertNoStore(t, res, `OPTIONS ${url}`)
    }
  })

  await t.test('a preflight answer carries the security headers and no-store', async (t) => {
    for (const url of [`${AUTH}/login`, `${AUTH}/sessions/abc`]) {
      const res = await inject(`preflight ${url}`, {
        method: 'OPTIONS',
        url,
        headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' }
      })
      t.equal(res.statusCode, 204, url)
      assertSecurityHeaders(t, res, `preflight ${url}`)
      assertNoStore(t, res, `preflight ${url}`)
    }
  })

  await t.test('415 and 413 carry the security headers and no-store', async (t) => {
    let res = await inject('415', { method: 'POST', url: `${AUTH}/login`, headers: { 'content-type': 'text/plain' }, payload: 'x' })
    assertProblem(t, res, 415, 'unsupported_media_type')
    assertSecurityHeaders(t, res)
    assertNoStore(t, res)
    res = await inject('413', { method: 'POST', url: `${AUTH}/signup`, headers: JSON_TYPE, payload: JSON.stringify({ name: 'a'.repeat(1_048_577) }) })
    assertProblem(t, res, 413, 'payload_too_large')
    assertSecurityHeaders(t, res)
    assertNoStore(t, res)
    res = await inject('400 malformed', { method: 'POST', url: `${AUTH}/login`, headers: JSON_TYPE, payload: '{"email":' })
    assertProblem(t, res, 400, 'malformed_json')
    assertSecurityHeaders(t, res)
    assertNoStore(t, res)
    res = await inject('400 validation', { method: 'POST', url: `${AUTH}/login`, headers: JSON_TYPE, payload: '{"email":1,"password":"x"}' })
    assertProblem(t, res, 400, 'validation_failed', { field: 'email' })
    assertSecurityHeaders(t, res)
    assertNoStore(t, res)
    res = await inject('409', { method: 'POST', url: `${AUTH}/signup`, payload: { email: session.email, password: PASSWORD, name: 'Ada' } })
    assertProblem(t, res, 409, 'email_taken')
    assertSecurityHeaders(t, res)
    assertNoStore(t, res)
  })

  await t.test('session ids: over 1,024 characters is 414 uri_too_long; up to 1,024 unknown is 404 session_not_found', async (t) => {
    const other = await signupAndLogin(app)
    const otherSid = (await app.inject({ method: 'GET', url: `${AUTH}/sessions`, headers: { authorization: `Bearer ${other.accessToken}` } })).json().sessions[0].id
    const cases: Array<[string, string, Record<string, string>, number, string]> = [
      ['1025 characters, valid token', 'a'.repeat(1025), bearer, 414, 'uri_too_long'],
      ['1025 characters, no token', 'a'.repeat(1025), {}, 414, 'uri_too_long'],
      ['5000 characters, valid token', 'a'.repeat(5000), bearer, 414, 'uri_too_long'],
      ['1024 characters, valid token', 'a'.repeat(1024), bearer, 404, 'session_not_found'],
      ['1024 URL-safe characters, valid token', 'A-_z'.repeat(256), bearer, 404, 'session_not_found'],
      ['short unknown id', 'nope', bearer, 404, 'session_not_found'],
      ['a UUID that is nobody\'s session', '00000000-0000-4000-8000-000000000000', bearer, 404, 'session_not_found'],
      ['another user\'s session', otherSid, bearer, 404, 'session_not_found'],
      ['1024 characters, no token', 'a'.repeat(1024), {}, 401, 'invalid_token']
    ]
    for (const [label, id, headers, status, code] of cases) {
      const res = await inject(`DELETE sessions ${label}`, { method: 'DELETE', url: `${AUTH}/sessions/${id}`, headers })
      t.comment(label)
      assertProblem(t, res, status, code)
      assertSecurityHeaders(t, res, label)
      assertNoStore(t, res, label)
      t.notOk(res.body.includes('aaaaaaaa'), 'the id is not echoed')
    }
    t.equal((await app.inject({ method: 'GET', url: `${AUTH}/me`, headers: { authorization: `Bearer ${other.accessToken}` } })).statusCode, 200, 'the other user\'s session is unaffected')
    // Over a real connection too (a long URL is not cut short by the server).
    const res = await get(port, `${AUTH}/sessions/${'b'.repeat(1025)}`, bearer, 'DELETE')
    assertProblem(t, res, 414, 'uri_too_long')
    assertSecurityHeaders(t, res, 'DELETE over a socket')
    const ok = await get(port, `${AUTH}/sessions/${'b'.repeat(1024)}`, bearer, 'DELETE')
    assertProblem(t, ok, 404, 'session_not_found')
  })

  await t.test('a malformed percent-encoded URL is a 400 bad_request problem, with the security headers', async (t) => {
    for (const path of ['/%E0%A4%A', '/%', '/%zz', `${AUTH}/%E0%A4%A`, `${AUTH}/sessions/%E0%A4%A`, `${AUTH}/login%ff`]) {
      for (const method of ['GET', 'POST', 'DELETE']) {
        const res = await get(port, path, {}, method)
        t.comment(`${method} ${path}`)
        assertProblem(t, res, 400, 'bad_request')
        assertSecurityHeaders(t, res, `${method} ${path}`)
        t.notOk(/%E0|%zz|%ff/i.test(res.body), 'the URL is not echoed')
        if (path.startsWith(AUTH)) assertNoStore(t, res, `${method} ${path}`)
      }
    }
    // fetch sends the path as written, too.
    const res = await fetch(`http://127.0.0.1:${port}/%E0%A4%A`)
    const answer = { statusCode: res.status, headers: Object.fromEntries(res.headers), body: await res.text() }
    assertProblem(t, answer, 400, 'bad_request')
    assertSecurityHeaders(t, answer, 'fetch')
  })

  await t.test('requests the HTTP parser rejects get problem documents with the security headers', async (t) => {
    let res = await rawRequest(port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\nConnection: close\r\n\r\n`)
    assertProblem(t, res, 431, 'request_header_fields_too_large')
    assertSecurityHeaders(t, res, '431')
    res = await rawRequest(port, `GET ${AUTH}/me HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 40 }, (_, i) => `X-H${i}: ${'b'.repeat(500)}\r\n`).join('')}Connection: close\r\n\r\n`)
    assertProblem(t, res, 431, 'request_header_fields_too_large')
    assertSecurityHeaders(t, res, '431 many headers')
    for (const [label, raw] of [
      ['not HTTP', 'this is not http\r\n\r\n'],
      ['bad header line', 'GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n'],
      ['bad version', 'GET / HTTP/9.9\r\nHost: x\r\n\r\n'],
      ['bad Content-Length', `POST ${AUTH}/login HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n`]
    ] as const) {
      res = await rawRequest(port, raw)
      t.comment(label)
      assertProblem(t, res, 400, 'bad_request')
      assertSecurityHeaders(t, res, label)
    }
  })

  await t.test('real connections: the same headers as app.inject, and never X-Powered-By', async (t) => {
    const res = await get(port, '/')
    t.equal(res.statusCode, 200)
    assertSecurityHeaders(t, res, 'GET / over a socket')
    const notFound = await get(port, `${AUTH}/unknown`)
    assertProblem(t, notFound, 404, 'not_found')
    assertSecurityHeaders(t, notFound, '404 over a socket')
    assertNoStore(t, notFound, '404 over a socket')
  })

  await t.test('every response of this file: security headers; errors without leaks', async (t) => {
    t.ok(seen.length > 40, `${seen.length} responses`)
    for (const [label, res] of seen) {
      assertSecurityHeaders(t, res, label)
      if (res.statusCode >= 400) {
        assertNoLeaks(t, res, label)
        t.equal(res.json().status, res.statusCode, `${label}: status member`)
        t.notOk('stack' in res.json(), `${label}: no stack member`)
      }
    }
  })

  await t.test('request_id differs per request', async (t) => {
    const a = (await app.inject({ method: 'GET', url: '/nope' })).json().request_id
    const b = (await app.inject({ method: 'GET', url: '/nope' })).json().request_id
    t.not(a, b)
  })
})
