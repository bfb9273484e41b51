// Access tokens (API.md §4.1, §5.6) through GET /api/v1/auth/me: their exact shape, and every
// rejection the contract lists, with forged tokens signed here with node:crypto.
import { randomUUID } from 'node:crypto'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t, { type Test } from 'tap'
import { buildTestApp, login, me, refreshWithBody, signup, signupAndLogin, type LoggedIn } from '../fixtures/app.ts'
import { ACCESS_HEADER, accessClaims, AUDIENCE, b64url, decodeJwt, hmac, ISSUER, nowSeconds, signJwt } from '../fixtures/jwt.ts'

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
const WITH_ERROR = 'Bearer realm="api", error="invalid_token"'
const NO_HEADER = 'Bearer realm="api"'

function meWithAuthorization (app: FastifyInstance, authorization?: string) {
  return app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: authorization === undefined ? {} : { authorization } })
}

function assertRejected (t: Test, res: LightMyRequestResponse, label: string, challenge = WITH_ERROR): void {
  t.equal(res.statusCode, 401, `${label}: 401`)
  t.equal(res.headers['www-authenticate'], challenge, `${label}: WWW-Authenticate`)
  t.match(String(res.headers['content-type']), /^application\/problem\+json/, `${label}: problem document`)
  const body = res.json()
  t.equal(body.code, 'invalid_token', `${label}: code`)
  t.equal(body.status, 401, `${label}: status member`)
  t.notOk(res.headers['set-cookie'], `${label}: no Set-Cookie`)
}

/** A different base64url character than `c`, differing in its high bits (always significant). */
function otherChar (c: string): string {
  const i = BASE64URL.indexOf(c)
  return BASE64URL[(i + 32) % 64]!
}

