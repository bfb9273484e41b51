// API.md §3.1–3.4: email normalisation and validation, name and device-name character rules,
// password length limits (code points, as received), NFKC at login, and over-long input
// rejected fast.
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { buildTestApp, login, PASSWORD, signup, uniqueEmail } from '../fixtures/app.ts'
import { assertProblem, listen } from './helpers.ts'

const AUTH = '/api/v1/auth'
const JSON_TYPE = { 'content-type': 'application/json' }

function signupRaw (app: FastifyInstance, payload: string) {
  return app.inject({ method: 'POST', url: `${AUTH}/signup`, headers: JSON_TYPE, payload })
}
function signupWith (app: FastifyInstance, body: Record<string, unknown>) {
  return signupRaw(app, JSON.stringify({ email: uniqueEmail(), password: PASSWORD, name: 'Ada Lovelace', ...body }))
}
function loginWith (app: FastifyInstance, body: Record<string, unknown>) {
  return app.inject({ method: 'POST', url: `${AUTH}/login`, headers: JSON_TYPE, payload: JSON.stringify(body) })
}
const rand = () => Math.random().toString(36).slice(2, 10)

// Characters that a name or device name must not contain (API.md §3.2), as JSON string
// contents (escapes are sent as written, so lone surrogates arrive as lone surrogates).
const FORBIDDEN: Array<[string, string]> = [
  ['NUL', '\\u0000'],
  ['BEL', '\\u0007'],
  ['CR', '\\r'],
  ['LF', '\\n'],
  ['CRLF', '\\r\\n'],
  ['TAB', '\\t'],
  ['DEL', '\\u007f'],
  ['C1 control U+0085', '\\u0085'],
  ['ZERO WIDTH SPACE U+200B', '\\u200b'],
  ['BOM U+FEFF', '\\ufeff'],
  ['RIGHT-TO-LEFT OVERRIDE U+202E', '\\u202e'],
  ['SOFT HYPHEN U+00AD', '\\u00ad'],
  ['lone high surrogate U+D800', '\\ud800'],
  ['lone low surrogate U+DC00', '\\udc00'],
  ['reversed surrogate pair', '\\udc00\\ud800'],
  ['LINE SEPARATOR U+2028', '\\u2028'],
  ['PARAGRAPH SEPARATOR U+2029', '\\u2029']
]
const REJECTED_WHOLE: Array<[string, string]> = [
  ['empty', ''],
  ['spaces only', '   '],
  ['tab and space only', ' \\t '],
  ['ideographic space only', '\\u3000'],
  ['101 characters', 'a'.repeat(101)],
  ['101 emoji (code points)', '\u{1F600}'.repeat(101)]
]
const ACCEPTED: Array<[string, string]> = [
  ['plain', 'Ada Lovelace'],
  ['apostrophe', "Ada's phone"],
  ['ZWNJ inside text', 'می\u200cخواهم'],
  ['ZWJ inside text', 'क्\u200dष'],
  ['emoji', 'Ada \u{1F680}'],
  ['ZWJ emoji sequence', '\u{1F469}\u200d\u{1F4BB} Ada'],
  ['surrounding spaces, kept as given', '  Ada  '],
  ['100 characters', 'b'.repeat(100)],
  ['100 emoji (200 UTF-16 units)', '\u{1F600}'.repeat(100)],
  ['non-Latin script', 'Ада Лавлейс'],
  ['quotes and symbols', 'O"Brien <&> \\ /']
]

