// The password policy (API.md §3.3) at signup and the password change of §12.1, under the
// Redis session store and the database session store: common passwords (case-insensitively,
// on the NFKC form), the account's own email and name, the length limits counted on the
// string as received, and what a change does to the caller's and the other sessions.
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { buildTestApp, login, me, PASSWORD, refreshWithBody, STORE_MODES, uniqueEmail, type LoggedIn } from '../fixtures/app.ts'
import { decodeJwt } from '../fixtures/jwt.ts'
import { assertProblem } from '../http/helpers.ts'

const MODES = ['PostgreSQL + Redis', 'PostgreSQL, sessions in the database']
const NEW_PASSWORD = 'violet kettle orbit 93'
const WITH_ERROR = 'Bearer realm="api", error="invalid_token"'

/** Fullwidth forms (U+FF01–U+FF5E) of printable ASCII: NFKC maps them back. */
const fullwidth = (s: string) => s.replace(/[!-~]/g, (c) => String.fromCodePoint(c.codePointAt(0)! + 0xfee0))

function signupWith (app: FastifyInstance, body: Record<string, unknown>) {
  return app.inject({ method: 'POST', url: '/api/v1/auth/signup', payload: { email: uniqueEmail(), name: 'Grace Hopper', ...body } })
}

function loginWith (app: FastifyInstance, email: string, password: string) {
  return app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { email, password, return_refresh_in_body: true } })
}

function changePassword (app: FastifyInstance, accessToken: string | undefined, payload: unknown, headers: Record<string, string> = {}) {
  return app.inject({
    method: 'POST',
    url: '/api/v1/auth/password',
    headers: { ...(accessToken === undefined ? {} : { authorization: `Bearer ${accessToken}` }), ...headers },
    ...(typeof payload === 'string' ? { body: payload } : { payload: payload as Record<string, unknown> })
  })
}

/** A recognisable, unique email: `<local>-<8 hex>@example.test`. */
const emailWithLocal = (local: string) => `${local}-${randomUUID().slice(0, 8)}@example.test`

for (const mode of MODES) {
  t.test(`password policy and change (${mode})`, async (t) => {
    const settings = STORE_MODES[mode]
    if (settings === undefined) throw new Error(`no store mode ${mode}`)
    const app = await buildTestApp(t, settings())
    await policyAtSignup(t, app)
    await passwordChange(t, app)
    await t.test('wrong current passwords count toward the failed-login throttle', async (t) => {
      await throttle(t, await buildTestApp(t, { ...settings(), LOGIN_FAIL_MAX: '1' }))
    })
  })
}

