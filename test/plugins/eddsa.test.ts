// JWT_ALG=EdDSA (API.md §1.2, §4.1, §5.3): Ed25519 access tokens that a third party verifies
// from /.well-known/jwks.json alone (with jose), key rotation through
// JWT_PREVIOUS_PUBLIC_KEYS, keys generated into DATA_DIR outside production, and the start-up
// errors of a missing or unusable key, which name the variable and never echo the key.
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto'
import diagnostics from 'node:diagnostics_channel'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { calculateJwkThumbprint, createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JSONWebKeySet } from 'jose'
import t, { type Test } from 'tap'
import { ConfigError, parseConfig } from '../../config.ts'
import { buildTestApp, JWT_SECRET, me, refreshWithBody, signupAndLogin, tempDataDir } from '../fixtures/app.ts'
import { accessClaims, AUDIENCE, b64url, decodeJwt, ISSUER, signJwt } from '../fixtures/jwt.ts'
import { listen } from '../http/helpers.ts'

const REFRESH_TOKEN_KEY = 'refresh-token-key-for-tests-0123456789-abcdef'
const PUBLIC_MEMBERS = ['alg', 'crv', 'kid', 'kty', 'use', 'x']
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']
const WITH_ERROR = 'Bearer realm="api", error="invalid_token"'

interface Ed25519Key {
  privateKey: KeyObject
  privatePem: string
  publicPem: string
}

function newKey (): Ed25519Key {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return {
    privateKey,
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString()
  }
}

/** The RFC 7638 thumbprint of a key, computed by jose from the public key alone. */
function kidOf (key: KeyObject): Promise<string> {
  const { x } = createPublicKey(key).export({ format: 'jwk' }) as { x: string }
  return calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x }, 'sha256')
}

function eddsa (key: Ed25519Key, previous?: string): Record<string, string> {
  return { JWT_ALG: 'EdDSA', JWT_PRIVATE_KEY: key.privatePem, REFRESH_TOKEN_KEY, ...(previous === undefined ? {} : { JWT_PREVIOUS_PUBLIC_KEYS: previous }) }
}

/** Compact JWS signed with Ed25519 by node:crypto, header and claims exactly as given. */
function signEd25519 (header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject): string {
  const input = `${b64url(header)}.${b64url(payload)}`
  return `${input}.${sign(null, Buffer.from(input), key).toString('base64url')}`
}

async function jwksOf (t: Test, app: FastifyInstance): Promise<JSONWebKeySet> {
  const res = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(res.statusCode, 200, 'JWKS: 200')
  t.match(String(res.headers['content-type']), /^application\/json/, 'JWKS: JSON')
  const body = res.json() as JSONWebKeySet
  t.same(Object.keys(body), ['keys'], 'JWKS: only `keys`')
  for (const key of body.keys) {
    t.same(Object.keys(key).sort(), PUBLIC_MEMBERS, `JWKS key ${key.kid}: exactly the public members`)
    t.notOk(PRIVATE_MEMBERS.some((m) => m in key), `JWKS key ${key.kid}: no private or symmetric member`)
    t.ok(typeof key.kid === 'string' && key.kid !== '', 'JWKS key: non-empty kid')
    t.match(key, { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' })
    t.equal(key.kid, await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: String(key.x) }, 'sha256'), 'JWKS key: kid is the RFC 7638 thumbprint')
  }
  return body
}

const verifyOptions = { issuer: ISSUER, audience: AUDIENCE, typ: 'at+jwt', algorithms: ['EdDSA'] }

/**
 * buildTestApp, but an app that fails to start is reported as a failure and the plugins it had
 * already started (database, Redis) are closed, so the file can still end.
 */
async function buildOrReport (t: Test, overrides: Record<string, string>): Promise<FastifyInstance | null> {
  let instance: FastifyInstance | undefined
  const capture = (message: unknown) => { instance = (message as { fastify: FastifyInstance }).fastify }
  diagnostics.subscribe('fastify.initialization', capture)
  try {
    return await buildTestApp(t, overrides)
  } catch (error) {
    await instance?.close()
    t.fail(`the app does not start: ${(error as Error).message}`)
    return null
  } finally {
    diagnostics.unsubscribe('fastify.initialization', capture)
  }
}

