// API.md §2.5: CORS in wildcard mode and in list mode, preflights, Expose-Headers, credentials,
// Vary, unlisted origins, and CORS on error responses (including those produced before routing).
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { buildTestApp, login, PASSWORD, signup, uniqueEmail } from '../fixtures/app.ts'
import { assertProblem, assertSecurityHeaders, get, header, listen, type Answer } from './helpers.ts'

const AUTH = '/api/v1/auth'
const ALLOW_METHODS = 'GET, POST, DELETE, OPTIONS'
const ALLOW_HEADERS = 'Authorization, Content-Type'
const EXPOSE = 'Retry-After, WWW-Authenticate'
const LISTED = 'http://localhost:3000'
const UNLISTED = ['https://evil.example', 'null', 'http://localhost:3000.evil.example', 'https://localhost:3000', 'http://localhost:30000', 'http://localhost',
  'HTTP://LOCALHOST:3000', 'http://localhost:3000/', 'http://LOCALHOST:3000', 'http://localhost:3000, https://evil.example', '*']

const acao = (res: Answer) => header(res.headers, 'access-control-allow-origin')
const acac = (res: Answer) => header(res.headers, 'access-control-allow-credentials')
const aceh = (res: Answer) => header(res.headers, 'access-control-expose-headers')
const varyHasOrigin = (res: Answer) => (header(res.headers, 'vary') ?? '').split(',').map((v) => v.trim().toLowerCase()).includes('origin')

function preflight (app: FastifyInstance, url: string, origin: string, method: string, requestHeaders?: string) {
  return app.inject({
    method: 'OPTIONS',
    url,
    headers: { origin, 'access-control-request-method': method, ...(requestHeaders ? { 'access-control-request-headers': requestHeaders } : {}) }
  })
}

/** A representative set of actual responses for an Origin: success, 401, 404, 415, 400, 413. */
async function actualResponses (app: FastifyInstance, origin: string | undefined, accessToken: string): Promise<Array<[string, Answer]>> {
  const o: Record<string, string> = origin === undefined ? {} : { origin }
  return [
    ['GET / (200)', await app.inject({ method: 'GET', url: '/', headers: o })],
    ['GET /health/ready (200)', await app.inject({ method: 'GET', url: '/health/ready', headers: o })],
    ['GET /me (200)', await app.inject({ method: 'GET', url: `${AUTH}/me`, headers: { ...o, authorization: `Bearer ${accessToken}` } })],
    ['GET /me without a token (401)', await app.inject({ method: 'GET', url: `${AUTH}/me`, headers: o })],
    ['GET unknown route (404)', await app.inject({ method: 'GET', url: `${AUTH}/unknown`, headers: o })],
    ['login as text/plain (415)', await app.inject({ method: 'POST', url: `${AUTH}/login`, headers: { ...o, 'content-type': 'text/plain' }, payload: 'x' })],
    ['login with an unknown property (400)', await app.inject({ method: 'POST', url: `${AUTH}/login`, headers: o, payload: { email: 'a@example.com', password: 'x', x: 1 } })],
    ['login with a wrong password (401)', await app.inject({ method: 'POST', url: `${AUTH}/login`, headers: o, payload: { email: 'nobody@example.com', password: 'wrong' } })],
    ['signup over 1 MiB (413)', await app.inject({ method: 'POST', url: `${AUTH}/signup`, headers: { ...o, 'content-type': 'application/json' }, payload: JSON.stringify({ name: 'a'.repeat(1_048_577) }) })],
    ['refresh without a token (401)', await app.inject({ method: 'POST', url: `${AUTH}/refresh`, headers: o })]
  ]
}

const PREFLIGHTS: Array<[string, string, string | undefined]> = [
  [`${AUTH}/login`, 'POST', 'content-type'],
  [`${AUTH}/refresh`, 'POST', 'content-type'],
  [`${AUTH}/sessions/abc123`, 'DELETE', 'authorization'],
  [`${AUTH}/me`, 'GET', 'authorization'],
  [`${AUTH}/signup`, 'POST', undefined],
  ['/', 'GET', undefined]
]

