// Zero-setup mode as a newcomer meets it (API.md §1.1, §1.2, §5.2): the service started with no
// DATABASE_URL, REDIS_URL or JWT_SECRET keeps users and sessions in an embedded database in
// DATA_DIR, generates its secret there, guards DATA_DIR with a lock file, and survives
// restarts without logging anyone out.
// One DATA_DIR serves the first start, the walkthrough, the refused second process, the
// shutdown and the restart (a fresh embedded database costs seconds to initialise); the
// tests below therefore run in order and share the state declared here.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { PASSWORD, tempDataDir, uniqueEmail } from './fixtures/app.ts'
import { freePort } from './fixtures/ports.ts'
import { ROOT, start, waitForHttp, type Service } from './fixtures/process.ts'

// Each step takes seconds (well under a minute in all on an idle machine), but the children
// compete for 2 cores with whatever else runs: more room than .taprc's 120 s.
t.setTimeout(240_000)

const LOCK_FILE = 'auth-api.lock'
const JSON_TYPE = { 'content-type': 'application/json' }

// server.ts reads the project-root `.env`; one there (README: `cp .env.example .env`) would
// hand the children a DATABASE_URL and defeat the point of these tests.
const skip = existsSync(join(ROOT, '.env')) ? 'a project-root .env would feed settings to the service' : false

const dataDir = tempDataDir()
const lockFile = join(dataDir, LOCK_FILE)
const secretFile = join(dataDir, 'jwt-secret')

function auth (service: Service, path: string): string {
  return `http://127.0.0.1:${service.port}/api/v1/auth/${path}`
}

