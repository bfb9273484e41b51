// Races beyond the refresh and signup races of races.test.ts (API.md §6, §7, §10, §12.1): a
// revocation and the rotation or creation of sessions at the same moment, with real concurrent
// fetches on a listening app, under Redis and under the database session store:
// - logout vs refresh of the same token;
// - logout-all vs logins of the same user;
// - a password change vs refreshes of another device's token;
// - DELETE /sessions/{id} vs refreshes of that session.
// Each decision is atomic in the store, so whatever the order: never a 5xx, never two live
// successors, and afterwards an ended session is ended for every token it ever issued.
import t, { type Test } from 'tap'
import { buildTestApp, PASSWORD, STORE_MODES, uniqueEmail } from '../fixtures/app.ts'
import { decodeJwt } from '../fixtures/jwt.ts'

const NEW_PASSWORD = 'copper lantern meadow 58'
const MODES = ['PostgreSQL + Redis', 'PostgreSQL, sessions in the database'] as const

interface Answer {
  status: number
  body: Record<string, unknown> | null
  /** performance.now() when the request was sent and when its answer was read. */
  sent: number
  answered: number
  error?: string
}

async function call (url: string, init: RequestInit = {}): Promise<Answer> {
  const sent = performance.now()
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(20_000) })
    const text = await res.text()
    return { status: res.status, body: text === '' ? null : JSON.parse(text), sent, answered: performance.now() }
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause
    return { status: 0, body: null, sent, answered: performance.now(), error: cause?.code ?? String(error) }
  }
}