t.test('email (API.md §3.1)', async (t) => {
  const app = await buildTestApp(t)

  await t.test('invalid addresses are 400 validation_failed naming email, at signup and at login', async (t) => {
    const long = (n: number) => 'a'.repeat(n)
    const invalid = [
      'not-an-email', 'user.example.com', 'user@', '@example.com', 'two@@example.com', 'sp ace@example.com', 'a@b..c',
      '', '   ', 'ada@example', '.ada@example.com', 'ada.@example.com', 'a..da@example.com', 'ada@-example.com',
      'ada@example-.com', 'ada@.example.com', 'ada@example.com.', 'ada@exa_mple.com', 'ada@[127.0.0.1]', '"ada"@example.com',
      'ada(comment)@example.com', 'ada,b@example.com', 'ada<b>@example.com', 'ada@ex ample.com',
      `${long(65)}@example.com`, `ada@${long(64)}.com`,
      `${long(64)}@${long(63)}.${long(63)}.${long(62)}`, // 255 characters
      // control, format and other non-ASCII characters
      'ada\u0000@example.com', 'ada\u0007@example.com', 'ada\u007f@example.com', 'ada\u000b@example.com', 'ada\u000c@example.com',
      'ada\u200b@example.com', 'ada\u00ad@example.com', 'ada\ufeff@example.com', 'ada\u202e@example.com', 'ada@example.com\u00a0',
      '\u00a0ada@example.com', 'ada@example.com\u3000', 'adá@example.com', 'ada@exämple.com', 'ada@例え.jp',
      'ａ@example.com', 'ada@ｅｘａｍｐｌｅ.com', '\u212a@example.com', 'ada@\u212aelvin.com', 'ı@example.com', 'ada@example.\u0441om',
      'ada\ud800@example.com', 'ada\u{1F600}@example.com'
    ]
    for (const email of invalid) {
      t.comment(JSON.stringify(email))
      assertProblem(t, await signupWith(app, { email }), 400, 'validation_failed', { field: 'email' })
      assertProblem(t, await loginWith(app, { email, password: PASSWORD }), 400, 'validation_failed', { field: 'email' })
    }
  })

  await t.test('non-ASCII never folds into ASCII: the Kelvin sign is not k', async (t) => {
    const local = `kelvin${rand()}`
    await signup(app, `${local}@example.com`)
    const res = await loginWith(app, { email: `\u212a${local.slice(1)}@example.com`, password: PASSWORD })
    assertProblem(t, res, 400, 'validation_failed', { field: 'email' })
  })

  await t.test('valid addresses at the limits are accepted', async (t) => {
    const long = (n: number) => 'a'.repeat(n)
    const r = rand()
    const valid = [
      `o'brien+tag.${r}@example.com`,
      `${r}!#$%&*/=?^_\`{|}~-@sub.example-host.co`,
      `${r}${long(64 - r.length)}@${long(63)}.${long(63)}.${long(61)}`, // 254 characters, 64-character local part
      `x${r}@a.bc`
    ]
    for (const email of valid) {
      const res = await signupWith(app, { email })
      t.equal(res.statusCode, 201, `${email.length} characters: ${email.slice(0, 40)}`)
      t.equal(res.json().email, email, 'returned as given (already normal)')
    }
  })

  await t.test('"  Ada@Example.COM " is stored and returned as ada@example.com; the normalised form is unique', async (t) => {
    let res = await signupWith(app, { email: '  Ada@Example.COM ', name: 'Ada Lovelace' })
    t.equal(res.statusCode, 201)
    t.equal(res.json().email, 'ada@example.com')
    const created = res.json()

    for (const email of ['  ADA@EXAMPLE.COM ', 'ada@example.com', '\tAda@example.com\r\n', 'aDa@ExAmPlE.cOm']) {
      res = await signupWith(app, { email })
      assertProblem(t, res, 409, 'email_taken')
      t.comment(JSON.stringify(email))
    }

    // Login normalises the same way and returns the normalised address.
    for (const email of ['  ADA@EXAMPLE.COM ', '\n\tAda@Example.Com\r', 'ada@example.com']) {
      res = await loginWith(app, { email, password: PASSWORD })
      t.equal(res.statusCode, 200, `login as ${JSON.stringify(email)}`)
      t.equal(res.json().user.email, 'ada@example.com')
      t.equal(res.json().user.id, created.id)
    }
    const me = await app.inject({ method: 'GET', url: `${AUTH}/me`, headers: { authorization: `Bearer ${res.json().access_token}` } })
    t.equal(me.json().email, 'ada@example.com', '/me returns the normalised address')
  })

  await t.test('only space, tab, CR and LF are trimmed', async (t) => {
    const email = `trim-${rand()}@example.com`
    for (const padded of [`\u000b${email}`, `${email}\u000c`, `\u0085${email}`, `\u2003${email}`]) {
      assertProblem(t, await signupWith(app, { email: padded }), 400, 'validation_failed', { field: 'email' })
    }
    const res = await signupWith(app, { email: ` \t\r\n${email.toUpperCase()}\n\r\t ` })
    t.equal(res.statusCode, 201)
    t.equal(res.json().email, email)
  })

  await t.test('at most 320 characters as received', async (t) => {
    const email = `len-${rand()}@example.com`
    const pad = (total: number) => ' '.repeat(total - email.length - 1) + email + ' '
    let res = await signupWith(app, { email: pad(320) })
    t.equal(res.statusCode, 201, '320 characters with surrounding whitespace')
    t.equal(res.json().email, email)
    const other = `len-${rand()}@example.com`
    res = await signupWith(app, { email: ' '.repeat(321 - other.length) + other })
    assertProblem(t, res, 400, 'validation_failed', { field: 'email' })
    res = await loginWith(app, { email: ' '.repeat(321 - email.length) + email, password: PASSWORD })
    assertProblem(t, res, 400, 'validation_failed', { field: 'email' })
    res = await loginWith(app, { email: ' '.repeat(320 - email.length) + email, password: PASSWORD })
    t.equal(res.statusCode, 200, 'login with 320 characters as received')
    res = await signupWith(app, { email: `${'a'.repeat(400)}@example.com` })
    assertProblem(t, res, 400, 'validation_failed', { field: 'email' })
  })
})

