// Device sessions (API.md §5.8–5.11, §7): the list, ending one session, logout-all, and logout
// ending only the current device.
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { buildTestApp, login, me, refreshWithBody, signup, signupAndLogin, type LoggedIn } from '../fixtures/app.ts'
import { decodeJwt } from '../fixtures/jwt.ts'

const TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
const MEMBERS = ['created_at', 'current', 'device_name', 'expires_at', 'id', 'ip', 'last_used_at', 'user_agent']

interface SessionItem {
  id: string
  device_name: string | null
  user_agent: string | null
  ip: string | null
  created_at: string
  last_used_at: string
  expires_at: string
  current: boolean
}

function listSessions (app: FastifyInstance, accessToken: string) {
  return app.inject({ method: 'GET', url: '/api/v1/auth/sessions', headers: { authorization: `Bearer ${accessToken}` } })
}

async function sessionsOf (app: FastifyInstance, accessToken: string): Promise<SessionItem[]> {
  const res = await listSessions(app, accessToken)
  if (res.statusCode !== 200) throw new Error(`sessions: ${res.statusCode} ${res.body}`)
  return res.json().sessions
}

function deleteSession (app: FastifyInstance, accessToken: string, id: string) {
  return app.inject({ method: 'DELETE', url: `/api/v1/auth/sessions/${encodeURIComponent(id)}`, headers: { authorization: `Bearer ${accessToken}` } })
}

const sidOf = (session: LoggedIn) => String(decodeJwt(session.accessToken).payload.sid)