const post = (body: unknown): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body)
})
const bearer = (token: unknown, init: RequestInit = {}): RequestInit =>
  ({ ...init, headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${String(token)}` } })
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const describe = (a: Answer) => `${a.status}${typeof a.body?.code === 'string' ? ` ${a.body.code}` : ''}${a.error ? ` ${a.error}` : ''}`

function tally (answers: Answer[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const a of answers) counts[describe(a)] = (counts[describe(a)] ?? 0) + 1
  return counts
}

/** Only the allowed kinds of answer, and every 200 carries one and the same successor. */
function assertRefreshAnswers (t: Test, answers: Answer[], allowed: string[], label: string): string | undefined {
  const counts = tally(answers)
  const unexpected = Object.keys(counts).filter((k) => !allowed.includes(k))
  t.same(unexpected, [], `${label}: only ${allowed.join(' / ')} (${JSON.stringify(counts)})`)
  const successors = new Set(answers.filter((a) => a.status === 200).map((a) => String(a.body?.refresh_token)))
  t.ok(successors.size <= 1, `${label}: never two different successors (${successors.size})`)
  return [...successors][0]
}

const sidOf = (accessToken: unknown) => String(decodeJwt(String(accessToken)).payload.sid)

interface Session { access: string, refresh: string, sid: string }

function client (base: string) {
  const login = async (email: string, password = PASSWORD): Promise<Session> => {
    const res = await call(`${base}/login`, post({ email, password, return_refresh_in_body: true }))
    if (res.status !== 200) throw new Error(`login: ${describe(res)}`)
    return { access: String(res.body?.access_token), refresh: String(res.body?.refresh_token), sid: sidOf(res.body?.access_token) }
  }
  const signup = async (): Promise<string> => {
    const email = uniqueEmail()
    const res = await call(`${base}/signup`, post({ email, password: PASSWORD, name: 'Ada Lovelace' }))
    if (res.status !== 201) throw new Error(`signup: ${describe(res)}`)
    return email
  }
  const refresh = (token: unknown) => call(`${base}/refresh`, post({ refresh_token: token }))
  const me = (access: unknown) => call(`${base}/me`, bearer(access))
  const sessionIds = async (access: string): Promise<string[]> => {
    const res = await call(`${base}/sessions`, bearer(access))
    if (res.status !== 200) throw new Error(`sessions: ${describe(res)}`)
    return (res.body?.sessions as Array<{ id: string }>).map((s) => s.id)
  }
  return { login, signup, refresh, me, sessionIds }
}

/** Every refresh token and access token of an ended session is 401. */
async function assertEnded (t: Test, api: ReturnType<typeof client>, refreshTokens: unknown[], accessTokens: unknown[], label: string) {
  const refreshes = await Promise.all(refreshTokens.map((token) => api.refresh(token)))
  const mes = await Promise.all(accessTokens.map((token) => api.me(token)))
  t.same(Object.keys(tally(refreshes)).filter((k) => !k.startsWith('401 ')), [], `${label}: each of its ${refreshTokens.length} refresh tokens → 401 (${JSON.stringify(tally(refreshes))})`)
  t.same(Object.keys(tally(mes)).filter((k) => k !== '401 invalid_token'), [], `${label}: each of its ${accessTokens.length} access tokens → 401 (${JSON.stringify(tally(mes))})`)
}

t.test('more races', async (t) => {
  for (const mode of MODES) {
    await t.test(mode, async (t) => {
      const app = await buildTestApp(t, STORE_MODES[mode]!())
      await app.listen({ port: 0, host: '127.0.0.1' })
      const address = app.server.address()
      if (address === null || typeof address === 'string') throw new Error('not listening on TCP')
      const base = `http://127.0.0.1:${address.port}/api/v1/auth`
      const api = client(base)

      await t.test('logout vs refreshes of the same token', async (t) => {
        const email = await api.signup()
        const observer = await api.login(email)
        for (let round = 0; round < 4; round++) {
          const session = await api.login(email)
          // 1 logout and 4 refreshes, the logout in a different place in each round
          const kinds = Array.from({ length: 5 }, (_, i) => i === round % 5 ? 'logout' : 'refresh')
          const answers = await Promise.all(kinds.map((kind) => kind === 'logout'
            ? call(`${base}/logout`, post({ refresh_token: session.refresh }))
            : api.refresh(session.refresh)))
          const logout = answers[kinds.indexOf('logout')]!
          const refreshes = answers.filter((_, i) => kinds[i] === 'refresh')
          t.equal(describe(logout), '204', `round ${round}: logout 204`)
          const successor = assertRefreshAnswers(t, refreshes, ['200', '401 invalid_refresh_token'], `round ${round}: refreshes`)
          t.comment(`round ${round}: refreshes ${JSON.stringify(tally(refreshes))}`)
          const refreshTokens = successor === undefined ? [session.refresh] : [session.refresh, successor]
          const accessTokens = [session.access, ...refreshes.filter((a) => a.status === 200).map((a) => a.body?.access_token)]
          await assertEnded(t, api, refreshTokens, accessTokens, `round ${round}: the logged-out session`)
          t.notOk((await api.sessionIds(observer.access)).includes(session.sid), `round ${round}: the session is gone from the list`)
        }
        t.equal((await api.me(observer.access)).status, 200, 'the user\'s other session is untouched')
      })

      await t.test('logout-all vs concurrent logins of the same user', async (t) => {
        for (let round = 0; round < 2; round++) {
          const email = await api.signup()
          const started = performance.now()
          const before = [await api.login(email), await api.login(email), await api.login(email)]
          const loginMs = (performance.now() - started) / 3
          // Logins spread over about two login times; the logout-all is sent as soon as the
          // (2 + round)th of them is answered, so that some sessions are created before it, some
          // after, and some at the same moment.
          let answeredLogins = 0
          let sendLogoutAll = () => {}
          const logoutAllDue = new Promise<void>((resolve) => { sendLogoutAll = resolve })
          const logins = Array.from({ length: 8 }, (_, i) => sleep(i * loginMs / 4)
            .then(() => call(`${base}/login`, post({ email, password: PASSWORD, return_refresh_in_body: true })))
            .then((a) => { if (++answeredLogins === 2 + round) sendLogoutAll(); return a }))
          const logoutAll = logoutAllDue.then(() => call(`${base}/logout-all`, bearer(before[0]!.access, { method: 'POST' })))
          const [all, ...raced] = await Promise.all([logoutAll, ...logins])
          t.equal(describe(all!), '204', `round ${round}: logout-all 204`)
          t.same(tally(raced), { 200: 8 }, `round ${round}: every login 200`)

          await assertEnded(t, api, before.map((s) => s.refresh), before.map((s) => s.access), `round ${round}: each session from before the logout-all`)
          const probe = await api.login(email)
          const listed = new Set(await api.sessionIds(probe.access))
          t.ok(listed.has(probe.sid), `round ${round}: a login afterwards is listed`)
          for (const s of before) t.notOk(listed.has(s.sid), `round ${round}: a session from before is not listed`)
          let survived = 0
          let answeredBefore = 0
          for (const [i, login] of raced.entries()) {
            const sid = sidOf(login.body?.access_token)
            if (login.answered <= all!.sent) {
              answeredBefore++
              t.notOk(listed.has(sid), `round ${round}: login ${i}, answered before the logout-all was sent, is not listed`)
            }
            const [me, refresh] = [await api.me(login.body?.access_token), await api.refresh(login.body?.refresh_token)]
            if (listed.has(sid)) {
              survived++
              t.same([me.status, refresh.status], [200, 200], `round ${round}: login ${i} is listed: its tokens work`)
            } else {
              t.same([describe(me), refresh.status], ['401 invalid_token', 401], `round ${round}: login ${i} is not listed: its tokens are 401`)
            }
          }
          t.ok(answeredBefore >= 2 + round, `round ${round}: ${answeredBefore} logins were answered before the logout-all was sent`)
          t.comment(`round ${round}: ${survived} of 8 concurrent logins survived the logout-all`)
        }
      })

      await t.test('password change vs refreshes of another device\'s token', async (t) => {
        const email = await api.signup()
        const caller = await api.login(email)
        const other = await api.login(email)
        const refreshTokens = [other.refresh]
        const accessTokens = [other.access]
        const answers: Answer[] = []

        let changed: Answer | undefined
        const change = call(`${base}/password`, bearer(caller.access, post({ current_password: PASSWORD, new_password: NEW_PASSWORD })))
          .then((a) => { changed = a; return a })
        // The other device keeps refreshing, two requests at a time, along its token chain,
        // until a burst gets no 200, and at least once after the change was answered.
        let token = other.refresh
        for (let burst = 0; burst < 500; burst++) {
          const doneBefore = changed !== undefined
          const pair = await Promise.all([api.refresh(token), api.refresh(token)])
          answers.push(...pair)
          const successor = assertRefreshAnswers(t, pair, ['200', '401 invalid_refresh_token'], `burst ${burst}`)
          for (const a of pair) if (a.status === 200) accessTokens.push(String(a.body?.access_token))
          if (successor === undefined) break
          refreshTokens.push(successor)
          token = successor
          if (doneBefore) break
        }
        const password = await change
        t.equal(describe(password), '204', 'the password change: 204')
        answers.push(...await Promise.all([api.refresh(token), api.refresh(token)]))
        t.comment(`the other device's refreshes: ${JSON.stringify(tally(answers))}`)
        const late = answers.filter((a) => a.sent > password.answered)
        t.same(late.filter((a) => a.status !== 401).map(describe), [], `each of the ${late.length} refreshes sent after the change was answered is 401`)

        await assertEnded(t, api, refreshTokens, accessTokens, 'the other device')
        t.equal((await api.me(caller.access)).status, 200, 'the caller\'s access token works')
        const own = await api.refresh(caller.refresh)
        t.equal(own.status, 200, 'the caller\'s session refreshes')
        t.same(await api.sessionIds(String(own.body?.access_token)), [caller.sid], 'only the caller\'s session is listed')
        t.equal((await call(`${base}/login`, post({ email, password: NEW_PASSWORD }))).status, 200, 'the new password logs in')
      })

      await t.test('DELETE /sessions/{id} vs refreshes of that session', async (t) => {
        const email = await api.signup()
        const caller = await api.login(email)
        for (let round = 0; round < 4; round++) {
          const target = await api.login(email)
          const kinds = Array.from({ length: 5 }, (_, i) => i === round % 5 ? 'delete' : 'refresh')
          const answers = await Promise.all(kinds.map((kind, i) => kind === 'delete'
            ? call(`${base}/sessions/${target.sid}`, bearer(caller.access, { method: 'DELETE' }))
            : sleep(i * 3).then(() => api.refresh(target.refresh))))
          const deleted = answers[kinds.indexOf('delete')]!
          const refreshes = answers.filter((_, i) => kinds[i] === 'refresh')
          t.equal(describe(deleted), '204', `round ${round}: DELETE 204`)
          const successor = assertRefreshAnswers(t, refreshes, ['200', '401 invalid_refresh_token'], `round ${round}: refreshes`)
          t.comment(`round ${round}: refreshes ${JSON.stringify(tally(refreshes))}`)
          const refreshTokens = successor === undefined ? [target.refresh] : [target.refresh, successor]
          const accessTokens = [target.access, ...refreshes.filter((a) => a.status === 200).map((a) => a.body?.access_token)]
          await assertEnded(t, api, refreshTokens, accessTokens, `round ${round}: the deleted session`)
          t.same(await api.sessionIds(caller.access), [caller.sid], `round ${round}: only the caller's session is listed`)
        }
        const own = await api.refresh(caller.refresh)
        t.equal(own.status, 200, 'the caller\'s session still refreshes')
      })
    })
  }
})
