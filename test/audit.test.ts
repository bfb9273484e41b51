// Audit events (API.md §12.4) and the logging rule of §1.1: the log of a whole flow is captured
// through a logger configured like the service's (createLogger: pino with LOG_REDACT). Each
// auth event is exactly one line with its outcome, user and session when known, client address
// and user agent; failed and throttled logins carry the normalised email. Nowhere in the
// captured text: a password, a refresh or access token, a cookie value or a password hash.
import { randomUUID } from 'node:crypto'
import { Writable } from 'node:stream'
import type { FastifyBaseLogger, FastifyInstance, LightMyRequestResponse } from 'fastify'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { LOG_REDACT } from '../app.ts'
import { buildTestApp, JWT_SECRET, STORE_MODES } from './fixtures/app.ts'
import { decodeJwt } from './fixtures/jwt.ts'

const MODES = ['PostgreSQL + Redis', 'PostgreSQL, sessions in the database']
const AUDIT_MEMBERS = new Set(['level', 'time', 'pid', 'hostname', 'reqId', 'msg', 'event', 'outcome', 'user_id', 'session_id', 'ip', 'user_agent', 'email', 'reason'])

interface AuditLine {
  event: string
  outcome: string
  user_id: string | null
  session_id: string | null
  ip: string
  user_agent: string | null
  email?: string
  [member: string]: unknown
}

/** A pino logger like createLogger's (same redaction, level info), writing into memory. */
function capturedLogger () {
  let text = ''
  const stream = new Writable({
    write (chunk, _encoding, done) {
      text += String(chunk)
      done()
    }
  })
  const logger = pino({ level: 'info', redact: { paths: LOG_REDACT, censor: '[redacted]' } }, stream)
  const lines = () => text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)
  return { logger: logger as FastifyBaseLogger, text: () => text, audits: () => lines().filter((l) => 'event' in l) as AuditLine[] }
}

/** Everything secret that went over the wire, to look for in the log afterwards. */
class Secrets {
  readonly values = new Set<string>()
  add (...values: Array<string | undefined>): void {
    for (const value of values) if (value !== undefined && value !== '') this.values.add(value)
  }

  /** The tokens and cookie values of a response. */
  fromResponse (res: LightMyRequestResponse): void {
    if (res.headers['content-type']?.toString().startsWith('application/json')) {
      const body = res.json() as Record<string, unknown>
      this.add(body.access_token as string | undefined, body.refresh_token as string | undefined)
      // A JWT's signature alone is secret enough to look for.
      if (typeof body.access_token === 'string') this.add(body.access_token.split('.')[2])
    }
    const cookies = res.headers['set-cookie']
    for (const cookie of cookies === undefined ? [] : Array.isArray(cookies) ? cookies : [String(cookies)]) {
      this.add(cookie.slice(cookie.indexOf('=') + 1, cookie.indexOf(';')))
    }
  }
}

for (const mode of MODES) {
  t.test(`audit events (${mode})`, async (t) => {
    const settings = STORE_MODES[mode]
    if (settings === undefined) throw new Error(`no store mode ${mode}`)
    await auditedFlow(t, settings())
    await t.test('throttled logins and rate-limited requests', async (t) => throttledAndRateLimited(t, settings()))
  })
}

