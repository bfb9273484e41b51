// Concurrency guarantees (API.md §10) and the per-request time limit under load (§9), on a real
// listening server, under every store set-up (one app per set-up):
// - the refresh race under each of them: Redis, PostgreSQL and the embedded database each
//   decide rotations their own way (a Lua script, a row-locking transaction);
// - the signup race once per database engine holding the users: PostgreSQL (the production
//   set-up) and the embedded database. With sessions in PostgreSQL, users live in the same
//   PostgreSQL table, behind the same code, as in the production set-up: it would repeat that
//   run (50 argon2 hashes) and prove nothing new.
// - 50 signups within 15 s once, in the production set-up: a bound on hashing under load, the
//   same in every set-up.
import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import { buildTestApp, PASSWORD, STORE_MODES, uniqueEmail } from '../fixtures/app.ts'

interface Answer {
  status: number
  body: Record<string, unknown> | null
  setCookie: string | null
  ms: number
  error?: string
}

async function call (url: string, init: RequestInit): Promise<Answer> {
  const started = performance.now()
  try {
    const res = await fetch(url, init)
    const text = await res.text()
    return {
      status: res.status,
      body: text === '' ? null : JSON.parse(text),
      setCookie: res.headers.get('set-cookie'),
      ms: performance.now() - started
    }
  } catch (error) {
    return { status: 0, body: null, setCookie: null, ms: performance.now() - started, error: String(error) }
  }
}

const json = (body: unknown): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body)
})

function tally (answers: Answer[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const a of answers) {
    const key = `${a.status}${a.body && typeof a.body.code === 'string' ? ` ${a.body.code}` : ''}${a.error ? ` ${a.error}` : ''}`
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}

const cookieToken = (setCookie: string | null) => /^refresh_token=([^;]*)/.exec(setCookie ?? '')?.[1]

t.test('races', async (t) => {
  for (const [mode, settings] of Object.entries(STORE_MODES)) {
    await t.test(mode, async (t) => {
      const overrides = settings()
      const production = overrides.REDIS_URL !== ''
      const embedded = overrides.DATABASE_URL === ''
      const app = await buildTestApp(t, overrides)
      await app.listen({ port: 0, host: '127.0.0.1' })
      const address = app.server.address()
      if (address === null || typeof address === 'string') throw new Error('not listening on TCP')
      const base = `http://127.0.0.1:${address.port}/api/v1/auth`
      if (production || embedded) await signupRace(t, base)
      await refreshRace(t, base)
      if (production) await signupsInTime(t, base)
    })
  }
})

function signupRace (t: Test, base: string) {
  return t.test('50 concurrent signups with one email: exactly one 201, 49 × 409', async (t) => {
    const email = uniqueEmail()
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) =>
      call(`${base}/signup`, json({ email: i % 2 === 0 ? email : `  ${email.toUpperCase()} `, password: PASSWORD, name: 'Ada Lovelace' }))))
    t.same(tally(answers), { 201: 1, '409 email_taken': 49 }, 'one winner, every other answer 409 email_taken')
    const winner = answers.find((a) => a.status === 201)
    t.equal(winner?.body?.email, email)
    const res = await call(`${base}/login`, json({ email, password: PASSWORD }))
    t.equal(res.status, 200, 'the winner logs in')
    t.same((res.body?.user as { id?: string } | undefined)?.id, winner?.body?.id)
  })
}

function refreshRace (t: Test, base: string) {
  return t.test('20 concurrent refreshes of one token: the identical successor or 409, never 401', async (t) => {
    const email = uniqueEmail()
    t.equal((await call(`${base}/signup`, json({ email, password: PASSWORD, name: 'Ada Lovelace' }))).status, 201)
    const logged = await call(`${base}/login`, json({ email, password: PASSWORD, return_refresh_in_body: true }))
    t.equal(logged.status, 200)
    let token = String(logged.body?.refresh_token)

    // Several rounds, alternating body and cookie requests, each round on the newest token.
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => i % 2 === 0
        ? call(`${base}/refresh`, json({ refresh_token: token }))
        : call(`${base}/refresh`, { method: 'POST', headers: { cookie: `refresh_token=${token}` } })))
      const counts = tally(answers)
      const unexpected = Object.keys(counts).filter((k) => k !== '200' && k !== '409 refresh_in_progress')
      t.same(unexpected, [], `round ${round}: only 200 and 409 refresh_in_progress (${JSON.stringify(counts)})`)
      const ok = answers.filter((a) => a.status === 200)
      t.ok(ok.length >= 1, `round ${round}: at least one 200`)
      const successors = new Set(ok.map((a) => cookieToken(a.setCookie)))
      for (const a of ok) if (a.body && 'refresh_token' in a.body) successors.add(String(a.body.refresh_token))
      t.equal(successors.size, 1, `round ${round}: one identical successor in every 200`)
      const [successor] = [...successors]
      t.match(successor, /^[A-Za-z0-9_-]{86}$/)
      t.not(successor, token, 'different from the presented token')
      for (const a of answers.filter((x) => x.status === 409)) t.equal(a.setCookie, null, '409 sets no cookie')
      for (const a of ok) {
        const me = await call(`${base}/me`, { headers: { authorization: `Bearer ${String(a.body?.access_token)}` } })
        if (me.status !== 200) t.fail(`an access token of round ${round} → ${me.status}`)
      }
      token = String(successor)
    }
    const after = await call(`${base}/refresh`, json({ refresh_token: token }))
    t.equal(after.status, 200, 'the successor refreshes afterwards')
  })
}

function signupsInTime (t: Test, base: string) {
  return t.test('50 concurrent signups each complete within 15 s', async (t) => {
    const started = performance.now()
    const answers = await Promise.all(Array.from({ length: 50 }, () =>
      call(`${base}/signup`, json({ email: `${randomUUID()}@example.test`, password: PASSWORD, name: 'Ada Lovelace' }))))
    t.same(tally(answers), { 201: 50 }, 'all created')
    const slowest = Math.max(...answers.map((a) => a.ms))
    t.ok(slowest < 15_000, `slowest signup ${Math.round(slowest)} ms < 15 s (all done in ${Math.round(performance.now() - started)} ms)`)
  })
}
