// PostgreSQL goes away and comes back (API.md §11.3), on a cluster of this file's own: stopped
// with `pg_ctl stop -m immediate` and started again on the same data, then frozen (SIGSTOP:
// a server that neither answers nor refuses). Sessions live in the shared Redis under this
// file's key prefix, except in f3, where the same cluster holds the sessions too (no Redis):
// then every session route answers 503 as well (§11.1) and the sessions survive the outage.
import type { FastifyBaseLogger } from 'fastify'
import { pino } from 'pino'
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { buildApp } from '../../app.ts'
import { PASSWORD, testConfig, uniqueEmail } from '../fixtures/app.ts'
import { assertNoDriverText, assertUnavailable, call, listen, pollUntil, Timings, type Answer } from './http.ts'
import { ThrowawayPostgres } from './throwaway.ts'

const LIMIT_MS = 5000

t.test('f. PostgreSQL stopped and restarted', async (t) => {
  const timings = new Timings()
  t.teardown(() => timings.report(t))

  const pg = await ThrowawayPostgres.create(t)
  await pg.start()
  const app = await buildApp(await testConfig({ DATABASE_URL: pg.url }), { logger: pino({ level: 'silent' }) as FastifyBaseLogger })
  t.teardown(() => app.close())
  const base = await listen(app)

  const signup = (email: string) => call(base, 'POST', '/api/v1/auth/signup', { json: { email, password: PASSWORD, name: 'Ada Lovelace' } })
  const login = (email: string) => call(base, 'POST', '/api/v1/auth/login', { json: { email, password: PASSWORD } })
  const me = (token: string) => call(base, 'GET', '/api/v1/auth/me', { token })

  // Before the outage: a user with a live session.
  const email = uniqueEmail()
  const created = await signup(email)
  t.equal(created.status, 201, 'signup before the outage')
  const createdAt = created.json().created_at
  const before = await login(email)
  t.equal(before.status, 200, 'login before the outage')
  const access = String(before.json().access_token)
  t.equal((await call(base, 'GET', '/health/ready')).status, 200, 'ready before the outage')

  await t.test('with PostgreSQL stopped: 503, GET / still 200, no driver text', async (t) => {
    await pg.stop()
    const live = await call(base, 'GET', '/')
    t.equal(live.status, 200, 'GET / is 200')
    t.equal(live.body, '{"status":"ready"}')
    t.ok(live.ms < 2000, `GET / in ${live.ms} ms`)
    timings.add('outage GET /', live.ms)

    const readiness = await call(base, 'GET', '/health/ready')
    assertUnavailable(t, readiness, LIMIT_MS, 'GET /health/ready')
    t.same(readiness.json().checks, { postgres: 'down', redis: 'up' }, 'readiness checks')
    timings.add('outage GET /health/ready', readiness.ms)

    const cases: Array<[string, () => Promise<Answer>]> = [
      ['signup', () => signup(uniqueEmail())],
      ['login', () => login(email)],
      ['me', () => me(access)]
    ]
    for (const [name, request] of cases) {
      const res = await request()
      assertUnavailable(t, res, LIMIT_MS, name)
      timings.add(`outage ${name}`, res.ms)
    }
  })

  await t.test('after PostgreSQL restarts: recovery within 20 s, data kept', async (t) => {
    await pg.start()
    const fresh = await pollUntil(20_000, () => signup(uniqueEmail()), (a) => a.status !== 503)
    timings.add('recovery: first signup 201', fresh.ms)
    t.same(fresh.interim.filter((s) => s !== 503), [], 'only 503 while reconnecting')
    t.equal(fresh.answer.status, 201, `signup works ${fresh.ms} ms after the restart`, { body: fresh.answer.body })
    assertNoDriverText(t, fresh.answer, 'signup')

    const again = await login(email)
    t.equal(again.status, 200, 'the pre-outage user logs in', { body: again.body })
    const mine = await me(String(again.json().access_token))
    t.equal(mine.status, 200)
    t.equal(mine.json().created_at, createdAt, 'the same user as before the outage')
    t.equal((await me(access)).status, 200, 'the pre-outage access token works again')

    const readiness = await pollUntil(20_000, () => call(base, 'GET', '/health/ready'), (a) => a.status === 200)
    timings.add('recovery: /health/ready 200 (after signup)', readiness.ms)
    t.same(readiness.answer.json(), { status: 'ready', checks: { postgres: 'up', redis: 'up' } }, 'readiness 200')
  })

  // A server that accepts nothing and answers nothing (frozen processes, as behind a dropped
  // network): requests must still end, with 503, within the 15 s every request has (API.md §9).
  await t.test('f2. PostgreSQL hung (SIGSTOP): 503 instead of hanging', async (t) => {
    const REQUEST_LIMIT_MS = 15_000
    await pg.freeze(true)
    t.teardown(() => pg.freeze(false))
    // /me goes first, alone, so its query lands on an idle pool connection to the frozen server
    // (as a client's next request would); the others follow while it waits. Every request is
    // abandoned by the client after 16 s, so the whole subtest stays bounded.
    const CLIENT_GIVES_UP_MS = 16_000
    const settle = (p: Promise<Answer>) => p.catch((e: unknown) => e instanceof Error ? e : new Error(String(e)))
    const meRequest = settle(call(base, 'GET', '/api/v1/auth/me', { token: access, timeoutMs: CLIENT_GIVES_UP_MS }))
    await sleep(300)
    const [mine, live, loggedIn, signedUp, readiness] = await Promise.all([
      meRequest,
      settle(call(base, 'GET', '/')),
      settle(call(base, 'POST', '/api/v1/auth/login', { json: { email, password: PASSWORD }, timeoutMs: CLIENT_GIVES_UP_MS })),
      settle(call(base, 'POST', '/api/v1/auth/signup', { json: { email: uniqueEmail(), password: PASSWORD, name: 'Ada Lovelace' }, timeoutMs: CLIENT_GIVES_UP_MS })),
      settle(call(base, 'GET', '/health/ready', { timeoutMs: CLIENT_GIVES_UP_MS }))
    ])
    const answered = (what: string, a: Answer | Error): a is Answer => {
      if (a instanceof Error) {
        t.fail(`${what}: no answer within ${CLIENT_GIVES_UP_MS} ms (the client gave up)`)
        timings.add(`hung ${what}: no answer, client gave up at`, CLIENT_GIVES_UP_MS)
        return false
      }
      timings.add(`hung ${what}`, a.ms)
      return true
    }
    if (answered('GET /', live)) {
      t.equal(live.status, 200, 'GET / is 200')
      t.ok(live.ms < 2000, `GET / in ${live.ms} ms`)
    }
    if (answered('GET /health/ready', readiness)) {
      assertUnavailable(t, readiness, LIMIT_MS, 'readiness')
      t.same(readiness.json().checks, { postgres: 'down', redis: 'up' })
    }
    if (answered('signup', signedUp)) assertUnavailable(t, signedUp, REQUEST_LIMIT_MS, 'signup')
    if (answered('login', loggedIn)) assertUnavailable(t, loggedIn, REQUEST_LIMIT_MS, 'login')
    if (answered('me', mine)) assertUnavailable(t, mine, REQUEST_LIMIT_MS, 'me')

    await pg.freeze(false)
    const back = await pollUntil(20_000, () => login(email), (a) => a.status !== 503)
    timings.add('hung: login 200 after thaw', back.ms)
    t.equal(back.answer.status, 200, 'login works once PostgreSQL answers again', { body: back.answer.body })
  })

  // Without Redis the sessions table of the same cluster is the session store: the session
  // routes of §11.1 answer 503 too (never 401: a session that cannot be read is not gone), and
  // the outage requests change nothing.
  await t.test('f3. PostgreSQL holding the sessions too (no Redis): stopped and restarted', async (t) => {
    const dbApp = await buildApp(await testConfig({ DATABASE_URL: pg.url, REDIS_URL: '' }), { logger: pino({ level: 'silent' }) as FastifyBaseLogger })
    t.teardown(() => dbApp.close())
    const dbBase = await listen(dbApp)
    const dbLogin = (email: string) => call(dbBase, 'POST', '/api/v1/auth/login', { json: { email, password: PASSWORD, return_refresh_in_body: true } })
    const dbMe = (token: string) => call(dbBase, 'GET', '/api/v1/auth/me', { token })
    const dbRefresh = (token: string) => call(dbBase, 'POST', '/api/v1/auth/refresh', { json: { refresh_token: token } })
    const dbReady = () => call(dbBase, 'GET', '/health/ready')

    interface Session { access: string, refresh: string, sid: string }
    async function loggedIn (email: string): Promise<Session> {
      const res = await dbLogin(email)
      if (res.status !== 200) throw new Error(`login failed: ${res.status} ${res.body}`)
      const body = res.json() as { access_token: string, refresh_token: string }
      const payload = JSON.parse(Buffer.from(body.access_token.split('.')[1] ?? '', 'base64url').toString()) as { sid: string }
      return { access: body.access_token, refresh: body.refresh_token, sid: payload.sid }
    }

    // Before the outage: one user with two device sessions in the sessions table.
    const user = uniqueEmail()
    t.equal((await call(dbBase, 'POST', '/api/v1/auth/signup', { json: { email: user, password: PASSWORD, name: 'Ada Lovelace' } })).status, 201, 'signup before the outage')
    const s1 = await loggedIn(user)
    const s2 = await loggedIn(user)
    const readyBefore = await dbReady()
    t.same(readyBefore.json(), { status: 'ready', checks: { postgres: 'up' } }, 'ready before the outage, without a redis check')

    await pg.stop()
    const live = await call(dbBase, 'GET', '/')
    t.equal(live.status, 200, 'GET / is 200')
    t.ok(live.ms < 2000, `GET / in ${live.ms} ms`)
    timings.add('f3 outage GET /', live.ms)

    const readiness = await dbReady()
    assertUnavailable(t, readiness, LIMIT_MS, 'GET /health/ready')
    t.same(readiness.json().checks, { postgres: 'down' }, 'readiness checks: the database only, no redis member')
    timings.add('f3 outage GET /health/ready', readiness.ms)

    const cases: Array<[string, () => Promise<Answer>]> = [
      ['signup', () => call(dbBase, 'POST', '/api/v1/auth/signup', { json: { email: uniqueEmail(), password: PASSWORD, name: 'Ada Lovelace' } })],
      ['login', () => dbLogin(user)],
      ['refresh (body)', () => dbRefresh(s1.refresh)],
      ['refresh (cookie)', () => call(dbBase, 'POST', '/api/v1/auth/refresh', { cookie: `refresh_token=${s1.refresh}` })],
      ['me', () => dbMe(s1.access)],
      ['logout (body)', () => call(dbBase, 'POST', '/api/v1/auth/logout', { json: { refresh_token: s1.refresh } })],
      ['logout (cookie)', () => call(dbBase, 'POST', '/api/v1/auth/logout', { cookie: `refresh_token=${s2.refresh}` })],
      ['logout-all', () => call(dbBase, 'POST', '/api/v1/auth/logout-all', { token: s1.access })],
      ['GET /sessions', () => call(dbBase, 'GET', '/api/v1/auth/sessions', { token: s1.access })],
      ['DELETE /sessions/:id', () => call(dbBase, 'DELETE', `/api/v1/auth/sessions/${s2.sid}`, { token: s1.access })]
    ]
    for (const [name, request] of cases) {
      const res = await request()
      t.not(res.status, 401, `${name} is never 401`)
      assertUnavailable(t, res, LIMIT_MS, name)
      timings.add(`f3 outage ${name}`, res.ms)
    }

    await pg.start()
    // Only 503 while reconnecting; the pre-outage token then rotates.
    const rotated = await pollUntil(20_000, () => dbRefresh(s1.refresh), (a) => a.status !== 503)
    timings.add('f3 recovery: first refresh of a pre-outage token', rotated.ms)
    t.same(rotated.interim.filter((s) => s !== 503), [], 'only 503 while reconnecting')
    t.equal(rotated.answer.status, 200, `pre-outage refresh token → 200 after ${rotated.ms} ms`, { body: rotated.answer.body })
    t.ok(rotated.ms < 20_000, 'within 20 s')
    assertNoDriverText(t, rotated.answer, 'refresh')
    const next = rotated.answer.json() as { access_token?: string, refresh_token?: string }
    t.type(next.refresh_token, 'string', 'a successor refresh token')
    t.not(next.refresh_token, s1.refresh, 'the successor differs')
    t.equal((await dbMe(String(next.access_token))).status, 200, 'the new access token works at /me')

    const ready = await pollUntil(20_000, dbReady, (a) => a.status === 200)
    timings.add('f3 recovery: /health/ready 200 (after the refresh)', ready.ms)
    t.same(ready.answer.json(), { status: 'ready', checks: { postgres: 'up' } }, 'readiness 200, the database only')

    // Nothing the outage requests asked for was done: both sessions are alive.
    t.equal((await dbMe(s2.access)).status, 200, 'the session named by logout (cookie) and DELETE still works')
    const listed = await call(dbBase, 'GET', '/api/v1/auth/sessions', { token: String(next.access_token) })
    t.equal(listed.status, 200)
    const ids = ((listed.json().sessions ?? []) as Array<{ id: string }>).map((s) => s.id).sort()
    t.same(ids, [s1.sid, s2.sid].sort(), 'both pre-outage sessions are listed')
    t.equal((await dbRefresh(s2.refresh)).status, 200, 'the other pre-outage refresh token rotates too')
    t.equal((await dbLogin(user)).status, 200, 'login works after recovery')
  })
})