async function assertRejected (t: Test, app: FastifyInstance, token: string, label: string): Promise<void> {
  const res = await me(app, token)
  t.equal(res.statusCode, 401, `${label}: 401`)
  t.equal(res.json().code, 'invalid_token', `${label}: invalid_token`)
  t.equal(res.headers['www-authenticate'], WITH_ERROR, `${label}: WWW-Authenticate`)
}

t.test('EdDSA tokens verify from the JWKS alone', async (t) => {
  const k1 = newKey()
  const app = await buildTestApp(t, eddsa(k1))
  const user = await signupAndLogin(app)
  const kid1 = await kidOf(k1.privateKey)

  await t.test('header, JWKS and an independent verification with jose', async (t) => {
    const { header, payload } = decodeJwt(user.accessToken)
    t.same(header, { alg: 'EdDSA', typ: 'at+jwt', kid: kid1 }, 'header: exactly alg, typ and the thumbprint kid')
    t.same(Object.keys(header).sort(), ['alg', 'kid', 'typ'])
    t.same(Object.keys(payload).sort(), ['aud', 'exp', 'iat', 'iss', 'jti', 'sid', 'sub'])

    const jwks = await jwksOf(t, app)
    t.equal(jwks.keys.length, 1, 'one key: the current one')
    const { x } = createPublicKey(k1.privateKey).export({ format: 'jwk' }) as { x: string }
    t.match(jwks.keys[0], { kid: kid1, x }, 'the JWKS entry is JWT_PRIVATE_KEY\'s public key')

    const verified = await jwtVerify(user.accessToken, createLocalJWKSet(jwks), verifyOptions)
    t.equal(verified.payload.sub, user.userId, 'jose verifies the token with the published key')
    t.equal(verified.protectedHeader.kid, kid1)
    t.equal(Number(verified.payload.exp) - Number(verified.payload.iat), 900)
    t.equal((await me(app, user.accessToken)).statusCode, 200)

    const refreshed = await refreshWithBody(app, user.refreshToken)
    t.equal(refreshed.statusCode, 200)
    const again = await jwtVerify(refreshed.json().access_token, createLocalJWKSet(jwks), verifyOptions)
    t.equal(again.payload.sid, payload.sid, 'a refreshed token verifies too, same sid')
    user.refreshToken = refreshed.json().refresh_token
  })

  await t.test('jose fetching the JWKS over HTTP from the listening service', async (t) => {
    const port = await listen(app)
    const remote = createRemoteJWKSet(new URL(`http://127.0.0.1:${port}/.well-known/jwks.json`))
    const { payload } = await jwtVerify(user.accessToken, remote, verifyOptions)
    t.equal(payload.sub, user.userId)
    const stranger = newKey()
    const forged = signEd25519(decodeJwt(user.accessToken).header, decodeJwt(user.accessToken).payload, stranger.privateKey)
    await t.rejects(jwtVerify(forged, remote, verifyOptions), 'jose rejects a token signed by another key under the same kid')
  })

  await t.test('a token re-signed with JWT_PRIVATE_KEY is valid; every other key, algorithm or header is 401', async (t) => {
    const { payload } = decodeJwt(user.accessToken)
    const claims = accessClaims(user.userId, String(payload.sid))
    const header = { alg: 'EdDSA', typ: 'at+jwt', kid: kid1 }
    t.equal((await me(app, signEd25519(header, claims, k1.privateKey))).statusCode, 200, 're-encoded and re-signed with the same key')
    t.equal((await me(app, signEd25519({ typ: 'at+jwt', kid: kid1, alg: 'EdDSA' }, claims, k1.privateKey))).statusCode, 200, 'header members in another order')

    const stranger = newKey()
    const strangerKid = await kidOf(stranger.privateKey)
    const strangerJwk = { ...createPublicKey(stranger.privateKey).export({ format: 'jwk' }), kid: strangerKid }
    const forgeries: Array<[string, string]> = [
      ['another key under the current kid', signEd25519(header, claims, stranger.privateKey)],
      ['another key under its own (unknown) kid', signEd25519({ ...header, kid: strangerKid }, claims, stranger.privateKey)],
      ['another key, kid a file path', signEd25519({ ...header, kid: '../../../../dev/null' }, claims, stranger.privateKey)],
      ['another key supplied in a jwk header', signEd25519({ ...header, kid: strangerKid, jwk: strangerJwk }, claims, stranger.privateKey)],
      ['another key located by jku', signEd25519({ ...header, kid: strangerKid, jku: 'https://evil.example/jwks.json' }, claims, stranger.privateKey)],
      ['the right key, typ JWT', signEd25519({ ...header, typ: 'JWT' }, claims, k1.privateKey)],
      ['the right key, alg Ed25519', signEd25519({ ...header, alg: 'Ed25519' }, claims, k1.privateKey)],
      ['the right key, another issuer', signEd25519(header, { ...claims, iss: 'https://evil.example' }, k1.privateKey)],
      ['the right key, expired', signEd25519(header, { ...claims, iat: 1_000_000, exp: 1_000_900 }, k1.privateKey)],
      ['alg none', `${b64url({ alg: 'none', typ: 'at+jwt', kid: kid1 })}.${b64url(claims)}.`]
    ]
    // Algorithm confusion: HMAC keyed with every secret an attacker might guess, including
    // the public key's own PEM and JWK text.
    const secrets = [JWT_SECRET, REFRESH_TOKEN_KEY, k1.publicPem, JSON.stringify(createPublicKey(k1.privateKey).export({ format: 'jwk' })), 'any-secret']
    for (const [i, secret] of secrets.entries()) {
      forgeries.push([`HS256 with secret #${i}, current kid`, signJwt({ alg: 'HS256', typ: 'at+jwt', kid: kid1 }, claims, { secret })])
      forgeries.push([`HS256 with secret #${i}, no kid`, signJwt({ alg: 'HS256', typ: 'at+jwt' }, claims, { secret })])
    }
    for (const [label, token] of forgeries) await assertRejected(t, app, token, label)
  })
})