t.test('name (API.md §3.2) and device_name (API.md §3.4)', async (t) => {
  const app = await buildTestApp(t)
  const user = await signup(app)

  await t.test('forbidden characters, whitespace-only and over-long names are 400 naming name', async (t) => {
    for (const [label, text] of [...FORBIDDEN.flatMap(([l, c]): Array<[string, string]> => [[l, c], [`${l} inside text`, `Ada${c}Lovelace`], [`${l} at the end`, `Ada${c}`]]), ...REJECTED_WHOLE]) {
      const res = await signupRaw(app, `{"email":"${uniqueEmail()}","password":"${PASSWORD}","name":"${text}"}`)
      t.comment(label)
      assertProblem(t, res, 400, 'validation_failed', { field: 'name' })
    }
  })

  await t.test('accepted names are returned exactly as given', async (t) => {
    for (const [label, name] of ACCEPTED) {
      const email = uniqueEmail()
      const res = await signupWith(app, { email, name })
      t.equal(res.statusCode, 201, label)
      t.equal(res.json().name, name, `${label}: returned as given`)
      const logged = await loginWith(app, { email, password: PASSWORD })
      t.equal(logged.json().user.name, name, `${label}: login returns it as given`)
    }
  })

  await t.test('forbidden device names are 400 naming device_name', async (t) => {
    for (const [label, text] of [...FORBIDDEN.map(([l, c]): [string, string] => [l, `Work${c}Laptop`]), ...REJECTED_WHOLE]) {
      const res = await app.inject({
        method: 'POST',
        url: `${AUTH}/login`,
        headers: JSON_TYPE,
        payload: `{"email":"${user.email}","password":"${PASSWORD}","device_name":"${text}"}`
      })
      t.comment(label)
      assertProblem(t, res, 400, 'validation_failed', { field: 'device_name' })
    }
  })

  await t.test('accepted device names are recorded as given; an absent one is null', async (t) => {
    for (const [label, deviceName] of [['Work Laptop', 'Work Laptop'], ...ACCEPTED] as Array<[string, string]>) {
      const session = await login(app, user.email, { device_name: deviceName })
      const res = await app.inject({ method: 'GET', url: `${AUTH}/sessions`, headers: { authorization: `Bearer ${session.accessToken}` } })
      const current = res.json().sessions.find((s: { current: boolean }) => s.current)
      t.equal(current?.device_name, deviceName, label)
    }
    const session = await login(app, user.email)
    const res = await app.inject({ method: 'GET', url: `${AUTH}/sessions`, headers: { authorization: `Bearer ${session.accessToken}` } })
    const current = res.json().sessions.find((s: { current: boolean }) => s.current)
    t.ok(current, 'the new session is listed')
    t.equal(current.device_name, null, 'device_name absent -> null')
    t.ok(Object.hasOwn(current, 'device_name'), 'the member is present, as null')
  })
})

