// Refresh tokens (API.md §4.2) and rotation (§6) through HTTP: rules 1–4 with a one-second
// grace window, logout with the previous token (§5.8) and logins that replace a session (§7),
// under every store set-up (Redis, PostgreSQL or the embedded database holding the sessions),
// one app per set-up.
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'drizzle-orm'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { queryRows } from '../../db/database.ts'
import { buildTestApp, KEY_PREFIX, login, me, REDIS_URL, refreshWithBody, signup, signupAndLogin, STORE_MODES } from '../fixtures/app.ts'

const GRACE_MS = 1000
const REFRESH_TOKEN = /^[A-Za-z0-9_-]{86}$/

function refreshWithCookie (app: FastifyInstance, token: string) {
  return app.inject({ method: 'POST', url: '/api/v1/auth/refresh', headers: { cookie: `refresh_token=${token}` } })
}

function logoutWithBody (app: FastifyInstance, token: string) {
  return app.inject({ method: 'POST', url: '/api/v1/auth/logout', payload: { refresh_token: token } })
}

/** The value of the refresh cookie a response sets, or undefined. */
function cookieValue (res: LightMyRequestResponse): string | undefined {
  const header = res.headers['set-cookie']
  const all = header === undefined ? [] : Array.isArray(header) ? header : [header]
  const match = all.map((c) => /^refresh_token=([^;]*)/.exec(c)).find((m) => m !== null)
  return match?.[1]
}

function assertProblem (t: Test, res: LightMyRequestResponse, status: number, code: string, label: string): void {
  t.equal(res.statusCode, status, `${label}: ${status}`)
  t.equal(res.json().code, code, `${label}: ${code}`)
  t.notOk(res.headers['set-cookie'], `${label}: no Set-Cookie`)
}

/** Rotates with the token in the body and returns the successor and the new access token. */
async function rotate (t: Test, app: FastifyInstance, token: string): Promise<{ refreshToken: string, accessToken: string }> {
  const res = await refreshWithBody(app, token)
  t.equal(res.statusCode, 200, 'rotated')
  const body = res.json()
  return { refreshToken: body.refresh_token, accessToken: body.access_token }
}

const waitOutGrace = () => sleep(GRACE_MS + 150)

/**
 * What the session store holds for a user, one string per record, to look for tokens in: the
 * Redis keys and values under this file's prefix (Redis-specific: only when the app has Redis),
 * otherwise the user's rows of the `sessions` table.
 */
async function storedRecords (t: Test, app: FastifyInstance, userId: string): Promise<Array<{ name: string, text: string }>> {
  if (app.config.REDIS_URL === undefined) {
    const rows = await queryRows<{ id: string, row: string }>(app.database.db,
      sql`select id::text as id, row_to_json(s)::text as row from sessions s where user_id = ${userId}`)
    return rows.map((r) => ({ name: `sessions row ${r.id}`, text: r.row }))
  }
  const redis = new Redis(REDIS_URL)
  t.teardown(() => redis.disconnect())
  const keys = (await redis.keys(`${KEY_PREFIX}*`)).filter((k) => k.includes(userId))
  t.ok(keys.length >= 2, 'the session keys exist')
  const records = []
  for (const key of keys) {
    const type = await redis.type(key)
    const values = type === 'hash'
      ? Object.entries(await redis.hgetall(key)).flat()
      : type === 'zset' ? await redis.zrange(key, '0', '-1') : [String(await redis.get(key))]
    records.push({ name: key, text: [key, ...values].join('\n') })
  }
  return records
}

t.test('refresh rotation', async (t) => {
  for (const [mode, settings] of Object.entries(STORE_MODES)) {
    await t.test(mode, async (t) => rotation(t, await buildTestApp(t, { ...settings(), REFRESH_GRACE_SECONDS: '1' })))
  }
})