t.test('wildcard mode (CORS_ORIGINS=*)', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: '*' })
  const user = await signup(app)
  const { accessToken } = await login(app, user.email)
  const origins = ['https://evil.example', 'null', LISTED, 'http://anything.test:8080', 'not even an origin']

  await t.test('preflights are 204 with Allow-Origin *, the exact methods and headers, and no credentials', async (t) => {
    for (const origin of origins) {
      for (const [url, method, requestHeaders] of PREFLIGHTS) {
        const res = await preflight(app, url, origin, method, requestHeaders)
        const label = `${origin} ${method} ${url}`
        t.equal(res.statusCode, 204, label)
        t.equal(res.body, '', `${label}: empty body`)
        t.equal(acao(res), '*', `${label}: Allow-Origin *`)
        t.equal(header(res.headers, 'access-control-allow-methods'), ALLOW_METHODS, `${label}: Allow-Methods`)
        t.equal(header(res.headers, 'access-control-allow-headers'), ALLOW_HEADERS, `${label}: Allow-Headers`)
        t.equal(acac(res), undefined, `${label}: never Allow-Credentials`)
        assertSecurityHeaders(t, res, label)
      }
    }
  })

  await t.test('actual responses, errors included, carry Allow-Origin * and Expose-Headers, never credentials', async (t) => {
    for (const origin of origins) {
      for (const [label, res] of await actualResponses(app, origin, accessToken)) {
        t.equal(acao(res), '*', `${origin} ${label}: Allow-Origin *`)
        t.equal(aceh(res), EXPOSE, `${origin} ${label}: Expose-Headers`)
        t.equal(acac(res), undefined, `${origin} ${label}: no Allow-Credentials`)
        t.ok(res.statusCode < 500, `${origin} ${label}: no 5xx`)
      }
    }
  })

  await t.test('successful login and cookie refresh with an Origin: Allow-Origin *, no credentials', async (t) => {
    const origin = 'https://evil.example'
    const res = await app.inject({ method: 'POST', url: `${AUTH}/login`, headers: { origin }, payload: { email: user.email, password: PASSWORD } })
    t.equal(res.statusCode, 200)
    t.equal(acao(res), '*')
    t.equal(aceh(res), EXPOSE)
    t.equal(acac(res), undefined)
    const signupRes = await app.inject({ method: 'POST', url: `${AUTH}/signup`, headers: { origin }, payload: { email: uniqueEmail(), password: PASSWORD, name: 'Ada' } })
    t.equal(signupRes.statusCode, 201)
    t.equal(acao(signupRes), '*')
    t.equal(acac(signupRes), undefined)
  })

  await t.test('a non-preflight OPTIONS is answered like any other request to that path: 404, with CORS headers', async (t) => {
    for (const url of [`${AUTH}/login`, '/']) {
      const res = await app.inject({ method: 'OPTIONS', url, headers: { origin: 'https://evil.example' } })
      assertProblem(t, res, 404, 'not_found')
      t.equal(acao(res), '*', `OPTIONS ${url}: Allow-Origin * like the 404 of any request with an Origin`)
      t.equal(acac(res), undefined, `OPTIONS ${url}: no credentials`)
      const plain = await app.inject({ method: 'OPTIONS', url, headers: { 'access-control-request-method': 'POST' } })
      assertProblem(t, plain, 404, 'not_found')
    }
  })

  await t.test('without an Origin header there is nothing to allow, and never credentials', async (t) => {
    for (const [label, res] of await actualResponses(app, undefined, accessToken)) {
      t.equal(acac(res), undefined, `${label}: no Allow-Credentials`)
    }
  })

  await t.test('responses produced before routing carry the CORS headers too (API.md §13)', async (t) => {
    const port = await listen(app)
    const res = await get(port, `${AUTH}/%E0%A4%A`, { origin: 'https://evil.example' })
    assertProblem(t, res, 400, 'bad_request')
    t.equal(acao(res), '*', 'malformed URL: Allow-Origin *')
    t.equal(acac(res), undefined, 'malformed URL: no Allow-Credentials')
  })
})