async function policyAtSignup (t: Test, app: FastifyInstance): Promise<void> {
  const assertWeak = async (t: Test, body: Record<string, unknown>, label: string) => {
    const res = await signupWith(app, body)
    t.equal(res.statusCode, 400, `${label}: 400`)
    assertProblem(t, res, 400, 'weak_password', { field: 'password' })
  }
  const assertAccepted = async (t: Test, body: Record<string, unknown>, label: string) => {
    const res = await signupWith(app, body)
    t.equal(res.statusCode, 201, `${label}: 201 (${res.body.slice(0, 200)})`)
  }

  await t.test('passwords on the common list are refused, case-insensitively', async (t) => {
    for (const password of [
      'password123', 'qwertyuiop', '1234567890', 'p@ssw0rd', 'iloveyou', 'trustno1', 'sunshine1',
      'PASSWORD123', 'Password123', 'QwErTyUiOp', 'P@SSW0RD'
    ]) {
      await assertWeak(t, { password }, JSON.stringify(password))
    }
  })

  await t.test('the common list is compared on the NFKC form', async (t) => {
    for (const password of [fullwidth('password123'), fullwidth('PASSWORD123'), fullwidth('qwertyuiop'), 'ｐａｓｓｗｏｒｄ123']) {
      await assertWeak(t, { password }, `NFKC variant ${JSON.stringify(password)}`)
    }
  })

  await t.test('only the whole password is compared with the list: containing a common one is fine', async (t) => {
    await assertAccepted(t, { password: 'password123-violet-kettle' }, 'common password inside a longer one')
  })

  await t.test('a strong unrelated password is accepted, with no composition rules', async (t) => {
    await assertAccepted(t, { password: 'zqxwvyjkhg' }, 'lower-case letters only')
    await assertAccepted(t, { password: '8274619305712' }, 'digits only, not on the list')
  })

  await t.test('the email and its local part are refused, equal or contained', async (t) => {
    const email = emailWithLocal('grace.hopper')
    const local = email.slice(0, email.indexOf('@'))
    await assertWeak(t, { email, password: email }, 'password = email')
    await assertWeak(t, { email, password: email.toUpperCase() }, 'password = email upper-cased')
    await assertWeak(t, { email: email.toUpperCase(), password: email }, 'email sent upper-cased, password = normalised email')
    await assertWeak(t, { email, password: `my ${email} 2026` }, 'password contains the email')
    await assertWeak(t, { email, password: local }, 'password = local part')
    await assertWeak(t, { email, password: `X${local.toUpperCase()}!9` }, 'password contains the local part (any case)')
    await assertAccepted(t, { email: emailWithLocal('someone.else'), name: 'Ada Lovelace', password: `my ${email} 2026` }, 'the same password for another account')
  })

  await t.test('the whole name and name parts of 4 or more characters are refused, equal or contained', async (t) => {
    const name = 'Ada Lovelace'
    await assertWeak(t, { name, password: 'lovelace-2026' }, 'the contract\'s example')
    await assertWeak(t, { name, password: 'LOVELACE-2026' }, 'upper-cased')
    await assertWeak(t, { name, password: 'ada lovelace' }, 'password = whole name (lower-cased)')
    await assertWeak(t, { name, password: 'I am Ada Lovelace!' }, 'password contains the whole name')
    await assertWeak(t, { name: '  Ada   Lovelace  ', password: 'the-lovelace-2026' }, 'surrounding and repeated whitespace of the name')
    await assertWeak(t, { name: 'Augusta Ada King', password: 'augusta-violet-93' }, 'first part')
    await assertWeak(t, { name: 'Augusta Ada King', password: 'violet-king-93' }, 'last part, exactly 4 characters')
    await assertAccepted(t, { name: 'Grace Hopper', password: 'lovelace-2026' }, 'the same password for another name')
  })

  await t.test('name parts and local parts shorter than 4 characters do not refuse', async (t) => {
    await assertAccepted(t, { name: 'Ada Li', password: 'ADA-li-violet-kettle' }, 'parts of 3 and 2 characters contained')
    await assertAccepted(t, { email: `bob@${randomUUID()}.example`, name: 'Bo Ek', password: 'bob-bo-ek-violet' }, 'a 3-character local part and short name parts contained')
  })

  await t.test('length: 8–128 characters as received, counted in code points', async (t) => {
    const validation = async (password: unknown, label: string) => {
      const res = await signupWith(app, { password })
      t.equal(res.statusCode, 400, `${label}: 400`)
      assertProblem(t, res, 400, 'validation_failed', { field: 'password' })
    }
    await validation('zq7#kvw', '7 characters')
    await validation('x'.repeat(129), '129 characters')
    await validation('😀'.repeat(4), '4 emoji (8 UTF-16 units)')
    await validation('ﬃﬃﬃﬃ', '4 ligatures (12 characters after NFKC)')
    await validation('😀'.repeat(129), '129 emoji')
    await validation(12345678, 'a number')
    await assertAccepted(t, { password: 'zq7#kvwm' }, '8 characters')
    await assertAccepted(t, { password: 'zq7#'.repeat(32) }, '128 characters')
    await assertAccepted(t, { password: '🦊'.repeat(128) }, '128 emoji (256 UTF-16 units)')
  })

  await t.test('hashing and login use the NFKC form', async (t) => {
    const email = uniqueEmail()
    const stored = fullwidth('Violet-kettle-93')
    t.equal((await signupWith(app, { email, password: stored })).statusCode, 201)
    t.equal((await loginWith(app, email, stored)).statusCode, 200, 'the password as sent')
    t.equal((await loginWith(app, email, 'Violet-kettle-93')).statusCode, 200, 'its NFKC form')
    t.equal((await loginWith(app, email, 'violet-kettle-93')).statusCode, 401, 'but case still matters at login')
  })
}