async function rotation (t: Test, app: FastifyInstance): Promise<void> {
  await t.test('refresh tokens are 86 base64url characters, the same in body and cookie', async (t) => {
    const user = await signupAndLogin(app)
    t.match(user.refreshToken, REFRESH_TOKEN)
    t.notOk(user.refreshToken.includes('.'), 'no dots')
    t.equal(cookieValue(user.login), user.refreshToken, 'cookie = body')
    const res = await refreshWithBody(app, user.refreshToken)
    t.match(res.json().refresh_token, REFRESH_TOKEN)
    t.equal(cookieValue(res), res.json().refresh_token)
    const other = await login(app, user.email)
    t.not(other.refreshToken, user.refreshToken, 'each login has its own token')
  })

  await t.test('garbage refresh tokens: 401 at refresh, 204 at logout, 400 outside 1–512 characters', async (t) => {
    const user = await signupAndLogin(app)
    const real = Buffer.from(user.refreshToken, 'base64url')
    const sameIdsOtherSecret = Buffer.concat([real.subarray(0, 32), randomBytes(32)]).toString('base64url')
    const garbage: Record<string, string> = {
      'one character': 'x',
      'a dot': '.',
      'ten characters': 'abcdefghij',
      'non-ASCII': 'jeton-\u{1F511}-\u00e9',
      'spaces and quotes': ' " \' ',
      'random 86 characters': randomBytes(64).toString('base64url'),
      'the ids of a live session with another secret': sameIdsOtherSecret,
      '85 characters of the real token': user.refreshToken.slice(0, 85),
      'the real token and one more character': `${user.refreshToken}A`,
      'the access token': user.accessToken,
      '512 characters': 'a'.repeat(512)
    }
    for (const [label, token] of Object.entries(garbage)) {
      assertProblem(t, await refreshWithBody(app, token), 401, 'invalid_refresh_token', `refresh with ${label}`)
      assertProblem(t, await refreshWithCookie(app, encodeURIComponent(token)), 401, 'invalid_refresh_token', `cookie refresh with ${label}`)
      const out = await logoutWithBody(app, token)
      t.equal(out.statusCode, 204, `logout with ${label}: 204`)
      t.equal(out.body, '')
      t.match(String(out.headers['set-cookie']), /^refresh_token=; Max-Age=0; Path=\/api\/v1\/auth;/, `logout with ${label}: clears the cookie`)
    }
    assertProblem(t, await app.inject({ method: 'POST', url: '/api/v1/auth/refresh' }), 401, 'invalid_refresh_token', 'no token at all')
    for (const [label, token] of [['empty', ''], ['513 characters', 'a'.repeat(513)]] as const) {
      assertProblem(t, await refreshWithBody(app, token), 400, 'validation_failed', `refresh with ${label}`)
      assertProblem(t, await logoutWithBody(app, token), 400, 'validation_failed', `logout with ${label}`)
    }
    const res = await refreshWithBody(app, user.refreshToken)
    t.equal(res.statusCode, 200, 'none of it touched the live session')
  })

  await t.test('rule 1: the current token rotates; only hashes are stored', async (t) => {
    const user = await signupAndLogin(app)
    const res = await refreshWithBody(app, user.refreshToken)
    t.equal(res.statusCode, 200)
    t.equal(res.headers['cache-control'], 'no-store')
    const body = res.json()
    t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'refresh_token', 'token_type'])
    t.equal(body.token_type, 'bearer')
    t.equal(body.expires_in, 900)
    t.match(body.refresh_token, REFRESH_TOKEN)
    t.not(body.refresh_token, user.refreshToken, 'the successor differs')
    t.equal(Buffer.from(body.refresh_token, 'base64url').subarray(0, 32).toString('hex'), Buffer.from(user.refreshToken, 'base64url').subarray(0, 32).toString('hex'), 'same user and session ids')
    const setCookie = String(res.headers['set-cookie'])
    t.equal(cookieValue(res), body.refresh_token, 'cookie carries the successor')
    t.match(setCookie, /Max-Age=(1209599|1209600);/, 'idle lifetime renewed')
    t.equal((await me(app, body.access_token)).statusCode, 200, 'new access token works')
    t.equal((await me(app, user.accessToken)).statusCode, 200, 'the earlier access token of the session still works')

    const records = await storedRecords(t, app, user.userId)
    t.ok(records.length >= 1, 'the session is stored')
    for (const { name, text } of records) {
      for (const token of [user.refreshToken, body.refresh_token]) {
        t.notOk(text.includes(token), `no refresh token stored in ${name}`)
      }
    }

    const next = await refreshWithCookie(app, body.refresh_token)
    t.equal(next.statusCode, 200, 'the successor rotates in turn (cookie)')
    t.same(Object.keys(next.json()).sort(), ['access_token', 'expires_in', 'token_type'], 'no refresh_token in the body for a cookie request')
    t.not(cookieValue(next), body.refresh_token)
  })

  await t.test('rule 2: a duplicate within the grace window gets the identical successor', async (t) => {
    const user = await signupAndLogin(app)
    const first = await refreshWithBody(app, user.refreshToken)
    const again = await refreshWithBody(app, user.refreshToken)
    const viaCookie = await refreshWithCookie(app, user.refreshToken)
    t.equal(first.statusCode, 200)
    t.equal(again.statusCode, 200, 'duplicate → 200')
    t.equal(viaCookie.statusCode, 200, 'duplicate by cookie → 200')
    const successor = first.json().refresh_token
    t.equal(again.json().refresh_token, successor, 'identical successor in the body')
    t.equal(cookieValue(again), successor, 'identical successor in the cookie')
    t.equal(cookieValue(viaCookie), successor, 'identical successor in the cookie of a cookie request')
    t.notOk('refresh_token' in viaCookie.json())
    t.match(String(again.headers['set-cookie']), /Max-Age=\d+; Path=\/api\/v1\/auth; Expires=.*; HttpOnly; SameSite=Strict/, 'a full refresh cookie')
    t.equal((await me(app, again.json().access_token)).statusCode, 200, 'its access token works')
    t.equal((await me(app, viaCookie.json().access_token)).statusCode, 200)
    // Nothing was rotated by the duplicates: the successor is still current.
    const next = await refreshWithBody(app, successor)
    t.equal(next.statusCode, 200, 'the successor is still the current token')
    t.not(next.json().refresh_token, successor)
  })

  await t.test('rule 2: a duplicate whose successor was rotated meanwhile → 409, session kept', async (t) => {
    const user = await signupAndLogin(app)
    const s = await rotate(t, app, user.refreshToken)
    const s2 = await rotate(t, app, s.refreshToken)
    const res = await refreshWithBody(app, user.refreshToken)
    assertProblem(t, res, 409, 'refresh_in_progress', 'T after S was rotated')
    t.match(String(res.headers['content-type']), /^application\/problem\+json/)
    assertProblem(t, await refreshWithCookie(app, user.refreshToken), 409, 'refresh_in_progress', 'the same by cookie')
    t.equal((await me(app, s2.accessToken)).statusCode, 200, 'access token still valid')
    const s3 = await refreshWithBody(app, s2.refreshToken)
    t.equal(s3.statusCode, 200, 'the newest token refreshes')
    t.equal((await me(app, s3.json().access_token)).statusCode, 200)
  })

  await t.test('rule 3: the previous token after the window revokes the session', async (t) => {
    const user = await signupAndLogin(app)
    const sibling = await login(app, user.email)
    const s = await rotate(t, app, user.refreshToken)
    const s2 = await rotate(t, app, s.refreshToken)
    await waitOutGrace()
    assertProblem(t, await refreshWithBody(app, s.refreshToken), 401, 'refresh_reused', 'S (previous) after the window')
    assertProblem(t, await refreshWithBody(app, s2.refreshToken), 401, 'invalid_refresh_token', 'S2, the newest token, afterwards')
    for (const [label, token] of [['login', user.accessToken], ['S', s.accessToken], ['S2', s2.accessToken]] as const) {
      const res = await me(app, token)
      t.equal(res.statusCode, 401, `access token of ${label} → 401`)
      t.equal(res.json().code, 'invalid_token')
    }
    assertProblem(t, await refreshWithBody(app, s.refreshToken), 401, 'invalid_refresh_token', 'S again: the session is gone')
    const other = await refreshWithBody(app, sibling.refreshToken)
    t.equal(other.statusCode, 200, 'another session of the user still refreshes')
    t.equal((await me(app, other.json().access_token)).statusCode, 200)
    t.equal((await me(app, sibling.accessToken)).statusCode, 200)
  })

  await t.test('rule 3 after a single rotation: T → refresh_reused, then S → 401', async (t) => {
    const user = await signupAndLogin(app)
    const s = await rotate(t, app, user.refreshToken)
    await waitOutGrace()
    assertProblem(t, await refreshWithCookie(app, user.refreshToken), 401, 'refresh_reused', 'T by cookie after the window')
    assertProblem(t, await refreshWithBody(app, s.refreshToken), 401, 'invalid_refresh_token', 'S afterwards')
    t.equal((await me(app, s.accessToken)).statusCode, 401, 'access token → 401')
  })

  await t.test('rule 4: older generations outside rule 2 → invalid_refresh_token, no side effects', async (t) => {
    const user = await signupAndLogin(app)
    const s = await rotate(t, app, user.refreshToken)
    const s2 = await rotate(t, app, s.refreshToken)
    const s3 = await rotate(t, app, s2.refreshToken)
    assertProblem(t, await refreshWithBody(app, user.refreshToken), 401, 'invalid_refresh_token', 'T two generations back, within the window')
    t.equal((await me(app, s3.accessToken)).statusCode, 200, 'session alive')
    const s4 = await rotate(t, app, s3.refreshToken)
    await waitOutGrace()
    assertProblem(t, await refreshWithBody(app, s2.refreshToken), 401, 'invalid_refresh_token', 'S2 (one back of previous) after the window')
    t.equal((await me(app, s4.accessToken)).statusCode, 200, 'session alive')
    const s5 = await refreshWithBody(app, s4.refreshToken)
    t.equal(s5.statusCode, 200, 'the newest token still refreshes')
  })

  await t.test('logout with the previous token ends the session', async (t) => {
    for (const wait of [false, true]) {
      const user = await signupAndLogin(app)
      const s = await rotate(t, app, user.refreshToken)
      if (wait) await waitOutGrace()
      const out = await logoutWithBody(app, user.refreshToken)
      t.equal(out.statusCode, 204, `logout with T (${wait ? 'after' : 'within'} the window)`)
      t.match(String(out.headers['set-cookie']), /^refresh_token=; Max-Age=0; Path=\/api\/v1\/auth;/)
      assertProblem(t, await refreshWithBody(app, s.refreshToken), 401, 'invalid_refresh_token', 'S afterwards')
      assertProblem(t, await refreshWithBody(app, user.refreshToken), 401, 'invalid_refresh_token', 'T afterwards')
      t.equal((await me(app, s.accessToken)).statusCode, 401, 'access token → 401')
      t.equal((await logoutWithBody(app, user.refreshToken)).statusCode, 204, 'logout again is idempotent')
    }
  })

  await t.test('a login carrying the cookie of a live session of the same user ends that session', async (t) => {
    const user = await signupAndLogin(app)
    const keep = await login(app, user.email)
    const again = await login(app, user.email, {}, { cookie: user.cookie })
    assertProblem(t, await refreshWithBody(app, user.refreshToken), 401, 'invalid_refresh_token', 'the replaced session')
    t.equal((await me(app, user.accessToken)).statusCode, 401, 'its access token → 401')
    t.equal((await me(app, again.accessToken)).statusCode, 200, 'the new session works')
    t.equal((await me(app, keep.accessToken)).statusCode, 200, 'other sessions are unaffected')
    const list = await app.inject({ method: 'GET', url: '/api/v1/auth/sessions', headers: { authorization: `Bearer ${again.accessToken}` } })
    t.equal(list.json().sessions.length, 2, 'no orphan session')

    // After a rotation the browser holds the successor; logging in with it replaces the session too.
    const s = await rotate(t, app, again.refreshToken)
    const third = await login(app, user.email, {}, { cookie: `refresh_token=${s.refreshToken}` })
    t.equal((await me(app, s.accessToken)).statusCode, 401, 'the rotated session is replaced')
    t.equal((await me(app, third.accessToken)).statusCode, 200)
  })

  await t.test("a login carrying another user's cookie does not end that user's session", async (t) => {
    const ada = await signupAndLogin(app)
    const bob = await signup(app)
    const bobLogin = await login(app, bob.email, {}, { cookie: ada.cookie })
    t.equal((await me(app, bobLogin.accessToken)).statusCode, 200)
    t.equal((await me(app, ada.accessToken)).statusCode, 200, "ada's session is unaffected")
    t.equal((await refreshWithBody(app, ada.refreshToken)).statusCode, 200, "ada's token still refreshes")
  })
}