t.test('password lengths and NFKC (API.md §3.3)', async (t) => {
  const app = await buildTestApp(t)

  await t.test('signup: 8 to 128 code points as received', async (t) => {
    const cases: Array<[string, string, boolean]> = [
      ['7 characters', 'abcdefg', false],
      ['empty', '', false],
      ['8 characters', 'abcdefgh', true],
      ['8 spaces (never trimmed)', '        ', true],
      ['128 characters', 'p'.repeat(128), true],
      ['129 characters', 'p'.repeat(129), false],
      ['4 emoji (8 UTF-16 units, 4 code points)', '\u{1F600}'.repeat(4), false],
      ['128 emoji (256 UTF-16 units)', '\u{1F600}'.repeat(128), true],
      ['129 emoji', '\u{1F600}'.repeat(129), false],
      // Length counts the password as received, not its NFKC form: U+FB03 is "ffi" in NFKC.
      ['7 x U+FB03 (21 characters in NFKC)', '\ufb03'.repeat(7), false],
      ['128 x U+FB03 (384 characters in NFKC)', '\ufb03'.repeat(128), true]
    ]
    for (const [label, password, ok] of cases) {
      const res = await signupWith(app, { password })
      if (ok) t.equal(res.statusCode, 201, label)
      else {
        t.comment(label)
        assertProblem(t, res, 400, 'validation_failed', { field: 'password' })
      }
    }
  })

  await t.test('login: any 1 to 128 characters; a 1-character wrong password is 401, not 400', async (t) => {
    const user = await signup(app)
    assertProblem(t, await loginWith(app, { email: user.email, password: 'x' }), 401, 'invalid_credentials')
    assertProblem(t, await loginWith(app, { email: uniqueEmail(), password: 'x' }), 401, 'invalid_credentials')
    assertProblem(t, await loginWith(app, { email: user.email, password: '' }), 400, 'validation_failed', { field: 'password' })
    assertProblem(t, await loginWith(app, { email: user.email, password: 'p'.repeat(129) }), 400, 'validation_failed', { field: 'password' })
    assertProblem(t, await loginWith(app, { email: user.email, password: 'p'.repeat(128) }), 401, 'invalid_credentials')
  })

  await t.test('a 200,000-character password is a 400 validation_failed within 1 s, end to end', async (t) => {
    const port = await listen(app)
    const user = await signup(app)
    const password = 'p'.repeat(200_000)
    const cases: Array<[string, Record<string, unknown>]> = [
      ['signup', { email: uniqueEmail(), password, name: 'Ada' }],
      ['login (existing user)', { email: user.email, password }],
      ['login (unknown email)', { email: uniqueEmail(), password }]
    ]
    for (const [label, body] of cases) {
      const route = label === 'signup' ? '/signup' : '/login'
      const started = performance.now()
      const res = await fetch(`http://127.0.0.1:${port}${AUTH}${route}`, { method: 'POST', headers: JSON_TYPE, body: JSON.stringify(body) })
      const text = await res.text()
      const elapsed = performance.now() - started
      t.comment(`${label}: ${elapsed.toFixed(0)} ms`)
      assertProblem(t, { statusCode: res.status, headers: Object.fromEntries(res.headers), body: text }, 400, 'validation_failed', { field: 'password' })
      t.ok(elapsed < 1000, `${label}: answered within 1 s (${elapsed.toFixed(0)} ms)`)
    }
    // The over-long login did not count as a failure: the user still logs in.
    t.equal((await loginWith(app, { email: user.email, password: PASSWORD })).statusCode, 200)
  })

  await t.test('passwords are compared in NFKC', async (t) => {
    const fullwidth = 'ｐａｓｓｗｏｒｄ-Ｘ１２'
    t.equal(fullwidth.normalize('NFKC'), 'password-X12')
    const email = uniqueEmail()
    let res = await signupWith(app, { email, password: fullwidth })
    t.equal(res.statusCode, 201, 'signup with fullwidth characters')
    res = await loginWith(app, { email, password: 'password-X12' })
    t.equal(res.statusCode, 200, 'login with the NFKC form')
    res = await loginWith(app, { email, password: fullwidth })
    t.equal(res.statusCode, 200, 'login with the form as signed up')
    assertProblem(t, await loginWith(app, { email, password: 'password-x12' }), 401, 'invalid_credentials')

    // Composed and decomposed forms are the same password.
    const other = uniqueEmail()
    t.equal((await signupWith(app, { email: other, password: 'cafe\u0301 au lait 42' })).statusCode, 201)
    t.equal((await loginWith(app, { email: other, password: 'caf\u00e9 au lait 42' })).statusCode, 200, 'precomposed form logs in')
  })

  await t.test('passwords are never trimmed', async (t) => {
    const email = uniqueEmail()
    t.equal((await signupWith(app, { email, password: '  spaced secret  ' })).statusCode, 201)
    assertProblem(t, await loginWith(app, { email, password: 'spaced secret' }), 401, 'invalid_credentials')
    t.equal((await loginWith(app, { email, password: '  spaced secret  ' })).statusCode, 200)
  })
})