t.test('under HS256 the JWKS is empty', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { keys: [] })
})

// Instances before and after a key rotation: the same database, Redis and REFRESH_TOKEN_KEY
// (one test configuration), K1 the old signing key, K2 the new one, K0 an older one.
t.test('key rotation', async (t) => {
  const [k0, k1, k2] = [newKey(), newKey(), newKey()]
  const [kid0, kid1, kid2] = await Promise.all([kidOf(k0.privateKey), kidOf(k1.privateKey), kidOf(k2.privateKey)])
  const app1 = await buildTestApp(t, eddsa(k1))
  const user = await signupAndLogin(app1)
  t.equal(decodeJwt(user.accessToken).header.kid, kid1)

  await t.test('an app whose keys do not include K1 rejects its tokens; sessions carry over', async (t) => {
    const app3 = await buildTestApp(t, eddsa(k2))
    const jwks3 = await jwksOf(t, app3)
    t.same(jwks3.keys.map((k) => k.kid), [kid2], 'without previous keys only the current key is listed')
    await assertRejected(t, app3, user.accessToken, 'a K1 token on an app with K2 and no previous keys')
    await t.rejects(jwtVerify(user.accessToken, createLocalJWKSet(jwks3), verifyOptions), 'jose agrees')

    const other = await signupAndLogin(app1)
    const refreshed = await refreshWithBody(app3, other.refreshToken)
    t.equal(refreshed.statusCode, 200, 'the refresh token of app 1 refreshes on app 3 (same store and REFRESH_TOKEN_KEY)')
    const newToken: string = refreshed.json().access_token
    t.equal(decodeJwt(newToken).header.kid, kid2, 'the new access token is signed with app 3\'s key')
    t.equal((await me(app3, newToken)).statusCode, 200)
    await jwtVerify(newToken, createLocalJWKSet(jwks3), verifyOptions)
    await assertRejected(t, app1, newToken, 'app 1 does not know K2')
    t.equal((await refreshWithBody(app1, refreshed.json().refresh_token)).statusCode, 200, 'the successor refreshes on app 1 again')
  })

  await t.test('JWT_PREVIOUS_PUBLIC_KEYS: tokens of a previous key still verify and its kid is published', async (t) => {
    // Two keys, concatenated, on one line with literal \n escapes (as in a .env file).
    const escaped = `${k0.publicPem}${k1.publicPem}`.replaceAll('\n', '\\n')
    t.notOk(escaped.includes('\n'), 'the setting has no real line break')
    const app2 = await buildOrReport(t, eddsa(k2, escaped))
    if (app2 === null) return
    const jwks2 = await jwksOf(t, app2)
    t.same(jwks2.keys.map((k) => k.kid).sort(), [kid0, kid1, kid2].sort(), 'app 2 lists its key and both previous keys')
    t.equal((await me(app2, user.accessToken)).statusCode, 200, 'a K1 token is accepted by app 2 (K2, previous K0 and K1)')
    const verified = await jwtVerify(user.accessToken, createLocalJWKSet(jwks2), verifyOptions)
    t.equal(verified.payload.sub, user.userId, 'and verifies from app 2\'s JWKS alone')

    const refreshed = await refreshWithBody(app2, user.refreshToken)
    t.equal(refreshed.statusCode, 200, 'the refresh token of app 1 refreshes on app 2')
    const newToken: string = refreshed.json().access_token
    t.equal(decodeJwt(newToken).header.kid, kid2, 'the new token is signed with the current key')
    t.equal((await me(app2, newToken)).statusCode, 200)
    await jwtVerify(newToken, createLocalJWKSet(jwks2), verifyOptions)

    const stranger = newKey()
    const claims = accessClaims(user.userId, String(decodeJwt(user.accessToken).payload.sid))
    await assertRejected(t, app2, signEd25519({ alg: 'EdDSA', typ: 'at+jwt', kid: kid1 }, claims, stranger.privateKey), 'another key under a previous kid')

    const app4 = await buildOrReport(t, eddsa(k2, k0.publicPem))
    if (app4 === null) return
    t.same((await jwksOf(t, app4)).keys.map((k) => k.kid).sort(), [kid0, kid2].sort(), 'one previous key, real line breaks')
    await assertRejected(t, app4, user.accessToken, 'previous keys that do not include K1')
  })
})