function post (service: Service, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(auth(service, path), {
    method: 'POST',
    headers: body === undefined ? headers : { ...JSON_TYPE, ...headers },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
}

function me (service: Service, accessToken: string): Promise<Response> {
  return fetch(auth(service, 'me'), { headers: { authorization: `Bearer ${accessToken}` } })
}

/** The `refresh_token=...` Set-Cookie header of a response, if any. */
function refreshSetCookie (res: Response): string | undefined {
  return res.headers.getSetCookie().find((cookie) => cookie.startsWith('refresh_token='))
}

/** The `refresh_token=<value>` pair of a Set-Cookie header, to send back as a Cookie header. */
function cookiePair (setCookie: string | undefined): string {
  return setCookie?.split(';')[0] ?? ''
}

interface LogLine { level: number, msg: string }

function logLines (service: Service): LogLine[] {
  return service.output().trim().split('\n').flatMap((line) => {
    try {
      return [JSON.parse(line) as LogLine]
    } catch {
      return []
    }
  })
}

function listeningLine (service: Service): string | undefined {
  return logLines(service).find((line) => typeof line.msg === 'string' && line.msg.startsWith('Listening on'))?.msg
}

function lockHolder (): unknown {
  try {
    return JSON.parse(readFileSync(lockFile, 'utf8'))
  } catch {
    return null
  }
}

async function stop (service: Service): Promise<{ code: number | null, ms: number }> {
  const signalledAt = Date.now()
  service.child.kill('SIGTERM')
  const { code } = await service.exited
  return { code, ms: Date.now() - signalledAt }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

// State carried from one step to the next.
let first: Service
let email: string
let accessToken: string // of the cookie session, from before the restart
let rotatedCookie: string // the cookie session's token after one rotation before the restart
let reusedToken: string // rotated before the restart; presented again after the grace window
let reusedSuccessor: string
let reusedRotatedAt: number
let loggedOutToken: string // its session logged out before the restart
let loggedOutAccess: string
let secret: string
let prodRefusal: Service // APP_ENV=prod without DATABASE_URL
let prodPort: number

t.test('a fresh DATA_DIR: starts with no settings at all', { skip }, async (t) => {
  first = start({ DATA_DIR: dataDir }, await freePort())
  const startupMs = await waitForHttp(first)
  t.comment(`first start (fresh DATA_DIR): GET / answered 200 after ${startupMs} ms`)
  t.ok(startupMs < 60_000, `GET / answered within 60 s of launch (${startupMs} ms)`)

  const listening = listeningLine(first)
  t.ok(listening, 'one line says where it listens')
  t.match(listening, `users in the embedded database at ${dataDir};`, 'it names the embedded database and its DATA_DIR')
  t.match(listening, /; sessions in the database$/, 'and keeps the sessions in the database')

  const warning = logLines(first).find((line) => line.level === 40 && line.msg.includes('JWT_SECRET'))
  t.match(warning?.msg, `generated into ${secretFile}`, 'a warning says JWT_SECRET was generated into DATA_DIR')

  const ready = await fetch(`http://127.0.0.1:${first.port}/health/ready`)
  t.equal(ready.status, 200)
  t.equal(await ready.text(), '{"status":"ready","checks":{"postgres":"up"}}', 'readiness checks the database only')

  t.equal(statSync(secretFile).mode & 0o777, 0o600, 'DATA_DIR/jwt-secret is readable by its owner only')
  secret = readFileSync(secretFile, 'utf8')
  t.ok(secret.trim().length >= 32, 'the generated secret is at least 32 characters')
  t.ok(existsSync(join(dataDir, 'pgdata')), 'the database lives in DATA_DIR/pgdata')
  t.same(lockHolder(), { pid: first.child.pid, host: hostname() }, 'the lock file names the running process')
})

t.test('the README walkthrough over HTTP', { skip }, async (t) => {
  email = uniqueEmail()
  const signup = await post(first, 'signup', { email, password: PASSWORD, name: 'User One' })
  t.equal(signup.status, 201, 'signup: 201')

  const login = await post(first, 'login', { email, password: PASSWORD })
  t.equal(login.status, 200, 'login: 200')
  const loginCookie = refreshSetCookie(login)
  t.match(loginCookie, /^refresh_token=[A-Za-z0-9_-]{86};/, 'login sets the refresh cookie')
  t.match(loginCookie, /; HttpOnly/i, 'HttpOnly')
  t.match(loginCookie, /; Path=\/api\/v1\/auth(;|$)/, 'on the API path')
  const loginBody = await login.json() as { access_token: string, refresh_token?: unknown }
  t.notOk('refresh_token' in loginBody, 'no refresh token in the body unless asked')
  accessToken = loginBody.access_token

  const who = await me(first, accessToken)
  t.equal(who.status, 200, '/me with the Bearer token: 200')
  t.equal((await who.json() as { email: string }).email, email)

  const refresh = await post(first, 'refresh', undefined, { cookie: cookiePair(loginCookie) })
  t.equal(refresh.status, 200, 'refresh with the cookie: 200')
  const refreshCookie = refreshSetCookie(refresh)
  t.match(refreshCookie, /^refresh_token=[A-Za-z0-9_-]{86};/, 'refresh sets a new cookie')
  t.not(cookiePair(refreshCookie), cookiePair(loginCookie), 'the cookie is rotated')
  t.equal((await me(first, (await refresh.json() as { access_token: string }).access_token)).status, 200, 'the new access token works')
  rotatedCookie = cookiePair(refreshCookie)

  const bodyLogin = await post(first, 'login', { email, password: PASSWORD, return_refresh_in_body: true })
  t.equal(bodyLogin.status, 200, 'login with return_refresh_in_body: 200')
  const bodyTokens = await bodyLogin.json() as { refresh_token: string }
  t.match(bodyTokens.refresh_token, /^[A-Za-z0-9_-]{86}$/, 'the refresh token is in the body')
  t.equal(cookiePair(refreshSetCookie(bodyLogin)), `refresh_token=${bodyTokens.refresh_token}`, 'and the same in the cookie')

  // For after the restart: this session rotates once now; its first token comes back later.
  const rotated = await post(first, 'refresh', { refresh_token: bodyTokens.refresh_token })
  t.equal(rotated.status, 200, 'refresh with the body token: 200')
  reusedRotatedAt = Date.now()
  reusedToken = bodyTokens.refresh_token
  reusedSuccessor = (await rotated.json() as { refresh_token: string }).refresh_token
  t.not(reusedSuccessor, reusedToken, 'the body token is rotated')

  // And one session that logs out before the restart.
  const third = await post(first, 'login', { email, password: PASSWORD, return_refresh_in_body: true })
  const thirdTokens = await third.json() as { access_token: string, refresh_token: string }
  loggedOutToken = thirdTokens.refresh_token
  loggedOutAccess = thirdTokens.access_token
  t.equal((await post(first, 'logout', { refresh_token: loggedOutToken })).status, 204, 'logout: 204')
  t.equal((await me(first, loggedOutAccess)).status, 401, 'the logged-out session\'s access token stops working')
})

t.test('a second process on the same DATA_DIR is turned away; the first keeps serving', { skip }, async (t) => {
  // Launched together with the second process: a process refused for a bad setting, which
  // loads the same modules and exits before touching DATA_DIR. The second process must not
  // take much longer: it is refused at once, never left waiting for the lock. (A fixed
  // bound would not do: loading the modules takes 2 s on an idle machine, 13 s on a busy one.)
  prodPort = await freePort()
  prodRefusal = start({ DATA_DIR: tempDataDir(), APP_ENV: 'prod', JWT_SECRET: 'p'.repeat(40) }, prodPort)
  const second = start({ DATA_DIR: dataDir }, await freePort())
  const timeout = setTimeout(() => second.child.kill('SIGKILL'), 60_000)
  const [{ code, ms }, reference] = await Promise.all([second.exited, prodRefusal.exited])
  clearTimeout(timeout)
  t.comment(`the second process exited after ${ms} ms (a refusal for a bad setting, launched with it: ${reference.ms} ms)`)
  t.equal(code, 1, 'exit status 1')
  t.ok(ms < reference.ms + 5_000, `refused at once: ${ms} ms, against ${reference.ms} ms for a bad setting`)
  t.match(second.output(), LOCK_FILE, 'its output names the lock file')
  t.notMatch(second.output(), 'Listening on', 'it never listened')

  t.same(lockHolder(), { pid: first.child.pid, host: hostname() }, 'the lock still names the first process')
  t.equal((await fetch(`http://127.0.0.1:${first.port}/`)).status, 200, 'the first process still answers')
  t.equal((await me(first, accessToken)).status, 200, 'and still reads its database')
})

t.test('SIGTERM: exit status 0 within 10 s, lock released', { skip }, async (t) => {
  const { code, ms } = await stop(first)
  t.equal(code, 0, 'exit status 0')
  t.ok(ms < 10_000, `within 10 s (${ms} ms)`)
  t.notOk(existsSync(lockFile), 'the lock file is gone')
  t.ok(existsSync(join(dataDir, 'pgdata')), 'the database files stay')
})

t.test('a restart on the same DATA_DIR, over a stale lock: nobody is logged out', { skip }, async (t) => {
  // A lock left by a process that has ended, on this host.
  const gone = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  await new Promise((resolve) => gone.on('exit', resolve))
  t.throws(() => process.kill(gone.pid!, 0), 'the lock\'s pid is not running')
  writeFileSync(lockFile, JSON.stringify({ pid: gone.pid, host: hostname() }) + '\n')

  const again = start({ DATA_DIR: dataDir }, await freePort())
  const restartMs = await waitForHttp(again)
  t.comment(`restart (existing DATA_DIR, stale lock): GET / answered 200 after ${restartMs} ms`)
  t.ok(restartMs < 60_000, `GET / answered within 60 s of launch (${restartMs} ms)`)
  t.same(lockHolder(), { pid: again.child.pid, host: hostname() }, 'the stale lock was taken over')
  t.match(listeningLine(again), /users in the embedded database at .*; sessions in the database$/)
  t.equal(readFileSync(secretFile, 'utf8'), secret, 'the secret is kept')
  t.match(logLines(again).find((line) => line.level === 40 && line.msg.includes('JWT_SECRET'))?.msg, `kept in ${secretFile}`,
    'the warning says the secret was read back')

  t.equal((await post(again, 'login', { email, password: PASSWORD })).status, 200, 'the user still logs in')
  t.equal((await me(again, accessToken)).status, 200, 'an access token from before the restart still works')

  const refresh = await post(again, 'refresh', undefined, { cookie: rotatedCookie })
  t.equal(refresh.status, 200, 'a refresh token rotated before the restart rotates again')
  const next = cookiePair(refreshSetCookie(refresh))
  t.match(next, /^refresh_token=[A-Za-z0-9_-]{86}$/)
  t.not(next, rotatedCookie, 'into a new token')

  const loggedOut = await post(again, 'refresh', { refresh_token: loggedOutToken })
  t.equal(loggedOut.status, 401, 'a token logged out before the restart stays dead')
  t.equal((await loggedOut.json() as { code: string }).code, 'invalid_refresh_token')
  t.equal((await me(again, loggedOutAccess)).status, 401, 'and so does its access token')

  // The previous token, after the 10 s grace window (REFRESH_GRACE_SECONDS default): the
  // rotation state survived, so this is reuse and ends that session.
  const wait = reusedRotatedAt + 11_000 - Date.now()
  if (wait > 0) await sleep(wait)
  const reused = await post(again, 'refresh', { refresh_token: reusedToken })
  t.equal(reused.status, 401, 'the previous token after the grace window: 401')
  t.equal((await reused.json() as { code: string }).code, 'refresh_reused')
  t.equal((await post(again, 'refresh', { refresh_token: reusedSuccessor })).status, 401, 'and its session is revoked')

  const { code, ms } = await stop(again)
  t.equal(code, 0, 'SIGTERM: exit status 0')
  t.ok(ms < 10_000, `within 10 s (${ms} ms)`)
  t.notOk(existsSync(lockFile), 'the lock file is gone')
})

t.test('APP_ENV=prod without DATABASE_URL refuses to start', { skip }, async (t) => {
  // launched, and exited, in the second-process test above
  const { code } = await prodRefusal.exited
  t.equal(code, 1, 'exit status 1')
  t.match(prodRefusal.output(), /DATABASE_URL is required when APP_ENV=prod/, 'the message names DATABASE_URL')
  t.notMatch(prodRefusal.output(), 'Listening on', 'it never listened')
  await t.rejects(fetch(`http://127.0.0.1:${prodPort}/`), 'nothing answers on its port')
})

t.test('db:migrate without DATABASE_URL migrates the embedded database', { skip }, async (t) => {
  const dir = tempDataDir()
  const migrate = start({ DATA_DIR: dir }, 0, 'db/migrate-cli.ts')
  const { code } = await migrate.exited
  t.equal(code, 0, `exit status 0: ${migrate.output().slice(0, 300)}`)
  t.match(migrate.output(), 'Database schema is up to date')
  t.ok(existsSync(join(dir, 'pgdata')), 'DATA_DIR/pgdata exists')
  t.notOk(existsSync(join(dir, LOCK_FILE)), 'the lock is released')
})
