// The service as a process (API.md §1.1): start-up, its log lines, refusals, and shutdown.
import { randomUUID } from 'node:crypto'
import postgres from 'postgres'
import t from 'tap'
import { ADMIN_DATABASE_URL, KEY_PREFIX, PASSWORD, REDIS_URL, testDatabaseUrl } from './fixtures/app.ts'
import { freePort } from './fixtures/ports.ts'
import { start, waitForHttp } from './fixtures/process.ts'

async function baseEnv (): Promise<Record<string, string>> {
  // trust authentication ignores the password, so it can show that logs never contain it
  const url = new URL(await testDatabaseUrl())
  url.password = 'hunter2-db-password'
  return {
    DATABASE_URL: url.toString(),
    REDIS_URL,
    REDIS_KEY_PREFIX: KEY_PREFIX,
    JWT_SECRET: 'server-test-secret-that-is-long-enough-0123456789'
  }
}

t.test('starts, logs JSON lines without secrets, and shuts down gracefully on SIGTERM', async (t) => {
  const env = await baseEnv()
  const port = await freePort()
  const service = start(env, port)
  const startupMs = await waitForHttp(service)
  t.ok(startupMs < 60_000, `GET / answered ${startupMs} ms after launch`)

  const base = `http://127.0.0.1:${port}/api/v1/auth`
  const email = `${randomUUID()}@example.test`
  const json = { 'content-type': 'application/json' }
  t.equal((await fetch(`${base}/signup`, { method: 'POST', headers: json, body: JSON.stringify({ email, password: PASSWORD, name: 'Ada' }) })).status, 201)
  const login = await fetch(`${base}/login`, { method: 'POST', headers: json, body: JSON.stringify({ email, password: PASSWORD, return_refresh_in_body: true }) })
  t.equal(login.status, 200)
  const tokens = await login.json() as { access_token: string, refresh_token: string }
  t.equal((await fetch(`${base}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } })).status, 200)

  const lines = service.output().trim().split('\n')
  for (const line of lines) t.doesNotThrow(() => JSON.parse(line), `a JSON log line: ${line.slice(0, 80)}`)
  const listening = lines.map((l) => JSON.parse(l)).find((l) => typeof l.msg === 'string' && l.msg.startsWith('Listening on'))
  t.ok(listening, 'one line says where it listens')
  t.match(listening?.msg, /PostgreSQL at 127\.0\.0\.1:5432/)
  t.match(listening?.msg, /Redis at redis:\/\/127\.0\.0\.1:6379/)
  for (const secret of ['hunter2-db-password', env.JWT_SECRET!, PASSWORD, tokens.access_token, tokens.refresh_token]) {
    t.notOk(service.output().includes(secret), 'the logs never contain a secret or token')
  }

  // A request in flight when the signal comes is finished or refused with a 503 problem,
  // never dropped. Two signals, as npm and a process manager may both send one: the second is
  // logged and ignored.
  const logins = () => service.output().split('"url":"/api/v1/auth/login"').length
  const before = logins()
  const inFlight = fetch(`${base}/login`, { method: 'POST', headers: json, body: JSON.stringify({ email, password: PASSWORD }) })
  for (let i = 0; i < 200 && logins() === before; i++) await new Promise((resolve) => setTimeout(resolve, 2))
  const signalledAt = Date.now()
  service.child.kill('SIGTERM')
  // apart, or the kernel merges the two pending signals into one; the login (an argon2
  // verification) is still running
  await new Promise((resolve) => setTimeout(resolve, 10))
  service.child.kill('SIGTERM')
  const answer = await inFlight
  t.equal(answer.status, 200, 'the request in flight when the signal came is finished')
  const { code } = await service.exited
  t.equal(code, 0, 'exit status 0')
  t.ok(Date.now() - signalledAt < 10_000, 'within 10 s')
  t.match(service.output(), /signal ignored/)

  const again = start(env, port)
  await waitForHttp(again)
  t.pass('a new process starts on the same port')
  again.child.kill('SIGINT')
  t.equal((await again.exited).code, 0, 'SIGINT is handled the same way')
})

t.test('an invalid setting stops the start, naming the variable and never a secret', async (t) => {
  const env = await baseEnv()
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ ACCESS_MIN: '0' }, /ACCESS_MIN/],
    [{ CORS_ORIGINS: 'http://localhost:3000/' }, /CORS_ORIGINS.*http:\/\/localhost:3000\//],
    [{ APP_ENV: 'prod', JWT_SECRET: 'short-secret-value' }, /JWT_SECRET/],
    [{ REFRESH_IN_COOKIE: 'maybe' }, /REFRESH_IN_COOKIE/]
  ]
  for (const [overrides, message] of cases) {
    const service = start({ ...env, ...overrides }, await freePort())
    const { code } = await service.exited
    t.equal(code, 1, `exit 1 for ${JSON.stringify(overrides)}`)
    t.match(service.output(), message)
    t.notOk(service.output().includes('short-secret-value'), 'the secret is not printed')
  }
})

t.test('refuses a database whose users table it did not create', async (t) => {
  const name = `auth_foreign_${randomUUID().replaceAll('-', '')}`
  const admin = postgres(ADMIN_DATABASE_URL, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${name}`)
  t.teardown(async () => {
    await admin.unsafe(`drop database if exists ${name} with (force)`)
    await admin.end()
  })
  const url = new URL(ADMIN_DATABASE_URL)
  url.pathname = `/${name}`
  const foreign = postgres(url.toString(), { max: 1, onnotice: () => {} })
  // The FastAPI version's table: integer ids, its own columns.
  await foreign`create table users (id serial primary key, email varchar(255) unique, hashed_password varchar(255), name varchar(100))`
  await foreign.end()

  const service = start({ ...(await baseEnv()), DATABASE_URL: url.toString() }, await freePort())
  const { code } = await service.exited
  t.equal(code, 1)
  t.match(service.output(), /table \\"users\\" that this service did not create/)
})

t.test('an unreachable database ends the start after 30 s, naming it without its password', async (t) => {
  const port = await freePort()
  const service = start({ ...(await baseEnv()), DATABASE_URL: `postgres://postgres:topsecret-pw@127.0.0.1:${port}/nothing` }, await freePort())
  const { code, ms } = await service.exited
  t.equal(code, 1)
  t.ok(ms >= 29_000 && ms < 45_000, `gave up after ${ms} ms`)
  t.match(service.output(), new RegExp(`127\\.0\\.0\\.1:${port}`))
  t.notOk(service.output().includes('topsecret-pw'))
})