t.test('list mode (CORS_ORIGINS=http://localhost:3000)', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: LISTED })
  const user = await signup(app)
  const { accessToken } = await login(app, user.email)

  await t.test('preflights from the listed origin: 204, the exact origin, credentials, methods, headers, Vary', async (t) => {
    for (const [url, method, requestHeaders] of PREFLIGHTS) {
      const res = await preflight(app, url, LISTED, method, requestHeaders)
      const label = `${method} ${url}`
      t.equal(res.statusCode, 204, label)
      t.equal(acao(res), LISTED, `${label}: Allow-Origin`)
      t.equal(acac(res), 'true', `${label}: Allow-Credentials`)
      t.equal(header(res.headers, 'access-control-allow-methods'), ALLOW_METHODS, `${label}: Allow-Methods`)
      t.equal(header(res.headers, 'access-control-allow-headers'), ALLOW_HEADERS, `${label}: Allow-Headers`)
      t.ok(varyHasOrigin(res), `${label}: Vary includes Origin`)
      assertSecurityHeaders(t, res, label)
    }
  })

  await t.test('actual responses to the listed origin: the exact origin, credentials, Expose-Headers, Vary', async (t) => {
    for (const [label, res] of await actualResponses(app, LISTED, accessToken)) {
      t.equal(acao(res), LISTED, `${label}: Allow-Origin`)
      t.equal(acac(res), 'true', `${label}: Allow-Credentials`)
      t.equal(aceh(res), EXPOSE, `${label}: Expose-Headers`)
      t.ok(varyHasOrigin(res), `${label}: Vary includes Origin`)
    }
  })

  await t.test('a cookie refresh from the listed origin is 200 with the CORS headers', async (t) => {
    const session = await login(app, user.email)
    const res = await app.inject({ method: 'POST', url: `${AUTH}/refresh`, headers: { origin: LISTED, cookie: session.cookie } })
    t.equal(res.statusCode, 200)
    t.equal(acao(res), LISTED)
    t.equal(acac(res), 'true')
    t.equal(aceh(res), EXPOSE)
    t.ok(varyHasOrigin(res))
    const loginRes = await app.inject({ method: 'POST', url: `${AUTH}/login`, headers: { origin: LISTED }, payload: { email: user.email, password: PASSWORD } })
    t.equal(loginRes.statusCode, 200)
    t.equal(acao(loginRes), LISTED)
    t.equal(acac(loginRes), 'true')
  })

  await t.test('unlisted origins: no Allow-Origin, Allow-Credentials or Expose-Headers; otherwise processed normally', async (t) => {
    for (const origin of UNLISTED) {
      for (const [url, method, requestHeaders] of PREFLIGHTS) {
        const res = await preflight(app, url, origin, method, requestHeaders)
        const label = `${origin} preflight ${method} ${url}`
        t.equal(res.statusCode, 204, `${label}: still 204`)
        t.equal(acao(res), undefined, `${label}: no Allow-Origin`)
        t.equal(acac(res), undefined, `${label}: no Allow-Credentials`)
        t.equal(aceh(res), undefined, `${label}: no Expose-Headers`)
        t.ok(varyHasOrigin(res), `${label}: Vary includes Origin`)
        assertSecurityHeaders(t, res, label)
      }
      for (const [label, res] of await actualResponses(app, origin, accessToken)) {
        t.equal(acao(res), undefined, `${origin} ${label}: no Allow-Origin`)
        t.equal(acac(res), undefined, `${origin} ${label}: no Allow-Credentials`)
        t.equal(aceh(res), undefined, `${origin} ${label}: no Expose-Headers`)
        t.ok(varyHasOrigin(res), `${origin} ${label}: Vary includes Origin`)
        t.ok(res.statusCode < 500, `${origin} ${label}: never a 5xx (got ${res.statusCode})`)
      }
      const root = await app.inject({ method: 'GET', url: '/', headers: { origin } })
      t.equal(root.statusCode, 200, `${origin}: GET / still answers 200`)
      t.equal(root.body, '{"status":"ready"}')
    }
  })

  await t.test('Allow-Credentials only ever comes with Allow-Origin of the listed origin', async (t) => {
    for (const origin of [LISTED, ...UNLISTED, undefined]) {
      const responses = [
        ...await actualResponses(app, origin, accessToken),
        ...(origin === undefined ? [] : await Promise.all(PREFLIGHTS.map(async ([url, m, h]) => [`preflight ${url}`, await preflight(app, url, origin, m, h)] as [string, Answer])))
      ]
      for (const [label, res] of responses) {
        if (acac(res) !== undefined) t.equal(acao(res), LISTED, `${String(origin)} ${label}: credentials only with the listed origin`)
        else t.not(acao(res), LISTED, `${String(origin)} ${label}`)
        t.not(acao(res), '*', `${String(origin)} ${label}: never * in list mode`)
      }
    }
  })

  await t.test('Vary: Origin on every response, with or without an Origin header', async (t) => {
    for (const [label, res] of await actualResponses(app, undefined, accessToken)) {
      t.ok(varyHasOrigin(res), `${label}: Vary includes Origin`)
      t.equal(acao(res), undefined, `${label}: no Allow-Origin without an Origin`)
    }
    for (const url of ['/', `${AUTH}/login`]) {
      const res = await app.inject({ method: 'OPTIONS', url })
      assertProblem(t, res, 404, 'not_found')
      t.ok(varyHasOrigin(res), `non-preflight OPTIONS ${url}: Vary includes Origin`)
    }
  })

  await t.test('a non-preflight OPTIONS from the listed origin is a 404 with its CORS headers', async (t) => {
    const res = await app.inject({ method: 'OPTIONS', url: `${AUTH}/login`, headers: { origin: LISTED } })
    assertProblem(t, res, 404, 'not_found')
    t.equal(acao(res), LISTED, 'Allow-Origin like any other request to that path')
    t.equal(acac(res), 'true')
    t.ok(varyHasOrigin(res))
    const evil = await app.inject({ method: 'OPTIONS', url: `${AUTH}/login`, headers: { origin: 'https://evil.example' } })
    assertProblem(t, evil, 404, 'not_found')
    t.equal(acao(evil), undefined)
  })

  await t.test('responses produced before routing: Vary: Origin, and the listed origin allowed', async (t) => {
    const port = await listen(app)
    for (const origin of [undefined, LISTED, 'https://evil.example']) {
      const res = await get(port, `${AUTH}/%E0%A4%A`, origin === undefined ? {} : { origin })
      assertProblem(t, res, 400, 'bad_request')
      t.ok(varyHasOrigin(res), `malformed URL, Origin ${String(origin)}: Vary includes Origin`)
      t.equal(acao(res), origin === LISTED ? LISTED : undefined, `malformed URL, Origin ${String(origin)}: Allow-Origin`)
      t.equal(acac(res), origin === LISTED ? 'true' : undefined, `malformed URL, Origin ${String(origin)}: Allow-Credentials`)
    }
  })
})

t.test('list mode with several origins (entries trimmed, exact equality)', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: ' http://localhost:3000 , https://app.example.com:8443 ' })
  for (const origin of ['http://localhost:3000', 'https://app.example.com:8443']) {
    const res = await preflight(app, `${AUTH}/login`, origin, 'POST', 'content-type')
    t.equal(res.statusCode, 204)
    t.equal(acao(res), origin, `${origin}: allowed`)
    t.equal(acac(res), 'true')
    const root = await app.inject({ method: 'GET', url: '/', headers: { origin } })
    t.equal(acao(root), origin)
    t.equal(aceh(root), EXPOSE)
  }
  for (const origin of ['https://app.example.com', 'https://app.example.com:8443/', 'http://app.example.com:8443']) {
    const res = await app.inject({ method: 'GET', url: '/', headers: { origin } })
    t.equal(res.statusCode, 200)
    t.equal(acao(res), undefined, `${origin}: not allowed`)
    t.equal(acac(res), undefined)
  }
})
