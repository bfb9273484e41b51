// Start-up while Redis is down (API.md §1.1 step 4, §5.2, §11.1): the service starts anyway,
// answers 503 on the routes that need the session store, and works once Redis comes up.
import type { FastifyBaseLogger } from 'fastify'
import { pino } from 'pino'
import t from 'tap'
import { buildApp } from '../../app.ts'
import { PASSWORD, testConfig, uniqueEmail } from '../fixtures/app.ts'
import { assertUnavailable, call, listen, pollUntil, Timings } from './http.ts'
import { ThrowawayRedis } from './throwaway.ts'

t.test('d. start-up with Redis down, then Redis starts', async (t) => {
  const timings = new Timings()
  t.teardown(() => timings.report(t))
  const redis = await ThrowawayRedis.create(t) // a port nothing listens on yet

  const started = performance.now()
  const app = await buildApp(await testConfig({ REDIS_URL: redis.url }), { logger: pino({ level: 'silent' }) as FastifyBaseLogger })
  t.teardown(() => app.close())
  await app.ready()
  const bootMs = Math.round(performance.now() - started)
  timings.add('buildApp + ready() with Redis down', bootMs)
  t.ok(bootMs < 5000, `boot does not wait for Redis (${bootMs} ms)`)
  const base = await listen(app)

  const email = uniqueEmail()
  const login = () => call(base, 'POST', '/api/v1/auth/login', { json: { email, password: PASSWORD } })

  const live = await call(base, 'GET', '/')
  t.equal(live.status, 200, 'GET / is 200')
  t.equal(live.body, '{"status":"ready"}')
  t.ok(live.ms < 2000, `GET / in ${live.ms} ms`)

  const signup = await call(base, 'POST', '/api/v1/auth/signup', { json: { email, password: PASSWORD, name: 'Ada Lovelace' } })
  t.equal(signup.status, 201, 'signup works without Redis', { body: signup.body })

  const refused = await login()
  assertUnavailable(t, refused, 5000, 'login with Redis down since start-up')
  timings.add('login 503', refused.ms)

  const readiness = await call(base, 'GET', '/health/ready')
  assertUnavailable(t, readiness, 5000, 'readiness with Redis down since start-up')
  t.same(readiness.json().checks, { postgres: 'up', redis: 'down' })
  timings.add('readiness 503', readiness.ms)

  await redis.start()
  const first = await pollUntil(20_000, login, (a) => a.status !== 503)
  timings.add('login 200 after Redis started', first.ms)
  t.same(first.interim.filter((s) => s !== 503), [], 'only 503 until Redis answers')
  t.equal(first.answer.status, 200, `login works ${first.ms} ms after Redis started`, { body: first.answer.body })
  t.ok(first.ms < 20_000, 'within 20 s')
  t.match(String(first.answer.setCookie[0]), /^refresh_token=[A-Za-z0-9_-]{86}; /, 'with a refresh cookie')
  const token = String(first.answer.json().access_token)
  t.equal((await call(base, 'GET', '/api/v1/auth/me', { token })).status, 200, 'its access token works at /me')

  const ready = await pollUntil(20_000, () => call(base, 'GET', '/health/ready'), (a) => a.status === 200)
  t.equal(ready.answer.status, 200, 'readiness 200')
  t.same(ready.answer.json(), { status: 'ready', checks: { postgres: 'up', redis: 'up' } })
})