t.test('sessions', async (t) => {
  const app = await buildTestApp(t)

  await t.test('the list shows exactly the caller\'s live sessions', async (t) => {
    const ada = await signup(app)
    const phone = await login(app, ada.email, { device_name: "Ada's phone" }, { 'user-agent': 'Mozilla/5.0 (Phone) Test/1.0' })
    const laptop = await login(app, ada.email, { device_name: 'Work Laptop' }, { 'user-agent': 'Mozilla/5.0 (Laptop) Test/2.0' })
    const longAgent = 'x'.repeat(600)
    const bare = await login(app, ada.email, {}, { 'user-agent': longAgent })
    const bob = await signupAndLogin(app)
    const gone = await login(app, ada.email)
    t.equal((await app.inject({ method: 'POST', url: '/api/v1/auth/logout', payload: { refresh_token: gone.refreshToken } })).statusCode, 204)

    const res = await listSessions(app, phone.accessToken)
    t.equal(res.statusCode, 200)
    t.equal(res.headers['cache-control'], 'no-store')
    t.same(Object.keys(res.json()), ['sessions'])
    const items: SessionItem[] = res.json().sessions
    t.same(items.map((s) => s.id).sort(), [sidOf(phone), sidOf(laptop), sidOf(bare)].sort(), 'only the live sessions of the caller')
    t.notOk(items.some((s) => s.id === sidOf(bob)), "no other user's session")
    t.notOk(items.some((s) => s.id === sidOf(gone)), 'no ended session')
    for (const item of items) {
      t.same(Object.keys(item).sort(), MEMBERS, 'exactly the members of the table')
      t.notOk(Object.keys(item).some((k) => /token|pass|hash|salt|secret/i.test(k)), 'no secret-looking member')
      for (const member of ['created_at', 'last_used_at', 'expires_at'] as const) t.match(item[member], TIMESTAMP, member)
      t.ok(Date.parse(item.expires_at) > Date.now(), 'expires in the future')
      t.ok(Date.parse(item.created_at) <= Date.parse(item.last_used_at), 'created before last use')
      t.equal(item.ip, '127.0.0.1', 'client IP recorded')
      t.match(item.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)
    }
    for (const secret of [phone.refreshToken, laptop.refreshToken, bare.refreshToken, phone.accessToken]) {
      t.notOk(res.body.includes(secret), 'no token value in the body')
    }
    t.same(items.filter((s) => s.current).map((s) => s.id), [sidOf(phone)], 'current: exactly the caller\'s session')
    const byId = new Map(items.map((s) => [s.id, s]))
    t.equal(byId.get(sidOf(phone))?.device_name, "Ada's phone")
    t.equal(byId.get(sidOf(phone))?.user_agent, 'Mozilla/5.0 (Phone) Test/1.0', 'User-Agent verbatim')
    t.equal(byId.get(sidOf(laptop))?.device_name, 'Work Laptop')
    t.equal(byId.get(sidOf(laptop))?.user_agent, 'Mozilla/5.0 (Laptop) Test/2.0')
    t.equal(byId.get(sidOf(bare))?.device_name, null, 'no device_name → null')
    t.equal(byId.get(sidOf(bare))?.user_agent, longAgent.slice(0, 512), 'User-Agent truncated to 512 characters')

    const fromLaptop = await sessionsOf(app, laptop.accessToken)
    t.same(fromLaptop.filter((s) => s.current).map((s) => s.id), [sidOf(laptop)], 'current follows the access token')

    const before = byId.get(sidOf(laptop))!
    const rotated = await refreshWithBody(app, laptop.refreshToken)
    t.equal(rotated.statusCode, 200)
    const after = (await sessionsOf(app, phone.accessToken)).find((s) => s.id === sidOf(laptop))!
    t.ok(Date.parse(after.last_used_at) >= Date.parse(before.last_used_at), 'last_used_at moves with a refresh')
    t.equal(after.created_at, before.created_at, 'created_at stays')
    t.same((await sessionsOf(app, rotated.json().access_token)).filter((s) => s.current).map((s) => s.id), [sidOf(laptop)], 'same session after rotation')

    const bobItems = await sessionsOf(app, bob.accessToken)
    t.same(bobItems.map((s) => s.id), [sidOf(bob)], 'bob sees only his session')
  })

  await t.test('DELETE /sessions/{id} ends one of the caller\'s sessions at once', async (t) => {
    const ada = await signupAndLogin(app)
    const other = await login(app, ada.email)
    const bob = await signupAndLogin(app)

    const res = await deleteSession(app, ada.accessToken, sidOf(other))
    t.equal(res.statusCode, 204)
    t.equal(res.body, '')
    const dead = await me(app, other.accessToken)
    t.equal(dead.statusCode, 401, 'its access token → 401 immediately')
    t.equal(dead.json().code, 'invalid_token')
    const refresh = await refreshWithBody(app, other.refreshToken)
    t.equal(refresh.statusCode, 401, 'its refresh token → 401')
    t.equal(refresh.json().code, 'invalid_refresh_token')
    t.equal((await me(app, ada.accessToken)).statusCode, 200, 'the caller keeps working')
    t.same((await sessionsOf(app, ada.accessToken)).map((s) => s.id), [sidOf(ada)])

    const again = await deleteSession(app, ada.accessToken, sidOf(other))
    t.equal(again.statusCode, 404, 'an ended session → 404')
    t.equal(again.json().code, 'session_not_found')

    const foreign = await deleteSession(app, ada.accessToken, sidOf(bob))
    t.equal(foreign.statusCode, 404, "another user's session → 404")
    t.equal(foreign.json().code, 'session_not_found')
    t.equal((await me(app, bob.accessToken)).statusCode, 200, "bob's access token still works")
    t.equal((await refreshWithBody(app, bob.refreshToken)).statusCode, 200, "bob's session still refreshes")

    for (const id of [randomUUID(), 'abc', 'x'.repeat(1024), 'a..b', "'; DROP TABLE users; --"]) {
      const r = await deleteSession(app, ada.accessToken, id)
      t.equal(r.statusCode, 404, `unknown id (${id.length} chars) → 404`)
      t.equal(r.json().code, 'session_not_found')
    }
    t.equal((await deleteSession(app, ada.accessToken, 'x'.repeat(1025))).statusCode, 414, 'over 1,024 characters → 414')

    const own = await deleteSession(app, ada.accessToken, sidOf(ada))
    t.equal(own.statusCode, 204, 'the caller may end its own session')
    t.equal((await me(app, ada.accessToken)).statusCode, 401, 'and its access token is dead at once')
    t.equal((await refreshWithBody(app, ada.refreshToken)).statusCode, 401)
  })

  await t.test('logout-all ends every session of the user', async (t) => {
    const ada = await signupAndLogin(app)
    const second = await login(app, ada.email)
    const third = await login(app, ada.email, { return_refresh_in_body: false })
    const thirdCookie = String(third.login.headers['set-cookie']).split(';')[0]!
    const thirdToken = thirdCookie.slice('refresh_token='.length)
    const bob = await signupAndLogin(app)
    const s = await refreshWithBody(app, second.refreshToken)
    t.equal(s.statusCode, 200)
    const secondNew = { refreshToken: s.json().refresh_token as string, accessToken: s.json().access_token as string }

    const extra = await app.inject({ method: 'POST', url: '/api/v1/auth/logout-all', headers: { authorization: `Bearer ${ada.accessToken}` }, payload: { all: true } })
    t.equal(extra.statusCode, 400, 'a body other than {} → 400')
    t.equal((await me(app, ada.accessToken)).statusCode, 200, 'nothing ended by the 400')

    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/logout-all', headers: { authorization: `Bearer ${ada.accessToken}` }, payload: {} })
    t.equal(res.statusCode, 204)
    t.equal(res.body, '')
    t.match(String(res.headers['set-cookie']), /^refresh_token=; Max-Age=0; Path=\/api\/v1\/auth; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Strict$/, 'clears the cookie')

    for (const [label, token] of [['login', ada.accessToken], ['second', second.accessToken], ['second rotated', secondNew.accessToken], ['third', third.accessToken]] as const) {
      const r = await me(app, token)
      t.equal(r.statusCode, 401, `access token of ${label} → 401`)
      t.equal(r.json().code, 'invalid_token')
    }
    for (const [label, token] of [['login', ada.refreshToken], ['second rotated', secondNew.refreshToken], ['third', thirdToken]] as const) {
      const r = await refreshWithBody(app, token)
      t.equal(r.statusCode, 401, `refresh token of ${label} → 401`)
      t.equal(r.json().code, 'invalid_refresh_token')
    }
    t.equal((await refreshWithBody(app, second.refreshToken)).statusCode, 401, 'the previous token too (no reuse path revives it)')
    t.equal((await listSessions(app, ada.accessToken)).statusCode, 401)
    t.equal((await me(app, bob.accessToken)).statusCode, 200, 'other users unaffected')
    t.equal((await refreshWithBody(app, bob.refreshToken)).statusCode, 200)

    const later = await login(app, ada.email)
    t.same((await sessionsOf(app, later.accessToken)).map((s) => s.id), [sidOf(later)], 'a new login starts afresh')
    const noBody = await app.inject({ method: 'POST', url: '/api/v1/auth/logout-all', headers: { authorization: `Bearer ${later.accessToken}` } })
    t.equal(noBody.statusCode, 204, 'no body is fine too')
    t.equal((await me(app, later.accessToken)).statusCode, 401)
  })

  await t.test('logout ends only the current device', async (t) => {
    const ada = await signupAndLogin(app)
    const other = await login(app, ada.email)
    const res = await app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { cookie: ada.cookie } })
    t.equal(res.statusCode, 204)
    t.match(String(res.headers['set-cookie']), /^refresh_token=; Max-Age=0; Path=\/api\/v1\/auth;/)
    t.equal((await me(app, ada.accessToken)).statusCode, 401, "the device's access token → 401")
    t.equal((await refreshWithBody(app, ada.refreshToken)).statusCode, 401, "the device's refresh token → 401")
    t.equal((await me(app, other.accessToken)).statusCode, 200, 'the other device keeps its access token')
    t.same((await sessionsOf(app, other.accessToken)).map((s) => s.id), [sidOf(other)])
    t.equal((await refreshWithBody(app, other.refreshToken)).statusCode, 200, 'and refreshes')
  })
})
