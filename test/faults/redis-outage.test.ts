// The session store goes away and comes back (API.md §9, §11.1, §11.2), on a redis-server of
// this file's own: killed (SIGKILL), restarted with its append-only file, restarted empty
// (script cache gone), and made slow with DEBUG SLEEP (503 in time, and a 503 that changes
// nothing once Redis catches up). Users live in the shared PostgreSQL.
import type { FastifyBaseLogger } from 'fastify'
import { pino } from 'pino'
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { buildApp } from '../../app.ts'
import { PASSWORD, testConfig, uniqueEmail } from '../fixtures/app.ts'
import { assertNoDriverText, assertUnavailable, call, listen, pollUntil, Timings, type Answer } from './http.ts'
import { rawRedisCommand, ThrowawayRedis } from './throwaway.ts'

const STORE_LIMIT_MS = 5000
const LIVENESS_LIMIT_MS = 2000
const RECOVERY_LIMIT_MS = 20_000

t.test('Redis outage, recovery, empty restart and slowness', async (t) => {
  const timings = new Timings()
  t.teardown(() => timings.report(t))

  const redis = await ThrowawayRedis.create(t)
  await redis.start()
  const app = await buildApp(await testConfig({ REDIS_URL: redis.url }), { logger: pino({ level: 'silent' }) as FastifyBaseLogger })
  t.teardown(() => app.close())
  const base = await listen(app)

  const signup = (email: string) => call(base, 'POST', '/api/v1/auth/signup', { json: { email, password: PASSWORD, name: 'Ada Lovelace' } })
  const login = (email: string) => call(base, 'POST', '/api/v1/auth/login', { json: { email, password: PASSWORD, return_refresh_in_body: true } })
  const me = (token: string) => call(base, 'GET', '/api/v1/auth/me', { token })
  const refresh = (token: string) => call(base, 'POST', '/api/v1/auth/refresh', { json: { refresh_token: token } })
  const ready = () => call(base, 'GET', '/health/ready')
  const liveness = () => call(base, 'GET', '/')

  interface Session { access: string, refresh: string, sid: string }
  async function loggedIn (email: string): Promise<Session> {
    const res = await login(email)
    if (res.status !== 200) throw new Error(`login failed: ${res.status} ${res.body}`)
    const body = res.json() as { access_token: string, refresh_token: string }
    const payload = JSON.parse(Buffer.from(body.access_token.split('.')[1] ?? '', 'base64url').toString()) as { sid: string }
    return { access: body.access_token, refresh: body.refresh_token, sid: payload.sid }
  }

  // Before the outage: one user with two device sessions.
  const email = uniqueEmail()
  t.equal((await signup(email)).status, 201, 'signup before the outage')
  const s1 = await loggedIn(email)
  const s2 = await loggedIn(email)
  t.equal((await ready()).status, 200, 'ready before the outage')

  // Redis writes the AOF before it replies, so a SIGKILL keeps every acknowledged session.
  await t.test('a. Redis killed: 503 within the limits, nothing revoked, no driver text', async (t) => {
    await redis.kill('SIGKILL')
    // Two rounds: at once (the client is still noticing the closed socket) and while it is
    // failing to reconnect.
    for (const round of ['at once', 'after 2.5 s']) {
      if (round !== 'at once') await sleep(2500)
      const label = (what: string) => `${what} (${round})`

      const live = await liveness()
      t.equal(live.status, 200, label('GET / is 200'))
      t.equal(live.body, '{"status":"ready"}', label('GET / body'))
      t.ok(live.ms < LIVENESS_LIMIT_MS, label(`GET / in ${live.ms} ms`))
      timings.add(label('outage GET /'), live.ms)

      const readiness = await ready()
      assertUnavailable(t, readiness, STORE_LIMIT_MS, label('GET /health/ready'))
      t.same(readiness.json().checks, { postgres: 'up', redis: 'down' }, label('readiness checks'))
      timings.add(label('outage GET /health/ready'), readiness.ms)

      const cases: Array<[string, () => Promise<Answer>]> = [
        ['login', () => login(email)],
        // No password oracle while the throttle's counters are down: a wrong password is a 503
        // too, not an uncounted 401 (API.md §8).
        ['login with a wrong password', () => call(base, 'POST', '/api/v1/auth/login', { json: { email, password: 'wrong horse battery staple' } })],
        ['login of an unknown email', () => call(base, 'POST', '/api/v1/auth/login', { json: { email: uniqueEmail(), password: PASSWORD } })],
        ['refresh (body)', () => refresh(s1.refresh)],
        ['refresh (cookie)', () => call(base, 'POST', '/api/v1/auth/refresh', { cookie: `refresh_token=${s1.refresh}` })],
        ['me', () => me(s1.access)],
        ['logout (body)', () => call(base, 'POST', '/api/v1/auth/logout', { json: { refresh_token: s1.refresh } })],
        ['logout (cookie)', () => call(base, 'POST', '/api/v1/auth/logout', { cookie: `refresh_token=${s2.refresh}` })],
        ['logout-all', () => call(base, 'POST', '/api/v1/auth/logout-all', { token: s1.access })],
        ['GET /sessions', () => call(base, 'GET', '/api/v1/auth/sessions', { token: s1.access })],
        ['DELETE /sessions/:id', () => call(base, 'DELETE', `/api/v1/auth/sessions/${s2.sid}`, { token: s1.access })]
      ]
      for (const [name, request] of cases) {
        const res = await request()
        t.not(res.status, 401, label(`${name} is never 401`))
        assertUnavailable(t, res, STORE_LIMIT_MS, label(name))
        timings.add(label(`outage ${name}`), res.ms)
      }

      const created = await signup(uniqueEmail())
      t.equal(created.status, 201, label('signup is unaffected'), { body: created.body })
      assertNoDriverText(t, created, label('signup'))
      timings.add(label('outage signup'), created.ms)
    }
  })

  await t.test('b. Redis restarted with its AOF: recovery within 20 s, sessions kept', async (t) => {
    await redis.start()
    // Only 503 while reconnecting; the pre-outage token then rotates.
    const rotated = await pollUntil(RECOVERY_LIMIT_MS, () => refresh(s1.refresh), (a) => a.status !== 503)
    timings.add('recovery: first refresh of a pre-outage token', rotated.ms)
    t.same(rotated.interim.filter((s) => s !== 503), [], 'only 503 while reconnecting')
    t.equal(rotated.answer.status, 200, `pre-outage refresh token → 200 after ${rotated.ms} ms`, { body: rotated.answer.body })
    t.ok(rotated.ms < RECOVERY_LIMIT_MS, 'within 20 s')
    const next = rotated.answer.json() as { access_token?: string, refresh_token?: string }
    t.type(next.refresh_token, 'string', 'a successor refresh token')
    t.not(next.refresh_token, s1.refresh, 'the successor differs')
    t.equal((await me(String(next.access_token))).status, 200, 'the new access token works at /me')
    if (typeof next.refresh_token === 'string') s1.refresh = next.refresh_token
    if (typeof next.access_token === 'string') s1.access = next.access_token

    const readiness = await pollUntil(RECOVERY_LIMIT_MS, ready, (a) => a.status === 200)
    timings.add('recovery: /health/ready 200 (after the refresh)', readiness.ms)
    t.equal(readiness.answer.status, 200, 'readiness 200 again')
    t.same(readiness.answer.json(), { status: 'ready', checks: { postgres: 'up', redis: 'up' } }, 'readiness body')

    // Nothing the outage requests asked for was done: both sessions are alive.
    t.equal((await me(s2.access)).status, 200, 'the session named by logout (cookie) and DELETE still works')
    const sessions = await call(base, 'GET', '/api/v1/auth/sessions', { token: s1.access })
    t.equal(sessions.status, 200)
    const ids = ((sessions.json().sessions ?? []) as Array<{ id: string }>).map((s) => s.id).sort()
    t.same(ids, [s1.sid, s2.sid].sort(), 'both pre-outage sessions are listed')
    const again = await refresh(s2.refresh)
    t.equal(again.status, 200, 'the other pre-outage refresh token rotates too')

    const fresh = await login(email)
    t.equal(fresh.status, 200, 'login works after recovery')
  })

  await t.test('c. Redis restarted empty: scripts re-registered, old sessions gone (401, not 500)', async (t) => {
    await redis.kill('SIGKILL')
    await redis.useEmptyDir()
    await redis.start()
    const started = performance.now()
    const first = await pollUntil(RECOVERY_LIMIT_MS, () => login(email), (a) => a.status !== 503)
    timings.add('empty restart: first login 200', first.ms)
    t.same(first.interim.filter((s) => s !== 503), [], 'only 503 while reconnecting')
    t.equal(first.answer.status, 200, `login works on an empty Redis after ${first.ms} ms`, { body: first.answer.body })
    const body = first.answer.json() as { refresh_token?: string, access_token?: string }
    const rotated = await refresh(String(body.refresh_token))
    t.equal(rotated.status, 200, 'a fresh refresh token rotates (scripts re-sent after NOSCRIPT)', { body: rotated.body })
    t.equal((await me(String((rotated.json() as { access_token?: string }).access_token))).status, 200, 'its access token works')

    const old = await refresh(s1.refresh)
    t.equal(old.status, 401, 'a session lost with the data → 401', { body: old.body })
    t.equal(old.json().code, 'invalid_refresh_token')
    const oldAccess = await me(s1.access)
    t.equal(oldAccess.status, 401, 'its access token → 401 at /me')
    t.equal(oldAccess.json().code, 'invalid_token')
    const logoutAll = await call(base, 'POST', '/api/v1/auth/logout-all', { token: String(body.access_token) })
    t.equal(logoutAll.status, 204, 'logout-all works (its script re-sent as well)')
    t.ok(performance.now() - started < RECOVERY_LIMIT_MS + 5000)
  })

  await t.test('e. Redis slow (DEBUG SLEEP 3): 503 within 5 s instead of hanging', async (t) => {
    const user = uniqueEmail()
    t.equal((await signup(user)).status, 201)
    const before = await loggedIn(user)
    // Fire and forget on a separate connection; the server then stalls for 3 s.
    const sleeping = rawRedisCommand(redis.port, ['DEBUG', 'SLEEP', '3'], 10_000)
    await sleep(100)
    const [slowLogin, slowRefresh, slowMe, slowReady, live] = await Promise.all([
      login(user), refresh(before.refresh), me(before.access), ready(), liveness()
    ])
    assertUnavailable(t, slowLogin, STORE_LIMIT_MS, 'login while Redis sleeps')
    assertUnavailable(t, slowRefresh, STORE_LIMIT_MS, 'refresh while Redis sleeps')
    assertUnavailable(t, slowMe, STORE_LIMIT_MS, 'me while Redis sleeps')
    assertUnavailable(t, slowReady, STORE_LIMIT_MS, 'readiness while Redis sleeps')
    t.same(slowReady.json().checks, { postgres: 'up', redis: 'down' })
    t.equal(live.status, 200, 'GET / while Redis sleeps')
    t.ok(live.ms < LIVENESS_LIMIT_MS, `GET / in ${live.ms} ms`)
    timings.add('slow: login 503', slowLogin.ms)
    timings.add('slow: refresh 503', slowRefresh.ms)
    timings.add('slow: me 503', slowMe.ms)
    timings.add('slow: readiness 503', slowReady.ms)
    timings.add('slow: GET /', live.ms)
    t.equal(await sleeping, '+OK', 'DEBUG SLEEP ran (debug commands enabled)')

    // Once Redis answers again the same client works: the timed-out refresh changed nothing.
    const after = await pollUntil(5000, () => refresh(before.refresh), (a) => a.status !== 503)
    timings.add('slow: refresh 200 after the sleep', after.ms)
    t.equal(after.answer.status, 200, 'the token refreshed during the stall still rotates', { body: after.answer.body })
    t.equal((await login(user)).status, 200, 'login works after the stall')
  })

  // A command that timed out on the client still runs once Redis wakes up. The 503 promised
  // the token stays valid and nothing is revoked (API.md §5.7, §5.8, §11.1), so that must hold
  // after the stall too, also once the grace window (1 s here) has passed.
  await t.test('e2. Redis slow: a refresh or logout answered 503 changes nothing afterwards', async (t) => {
    const graceApp = await buildApp(await testConfig({ REDIS_URL: redis.url, REFRESH_GRACE_SECONDS: '1' }), { logger: pino({ level: 'silent' }) as FastifyBaseLogger })
    t.teardown(() => graceApp.close())
    const graceBase = await listen(graceApp)
    const user = uniqueEmail()
    t.equal((await signup(user)).status, 201)
    const a = await loggedIn(user)
    const b = await loggedIn(user)

    const sleeping = rawRedisCommand(redis.port, ['DEBUG', 'SLEEP', '2'], 10_000)
    await sleep(100)
    const [slowRefresh, slowLogout] = await Promise.all([
      call(graceBase, 'POST', '/api/v1/auth/refresh', { json: { refresh_token: a.refresh } }),
      call(graceBase, 'POST', '/api/v1/auth/logout', { json: { refresh_token: b.refresh } })
    ])
    assertUnavailable(t, slowRefresh, STORE_LIMIT_MS, 'refresh while Redis sleeps')
    assertUnavailable(t, slowLogout, STORE_LIMIT_MS, 'logout while Redis sleeps')
    t.equal(await sleeping, '+OK', 'DEBUG SLEEP ran')
    await sleep(1500) // past the 1 s grace window

    const retried = await call(graceBase, 'POST', '/api/v1/auth/refresh', { json: { refresh_token: a.refresh } })
    t.equal(retried.status, 200, 'the refresh token answered 503 still works after the stall', { body: retried.body })
    t.equal((await me(a.access)).status, 200, 'its session is alive')
    t.equal((await me(b.access)).status, 200, 'the session whose logout answered 503 is not ended')
  })
})