t.test('keys generated into DATA_DIR outside production persist across restarts', async (t) => {
  const dir = tempDataDir()
  const settings = { JWT_ALG: 'EdDSA', DATA_DIR: dir }
  const first = await buildTestApp(t, settings)
  const jwksA = await jwksOf(t, first)
  const user = await signupAndLogin(first)
  await first.close()

  const keyFile = join(dir, 'jwt-private-key.pem')
  const refreshFile = join(dir, 'refresh-token-key')
  t.equal(statSync(keyFile).mode & 0o777, 0o600, 'the private key file is readable by its owner only')
  t.equal(statSync(refreshFile).mode & 0o777, 0o600, 'the refresh-token key file too')
  const stored = readFileSync(keyFile, 'utf8')
  t.match(stored, /^-----BEGIN PRIVATE KEY-----\n/, 'PEM PKCS#8')
  const storedKey = createPrivateKey(stored)
  t.equal(storedKey.asymmetricKeyType, 'ed25519')
  t.same(jwksA.keys.map((k) => k.kid), [await kidOf(storedKey)], 'the JWKS publishes the stored key')

  const second = await buildTestApp(t, settings)
  const jwksB = await jwksOf(t, second)
  t.same(jwksB.keys, jwksA.keys, 'the same key (same kid) after a restart')
  t.equal(readFileSync(keyFile, 'utf8'), stored, 'the key file is unchanged')
  t.equal((await me(second, user.accessToken)).statusCode, 200, 'a token of the first run is accepted')
  t.equal((await refreshWithBody(second, user.refreshToken)).statusCode, 200, 'its refresh token refreshes')

  const { warnings } = parseConfig({ JWT_ALG: 'EdDSA', DATA_DIR: dir })
  t.ok(warnings.some((w) => w.includes('JWT_PRIVATE_KEY')), 'a start-up warning names JWT_PRIVATE_KEY')
  t.ok(warnings.some((w) => w.includes('REFRESH_TOKEN_KEY')), 'and REFRESH_TOKEN_KEY')
  const pemLines = stored.split('\n').filter((l) => l !== '' && !l.startsWith('-----'))
  const refreshValue = readFileSync(refreshFile, 'utf8')
  for (const warning of warnings) {
    t.notOk(pemLines.some((l) => warning.includes(l)), 'the warning does not contain the key')
    t.notOk(warning.includes(refreshValue), 'nor the refresh-token key')
  }
})