async function passwordChange (t: Test, app: FastifyInstance): Promise<void> {
  /** A user with sessions: `caller` changes the password, `phone` (and `tablet`) are others. */
  async function userWithSessions (withTablet = false) {
    const email = uniqueEmail()
    const res = await signupWith(app, { email, password: PASSWORD, name: 'Ada Lovelace' })
    if (res.statusCode !== 201) throw new Error(`signup: ${res.statusCode} ${res.body}`)
    const caller = await login(app, email)
    const phone = await login(app, email)
    const tablet = withTablet ? await login(app, email) : phone
    return { email, caller, phone, tablet }
  }

  async function assertOthersAlive (t: Test, others: LoggedIn[], label: string) {
    for (const other of others) {
      t.equal((await me(app, other.accessToken)).statusCode, 200, `${label}: other access token still works`)
    }
  }

  await t.test('204: the caller\'s session keeps working, every other session ends at once', async (t) => {
    const { email, caller, phone, tablet } = await userWithSessions(true)
    const res = await changePassword(app, caller.accessToken, { current_password: PASSWORD, new_password: NEW_PASSWORD })
    t.equal(res.statusCode, 204)
    t.equal(res.body, '', 'no body')
    t.equal(res.headers['cache-control'], 'no-store')
    t.notOk(res.headers['set-cookie'], 'no cookie')

    for (const [label, other] of [['phone', phone], ['tablet', tablet]] as const) {
      const meRes = await me(app, other.accessToken)
      t.equal(meRes.statusCode, 401, `${label}: access token → 401`)
      t.equal(meRes.json().code, 'invalid_token')
      t.equal(meRes.headers['www-authenticate'], WITH_ERROR)
      assertProblem(t, await refreshWithBody(app, other.refreshToken), 401, 'invalid_refresh_token')
      const byCookie = await app.inject({ method: 'POST', url: '/api/v1/auth/refresh', headers: { cookie: other.cookie } })
      t.equal(byCookie.statusCode, 401, `${label}: refresh by cookie → 401`)
    }

    const meRes = await me(app, caller.accessToken)
    t.equal(meRes.statusCode, 200, 'the caller\'s access token still works')
    t.equal(meRes.json().email, email)
    const sessions = await app.inject({ method: 'GET', url: '/api/v1/auth/sessions', headers: { authorization: `Bearer ${caller.accessToken}` } })
    t.same((sessions.json().sessions as Array<{ id: string }>).map((s) => s.id), [decodeJwt(caller.accessToken).payload.sid], 'only the caller\'s session is left')
    const refreshed = await refreshWithBody(app, caller.refreshToken)
    t.equal(refreshed.statusCode, 200, 'the caller\'s refresh token still refreshes')
    t.equal((await me(app, refreshed.json().access_token)).statusCode, 200)

    assertProblem(t, await loginWith(app, email, PASSWORD), 401, 'invalid_credentials')
    const fresh = await loginWith(app, email, NEW_PASSWORD)
    t.equal(fresh.statusCode, 200, 'the new password logs in')
    t.equal((await me(app, fresh.json().access_token)).statusCode, 200)

    const again = await changePassword(app, refreshed.json().access_token, { current_password: NEW_PASSWORD, new_password: 'second violet kettle 94' })
    t.equal(again.statusCode, 204, 'a second change from the same (refreshed) session')
    t.equal((await me(app, fresh.json().access_token)).statusCode, 401, 'which ends the newer login')
  })

  await t.test('the new password is hashed in its NFKC form', async (t) => {
    const { email, caller } = await userWithSessions()
    const sent = fullwidth('Orbit-kettle-77')
    t.equal((await changePassword(app, caller.accessToken, { current_password: PASSWORD, new_password: sent })).statusCode, 204)
    t.equal((await loginWith(app, email, 'Orbit-kettle-77')).statusCode, 200, 'NFKC form logs in')
    t.equal((await loginWith(app, email, sent)).statusCode, 200, 'the form sent logs in')
  })

  await t.test('wrong current password: 403 invalid_credentials without WWW-Authenticate, nothing changes', async (t) => {
    const { email, caller, phone } = await userWithSessions()
    const res = await changePassword(app, caller.accessToken, { current_password: 'not the password', new_password: NEW_PASSWORD })
    assertProblem(t, res, 403, 'invalid_credentials')
    t.equal(res.headers['www-authenticate'], undefined, 'no WWW-Authenticate')
    await assertOthersAlive(t, [caller, phone], 'after 403')
    t.equal((await refreshWithBody(app, phone.refreshToken)).statusCode, 200, 'other refresh token still refreshes')
    t.equal((await loginWith(app, email, PASSWORD)).statusCode, 200, 'the old password still logs in')
    t.equal((await loginWith(app, email, NEW_PASSWORD)).statusCode, 401, 'the new one does not')
    const nfkcOfCurrent = await changePassword(app, caller.accessToken, { current_password: fullwidth(PASSWORD), new_password: NEW_PASSWORD })
    t.equal(nfkcOfCurrent.statusCode, 204, 'current_password is verified on its NFKC form')
  })

  await t.test('a weak new password: 400 weak_password naming new_password, nothing changes', async (t) => {
    const { email, caller, phone } = await userWithSessions()
    const local = email.slice(0, email.indexOf('@'))
    for (const [label, newPassword] of [
      ['common, upper-cased', 'QWERTYUIOP'],
      ['common, fullwidth', fullwidth('1234567890')],
      ['equal to the email', email],
      ['containing the local part', `x-${local}-x`],
      ['containing a name part', 'LoveLace-2026']
    ] as const) {
      const res = await changePassword(app, caller.accessToken, { current_password: PASSWORD, new_password: newPassword })
      t.equal(res.statusCode, 400, `${label}: 400`)
      assertProblem(t, res, 400, 'weak_password', { field: 'new_password' })
    }
    await assertOthersAlive(t, [caller, phone], 'after 400')
    t.equal((await loginWith(app, email, PASSWORD)).statusCode, 200, 'the old password still logs in')
    const short = await changePassword(app, caller.accessToken, { current_password: PASSWORD, new_password: 'ada-li-violet' })
    t.equal(short.statusCode, 204, 'a short name part ("Ada") contained does not refuse')
  })

  const { email, caller, phone } = await userWithSessions()
  await t.test('validation: 400 validation_failed, 415 for another media type', async (t) => {
    const cases: Array<[string, unknown, string]> = [
      ['extra property', { current_password: PASSWORD, new_password: NEW_PASSWORD, email: 'x@example.test' }, ''],
      ['new_password of 7 characters', { current_password: PASSWORD, new_password: 'zq7#kvw' }, 'new_password'],
      ['new_password of 129 characters', { current_password: PASSWORD, new_password: 'x'.repeat(129) }, 'new_password'],
      ['new_password missing', { current_password: PASSWORD }, 'new_password'],
      ['current_password empty', { current_password: '', new_password: NEW_PASSWORD }, 'current_password'],
      ['current_password of 129 characters', { current_password: 'x'.repeat(129), new_password: NEW_PASSWORD }, 'current_password'],
      ['current_password a number', { current_password: 12345678, new_password: NEW_PASSWORD }, 'current_password'],
      ['empty object', {}, '']
    ]
    for (const [label, body, field] of cases) {
      const res = await changePassword(app, caller.accessToken, body)
      t.equal(res.statusCode, 400, `${label}: 400`)
      assertProblem(t, res, 400, 'validation_failed', field === '' ? {} : { field })
    }
    const text = await changePassword(app, caller.accessToken, `current_password=${PASSWORD}`, { 'content-type': 'text/plain' })
    t.equal(text.statusCode, 415, 'text/plain → 415')
    await assertOthersAlive(t, [phone], 'after the rejected requests')
  })

  await t.test('a bad access token: 401 invalid_token with WWW-Authenticate', async (t) => {
    const body = { current_password: PASSWORD, new_password: NEW_PASSWORD }
    const none = await changePassword(app, undefined, body)
    assertProblem(t, none, 401, 'invalid_token')
    t.equal(none.headers['www-authenticate'], 'Bearer realm="api"', 'no header: bare challenge')
    for (const [label, token] of [
      ['garbage', 'garbage'],
      ['the refresh token', caller.refreshToken],
      ['a changed signature', caller.accessToken.slice(0, -4) + (caller.accessToken.endsWith('AAAA') ? 'BBBB' : 'AAAA')]
    ] as const) {
      const res = await changePassword(app, token, body)
      assertProblem(t, res, 401, 'invalid_token')
      t.equal(res.headers['www-authenticate'], WITH_ERROR, `${label}: challenge with error`)
    }
    t.equal((await app.inject({ method: 'POST', url: '/api/v1/auth/logout', payload: { refresh_token: phone.refreshToken } })).statusCode, 204)
    const ended = await changePassword(app, phone.accessToken, body)
    assertProblem(t, ended, 401, 'invalid_token')
    t.equal((await loginWith(app, email, PASSWORD)).statusCode, 200, 'the password is unchanged')
  })
}

async function throttle (t: Test, app: FastifyInstance): Promise<void> {
  const email = uniqueEmail()
  t.equal((await signupWith(app, { email, password: PASSWORD })).statusCode, 201)
  const caller = await login(app, email)
  assertProblem(t, await changePassword(app, caller.accessToken, { current_password: 'wrong password', new_password: NEW_PASSWORD }), 403, 'invalid_credentials')
  const blocked = await changePassword(app, caller.accessToken, { current_password: PASSWORD, new_password: NEW_PASSWORD })
  assertProblem(t, blocked, 429, 'too_many_requests')
  t.match(String(blocked.headers['retry-after']), /^[1-9]\d*$/, 'Retry-After in whole seconds')
  assertProblem(t, await loginWith(app, email, PASSWORD), 429, 'too_many_requests', {})
  t.equal((await me(app, caller.accessToken)).statusCode, 200, 'the session is untouched')
}