t.test('access tokens', async (t) => {
  const app = await buildTestApp(t)
  const ada: LoggedIn = await signupAndLogin(app)
  const bob: LoggedIn = await signupAndLogin(app)
  const sessions = await app.inject({ method: 'GET', url: '/api/v1/auth/sessions', headers: { authorization: `Bearer ${ada.accessToken}` } })
  const adaSid = (sessions.json().sessions as Array<{ id: string, current: boolean }>).find((s) => s.current)?.id ?? ''

  const bearer = (token: string) => meWithAuthorization(app, `Bearer ${token}`)
  const claims = (overrides: Record<string, unknown> = {}) => accessClaims(ada.userId, adaSid, overrides)

  await t.test('header and claims are exactly those of §4.1', async (t) => {
    const { header, payload, parts } = decodeJwt(ada.accessToken)
    t.same(header, { alg: 'HS256', typ: 'at+jwt' }, 'header')
    t.same(Object.keys(header).sort(), ['alg', 'typ'], 'no other header members')
    t.same(Object.keys(payload).sort(), ['aud', 'exp', 'iat', 'iss', 'jti', 'sid', 'sub'], 'exactly these claims')
    t.equal(payload.iss, ISSUER)
    t.equal(payload.aud, AUDIENCE)
    t.equal(payload.sub, ada.userId, 'sub is the user id')
    t.match(payload.jti, UUID_V4, 'jti is a UUIDv4')
    t.equal(typeof payload.iat, 'number')
    t.equal(Number(payload.exp) - Number(payload.iat), 900, 'exp - iat = 900')
    t.equal(ada.login.json().expires_in, 900, 'expires_in = 900')
    t.ok(Math.abs(Number(payload.iat) - nowSeconds()) <= 5, 'iat is now')
    t.equal(payload.sid, adaSid, 'sid is the session id of GET /sessions')
    t.equal(parts[2], hmac(`${parts[0]}.${parts[1]}`), 'HMAC-SHA256 with JWT_SECRET')
    t.not(decodeJwt(bob.accessToken).payload.jti, payload.jti, 'jti is unique')
    t.equal((await me(app, ada.accessToken)).statusCode, 200)
  })

  await t.test('a refreshed access token has the same shape and session', async (t) => {
    const other = await login(app, ada.email)
    const res = await refreshWithBody(app, other.refreshToken)
    t.equal(res.statusCode, 200)
    const body = res.json()
    t.equal(body.expires_in, 900)
    const before = decodeJwt(other.accessToken)
    const { header, payload } = decodeJwt(body.access_token)
    t.same(header, { alg: 'HS256', typ: 'at+jwt' })
    t.same(Object.keys(payload).sort(), ['aud', 'exp', 'iat', 'iss', 'jti', 'sid', 'sub'])
    t.equal(Number(payload.exp) - Number(payload.iat), 900)
    t.equal(payload.sid, before.payload.sid, 'same sid after rotation')
    t.not(payload.jti, before.payload.jti, 'new jti')
    t.equal((await me(app, body.access_token)).statusCode, 200)
  })

  await t.test('Authorization header forms', async (t) => {
    const jwt = ada.accessToken
    assertRejected(t, await meWithAuthorization(app), 'no Authorization header', NO_HEADER)
    const malformed: Record<string, string> = {
      Basic: `Basic ${Buffer.from('ada:secret').toString('base64')}`,
      'Basic with the jwt': `Basic ${jwt}`,
      'Token <jwt>': `Token ${jwt}`,
      'bare jwt': jwt,
      'two spaces': `Bearer  ${jwt}`,
      'trailing text': `Bearer ${jwt} extra`,
      'trailing comma': `Bearer ${jwt},`,
      'scheme only': 'Bearer',
      'Bearer and a space': 'Bearer ',
      'tab separator': `Bearer\t${jwt}`,
      'two tokens': `Bearer ${jwt} Bearer ${jwt}`
    }
    for (const [label, value] of Object.entries(malformed)) {
      assertRejected(t, await meWithAuthorization(app, value), label)
    }
    for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
      t.equal((await meWithAuthorization(app, `${scheme} ${jwt}`)).statusCode, 200, `scheme ${scheme} is accepted`)
    }
  })

  await t.test('not a three-part JWS of base64url JSON', async (t) => {
    const { parts } = decodeJwt(ada.accessToken)
    const cases: Record<string, string> = {
      garbage: 'garbage',
      'a.b.c': 'a.b.c',
      'two parts': `${parts[0]}.${parts[1]}`,
      'four parts': `${ada.accessToken}.${parts[2]}`,
      'header not JSON': `${b64url('not json')}.${parts[1]}.${parts[2]}`,
      'payload not JSON': `${parts[0]}.${b64url('not json')}.${hmac(`${parts[0]}.${b64url('not json')}`)}`,
      'payload a JSON array, signed': `${parts[0]}.${b64url([1])}.${hmac(`${parts[0]}.${b64url([1])}`)}`,
      'padded signature': `${ada.accessToken}=`,
      'standard base64 signature': `${parts[0]}.${parts[1]}.${Buffer.from(parts[2], 'base64url').toString('base64')}`
    }
    for (const [label, token] of Object.entries(cases)) assertRejected(t, await bearer(token), label)
  })

  await t.test('tampering: every changed character, removed signature, modified payload', async (t) => {
    const token = ada.accessToken
    const failures: number[] = []
    for (let i = 0; i < token.length; i++) {
      if (token[i] === '.') continue
      const tampered = token.slice(0, i) + otherChar(token[i]!) + token.slice(i + 1)
      const res = await bearer(tampered)
      if (res.statusCode !== 401 || res.json().code !== 'invalid_token' || res.headers['www-authenticate'] !== WITH_ERROR) failures.push(i)
    }
    t.same(failures, [], 'every character changed (in its high bits) is rejected')

    const { parts, payload } = decodeJwt(token)
    assertRejected(t, await bearer(`${parts[0]}.${parts[1]}.`), 'signature removed')
    assertRejected(t, await bearer(`${parts[0]}.${parts[1]}`), 'signature and its dot removed')
    assertRejected(t, await bearer(`${parts[0]}.${parts[1]}.${parts[2].slice(0, -1)}`), 'signature truncated')
    assertRejected(t, await bearer(`${parts[0]}.${parts[1]}.${parts[2]}A`), 'signature extended')
    const bobPayload = { ...payload, sub: bob.userId }
    assertRejected(t, await bearer(`${parts[0]}.${b64url(bobPayload)}.${parts[2]}`), 'sub changed to another user')
    const longer = { ...payload, exp: Number(payload.exp) + 86400 }
    assertRejected(t, await bearer(`${parts[0]}.${b64url(longer)}.${parts[2]}`), 'exp extended')
    assertRejected(t, await bearer(`${parts[0]}.${parts[1]}.${hmac(`${parts[0]}.${parts[1]}`, 'HS256', 'another-secret-0123456789-abcdefghijklmnop')}`), 'signed with another secret')
    t.equal((await bearer(token)).statusCode, 200, 'the original still works')
  })

  await t.test('every changed character of the signature is rejected, including its last one', async (t) => {
    // The last of 43 base64url characters carries 4 signature bits and 2 unused bits: a lenient
    // base64 decoder maps several characters to the same bytes. §4.1: any changed character → 401.
    const token = ada.accessToken
    const { parts } = decodeJwt(token)
    const last = parts[2].at(-1)!
    const accepted: string[] = []
    for (const c of BASE64URL) {
      if (c === last) continue
      const res = await bearer(`${parts[0]}.${parts[1]}.${parts[2].slice(0, -1)}${c}`)
      if (res.statusCode !== 401) accepted.push(c)
    }
    t.same(accepted, [], `no other last character is accepted (original ${last})`)
  })

  await t.test('alg is never taken from the token', async (t) => {
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      const header = b64url({ alg, typ: 'at+jwt' })
      const payload = b64url(claims())
      assertRejected(t, await bearer(`${header}.${payload}.`), `alg ${alg} without signature`)
      assertRejected(t, await bearer(`${header}.${payload}`), `alg ${alg} without signature or dot`)
      assertRejected(t, await bearer(`${header}.${payload}.${hmac(`${header}.${payload}`)}`), `alg ${alg} with an HS256 signature`)
      assertRejected(t, await bearer(`${header}.${payload}.${b64url('signature')}`), `alg ${alg} with a garbage signature`)
    }
    for (const alg of ['HS384', 'HS512']) {
      assertRejected(t, await bearer(signJwt({ alg, typ: 'at+jwt' }, claims())), `${alg} correctly signed with JWT_SECRET`)
    }
    for (const alg of ['RS256', 'ES256', 'EdDSA', 'hs256', '']) {
      assertRejected(t, await bearer(signJwt({ alg, typ: 'at+jwt' }, claims(), { hmacAlg: 'HS256' })), `alg "${alg}" with an HS256 signature`)
    }
    assertRejected(t, await bearer(signJwt({ typ: 'at+jwt' }, claims(), { hmacAlg: 'HS256' })), 'alg missing')
  })

  await t.test('typ must be at+jwt (case-insensitive, application/ allowed)', async (t) => {
    assertRejected(t, await bearer(signJwt({ alg: 'HS256' }, claims())), 'typ missing')
    for (const typ of ['JWT', 'jwt', 'rt+jwt', 'application/jwt', 'at+jwt ', '', 'at+JWT+x']) {
      assertRejected(t, await bearer(signJwt({ alg: 'HS256', typ }, claims())), `typ "${typ}"`)
    }
    assertRejected(t, await bearer(signJwt({ alg: 'HS256', typ: ['at+jwt'] }, claims())), 'typ an array')
    for (const typ of ['at+jwt', 'AT+JWT', 'At+Jwt', 'application/at+jwt', 'APPLICATION/AT+JWT']) {
      t.equal((await bearer(signJwt({ alg: 'HS256', typ }, claims()))).statusCode, 200, `typ "${typ}" is accepted`)
    }
  })

  await t.test('iss and aud must be the configured values', async (t) => {
    const cases: Record<string, Record<string, unknown>> = {
      'iss https://evil.example': { iss: 'https://evil.example' },
      'iss empty': { iss: '' },
      'aud some-other-api': { aud: 'some-other-api' },
      'aud empty': { aud: '' }
    }
    for (const [label, overrides] of Object.entries(cases)) {
      assertRejected(t, await bearer(signJwt(ACCESS_HEADER, claims(overrides))), label)
    }
    t.equal((await bearer(signJwt(ACCESS_HEADER, claims()))).statusCode, 200, 'a token forged with the secret and correct claims passes (control)')
  })

  await t.test('every required claim must be present and non-empty', async (t) => {
    for (const claim of ['iss', 'aud', 'sub', 'sid', 'jti', 'iat', 'exp']) {
      const c = claims()
      delete c[claim]
      assertRejected(t, await bearer(signJwt(ACCESS_HEADER, c)), `${claim} missing`)
    }
    for (const claim of ['sub', 'sid', 'jti']) {
      assertRejected(t, await bearer(signJwt(ACCESS_HEADER, claims({ [claim]: '' }))), `${claim} empty`)
    }
  })

  await t.test('time claims: expired exp, future nbf', async (t) => {
    const now = nowSeconds()
    assertRejected(t, await bearer(signJwt(ACCESS_HEADER, claims({ iat: now - 1000, exp: now - 100 }))), 'exp in the past')
    assertRejected(t, await bearer(signJwt(ACCESS_HEADER, claims({ iat: now - 901, exp: now - 1 }))), 'exp one second ago')
    assertRejected(t, await bearer(signJwt(ACCESS_HEADER, claims({ nbf: now + 600 }))), 'nbf in the future')
    t.equal((await bearer(signJwt(ACCESS_HEADER, claims({ nbf: now - 10 })))).statusCode, 200, 'nbf in the past is fine')
  })

  await t.test('key hints in the header never locate a key', async (t) => {
    const attacker = 'attacker-secret-0123456789-abcdefghijklmnop'
    const jwk = { kty: 'oct', k: Buffer.from(attacker).toString('base64url') }
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['jwk with its own key', { ...ACCESS_HEADER, jwk }, attacker],
      ['jku to an attacker JWKS', { ...ACCESS_HEADER, jku: 'https://evil.example/jwks.json' }, attacker],
      ['kid as a file path, signed with the empty key', { ...ACCESS_HEADER, kid: '../../../../../../dev/null' }, ''],
      ['kid as a file path, signed with an attacker key', { ...ACCESS_HEADER, kid: '/etc/passwd' }, attacker],
      ['kid as SQL, signed with an attacker key', { ...ACCESS_HEADER, kid: "x' UNION SELECT 'attacker" }, attacker],
      ['x5u to an attacker certificate', { ...ACCESS_HEADER, x5u: 'https://evil.example/cert.pem' }, attacker]
    ]
    for (const [label, header, secret] of cases) {
      assertRejected(t, await bearer(signJwt(header, claims(), { secret })), label)
    }
  })

  await t.test('a token of a logged-out session is rejected at once', async (t) => {
    const other = await login(app, ada.email)
    t.equal((await me(app, other.accessToken)).statusCode, 200)
    const out = await app.inject({ method: 'POST', url: '/api/v1/auth/logout', payload: { refresh_token: other.refreshToken } })
    t.equal(out.statusCode, 204)
    assertRejected(t, await me(app, other.accessToken), 'logged-out session')
    // The same claims re-signed with the secret still name a dead session.
    const { payload } = decodeJwt(other.accessToken)
    assertRejected(t, await bearer(signJwt(ACCESS_HEADER, payload)), 're-signed token of the dead session')
    assertRejected(t, await bearer(signJwt(ACCESS_HEADER, claims({ sid: randomUUID() }))), 'a sid that never existed')
    t.equal((await me(app, ada.accessToken)).statusCode, 200, 'the other session is unaffected')
  })

  await t.test('a refresh token is not an access token', async (t) => {
    const other = await login(app, ada.email)
    t.match(other.refreshToken, /^[A-Za-z0-9_-]{86}$/)
    assertRejected(t, await bearer(other.refreshToken), 'refresh token as Bearer')
    const res = await refreshWithBody(app, other.refreshToken)
    t.equal(res.statusCode, 200, 'the session still refreshes afterwards')
    t.equal((await me(app, res.json().access_token)).statusCode, 200)
  })

  await t.test('a re-encoded, re-signed token with the same header and claims is valid', async (t) => {
    const { header, payload } = decodeJwt(ada.accessToken)
    const reversed = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).reverse())
    const reordered = signJwt(reversed(header), reversed(payload))
    t.not(reordered, ada.accessToken)
    t.equal((await bearer(reordered)).statusCode, 200, 'different key order')
    const h = Buffer.from(JSON.stringify(reversed(header), null, 2)).toString('base64url')
    const p = Buffer.from(JSON.stringify(payload, null, 1)).toString('base64url')
    t.equal((await bearer(`${h}.${p}.${hmac(`${h}.${p}`)}`)).statusCode, 200, 'different whitespace')
  })

  await t.test('other Bearer-protected endpoints answer the same 401', async (t) => {
    for (const [method, url] of [['GET', '/api/v1/auth/sessions'], ['POST', '/api/v1/auth/logout-all'], ['DELETE', `/api/v1/auth/sessions/${adaSid}`]] as const) {
      assertRejected(t, await app.inject({ method, url }), `${method} ${url} without a token`, NO_HEADER)
      assertRejected(t, await app.inject({ method, url, headers: { authorization: 'Bearer a.b.c' } }), `${method} ${url} with a.b.c`)
    }
    t.equal((await me(app, ada.accessToken)).statusCode, 200, 'nothing was ended')
  })
})