t.test('start-up errors name the variable and never contain the key', async (t) => {
  const k1 = newKey()
  const prod = {
    APP_ENV: 'prod',
    DATABASE_URL: 'postgres://auth@127.0.0.1:5432/auth',
    JWT_ALG: 'EdDSA',
    JWT_PRIVATE_KEY: k1.privatePem,
    REFRESH_TOKEN_KEY
  }
  const { config } = parseConfig(prod)
  t.equal(config.signing.alg, 'EdDSA', 'a complete production EdDSA configuration parses')
  const escaped = parseConfig({ ...prod, JWT_PRIVATE_KEY: k1.privatePem.replaceAll('\n', '\\n') }).config.signing
  t.equal(escaped.alg === 'EdDSA' ? await kidOf(escaped.privateKey) : '', await kidOf(k1.privateKey), 'a private key with literal \\n escapes is accepted')

  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const rsaPrivate = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const rsaPublic = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const ed448 = generateKeyPairSync('ed448').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const x25519 = generateKeyPairSync('x25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const bodyLines = k1.privatePem.split('\n').filter((l) => l !== '' && !l.startsWith('-----'))
  const corrupted = k1.privatePem.replace(bodyLines[0]!, bodyLines[0]!.slice(0, 10) + 'AAAA' + bodyLines[0]!.slice(14, -6))

  const cases: Array<[string, Record<string, string | undefined>, string, string[]]> = [
    ['prod without JWT_PRIVATE_KEY', { JWT_PRIVATE_KEY: undefined }, 'JWT_PRIVATE_KEY', []],
    ['prod without REFRESH_TOKEN_KEY', { REFRESH_TOKEN_KEY: undefined }, 'REFRESH_TOKEN_KEY', []],
    ['prod with a short REFRESH_TOKEN_KEY', { REFRESH_TOKEN_KEY: 'short-refresh-key-31-characters' }, 'REFRESH_TOKEN_KEY', ['short-refresh-key-31-characters']],
    ['garbage PEM', { JWT_PRIVATE_KEY: 'garbage-not-a-pem-secret-value' }, 'JWT_PRIVATE_KEY', ['garbage-not-a-pem-secret-value']],
    ['garbage PEM (dev)', { APP_ENV: 'dev', JWT_PRIVATE_KEY: 'garbage-not-a-pem-secret-value' }, 'JWT_PRIVATE_KEY', ['garbage-not-a-pem-secret-value']],
    ['a PEM whose body is corrupted', { JWT_PRIVATE_KEY: corrupted }, 'JWT_PRIVATE_KEY', [corrupted]],
    ['an RSA private key', { JWT_PRIVATE_KEY: rsaPrivate }, 'JWT_PRIVATE_KEY', [rsaPrivate]],
    ['an RSA private key (dev)', { APP_ENV: 'dev', JWT_PRIVATE_KEY: rsaPrivate }, 'JWT_PRIVATE_KEY', [rsaPrivate]],
    ['an Ed448 private key', { JWT_PRIVATE_KEY: ed448 }, 'JWT_PRIVATE_KEY', [ed448]],
    ['an X25519 private key', { JWT_PRIVATE_KEY: x25519 }, 'JWT_PRIVATE_KEY', [x25519]],
    ['the Ed25519 public key instead of the private one', { JWT_PRIVATE_KEY: k1.publicPem }, 'JWT_PRIVATE_KEY', [k1.publicPem]],
    ['garbage previous keys', { JWT_PREVIOUS_PUBLIC_KEYS: 'garbage-previous-keys' }, 'JWT_PREVIOUS_PUBLIC_KEYS', ['garbage-previous-keys']],
    ['an RSA previous public key', { JWT_PREVIOUS_PUBLIC_KEYS: k1.publicPem + rsaPublic }, 'JWT_PREVIOUS_PUBLIC_KEYS', [rsaPublic]]
  ]
  for (const [label, change, variable, secrets] of cases) {
    const env = { ...prod, ...change }
    let error: unknown
    try {
      parseConfig(env)
    } catch (e) {
      error = e
    }
    t.ok(error instanceof ConfigError, `${label}: ConfigError`)
    const text = error instanceof Error ? `${error.message}\n${error.stack ?? ''}\n${JSON.stringify(error)}` : ''
    t.ok(text.includes(variable), `${label}: names ${variable} (${error instanceof Error ? error.message : String(error)})`)
    // Every secret of the environment, whole and line by line: none may be echoed.
    const values = [...secrets, k1.privatePem, REFRESH_TOKEN_KEY]
    const fragments = values.flatMap((v) => [v, ...v.split(/\\n|\n/).filter((l) => l.length >= 16 && !l.startsWith('-----'))])
    t.notOk(fragments.some((f) => text.includes(f)), `${label}: the message contains no key or secret`)
    t.notOk(text.includes('-----BEGIN'), `${label}: no PEM armour`)
  }
})
