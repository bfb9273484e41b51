// The typed client example (examples/client): openapi-fetch over the types openapi-typescript
// generates from openapi.json drives a real listening service through the whole session
// life cycle, and the committed types are what the generator makes of openapi.json today.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { createAuthClient, type Problem } from '../examples/client/client.ts'
import { generateClientSchema, SCHEMA_FILE } from '../examples/client/generate.ts'
import { buildTestApp, PASSWORD, uniqueEmail } from './fixtures/app.ts'

t.test('examples/client/schema.d.ts is what openapi-typescript generates from openapi.json', async (t) => {
  t.equal(readFileSync(SCHEMA_FILE, 'utf8'), await generateClientSchema(), 'up to date (run `npm run client:generate`)')
})

t.test('signup, login, me, refresh, sessions and logout through the typed client', async (t) => {
  const app = await buildTestApp(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  const tokens: { access?: string } = {}
  const api = createAuthClient(`http://127.0.0.1:${address.port}`, { accessToken: () => tokens.access })
  const email = uniqueEmail()

  const signup = await api.POST('/api/v1/auth/signup', { body: { email: `  ${email.toUpperCase()} `, password: PASSWORD, name: 'Ada Lovelace' } })
  t.equal(signup.response.status, 201)
  t.equal(signup.error, undefined)
  t.equal(signup.data?.email, email, 'the normalised email')
  t.equal(signup.data?.name, 'Ada Lovelace')

  const taken = await api.POST('/api/v1/auth/signup', { body: { email, password: PASSWORD, name: 'Ada' } })
  t.equal(taken.response.status, 409)
  t.match(taken.response.headers.get('content-type'), /^application\/problem\+json(;|$)/)
  const problem: Problem | undefined = taken.error
  t.match(problem, { status: 409, code: 'email_taken' }, 'errors arrive as typed problem documents')

  const login = await api.POST('/api/v1/auth/login', { body: { email, password: PASSWORD, return_refresh_in_body: true, device_name: 'test runner' } })
  t.equal(login.response.status, 200)
  if (!login.data) throw new Error(`login failed: ${JSON.stringify(login.error)}`)
  t.equal(login.data.token_type, 'bearer')
  t.ok(login.data.expires_in > 0)
  t.same(login.data.user, { id: signup.data?.id, email, name: 'Ada Lovelace' })
  const firstRefresh = login.data.refresh_token
  if (firstRefresh === undefined) throw new Error('no refresh_token in the login body')
  tokens.access = login.data.access_token

  const me = await api.GET('/api/v1/auth/me')
  t.equal(me.response.status, 200)
  t.same(me.data, signup.data, 'me is the account signup created')

  const refresh = await api.POST('/api/v1/auth/refresh', { body: { refresh_token: firstRefresh } })
  t.equal(refresh.response.status, 200)
  if (!refresh.data?.refresh_token) throw new Error(`refresh failed: ${JSON.stringify(refresh.error)}`)
  t.not(refresh.data.refresh_token, firstRefresh, 'a rotated refresh token')
  t.not(refresh.data.access_token, login.data.access_token, 'a new access token')
  tokens.access = refresh.data.access_token
  t.equal((await api.GET('/api/v1/auth/me')).response.status, 200, 'the new access token works')

  const sessions = await api.GET('/api/v1/auth/sessions')
  t.equal(sessions.response.status, 200)
  t.equal(sessions.data?.sessions.length, 1)
  t.match(sessions.data?.sessions[0], { device_name: 'test runner', ip: '127.0.0.1', current: true })

  const logout = await api.POST('/api/v1/auth/logout', { body: { refresh_token: refresh.data.refresh_token } })
  t.equal(logout.response.status, 204)
  t.equal(logout.error, undefined)

  const after = await api.GET('/api/v1/auth/me')
  t.equal(after.response.status, 401, 'the ended session\'s access token is refused')
  t.match(after.error, { status: 401, code: 'invalid_token' })
  t.match(after.response.headers.get('www-authenticate'), /^Bearer /)
  const stale = await api.POST('/api/v1/auth/refresh', { body: { refresh_token: refresh.data.refresh_token } })
  t.match(stale.error, { status: 401, code: 'invalid_refresh_token' }, 'its refresh token too')

  // The body of refresh, logout and logout-all is optional (API.md §2.1), in the types too.
  const anonymous = await api.POST('/api/v1/auth/logout')
  t.equal(anonymous.response.status, 204, 'logout without a body')
})