t.test('forged and expired tokens are 401 while the session store is unreachable', async (t) => {
  const app = await buildTestApp(t, { REDIS_URL: 'redis://127.0.0.1:1' })
  const user = await signup(app)
  const sid = randomUUID()
  const now = nowSeconds()
  const cases: Array<[string, string | undefined, string]> = [
    ['no Authorization header', undefined, NO_HEADER],
    ['garbage', 'Bearer garbage', WITH_ERROR],
    ['Basic', 'Basic YWRhOnNlY3JldA==', WITH_ERROR],
    ['expired', `Bearer ${signJwt(ACCESS_HEADER, accessClaims(user.id, sid, { iat: now - 1000, exp: now - 100 }))}`, WITH_ERROR],
    ['bad signature', `Bearer ${signJwt(ACCESS_HEADER, accessClaims(user.id, sid), { secret: 'not-the-secret-0123456789-abcdefghijkl' })}`, WITH_ERROR],
    ['alg none', `Bearer ${b64url({ alg: 'none', typ: 'at+jwt' })}.${b64url(accessClaims(user.id, sid))}.`, WITH_ERROR],
    ['HS512', `Bearer ${signJwt({ alg: 'HS512', typ: 'at+jwt' }, accessClaims(user.id, sid))}`, WITH_ERROR],
    ['typ JWT', `Bearer ${signJwt({ alg: 'HS256', typ: 'JWT' }, accessClaims(user.id, sid))}`, WITH_ERROR],
    ['wrong iss', `Bearer ${signJwt(ACCESS_HEADER, accessClaims(user.id, sid, { iss: 'https://evil.example' }))}`, WITH_ERROR],
    ['future nbf', `Bearer ${signJwt(ACCESS_HEADER, accessClaims(user.id, sid, { nbf: now + 600 }))}`, WITH_ERROR]
  ]
  for (const [label, authorization, challenge] of cases) {
    const started = Date.now()
    const res = await meWithAuthorization(app, authorization)
    assertRejected(t, res, label, challenge)
    t.ok(Date.now() - started < 2000, `${label}: answered without waiting for the store`)
  }

  // A token that passes every check before the session lookup cannot be confirmed: 503 (§5.6).
  const started = Date.now()
  const res = await me(app, signJwt(ACCESS_HEADER, accessClaims(user.id, sid)))
  t.equal(res.statusCode, 503, 'a well-formed, correctly signed token → 503')
  t.equal(res.json().code, 'service_unavailable')
  t.ok(Date.now() - started < 5000, 'within 5 s')
  t.notMatch(res.body, /redis|ECONNREFUSED|127\.0\.0\.1:1/i, 'no driver text')
})
