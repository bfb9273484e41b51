// The browser example (examples/browser) in a real Chromium, driven by playwright-core, against
// a listening test app: the refresh cookie as a browser keeps it (API.md §4.3), CORS for the
// listed origin and for unlisted ones (§2.5), and the Origin check of cookie refresh and
// logout (§2.6).
//
// Three origins, all served by examples/browser/serve.mjs:
// - WEB      http://localhost:<web>   listed in CORS_ORIGINS; same site as the API
//                                      (http://localhost:<api>): ports do not make sites.
// - SIBLING  http://localhost:<other> unlisted, same site: SameSite=Strict does NOT keep the
//                                      cookie off its requests, so only the server's Origin
//                                      check protects the session.
// - FOREIGN  http://127.0.0.1:<web>   unlisted, another site: the browser withholds the
//                                      cookie, and the server refuses the Origin anyway.
// Chromium comes from Debian (`apt-get install chromium`); without it this file is skipped,
// with that instruction as the reason.
import { accessSync, constants } from 'node:fs'
import type { IncomingHttpHeaders, Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { delimiter, join } from 'node:path'
import { chromium, type BrowserContext, type Cookie, type Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { createStaticServer } from '../examples/browser/serve.mjs'
import { buildTestApp, PASSWORD, uniqueEmail } from './fixtures/app.ts'

const AUTH = '/api/v1/auth'
const COOKIE = 'refresh_token'
const LAUNCH_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync']

/** Debian's /usr/bin/chromium, else a `chromium` on PATH. */
function findChromium (): string | undefined {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((dir) => dir !== '')
  return ['/usr/bin/chromium', ...dirs.map((dir) => join(dir, 'chromium'))].find((file) => {
    try {
      accessSync(file, constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

/** A request as a server saw it, with the refresh cookie it carried (if any). */
interface Seen {
  method: string
  path: string
  origin: string | undefined
  cookie: string | undefined
  status: number
}

function refreshCookieIn (headers: IncomingHttpHeaders): string | undefined {
  for (const pair of (headers.cookie ?? '').split(';')) {
    const [name, ...value] = pair.trim().split('=')
    if (name === COOKIE) return value.join('=')
  }
  return undefined
}

/** Every request the server answers, in order: what the browser really sent, and the status. */
function recordRequests (server: Server): Seen[] {
  const seen: Seen[] = []
  server.on('request', (request, response) => {
    response.on('finish', () => seen.push({
      method: request.method ?? '',
      path: request.url ?? '',
      origin: request.headers.origin,
      cookie: refreshCookieIn(request.headers),
      status: response.statusCode
    }))
  })
  return seen
}

async function listen (server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

/** What the page shows in #output after an action (examples/browser/app.js). */
interface Shown {
  action: string
  status: number
  body?: any
  error?: string
}

/** The example page from `origin`, talking to the API at `api`, once its script has run. */
async function openApp (context: BrowserContext, origin: string, api: string): Promise<Page> {
  const page = await context.newPage()
  await page.goto(`${origin}/?api=${encodeURIComponent(api)}`)
  await page.waitForSelector('#output[data-ready="true"]', { state: 'attached' })
  return page
}

/** Clicks a button of the page and returns the answer it then shows. */
async function press (page: Page, button: string): Promise<Shown> {
  const before = Number(await page.getAttribute('#output', 'data-seq'))
  await page.click(`#${button}`)
  await page.waitForFunction(`Number(document.getElementById('output').dataset.seq) > ${before}`)
  return JSON.parse(await page.textContent('#output') ?? 'null') as Shown
}

/**
 * fetch(url, init) with credentials from the page: `read <status>` when the page may read the
 * answer, `blocked: <error>` when fetch rejects (CORS). (No named functions inside: tsx would
 * wrap them in a helper the page does not have.)
 */
interface Init {
  method?: string
  mode?: 'cors' | 'no-cors'
  headers?: Record<string, string>
  body?: string
}

function attempt (page: Page, url: string, init: Init): Promise<string> {
  return page.evaluate(async ({ url, init }) => {
    try {
      return `read ${(await fetch(url, { credentials: 'include', ...init })).status}`
    } catch (error) {
      return `blocked: ${String(error)}`
    }
  }, { url, init })
}

async function refreshCookie (context: BrowserContext): Promise<Cookie | undefined> {
  return (await context.cookies()).find((cookie) => cookie.name === COOKIE)
}

async function signupAndLogin (t: Test, page: Page, email: string): Promise<Shown> {
  await page.fill('#signup-form [name=email]', email)
  await page.fill('#signup-form [name=password]', PASSWORD)
  await page.fill('#signup-form [name=name]', 'Ada Lovelace')
  const signup = await press(page, 'signup')
  t.equal(signup.status, 201, 'signup: 201', { shown: signup })
  await page.fill('#login-form [name=password]', PASSWORD)
  await page.fill('#login-form [name=device_name]', 'Example page')
  const login = await press(page, 'login')
  t.equal(login.status, 200, 'login: 200', { shown: login })
  return login
}

const executablePath = findChromium()
const skip = executablePath === undefined
  ? 'Chromium is not installed (no /usr/bin/chromium, no `chromium` on PATH). Enable this test with `apt-get install -y chromium` (Debian).'
  : false

t.test('browser example in Chromium', { skip }, async (t) => {
  const web = createStaticServer()
  const sibling = createStaticServer()
  t.teardown(() => { web.close(); sibling.close() })
  const siblingSeen = recordRequests(sibling)
  const webPort = await listen(web)
  const siblingPort = await listen(sibling)
  const WEB = `http://localhost:${webPort}`
  const SIBLING = `http://localhost:${siblingPort}`
  const FOREIGN = `http://127.0.0.1:${webPort}`

  const app = await buildTestApp(t, { CORS_ORIGINS: WEB })
  const apiSeen = recordRequests(app.server)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const API = `http://localhost:${(app.server.address() as AddressInfo).port}`
  /** The cookie and status of each `method path` request from `origin` since index `from` of the log. */
  const apiRequests = (from: number, origin: string, method: string, path: string) => apiSeen.slice(from)
    .filter((seen) => seen.origin === origin && seen.method === method && seen.path === path)
    .map(({ cookie, status }) => ({ cookie, status }))

  const browser = await chromium.launch({ executablePath, args: LAUNCH_ARGS })
  t.teardown(() => browser.close())
  t.comment(`Chromium ${browser.version()}: page ${WEB}, API ${API}`)

  await t.test('the listed page: signup, login, me, refresh, sessions, logout', async (t) => {
    const context = await browser.newContext()
    t.teardown(() => context.close())
    context.setDefaultTimeout(20_000)
    const page = await openApp(context, WEB, API)
    const email = uniqueEmail()

    await page.fill('#signup-form [name=email]', email)
    await page.fill('#signup-form [name=password]', PASSWORD)
    await page.fill('#signup-form [name=name]', 'Ada Lovelace')
    const signup = await press(page, 'signup')
    t.equal(signup.status, 201, 'signup: 201', { shown: signup })
    t.match(signup.body, { id: String, email, name: 'Ada Lovelace', created_at: String }, 'signup: the user')
    t.equal(await refreshCookie(context), undefined, 'signup sets no cookie')
    t.equal(await page.inputValue('#login-form [name=email]'), email, 'the page copies the email to the login form')

    await page.fill('#login-form [name=password]', PASSWORD)
    await page.fill('#login-form [name=device_name]', 'Example page')
    const login = await press(page, 'login')
    t.equal(login.status, 200, 'login: 200', { shown: login })
    t.match(login.body, { access_token: String, token_type: 'bearer', user: { id: signup.body.id, email } }, 'login: access token and user')
    t.notOk('refresh_token' in login.body, 'login: no refresh token in the body')

    const cookie = await refreshCookie(context)
    t.ok(cookie, 'login: the browser stored the refresh cookie')
    if (cookie === undefined) return
    t.match(cookie, { domain: 'localhost', path: AUTH, httpOnly: true, sameSite: 'Strict', secure: false },
      'cookie: host-only on localhost, Path=/api/v1/auth, HttpOnly, SameSite=Strict, not Secure (dev)')
    t.match(cookie.value, /^[A-Za-z0-9_-]{86}$/, 'cookie: the 86-character refresh token')
    const lifetime = cookie.expires - Date.now() / 1000
    t.ok(lifetime > 1209600 - 120 && lifetime <= 1209600 + 5, `cookie: expires in REFRESH_DAYS (${Math.round(lifetime)} s)`)
    t.notMatch(await page.evaluate('document.cookie'), COOKIE, 'document.cookie of the page does not show the refresh cookie')
    t.equal(await page.evaluate('localStorage.length + sessionStorage.length'), 0, 'nothing in localStorage or sessionStorage')
    t.notMatch(await page.content(), cookie.value, 'the refresh token appears nowhere in the page')

    const me = await press(page, 'me')
    t.equal(me.status, 200, 'me: 200', { shown: me })
    t.same(me.body, signup.body, 'me: the user of the signup')

    const beforeRefresh = apiSeen.length
    const refresh = await press(page, 'refresh')
    t.equal(refresh.status, 200, 'refresh: 200', { shown: refresh })
    t.same(Object.keys(refresh.body).sort(), ['access_token', 'expires_in', 'token_type'], 'refresh: no refresh token in the body (it came from the cookie)')
    t.not(refresh.body.access_token, login.body.access_token, 'refresh: a new access token')
    t.same(apiRequests(beforeRefresh, WEB, 'POST', `${AUTH}/refresh`), [{ cookie: cookie.value, status: 200 }], 'refresh: the browser sent the cookie (no body)')
    const rotated = await refreshCookie(context)
    t.ok(rotated, 'refresh: a cookie is still stored')
    t.not(rotated?.value, cookie.value, 'refresh: the cookie holds the successor')
    t.match(rotated, { path: AUTH, httpOnly: true, sameSite: 'Strict' }, 'refresh: same attributes')
    t.equal((await press(page, 'me')).status, 200, 'me with the new access token: 200')

    const sessions = await press(page, 'sessions')
    t.equal(sessions.status, 200, 'sessions: 200', { shown: sessions })
    t.equal(sessions.body.sessions.length, 1, 'sessions: one')
    t.match(sessions.body.sessions[0], {
      current: true,
      device_name: 'Example page',
      user_agent: await page.evaluate('navigator.userAgent'),
      ip: '127.0.0.1'
    }, 'sessions: this browser\'s, current')

    const beforeLogout = apiSeen.length
    const logout = await press(page, 'logout')
    t.equal(logout.status, 204, 'logout: 204', { shown: logout })
    t.same(apiRequests(beforeLogout, WEB, 'POST', `${AUTH}/logout`), [{ cookie: rotated?.value, status: 204 }], 'logout: the browser sent the cookie')
    t.equal(await refreshCookie(context), undefined, 'logout: the cookie is gone from the browser')
    const after = await press(page, 'refresh')
    t.equal(after.status, 401, 'refresh after logout: 401', { shown: after })
    t.equal(after.body?.code, 'invalid_refresh_token', 'refresh after logout: invalid_refresh_token')
  })

  await t.test('pages on unlisted origins', async (t) => {
    const context = await browser.newContext()
    t.teardown(() => context.close())
    context.setDefaultTimeout(20_000)
    const page = await openApp(context, WEB, API)
    const email = uniqueEmail()
    await signupAndLogin(t, page, email)
    let current = (await refreshCookie(context))?.value
    t.ok(current, 'the listed page is logged in: cookie stored')

    const cases = [
      { label: 'same site, another port', origin: SIBLING, cookieSent: true },
      { label: 'another site (127.0.0.1)', origin: FOREIGN, cookieSent: false }
    ]
    for (const { label, origin, cookieSent } of cases) {
      await t.test(`${label}: ${origin}`, async (t) => {
        const lastUsed = async () => (await press(page, 'sessions')).body?.sessions?.[0]?.last_used_at as string | undefined
        const lastUsedBefore = await lastUsed()
        t.ok(lastUsedBefore, 'the session is listed')
        // The same example app, served from an origin CORS_ORIGINS does not list.
        const other = await openApp(context, origin, API)
        const from = apiSeen.length

        const liveness = await attempt(other, `${API}/`, {})
        const login = await attempt(other, `${API}${AUTH}/login`, {
          method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password: PASSWORD })
        })
        t.match(liveness, /^blocked: TypeError/, 'GET / : the page cannot read the answer')
        t.same(apiRequests(from, origin, 'GET', '/'), [{ cookie: undefined, status: 200 }],
          'GET / : the request itself was sent and answered (without CORS headers)')
        t.match(login, /^blocked: TypeError/, 'login: blocked')
        t.same(apiRequests(from, origin, 'OPTIONS', `${AUTH}/login`), [{ cookie: undefined, status: 204 }], 'login: the preflight got no CORS headers…')
        t.same(apiRequests(from, origin, 'POST', `${AUTH}/login`), [], '…so the browser never sent the login')

        // The page's own buttons: cookie refresh and logout with credentials: 'include'.
        const refresh = await press(other, 'refresh')
        t.match(refresh, { status: 0, error: /TypeError/ }, 'refresh button: the page cannot read the answer')
        const logout = await press(other, 'logout')
        t.match(logout, { status: 0, error: /TypeError/ }, 'logout button: the page cannot read the answer')
        // The classic cross-site request forgery: a no-cors POST without body. The answer would
        // be opaque; helmet's Cross-Origin-Resource-Policy: same-origin even makes fetch reject.
        const forged = await attempt(other, `${API}${AUTH}/refresh`, { method: 'POST', mode: 'no-cors' })
        t.match(forged, /^(read 0|blocked: TypeError)/, 'no-cors refresh: the page learns nothing')

        const expected = { cookie: cookieSent ? current : undefined, status: 403 }
        t.same(apiRequests(from, origin, 'POST', `${AUTH}/refresh`), [expected, expected],
          `refresh: the browser sent it ${cookieSent ? 'WITH the cookie (same site)' : 'without the cookie (SameSite=Strict)'}; 403 origin_not_allowed`)
        t.same(apiRequests(from, origin, 'POST', `${AUTH}/logout`), [expected], 'logout: 403 origin_not_allowed')
        t.equal((await refreshCookie(context))?.value, current, 'the browser\'s cookie is unchanged')
        t.equal(await lastUsed(), lastUsedBefore, 'server side: the session was not rotated (last_used_at unchanged)')

        const refreshed = await press(page, 'refresh')
        t.equal(refreshed.status, 200, 'the listed page still refreshes through the cookie', { shown: refreshed })
        const next = (await refreshCookie(context))?.value
        t.not(next, current, 'and the cookie rotates')
        current = next
        await other.close()
      })
    }

    await t.test('cookies ignore ports', async (t) => {
      // Not the API's doing: a host-only cookie is sent to every port of its host. The page at
      // the cookie's path on another localhost port gets it in its request, yet cannot read it.
      const from = siblingSeen.length
      const other = await context.newPage()
      await other.goto(`${SIBLING}${AUTH}/refresh`)
      t.same(siblingSeen.slice(from).filter((seen) => seen.path.startsWith(AUTH)), [{ method: 'GET', path: `${AUTH}/refresh`, origin: undefined, cookie: current, status: 404 }],
        'a static server on another localhost port received the refresh cookie')
      t.notMatch(await other.evaluate('document.cookie'), COOKIE, 'HttpOnly: document.cookie at that path does not show it')
      await other.close()
    })
  })
})