async function auditedFlow (t: Test, settings: Record<string, string>): Promise<void> {
  const log = capturedLogger()
  const app = await buildTestApp(t, { ...settings, REFRESH_GRACE_SECONDS: '1', LOG_LEVEL: 'info' }, { logger: log.logger })
  const secrets = new Secrets()
  // A documentation address per run, so the ip member is the client's and nothing else.
  const ip = `198.51.100.${1 + Math.floor(Math.random() * 250)}`
  const emailLocal = `Ada.${randomUUID().slice(0, 8)}`
  const email = `${emailLocal}@Example.TEST`
  const normalised = email.toLowerCase()
  const password = `audit-secret-${randomUUID()}`
  const newPassword = `audit-new-secret-${randomUUID()}`
  const wrongPassword = `audit-wrong-secret-${randomUUID()}`
  secrets.add(password, newPassword, wrongPassword, JWT_SECRET)

  let step = 0
  /** Sends one request and returns it with the audit lines it wrote. */
  async function send (options: { method: 'GET' | 'POST' | 'DELETE', url: string, payload?: Record<string, unknown>, token?: string, cookie?: string }) {
    const userAgent = `AuditTest/${++step} (step ${step})`
    const before = log.audits().length
    const res = await app.inject({
      method: options.method,
      url: `/api/v1/auth${options.url}`,
      remoteAddress: ip,
      headers: {
        'user-agent': userAgent,
        ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
        ...(options.cookie === undefined ? {} : { cookie: `refresh_token=${options.cookie}` })
      },
      ...(options.payload === undefined ? {} : { payload: options.payload })
    })
    secrets.fromResponse(res)
    return { res, userAgent, lines: log.audits().slice(before) }
  }

  /** Exactly one audit line, with these members. */
  function expectOne (t: Test, sent: Awaited<ReturnType<typeof send>>, expected: Partial<AuditLine>, label: string): void {
    t.equal(sent.lines.length, 1, `${label}: exactly one audit line (got ${JSON.stringify(sent.lines.map((l) => l.event))})`)
    const line = sent.lines[0]
    if (line === undefined) return
    t.match(line, { ip, user_agent: sent.userAgent, user_id: null, session_id: null, ...expected }, `${label}: members`)
    t.equal(line.level, 30, `${label}: level info`)
    // Only failed and throttled logins must carry the email; any other line that does carries
    // the account's normalised email, never the text as sent.
    if (expected.email === undefined && 'email' in line) t.equal(line.email, normalised, `${label}: email, when present, is normalised`)
    const unknown = Object.keys(line).filter((k) => !AUDIT_MEMBERS.has(k))
    t.same(unknown, [], `${label}: no other members`)
  }

  const login = async (pw = password) => {
    const sent = await send({ method: 'POST', url: '/login', payload: { email, password: pw, return_refresh_in_body: true } })
    if (sent.res.statusCode !== 200) throw new Error(`login: ${sent.res.statusCode} ${sent.res.body}`)
    const body = sent.res.json()
    return { ...sent, access: body.access_token as string, refresh: body.refresh_token as string, sid: String(decodeJwt(body.access_token).payload.sid) }
  }

  const signup = await send({ method: 'POST', url: '/signup', payload: { email, password, name: 'Ada Lovelace' } })
  t.equal(signup.res.statusCode, 201)
  const userId: string = signup.res.json().id
  expectOne(t, signup, { event: 'signup', outcome: 'ok', user_id: userId }, 'signup')

  const taken = await send({ method: 'POST', url: '/signup', payload: { email, password, name: 'Ada Lovelace' } })
  t.equal(taken.res.statusCode, 409)
  expectOne(t, taken, { event: 'signup', outcome: 'failed' }, 'signup with a taken email')

  const first = await login()
  expectOne(t, first, { event: 'login', outcome: 'ok', user_id: userId, session_id: first.sid }, 'login')

  const wrong = await send({ method: 'POST', url: '/login', payload: { email: `  ${email.toUpperCase()} `, password: wrongPassword } })
  t.equal(wrong.res.statusCode, 401)
  expectOne(t, wrong, { event: 'login', outcome: 'failed', user_id: userId, email: normalised }, 'login with a wrong password')

  const unknownEmail = `Nobody.${randomUUID().slice(0, 8)}@Example.TEST`
  const unknown = await send({ method: 'POST', url: '/login', payload: { email: unknownEmail, password: wrongPassword } })
  t.equal(unknown.res.statusCode, 401)
  expectOne(t, unknown, { event: 'login', outcome: 'failed', user_id: null, email: unknownEmail.toLowerCase() }, 'login with an unknown email')

  const refreshed = await send({ method: 'POST', url: '/refresh', payload: { refresh_token: first.refresh } })
  t.equal(refreshed.res.statusCode, 200)
  expectOne(t, refreshed, { event: 'refresh', outcome: 'ok', user_id: userId, session_id: first.sid }, 'refresh')

  await new Promise((resolve) => setTimeout(resolve, 1100))
  const reused = await send({ method: 'POST', url: '/refresh', cookie: first.refresh })
  t.equal(reused.res.statusCode, 401)
  t.equal(reused.res.json().code, 'refresh_reused')
  expectOne(t, reused, { event: 'reuse_detected', outcome: 'denied', user_id: userId, session_id: first.sid }, 'reuse detected')

  const second = await login()
  const logout = await send({ method: 'POST', url: '/logout', cookie: second.refresh })
  t.equal(logout.res.statusCode, 204)
  expectOne(t, logout, { event: 'logout', outcome: 'ok', user_id: userId, session_id: second.sid }, 'logout')

  const third = await login()
  const fourth = await login()
  const ended = await send({ method: 'DELETE', url: `/sessions/${fourth.sid}`, token: third.access })
  t.equal(ended.res.statusCode, 204)
  expectOne(t, ended, { event: 'session_ended', outcome: 'ok', user_id: userId, session_id: fourth.sid }, 'session ended')

  const badChange = await send({ method: 'POST', url: '/password', token: third.access, payload: { current_password: wrongPassword, new_password: newPassword } })
  t.equal(badChange.res.statusCode, 403)
  expectOne(t, badChange, { event: 'password_changed', outcome: 'failed', user_id: userId, session_id: third.sid }, 'password change with a wrong current password')
  const change = await send({ method: 'POST', url: '/password', token: third.access, payload: { current_password: password, new_password: newPassword } })
  t.equal(change.res.statusCode, 204)
  expectOne(t, change, { event: 'password_changed', outcome: 'ok', user_id: userId, session_id: third.sid }, 'password change')

  const fifth = await login(newPassword)
  expectOne(t, fifth, { event: 'login', outcome: 'ok', user_id: userId, session_id: fifth.sid }, 'login with the new password')
  const all = await send({ method: 'POST', url: '/logout-all', token: fifth.access, cookie: fifth.refresh })
  t.equal(all.res.statusCode, 204)
  expectOne(t, all, { event: 'logout_all', outcome: 'ok', user_id: userId, session_id: fifth.sid }, 'logout-all')

  // Requests that are refused before or without an event: no audit line, and no secret in the log.
  const noise = [
    await send({ method: 'GET', url: '/me', token: fifth.access }),
    await send({ method: 'POST', url: '/login', payload: { email, password: `${newPassword}${'x'.repeat(200)}` } }),
    await send({ method: 'POST', url: '/signup', payload: { email: 'not-an-email', password: newPassword, name: 'X' } }),
    await send({ method: 'POST', url: '/refresh', payload: { refresh_token: first.refresh, extra: newPassword } }),
    await send({ method: 'POST', url: '/logout', cookie: fifth.refresh })
  ]
  secrets.add(`${newPassword}${'x'.repeat(200)}`)
  for (const sent of noise) t.same(sent.lines, [], `${sent.res.statusCode} from ${sent.userAgent}: no audit line`)
  const malformed = await app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    remoteAddress: ip,
    headers: { 'content-type': 'application/json' },
    body: `{"email":"${email}","password":"${newPassword}"`
  })
  t.equal(malformed.statusCode, 400, 'malformed JSON holding a password')

  await t.test('the whole log holds no secret', async (t) => {
    const text = log.text()
    t.ok(text.length > 0 && log.audits().length >= 15, `the log was captured (${log.audits().length} audit lines)`)
    t.ok(text.includes('"req"'), 'request lines are logged too (so they were searched)')
    t.notOk(text.includes('$argon2'), 'no password hash')
    let found = 0
    for (const secret of secrets.values) {
      if (text.includes(secret)) {
        found++
        t.fail(`a secret appears in the log: ${secret.slice(0, 12)}…`)
      }
    }
    t.equal(found, 0, `none of the ${secrets.values.size} secrets (passwords, tokens, cookie values, JWT_SECRET) appears`)
    t.ok(secrets.values.size >= 20, 'the search covered every token issued')
  })
}

async function throttledAndRateLimited (t: Test, settings: Record<string, string>): Promise<void> {
  const log = capturedLogger()
  const app: FastifyInstance = await buildTestApp(t, { ...settings, LOGIN_FAIL_MAX: '1', RATE_LIMIT_IP_PER_MINUTE: '5', LOG_LEVEL: 'info' }, { logger: log.logger })
  const ip = `203.0.113.${1 + Math.floor(Math.random() * 250)}`
  const email = `grace.${randomUUID().slice(0, 8)}@example.test`
  const password = `throttle-secret-${randomUUID()}`
  const inject = (url: string, payload: Record<string, unknown>, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: `/api/v1/auth${url}`, remoteAddress: ip, headers: { 'user-agent': 'ThrottleTest/1.0', ...headers }, payload })

  t.equal((await inject('/signup', { email, password, name: 'Grace Hopper' })).statusCode, 201)
  const ok = await inject('/login', { email, password })
  t.equal(ok.statusCode, 200)
  const token: string = ok.json().access_token
  t.equal((await inject('/login', { email: email.toUpperCase(), password: 'wrong password' })).statusCode, 401)
  const before = log.audits().length
  const throttled = await inject('/login', { email: ` ${email.toUpperCase()}`, password })
  t.equal(throttled.statusCode, 429)
  const lines = log.audits().slice(before)
  t.equal(lines.length, 1, 'one audit line')
  t.match(lines[0], { event: 'throttled', outcome: 'denied', email, ip, user_agent: 'ThrottleTest/1.0', user_id: null, session_id: null }, 'throttled login: normalised email')

  const beforeChange = log.audits().length
  const change = await inject('/password', { current_password: password, new_password: `new-${password}` }, { authorization: `Bearer ${token}` })
  t.equal(change.statusCode, 429, 'a password change of the throttled email')
  const changeLines = log.audits().slice(beforeChange)
  t.equal(changeLines.length, 1)
  t.match(changeLines[0], { event: 'throttled', outcome: 'denied', email, ip, session_id: String(decodeJwt(token).payload.sid) })

  const beforeLimit = log.audits().length
  const limited = await inject('/refresh', {})
  t.equal(limited.statusCode, 429, 'the sixth request of the minute from this address')
  const limitLines = log.audits().slice(beforeLimit)
  t.equal(limitLines.length, 1)
  t.match(limitLines[0], { event: 'rate_limited', outcome: 'denied', ip, user_agent: 'ThrottleTest/1.0' })

  const text = log.text()
  for (const secret of [password, `new-${password}`, token, token.split('.')[2] ?? token]) {
    t.notOk(text.includes(secret), 'no password or token in the log')
  }
}
