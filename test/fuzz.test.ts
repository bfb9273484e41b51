// Property-based fuzzing (fast-check) of the HTTP contract: API.md §2 (bodies, the one error
// shape, what no response may contain), §3 (data rules), §4 (tokens, refresh cookie) and §13.
//   1. generated, mutated and raw request bodies on every route;
//   2. random and malformed Authorization, Cookie, Origin and Content-Type headers;
//   3. random session ids for DELETE /sessions/{id}, unknown paths and methods;
//   4. rejected requests aimed at a logged-in user's session change no store, and rejected
//      signups create no user.
// Every answer is < 500, every answer >= 400 is a problem document, nothing leaks; some
// properties also pin the exact status the contract gives. The seed is random; a failure
// prints it with the shrunk counterexample and the request and response that broke the rule.
// Replay one with FUZZ_PROPERTY=<name prefix, e.g. 3a> FUZZ_SEED=<seed> FUZZ_PATH=<path>;
// FUZZ_SCALE=<n> multiplies the number of cases.
import http from 'node:http'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import fc from 'fast-check'
import t, { type Test } from 'tap'
import { buildTestApp, JWT_SECRET, login, PASSWORD, signupAndLogin, STORE_MODES, uniqueEmail, type LoggedIn } from './fixtures/app.ts'
import { b64url, decodeJwt, hmac } from './fixtures/jwt.ts'

const AUTH = '/api/v1/auth'
const BODY_LIMIT = 1_048_576
const MAX_SESSION_ID = 1024
const SCALE = Number(process.env.FUZZ_SCALE ?? '1')
// Failed logins and password checks of this file stay below the throttle (API.md §8).
const SETTINGS = { LOGIN_FAIL_MAX: '49' }
const NOT_A_SESSION = '00000000-0000-4000-8000-000000000000'
const OTHER_UUID = '11111111-1111-4111-8111-111111111111'
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

// ---------------------------------------------------------------------------------------------
// Requests, and the rules every answer follows

interface Req {
  method: string
  url: string
  headers?: Record<string, string>
  payload?: Buffer
}

interface Stats { requests: number, argon2: number }

function clip (value: string, max = 300): string {
  return value.length <= max ? JSON.stringify(value) : `${JSON.stringify(value.slice(0, max))}… (${value.length} chars)`
}

function describe (req: Req, res?: LightMyRequestResponse): string {
  const headers = Object.entries(req.headers ?? {}).map(([k, v]) => `${k}: ${clip(v, 200)}`).join(', ')
  const lines = [`  request: ${req.method} ${clip(req.url, 200)} {${headers}} body ${req.payload === undefined ? '(none)' : clip(req.payload.toString('utf8'))}`]
  if (res) lines.push(`  response: ${res.statusCode} ${JSON.stringify(res.headers)} ${clip(res.body, 500)}`)
  return lines.join('\n')
}

function fail (why: string, req: Req, res?: LightMyRequestResponse): never {
  throw new Error(`${why}\n${describe(req, res)}`)
}

function escapeRegExp (s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

// What no response may contain, body or headers (API.md §2.2).
const LEAKS: Array<[string, RegExp]> = [
  ['a stack frame', /at .*\(.*:\d+:\d+\)/],
  ['node_modules', /node_modules/],
  ['a source path', /\/work\//],
  ['a runtime error name', /\b[A-Z][A-Za-z]*Error:/],
  ['SQL or database error text', /SQLSTATE|\brelation \\?"|\bconstraint \\?"|\bviolates\b|syntax error at/i],
  ['a driver or framework error code', /ECONNREFUSED|ECONNRESET|ETIMEDOUT|WRONGTYPE|NOSCRIPT|\bERR_[A-Z_]{3,}|\bFST_[A-Z_]+/],
  ['a connection URL', /\b(?:redis|rediss|postgres|postgresql):\/\//i],
  ['the JWT secret', new RegExp(escapeRegExp(JWT_SECRET))]
]
// Generated property names are echoed in validation errors (API.md §2.1): none may look like a leak.
const leaky = (s: string) => LEAKS.some(([, pattern]) => pattern.test(s))

const CODE = /^[A-Za-z][A-Za-z0-9_.:-]*$/

/** The path of a request target as app.inject (a WHATWG URL parser) reads it. */
function pathOf (url: string): string {
  try {
    return new URL(url, 'http://localhost').pathname
  } catch {
    return url
  }
}
const PROBLEM_TYPE = /^application\/problem\+json(\s*;.*)?$/

interface Answer { status: number, code?: string }

/** Sends the request and checks the rules of every answer; returns the status and problem code. */
async function send (app: FastifyInstance, stats: Stats, req: Req): Promise<Answer & { res: LightMyRequestResponse }> {
  stats.requests++
  const res = await app.inject({ method: req.method as InjectOptions['method'], url: req.url, headers: req.headers, payload: req.payload })
  const status = res.statusCode
  if (status >= 500) fail(`answered ${status}`, req, res)
  const text = `${res.body}\n${JSON.stringify(res.headers)}`
  for (const [what, pattern] of LEAKS) if (pattern.test(text)) fail(`the response contains ${what} (${pattern})`, req, res)
  // The security headers of every response, and no-store under the auth API (API.md §2.3).
  const headers = res.headers
  if (headers['x-content-type-options'] !== 'nosniff' || headers['referrer-policy'] !== 'no-referrer' ||
      !String(headers['content-security-policy'] ?? '').startsWith("default-src 'none'") || headers['x-powered-by'] !== undefined) {
    fail('missing security headers (API.md §2.3)', req, res)
  }
  if (pathOf(req.url).startsWith(AUTH) && headers['cache-control'] !== 'no-store') fail('no Cache-Control: no-store under /api/v1/auth', req, res)
  if (status < 400) return { status, res }
  if (!PROBLEM_TYPE.test(String(res.headers['content-type'] ?? ''))) fail('an error that is not application/problem+json', req, res)
  if (res.headers['set-cookie'] !== undefined) fail('an error response with Set-Cookie (API.md §4.3)', req, res)
  if (req.method === 'HEAD') return { status, res }
  let body: unknown
  try {
    body = JSON.parse(res.body)
  } catch {
    fail('a problem document that is not JSON', req, res)
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) fail('a problem document that is not a JSON object', req, res)
  const problem = body as Record<string, unknown>
  const members = ['type', 'title', 'status', 'detail', 'code', 'request_id']
  if (problem.code === 'validation_failed' || problem.code === 'weak_password') {
    members.push('errors')
    const errors = problem.errors
    if (!Array.isArray(errors) || errors.length === 0 || !errors.every((e) => typeof e === 'object' && e !== null &&
        Object.keys(e).sort().join() === 'field,message' && typeof e.field === 'string' && typeof e.message === 'string')) {
      fail('`errors` is not a non-empty array of { field, message }', req, res)
    }
  }
  if (pathOf(req.url) === '/health/ready') members.push('checks')
  const extra = Object.keys(problem).filter((k) => !members.includes(k))
  if (extra.length > 0) fail(`undocumented problem members: ${extra.join(', ')} (API.md §2.2)`, req, res)
  if (problem.status !== status) fail('`status` differs from the HTTP status', req, res)
  if (typeof problem.code !== 'string' || !CODE.test(problem.code)) fail('`code` missing or not matching ^[A-Za-z][A-Za-z0-9_.:-]*$', req, res)
  for (const member of ['type', 'title', 'detail', 'request_id']) {
    if (typeof problem[member] !== 'string' || problem[member] === '') fail(`\`${member}\` missing or empty`, req, res)
  }
  if (problem.code === 'invalid_token' && !/^Bearer realm="api"/.test(String(res.headers['www-authenticate'] ?? ''))) {
    fail('401 invalid_token without WWW-Authenticate (API.md §4.1)', req, res)
  }
  return { status, code: problem.code as string, res }
}

function expect (answer: Answer & { res: LightMyRequestResponse }, req: Req, status: number | number[], code?: string | string[]): void {
  const statuses = Array.isArray(status) ? status : [status]
  const codes = code === undefined ? undefined : Array.isArray(code) ? code : [code]
  // A HEAD answer has no body, hence no code to compare.
  if (!statuses.includes(answer.status) || (codes !== undefined && answer.code !== undefined && !codes.includes(answer.code))) {
    fail(`expected ${statuses.join(' or ')}${codes ? ` ${codes.join(' or ')}` : ''}, got ${answer.status} ${answer.code ?? ''}`, req, answer.res)
  }
}

/** FUZZ_SEED and FUZZ_PATH replay a failure of the property whose name starts with FUZZ_PROPERTY. */
function replay (name: string): { seed?: number, path?: string } {
  const { FUZZ_SEED: seed, FUZZ_PATH: path, FUZZ_PROPERTY: only } = process.env
  if (seed === undefined || (only !== undefined && !name.startsWith(only))) return {}
  return { seed: Number(seed), ...(path === undefined ? {} : { path }) }
}

/**
 * Runs a property under tap: a failure reports fast-check's seed, path and shrunk counterexample.
 * A property marked `todo` (a known bug) still runs; its failure is a todo assertion, which
 * keeps the suite green (tap would not run a todo subtest at all).
 */
async function property<T> (
  t: Test, name: string, numRuns: number, arbitrary: fc.Arbitrary<T>, predicate: (value: T) => Promise<void>,
  options: { todo?: string } = {}
): Promise<void> {
  await t.test(name, async (t) => {
    const runs = Math.max(1, Math.round(numRuns * SCALE))
    const started = Date.now()
    let cases = 0
    try {
      await fc.assert(fc.asyncProperty(arbitrary, async (value) => { cases++; await predicate(value) }), { numRuns: runs, ...replay(name) })
      t.pass(`${runs} generated cases`)
      if (options.todo !== undefined) t.comment(`marked todo but holds now: ${options.todo}`)
    } catch (error) {
      // fast-check 4 keeps the predicate's own error as the cause.
      const cause = error instanceof Error && error.cause instanceof Error ? `\nGot error: ${error.cause.message}` : ''
      const message = `${error instanceof Error ? error.message : String(error)}${cause}`
      t.comment(message)
      t.fail(message.slice(0, 8000), options.todo === undefined ? {} : { todo: options.todo })
    }
    t.comment(`${name}: ${cases} cases (shrinking included) in ${Date.now() - started} ms`)
  })
}

// ---------------------------------------------------------------------------------------------
// Values: unicode edge cases, huge strings, wrong types

/** A long string, materialised only when serialised (and printed short in counterexamples). */
class Huge {
  readonly unit: string
  readonly count: number
  constructor (unit: string, count: number) {
    this.unit = unit
    this.count = count
  }

  get codePoints (): number { return [...this.unit].length * this.count }
  toJSON (): string { return this.unit.repeat(this.count) }
  [fc.toStringMethod] (): string { return `Huge(${JSON.stringify(this.unit)} x ${this.count})` }
}

/** An array nested `depth` deep, written by jsonText and printed short. */
class Nested {
  readonly depth: number
  constructor (depth: number) { this.depth = depth }
  [fc.toStringMethod] (): string { return `Nested(${this.depth})` }
}

// Lone surrogates, NUL and other controls, RTL override, zero-width and format characters,
// emoji (with ZWJ), combining marks, fullwidth forms, NFKC-folding ligatures, line separators.
const NASTY = [
  '\u0000', '\u0007', '\u001b', '\r\n', '\t', ' ', '\u00a0', '\u3000', '\ud800', '\udfff', '\udc00\ud800', '\u202e',
  '\u202d', '\u200b', '\u200c', '\u200d', '\u2060', '\ufeff', '\u2028', '\u2029', '\u0085', '😀', '👩‍👩‍👧', '🏳️‍🌈',
  'e\u0301', '\u0301', 'Z\u0351\u036b\u0343\u036a\u0302', 'Ａ', 'ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ', 'ｐａｓｓｗｏｒｄ１２３', 'ﬁ', 'İ', 'ß',
  'ǅ', '\u{10ffff}', '\u{e0041}', '\ufffd', '\\', '"', "'", '%00', '%', '<script>', "'; drop table users; --",
  '$' + '{jndi:ldap://x}', '{{7*7}}', '../../etc/passwd', 'null', 'true', '0', '-0', '1e309', 'NaN', 'Ada Lovelace',
  'ada@example.com', 'password123'
]

const boundaryString = fc.tuple(
  fc.constantFrom('a', 'é', '😀', ' ', 'e\u0301', '\u202e'),
  fc.constantFrom(0, 1, 7, 8, 63, 64, 65, 99, 100, 101, 127, 128, 129, 254, 255, 320, 321, 511, 512, 513, 1024, 1025)
).map(([unit, n]) => unit.repeat(n))

const hugeString = fc.tuple(
  fc.constantFrom('a', 'é', '😀', '\u0000', '"', ' '),
  fc.oneof(fc.integer({ min: 1000, max: 1_100_000 }), fc.constantFrom(BODY_LIMIT - 64, BODY_LIMIT - 24, BODY_LIMIT, BODY_LIMIT + 1))
).map(([unit, n]) => new Huge(unit, n))

const emailish = fc.oneof(
  fc.emailAddress(),
  fc.constantFrom(
    'not-an-email', 'user.example.com', 'user@', '@example.com', 'two@@example.com', 'sp ace@example.com', 'a@b..c',
    '  Ada@Example.COM ', '\tada@example.com\n', 'ada@example.com\u0000', 'ａｄａ@example.com', 'ada@exämple.com',
    `${'a'.repeat(65)}@example.com`, `a@${'b'.repeat(64)}.com`, '.ada@example.com', 'ada.@example.com', 'ada@-x.com',
    'ADA@EXAMPLE.COM', 'ada@example', 'ada@example.com.', '"ada"@example.com', 'ada+tag@example.com'
  ),
  fc.tuple(fc.emailAddress(), fc.constantFrom(...NASTY), fc.nat()).map(([e, n, i]) => e.slice(0, i % (e.length + 1)) + n + e.slice(i % (e.length + 1)))
)

const text: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...NASTY) },
  { weight: 3, arbitrary: fc.string({ unit: fc.constantFrom(...NASTY), minLength: 1, maxLength: 12 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 2, arbitrary: boundaryString },
  { weight: 2, arbitrary: emailish }
)

const wrongType: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(), fc.double(), fc.boolean(), fc.constant(null),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
  fc.integer({ min: 2, max: 50_000 }).map((depth) => new Nested(depth)),
  fc.constantFrom<unknown>(['ada@example.com'], { email: 'ada@example.com' }, 12345, true, 1e308, -0)
)

const extraKey = fc.oneof(
  fc.constantFrom(
    'role', 'is_admin', 'admin', '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'Email', 'EMAIL',
    'email ', ' email', 'pass word', '', 'id', 'user_id', 'access_token', 'x'.repeat(64), 'x'.repeat(65), 'é', '😀',
    '\u0000', '\ud800', '\u202eemail', 'a.b', 'a/b', '$where', '$gt', 'email\u0000'
  ),
  fc.string({ unit: 'binary', maxLength: 10 }),
  fc.string({ maxLength: 70 })
).filter((key) => !leaky(key))

/** What a header value can be on the wire: UTF-8 bytes read as latin1, no controls, trimmed. */
function wire (s: string): string {
  // eslint-disable-next-line no-control-regex
  return Buffer.from(s, 'utf8').toString('latin1').replace(/[\u0000-\u0008\u000a-\u001f\u007f]/g, '').trim()
}

// ---------------------------------------------------------------------------------------------
// Routes and their bodies (API.md §5, schema/auth.ts)

interface Field { type: 'string' | 'boolean', required: boolean, min?: number, max?: number }
interface Route {
  name: string
  method: 'GET' | 'POST' | 'DELETE'
  url: string
  /** Bearer-protected (API.md §4.1). */
  bearer: boolean
  /** The body schema of a route that takes one. */
  fields?: Record<string, Field>
  template?: Record<string, unknown>
}

const str = (min: number, max: number, required = true): Field => ({ type: 'string', required, min, max })
const FORGED_REFRESH = 'A'.repeat(86)
const NEW_PASSWORD = 'another long passphrase 42'

const ROUTES: Route[] = [
  {
    name: 'signup',
    method: 'POST',
    url: `${AUTH}/signup`,
    bearer: false,
    fields: { email: str(1, 320), password: str(8, 128), name: str(1, 100) },
    template: { email: 'fuzz-signup@example.test', password: PASSWORD, name: 'Ada Lovelace' }
  },
  {
    name: 'login',
    method: 'POST',
    url: `${AUTH}/login`,
    bearer: false,
    fields: { email: str(1, 320), password: str(1, 128), return_refresh_in_body: { type: 'boolean', required: false }, device_name: str(1, 100, false) },
    template: { email: 'nobody@example.test', password: 'not the password', device_name: "Ada's phone" }
  },
  { name: 'refresh', method: 'POST', url: `${AUTH}/refresh`, bearer: false, fields: { refresh_token: str(1, 512, false) }, template: { refresh_token: FORGED_REFRESH } },
  { name: 'logout', method: 'POST', url: `${AUTH}/logout`, bearer: false, fields: { refresh_token: str(1, 512, false) }, template: { refresh_token: FORGED_REFRESH } },
  { name: 'logout-all', method: 'POST', url: `${AUTH}/logout-all`, bearer: true, fields: {}, template: {} },
  {
    name: 'password',
    method: 'POST',
    url: `${AUTH}/password`,
    bearer: true,
    fields: { current_password: str(1, 128), new_password: str(8, 128) },
    template: { current_password: 'not the password', new_password: NEW_PASSWORD }
  },
  { name: 'me', method: 'GET', url: `${AUTH}/me`, bearer: true },
  { name: 'sessions', method: 'GET', url: `${AUTH}/sessions`, bearer: true },
  { name: 'delete-session', method: 'DELETE', url: `${AUTH}/sessions/${NOT_A_SESSION}`, bearer: true },
  { name: 'liveness', method: 'GET', url: '/', bearer: false },
  { name: 'readiness', method: 'GET', url: '/health/ready', bearer: false },
  { name: 'jwks', method: 'GET', url: '/.well-known/jwks.json', bearer: false },
  { name: 'openapi', method: 'GET', url: '/docs/json', bearer: false }
]
const ROUTE = Object.fromEntries(ROUTES.map((r) => [r.name, r])) as Record<string, Route>
const routeName = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom('signup', 'login', 'refresh', 'logout', 'logout-all', 'password') },
  { weight: 2, arbitrary: fc.constantFrom('me', 'sessions', 'delete-session') },
  { weight: 1, arbitrary: fc.constantFrom('liveness', 'readiness', 'jwks', 'openapi') }
)

type Mutation =
  | { op: 'drop', field: number }
  | { op: 'set', field: number, value: unknown }
  | { op: 'extra', key: string, value: unknown }
  | { op: 'dup', field: number, value: unknown }

const anyValue = fc.oneof({ weight: 3, arbitrary: text }, { weight: 2, arbitrary: wrongType })
// Huge strings (up to past the 1 MiB limit) are rare: each costs a megabyte through the parser.
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 12, arbitrary: fc.record({ op: fc.constant('drop' as const), field: fc.nat(7) }) },
  { weight: 12, arbitrary: fc.record({ op: fc.constant('set' as const), field: fc.nat(7), value: anyValue }) },
  { weight: 12, arbitrary: fc.record({ op: fc.constant('set' as const), field: fc.nat(7), value: text }) },
  { weight: 12, arbitrary: fc.record({ op: fc.constant('extra' as const), key: extraKey, value: fc.oneof(text, wrongType) }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('dup' as const), field: fc.nat(7), value: anyValue }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('set' as const), field: fc.nat(7), value: hugeString }) }
)

interface JsonBody { kind: 'json', mutations: Mutation[], shape: 'object' | 'array' | 'scalar', scalar: unknown, mayBeValid: boolean }
type RawBody =
  | { kind: 'text', text: string }
  | { kind: 'malformed', text: string }
  | { kind: 'flip', pos: number, ch: string }
  | { kind: 'truncate', keep: number }
  | { kind: 'bom' }
  | { kind: 'bytes', bytes: Uint8Array }
  | { kind: 'deep', open: string, close: string, leaf: string, depth: number }
  | { kind: 'sized', delta: number }
  | { kind: 'keys', n: number }
  | { kind: 'empty' }
type Body = JsonBody | RawBody

// Malformed JSON (API.md §2.1: 400 malformed_json).
const MALFORMED = [
  '{"email":', '{"email": "a@example.com", }', '[not json', '{', '}', '{"a":1}}', "{'a':1}", 'NaN', 'undefined', '{"a":}',
  '{"a" 1}', '{a:1}', '[1,]', '"unterminated', '{"a":"\\x"}', '{"a":"\\u12"}', '01', '1 2', '{"a":1}{"b":2}', 'tru',
  '\ufeff{}', '{"a":"\u0000"}', '/* comment */ {}', '{"a":1,}', '{"email":"a@example.com"', '{"a":-}', '{"a":.5}', '+1',
  '{"a":1e}', '{"\ud800":1', ' {"a":1} x'
]

const jsonBody: fc.Arbitrary<JsonBody> = fc.record({
  kind: fc.constant('json' as const),
  mutations: fc.array(mutation, { minLength: 1, maxLength: 4 }),
  shape: fc.oneof({ weight: 12, arbitrary: fc.constant('object' as const) }, { weight: 1, arbitrary: fc.constantFrom('array' as const, 'scalar' as const) }),
  scalar: fc.oneof(text, wrongType),
  // Bodies that may pass validation cost an argon2 hash at signup, login and password: few.
  mayBeValid: fc.oneof({ weight: 1, arbitrary: fc.constant(true) }, { weight: 19, arbitrary: fc.constant(false) })
})

const rawBody: fc.Arbitrary<RawBody> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('text' as const), text: fc.oneof(fc.string({ unit: 'binary', maxLength: 60 }), fc.json({ maxDepth: 3 }), fc.constantFrom(' ', '\n', '\t\r\n', 'null', '[]', '""', '0', 'true', '{}')) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('malformed' as const), text: fc.constantFrom(...MALFORMED) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(200), ch: fc.constantFrom('"', '{', '}', ',', ':', '\\', ' ', 'x', '\u0000', '[', '1', '\ud800', 'é') }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat(200) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bom' as const) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('bytes' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('deep' as const),
      open: fc.constantFrom('[', '{"a":', '{"email":'),
      close: fc.constant(''),
      leaf: fc.constantFrom('1', '"x"', '{}', '[]', 'null'),
      depth: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 5000 }) }, { weight: 1, arbitrary: fc.integer({ min: 5000, max: 200_000 }) })
    })
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('sized' as const), delta: fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom(-100_000, 100_000)) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('keys' as const), n: fc.integer({ min: 2, max: 5000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('empty' as const) }) }
)

const JSON_TYPES = ['application/json', 'application/json; charset=utf-8']
// Media types that are certainly not JSON: 415 for any non-empty body (API.md §2.1).
const NON_JSON_TYPES = [
  'text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=fuzz',
  'application/xml', 'application/octet-stream', 'text/html'
]
const contentType: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 14, arbitrary: fc.constantFrom(...JSON_TYPES) },
  { weight: 3, arbitrary: fc.constantFrom(...NON_JSON_TYPES) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'Application/JSON', 'application/json;charset=UTF-8', 'application/json; charset=latin1', 'application/json; charset=utf-16',
      'application/json ; x=y', 'text/json', 'application/problem+json', 'application/merge-patch+json', 'application/jsonx',
      'application/json-seq', 'application', 'json', '*/*', '', ';', 'application/json, text/plain', 'application/json; charset="utf-8"'
    )
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map(wire) },
  { weight: 1, arbitrary: fc.constant(undefined) }
)

function entriesOf (route: Route, mutations: Mutation[]): Array<[string, unknown]> {
  const names = Object.keys(route.fields ?? {})
  let entries = Object.entries(route.template ?? {})
  for (const m of mutations) {
    const name = 'field' in m ? (names.length > 0 ? names[m.field % names.length]! : `field${m.field}`) : m.key
    if (m.op === 'drop') {
      entries = entries.filter(([k]) => k !== name)
    } else if (m.op === 'set') {
      const i = entries.findIndex(([k]) => k === name)
      if (i >= 0) entries[i] = [name, m.value]
      else entries.push([name, m.value])
    } else {
      entries.push([name, m.value])
    }
  }
  return entries
}

/** JSON text of a generated value; deep nesting is written directly (JSON.stringify would overflow). */
function jsonText (value: unknown): string {
  if (value instanceof Nested) return `${'['.repeat(value.depth)}${']'.repeat(value.depth)}`
  return JSON.stringify(value) ?? 'null'
}

/** A JSON object text with the entries in order (duplicates and `__proto__` kept as written). */
function objectText (entries: Array<[string, unknown]>): string {
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`).join(',')}}`
}

const codePoints = (s: string) => [...s].length

/** True when the schema certainly refuses these entries (last duplicate wins, as in JSON.parse). */
function surelyInvalid (route: Route, entries: Array<[string, unknown]>): boolean {
  const fields = route.fields ?? {}
  const effective = new Map(entries)
  for (const [key, value] of effective) {
    const field = Object.hasOwn(fields, key) ? fields[key] : undefined
    if (field === undefined) return true
    if (field.type === 'boolean') {
      if (typeof value !== 'boolean') return true
      continue
    }
    const length = value instanceof Huge ? value.codePoints : typeof value === 'string' ? codePoints(value) : -1
    if (length < (field.min ?? 0) || length > (field.max ?? Infinity)) return true
  }
  return Object.entries(fields).some(([key, field]) => field.required && !effective.has(key))
}

interface Materialised { payload: Buffer, malformed: boolean, surelyInvalid: boolean }

function materialise (route: Route, body: Body): Materialised {
  const template = objectText(Object.entries(route.template ?? {}))
  const done = (textOrBytes: string | Buffer, extra: Partial<Materialised> = {}): Materialised => ({
    payload: typeof textOrBytes === 'string' ? Buffer.from(textOrBytes, 'utf8') : textOrBytes,
    malformed: false,
    surelyInvalid: false,
    ...extra
  })
  switch (body.kind) {
    case 'json': {
      const entries = entriesOf(route, body.mutations)
      if (body.shape === 'array') return done(`[${objectText(entries)}]`, { surelyInvalid: true })
      if (body.shape === 'scalar') {
        // Any other value: an object (from the wrong-type generator) may be valid itself.
        const { scalar } = body
        const object = typeof scalar === 'object' && scalar !== null && !Array.isArray(scalar) && !(scalar instanceof Nested)
        return done(jsonText(scalar), { surelyInvalid: !object || surelyInvalid(route, Object.entries(scalar)) })
      }
      return done(objectText(entries), { surelyInvalid: surelyInvalid(route, entries) })
    }
    case 'text': return done(body.text)
    case 'malformed': return done(body.text, { malformed: true })
    case 'flip': {
      const pos = body.pos % template.length
      return done(template.slice(0, pos) + body.ch + template.slice(pos + 1))
    }
    case 'truncate': return done(template.slice(0, body.keep % template.length), { malformed: true })
    case 'bom': return done(`\ufeff${template}`)
    case 'bytes': return done(Buffer.from(body.bytes))
    case 'deep': {
      const close = body.open === '[' ? ']' : '}'
      return done(body.open.repeat(body.depth) + body.leaf + close.repeat(body.depth), { surelyInvalid: true })
    }
    case 'sized': {
      // {"pad":"aaa…"} of exactly BODY_LIMIT + delta bytes: an unknown property, or too large.
      const size = BODY_LIMIT + body.delta
      return done(`{"pad":"${'a'.repeat(size - 10)}"}`, { surelyInvalid: true })
    }
    case 'keys': return done(objectText(Array.from({ length: body.n }, (_, i) => [`k${i}`, i])), { surelyInvalid: true })
    case 'empty': return done('')
  }
}

// ---------------------------------------------------------------------------------------------
// Authorization, Cookie and Origin headers

type AuthSpec =
  | { k: 'none' }
  | { k: 'valid' }
  | { k: 'change', pos: number, ch: number }
  | { k: 'truncate', keep: number }
  | { k: 'insert', pos: number, text: string }
  | { k: 'delete', pos: number, count: number }
  | { k: 'scheme', scheme: string, sep: string, suffix: string }
  | { k: 'raw', value: string }
  | { k: 'huge', n: number, unit: string }
  | { k: 'forge', header: number, claims: number, sig: number }
  | { k: 'swap', order: number }
  | { k: 'refresh-token' }

const CHANGE_CHARS = [...B64URL, '+', '/', '=', '.', ' ', '~', '%', 'é']
const PERMUTATIONS = [[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] as const

// [header, may be accepted when everything else is right]
const FORGED_HEADERS: Array<[Record<string, unknown>, boolean]> = [
  [{ alg: 'HS256', typ: 'at+jwt' }, true],
  [{ typ: 'at+jwt', alg: 'HS256' }, true],
  [{ alg: 'HS256', typ: 'AT+JWT' }, true],
  [{ alg: 'HS256', typ: 'application/at+jwt' }, true],
  [{ alg: 'HS256', typ: 'at+jwt', kid: '../../../../dev/null' }, true],
  [{ alg: 'HS256', typ: 'at+jwt', jku: 'https://evil.example/jwks.json' }, true],
  [{ alg: 'none', typ: 'at+jwt' }, false],
  [{ alg: 'None', typ: 'at+jwt' }, false],
  [{ alg: 'NONE', typ: 'at+jwt' }, false],
  [{ alg: 'nOnE', typ: 'at+jwt' }, false],
  [{ alg: 'HS384', typ: 'at+jwt' }, false],
  [{ alg: 'HS512', typ: 'at+jwt' }, false],
  [{ alg: 'RS256', typ: 'at+jwt' }, false],
  [{ alg: 'EdDSA', typ: 'at+jwt' }, false],
  [{ alg: 'HS256', typ: 'JWT' }, false],
  [{ alg: 'HS256', typ: 'rt+jwt' }, false],
  [{ alg: 'HS256' }, false],
  [{ typ: 'at+jwt' }, false],
  [{ alg: ['HS256'], typ: 'at+jwt' }, false]
]
type Claims = Record<string, unknown>
const now = () => Math.floor(Date.now() / 1000)
const without = (key: string) => (p: Claims) => Object.fromEntries(Object.entries(p).filter(([k]) => k !== key))
// [label, edit, may be accepted when correctly signed]
const CLAIM_EDITS: Array<[string, (p: Claims) => Claims, boolean]> = [
  ['unchanged', (p) => p, true],
  ['exp extended', (p) => ({ ...p, exp: Number(p.exp) + 86_400 }), true],
  ['an extra claim', (p) => ({ ...p, admin: true }), true],
  ['sub of another user', (p) => ({ ...p, sub: OTHER_UUID }), false],
  ['sid of another session', (p) => ({ ...p, sid: OTHER_UUID }), false],
  ['sub not a uuid', (p) => ({ ...p, sub: 'admin' }), false],
  ['sub a number', (p) => ({ ...p, sub: 1 }), false],
  ['exp in the past', (p) => ({ ...p, exp: now() - 60 }), false],
  ['nbf in the future', (p) => ({ ...p, nbf: now() + 3600 }), false],
  ['iss evil', (p) => ({ ...p, iss: 'https://evil.example' }), false],
  ['aud other', (p) => ({ ...p, aud: 'some-other-api' }), false],
  ...['iss', 'aud', 'sub', 'sid', 'jti', 'iat', 'exp'].map((k): [string, (p: Claims) => Claims, boolean] => [`no ${k}`, without(k), false])
]
const SIGNATURES = ['hs256', 'header-alg', 'original', 'empty', 'missing', 'wrong-key', 'garbage'] as const

const authSpec: fc.Arbitrary<AuthSpec> = fc.oneof(
  { weight: 2, arbitrary: fc.constant({ k: 'none' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'valid' as const }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant('change' as const), pos: fc.nat(), ch: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('truncate' as const), keep: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('insert' as const), pos: fc.nat(), text: fc.constantFrom('.', '..', '.a', '=', ' ', 'A', '%2E', '\t', 'é') }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delete' as const), pos: fc.nat(), count: fc.integer({ min: 1, max: 3 }) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('scheme' as const),
      scheme: fc.constantFrom('Basic', 'Token', 'JWT', 'Bearer:', 'Bearer,', 'Bearerx', 'Bear', 'MAC', 'Digest', 'bearer', 'BEARER', 'Bearer', ''),
      sep: fc.constantFrom(' ', '  ', '', '\t', ' \t'),
      suffix: fc.constantFrom('', ' ', ' x', ',', '.', '=', '==', ' Bearer x', '\u00e9')
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('raw' as const),
      value: fc.oneof(
        fc.constantFrom('Bearer', 'Bearer ', 'bearer', 'Bearer null', 'Bearer undefined', 'Bearer a.b.c', 'Bearer garbage', 'Bearer ..',
          'Bearer e30.e30.', 'Bearer eyJhbGciOiJub25lIn0.e30.', 'Basic Zm9vOmJhcg==', 'Bearer =', 'Bearer ='.repeat(3), ', Bearer x'),
        fc.string({ unit: 'binary', maxLength: 60 }).map((s) => wire(`Bearer ${s}`)),
        fc.string({ unit: 'grapheme', maxLength: 30 }).map(wire)
      )
    })
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('huge' as const), n: fc.integer({ min: 100, max: 12_000 }), unit: fc.constantFrom('A', '.', 'é', 'a.b.') }) },
  {
    weight: 4,
    arbitrary: fc.record({ k: fc.constant('forge' as const), header: fc.nat(FORGED_HEADERS.length - 1), claims: fc.nat(CLAIM_EDITS.length - 1), sig: fc.nat(SIGNATURES.length - 1) })
      // Only forgeries: a correctly signed token with acceptable header and claims is not one.
      .filter((f) => !(FORGED_HEADERS[f.header]![1] && CLAIM_EDITS[f.claims]![2] && ['hs256', 'header-alg', 'original'].includes(SIGNATURES[f.sig]!)))
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('swap' as const), order: fc.nat(PERMUTATIONS.length - 1) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'refresh-token' as const }) }
)

interface Credentials { accessToken: string, refreshToken: string }

/**
 * The Authorization value of a spec for a real access token, and whether it is certainly not
 * a valid credential (`forged`): such a value must never be accepted.
 */
function authorization (spec: AuthSpec, who: Credentials): { value?: string, forged: boolean } {
  const token = who.accessToken
  // The scheme is case-insensitive, the token is not.
  const bearer = (value: string) => {
    const sent = wire(value)
    return { value: sent, forged: !(/^bearer /i.test(sent) && sent.slice(7) === token) }
  }
  switch (spec.k) {
    case 'none': return { forged: false }
    case 'valid': return { value: `Bearer ${token}`, forged: false }
    case 'change': {
      const pos = spec.pos % token.length
      const choices = CHANGE_CHARS.filter((c) => c !== token[pos])
      return bearer(`Bearer ${token.slice(0, pos)}${choices[spec.ch % choices.length]}${token.slice(pos + 1)}`)
    }
    case 'truncate': return bearer(`Bearer ${token.slice(0, spec.keep % token.length)}`)
    case 'insert': {
      const pos = spec.pos % (token.length + 1)
      return bearer(`Bearer ${token.slice(0, pos)}${spec.text}${token.slice(pos)}`)
    }
    case 'delete': {
      const pos = spec.pos % token.length
      return bearer(`Bearer ${token.slice(0, pos)}${token.slice(pos + spec.count)}`)
    }
    case 'scheme': return bearer(`${spec.scheme}${spec.sep}${token}${spec.suffix}`)
    case 'raw': return bearer(spec.value)
    case 'huge': return bearer(`Bearer ${spec.unit.repeat(spec.n)}`)
    case 'swap': {
      const parts = token.split('.')
      return bearer(`Bearer ${PERMUTATIONS[spec.order]!.map((i) => parts[i]).join('.')}`)
    }
    case 'refresh-token': return bearer(`Bearer ${who.refreshToken}`)
    case 'forge': {
      const { header: originalHeader, payload, signature, parts } = decodeJwt(token)
      const [header, headerOk] = FORGED_HEADERS[spec.header]!
      const [, edit, claimsOk] = CLAIM_EDITS[spec.claims]!
      const input = `${b64url(header)}.${b64url(edit(payload))}`
      const sig = SIGNATURES[spec.sig]!
      const alg = typeof header.alg === 'string' && ['HS256', 'HS384', 'HS512'].includes(header.alg) ? header.alg : 'HS256'
      const signed = {
        hs256: `${input}.${hmac(input)}`,
        'header-alg': `${input}.${hmac(input, alg)}`,
        original: `${input}.${signature}`,
        empty: `${input}.`,
        missing: input,
        'wrong-key': `${input}.${hmac(input, 'HS256', 'not-the-secret-0123456789-abcdefghijklmnop')}`,
        garbage: `${input}.${'A'.repeat(43)}`
      }[sig]
      const acceptable = headerOk && claimsOk && (
        sig === 'hs256' || (sig === 'header-alg' && alg === 'HS256') ||
        (sig === 'original' && input === `${parts[0]}.${parts[1]}` && JSON.stringify(header) === JSON.stringify(originalHeader)))
      const sent = bearer(`Bearer ${signed}`)
      return { value: sent.value, forged: sent.forged && !acceptable }
    }
  }
}

type CookieValue =
  | { v: 'forged', s: string }
  | { v: 'mutated', pos: number, ch: number }
  | { v: 'text', s: string }
  | { v: 'huge', n: number }
  | { v: 'empty' }
  | { v: 'quoted', s: string }
type CookieSpec = { pairs: Array<{ name: string, value: CookieValue }>, sep: string } | { junk: string }

const forged86 = fc.string({ unit: fc.constantFrom(...B64URL), minLength: 86, maxLength: 86 })
const cookieValue: fc.Arbitrary<CookieValue> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ v: fc.constant('forged' as const), s: forged86 }) },
  { weight: 4, arbitrary: fc.record({ v: fc.constant('mutated' as const), pos: fc.nat(), ch: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      v: fc.constant('text' as const),
      s: fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom('%', '%zz', '%E0%A4%A', '%ED%A0%80', '%00', 'a%20b', '=', '==', 'a=b', '\\', '"', 'deleted', FORGED_REFRESH.slice(1)))
    })
  },
  { weight: 1, arbitrary: fc.record({ v: fc.constant('huge' as const), n: fc.integer({ min: 513, max: 8000 }) }) },
  { weight: 1, arbitrary: fc.constant({ v: 'empty' as const }) },
  { weight: 1, arbitrary: fc.record({ v: fc.constant('quoted' as const), s: forged86 }) }
)
const cookieSpec: fc.Arbitrary<CookieSpec> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      pairs: fc.array(fc.record({
        name: fc.oneof({ weight: 5, arbitrary: fc.constant('refresh_token') }, {
          weight: 1,
          arbitrary: fc.constantFrom('REFRESH_TOKEN', 'refresh_token ', ' refresh_token', 'refresh-token', '__Host-refresh_token', 'sid', '', 'refresh_token\u00e9', 'a')
        }),
        value: cookieValue
      }), { minLength: 1, maxLength: 6 }),
      sep: fc.constantFrom('; ', ';', ', ', ';;', ' ; ')
    })
  },
  { weight: 1, arbitrary: fc.record({ junk: fc.oneof(fc.string({ unit: 'binary', maxLength: 80 }), fc.constantFrom('=', ';', ';;;', 'refresh_token', 'refresh_token=', '=refresh_token', 'refresh_token==x')) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      pairs: fc.integer({ min: 20, max: 300 }).map((n) => Array.from({ length: n }, (_, i) => ({ name: i % 7 === 0 ? 'refresh_token' : `c${i}`, value: { v: 'empty' as const } }))),
      sep: fc.constant('; ')
    })
  }
)

/** The Cookie header of a spec; never carries the real refresh token. */
function cookieHeader (spec: CookieSpec, realRefresh: string): string {
  if ('junk' in spec) return wire(spec.junk)
  const value = (v: CookieValue): string => {
    switch (v.v) {
      case 'forged': return v.s
      case 'mutated': {
        const pos = v.pos % realRefresh.length
        const choices = CHANGE_CHARS.filter((c) => c !== realRefresh[pos])
        return `${realRefresh.slice(0, pos)}${choices[v.ch % choices.length]}${realRefresh.slice(pos + 1)}`
      }
      case 'text': return v.s
      case 'huge': return 'A'.repeat(v.n)
      case 'empty': return ''
      case 'quoted': return `"${v.s}"`
    }
  }
  return wire(spec.pairs.map((p) => `${p.name}=${value(p.value)}`).join(spec.sep))
}

const OWN_ORIGIN = 'http://localhost:80' // request.protocol + '://' + request.host under app.inject
const originSpec: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('null', 'https://evil.example', 'http://localhost', OWN_ORIGIN, 'http://localhost:3000', 'file://', '*', '', ' ', 'http://localhost:80.evil.example'),
  fc.webUrl().map(wire),
  fc.string({ unit: 'binary', maxLength: 40 }).map(wire),
  fc.integer({ min: 100, max: 8000 }).map((n) => `https://${'a'.repeat(n)}.example`)
)

const queryString = fc.oneof(
  fc.constantFrom('?__proto__=1', '?a[b]=c', '?a=%zz', '?constructor[prototype][x]=1', '?=', '?&&', '?a=1&a=2', '?%ff=%ff'),
  fc.string({ unit: 'binary', maxLength: 30 }).map((s) => `?q=${encodePath(s)}`)
)

/** Percent-encodes the UTF-8 bytes of a string, leaving unreserved characters and sub-delims. */
function encodePath (s: string): string {
  let out = ''
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte)
    out += /[A-Za-z0-9\-._~!$&'()*+,;=:@]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

function tryDecode (s: string): string | null {
  try {
    return decodeURIComponent(s)
  } catch {
    return null
  }
}

// ---------------------------------------------------------------------------------------------
// Session ids and unknown paths

type IdSpec =
  | { k: 'text', s: string }
  | { k: 'raw', s: string }
  | { k: 'long', unit: string, n: number }
  | { k: 'uuid', s: string }

const idSpec: fc.Arbitrary<IdSpec> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('text' as const), s: fc.oneof(fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }), fc.string({ unit: fc.constantFrom(...NASTY), minLength: 1, maxLength: 6 }), fc.string({ minLength: 1, maxLength: 40 })) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('raw' as const),
      s: fc.constantFrom('..', '.', '%2e%2e', '%2E', '.%2e', '%', '%zz', '%E0%A4%A', '%ED%A0%80', '%C0%AF', '%2F', '%00', 'a%2Fb',
        '%252e', '%u002e', '%FF', '%F0%9F%98', 'sessions', 'null', 'undefined', '0', '-1', '%20', '+', '%2B', '*', ';', '%3B', '@', '~')
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('long' as const),
      unit: fc.constantFrom('a', 'é', '😀', '%', '.', 'e\u0301'),
      n: fc.oneof(fc.integer({ min: 1000, max: 1100 }), fc.constantFrom(MAX_SESSION_ID - 1, MAX_SESSION_ID, MAX_SESSION_ID + 1), fc.integer({ min: 1, max: 5000 }))
    })
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('uuid' as const), s: fc.uuid() }) }
)

function encodedId (spec: IdSpec): string {
  switch (spec.k) {
    case 'text': return encodePath(spec.s)
    case 'raw': return spec.s
    case 'long': return spec.unit === '%' || spec.unit === '.' ? spec.unit.repeat(spec.n) : encodePath(spec.unit.repeat(spec.n))
    case 'uuid': return spec.s
  }
}

/**
 * What DELETE /sessions/{id} must answer for an encoded id (API.md §5.11, §2.2). app.inject
 * parses the URL as WHATWG does: `..` (also percent-encoded) leaves /sessions/ (no route), and
 * `.` leaves the empty id.
 */
function expectedForId (encoded: string, authorised: boolean): [number, string[]] {
  if (/^(?:\.|%2e){2}$/i.test(encoded)) return [404, ['not_found']]
  const decoded = /^(?:\.|%2e)$/i.test(encoded) ? '' : tryDecode(encoded)
  if (decoded === null) return [400, ['bad_request']]
  if (codePoints(decoded) > MAX_SESSION_ID) return [414, ['uri_too_long']]
  return authorised ? [404, ['session_not_found']] : [401, ['invalid_token']]
}

const KNOWN_PATHS = [
  /^\/$/, /^\/health\/ready$/, /^\/\.well-known\/jwks\.json$/, /^\/docs(\/.*)?$/, /^\/metrics$/,
  /^\/api\/v1\/auth\/(signup|login|me|refresh|logout|logout-all|sessions|password)$/, /^\/api\/v1\/auth\/sessions\/[^/]+$/
]

/** True when no route can answer the path, however the URL is normalised and decoded. */
function isUnknownPath (url: string): boolean {
  let pathname: string
  try {
    pathname = new URL(url, 'http://localhost').pathname
  } catch {
    return true
  }
  const candidates = [pathname, tryDecode(pathname) ?? pathname].flatMap((p) => [p, p.replace(/\/{2,}/g, '/'), p.replace(/\/+$/, '') || '/'])
  return !candidates.some((p) => KNOWN_PATHS.some((known) => known.test(p) || known.test(p.toLowerCase())))
}

const segment = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('api', 'v1', 'auth', 'sessions', 'health', 'ready', '.well-known', 'docs', 'json', 'me', 'login', 'signup', 'v2', 'admin', 'users', 'metrics', 'jwks.json') },
  { weight: 3, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }).map(encodePath) },
  { weight: 1, arbitrary: fc.constantFrom('%', '%zz', '%2F', '%00', ';', '...', '~', 'é', '%E0%A4%A', '%ED%A0%80', '%2e%2e', '', '%20', '%C0%AF', '\\') },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 12_000 }).map((n) => 'z'.repeat(n)) }
)
const METHODS = http.METHODS.filter((m) => m !== 'CONNECT')
const unknownRequest = fc.record({
  method: fc.oneof({ weight: 4, arbitrary: fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'HEAD', 'OPTIONS') }, { weight: 1, arbitrary: fc.constantFrom(...METHODS) }),
  prefix: fc.constantFrom('', '/api/v1/auth', '/api/v1', '/health', '/.well-known'),
  segments: fc.array(segment, { minLength: 1, maxLength: 5 }),
  trailingSlash: fc.boolean(),
  query: fc.option(queryString, { nil: undefined })
}).map((r) => ({ method: r.method, url: `${r.prefix}/${r.segments.join('/')}${r.trailingSlash ? '/' : ''}${r.query ?? ''}` }))
  // `//x` and `/\x` are authorities to a URL parser (app.inject would throw on them).
  .filter((r) => !/^\/[\\/]/.test(r.url) && isUnknownPath(r.url))

// ---------------------------------------------------------------------------------------------
// The properties, under one store set-up

interface ModeRuns {
  bodies: number
  headers: number
  ids: number
  paths: number
  stores: number
  signups: number
}

async function fuzz (t: Test, overrides: Record<string, string>, n: ModeRuns): Promise<void> {
  const app = await buildTestApp(t, { ...overrides, ...SETTINGS })
  const fuzzer: LoggedIn = await signupAndLogin(app, { device_name: 'fuzzer' })
  const stats: Stats = { requests: 0, argon2: 0 }
  const started = Date.now()

  await property(t, '1. generated and raw bodies: < 500, problem documents, no leaks, the status of §2.1', n.bodies, fc.record({
    route: routeName,
    body: fc.oneof({ weight: 3, arbitrary: jsonBody as fc.Arbitrary<Body> }, { weight: 2, arbitrary: rawBody as fc.Arbitrary<Body> }),
    contentType
  }).filter(({ route, body }) => {
    // Few bodies that may pass validation where that costs an argon2 hash.
    if (body.kind !== 'json' || body.mayBeValid || !['signup', 'login', 'password'].includes(route)) return true
    return materialise(ROUTE[route]!, body).surelyInvalid
  }), async ({ route: name, body, contentType }) => {
    const route = ROUTE[name]!
    const { payload, malformed, surelyInvalid } = materialise(route, body)
    const headers: Record<string, string> = {}
    if (contentType !== undefined) headers['content-type'] = contentType
    // Never the real token at logout-all: a valid `{}` would end the fuzzer's sessions.
    if (route.bearer && route.name !== 'logout-all') headers.authorization = `Bearer ${fuzzer.accessToken}`
    const req: Req = { method: route.method, url: route.url, headers, payload }
    const answer = await send(app, stats, req)
    if ((name === 'signup' && [201, 409].includes(answer.status)) || (name === 'login' && [200, 401].includes(answer.status)) ||
        (name === 'password' && [204, 403].includes(answer.status))) stats.argon2++
    if (route.method !== 'POST' || payload.length === 0) return
    if (contentType !== undefined && NON_JSON_TYPES.includes(contentType)) return expect(answer, req, 415, 'unsupported_media_type')
    if (contentType === undefined || !JSON_TYPES.includes(contentType)) return
    if (payload.length > BODY_LIMIT) return expect(answer, req, 413, 'payload_too_large')
    if (malformed) return expect(answer, req, 400, 'malformed_json')
    if (body.kind === 'json' && surelyInvalid) return expect(answer, req, 400, 'validation_failed')
  })

  await property(t, '2. Authorization, Cookie, Origin, Content-Type: < 500, problem documents, forged tokens never accepted', n.headers, fc.record({
    route: routeName,
    auth: authSpec,
    cookie: fc.option(cookieSpec, { nil: undefined }),
    origin: fc.option(originSpec, { nil: undefined }),
    contentType: fc.option(contentType, { nil: undefined }),
    query: fc.option(queryString, { freq: 6, nil: undefined })
  }), async ({ route: name, auth, cookie, origin, contentType, query }) => {
    const route = ROUTE[name]!
    const { value, forged } = authorization(auth, fuzzer)
    // Only forgeries at logout-all (a valid token would end the fuzzer's sessions).
    if (route.name === 'logout-all' && value !== undefined && !forged) return
    const headers: Record<string, string> = {}
    if (value !== undefined) headers.authorization = value
    if (cookie !== undefined) headers.cookie = cookieHeader(cookie, fuzzer.refreshToken)
    if (origin !== undefined) headers.origin = origin
    if (contentType !== undefined) headers['content-type'] = contentType
    // A password body that passes validation reaches the Bearer check; a valid token would then
    // cost an argon2 verification, so only the others get one.
    const body = route.name === 'password' && (forged || value === undefined) ? JSON.stringify(route.template) : '{}'
    const req: Req = { method: route.method, url: `${route.url}${query ?? ''}`, headers, ...(route.method === 'POST' ? { payload: Buffer.from(body) } : {}) }
    const answer = await send(app, stats, req)
    if (forged && route.bearer) {
      if (answer.status < 300) fail('a forged access token was accepted', req, answer.res)
      if (route.method === 'GET') expect(answer, req, 401, 'invalid_token')
    }
    const json = contentType !== undefined && JSON_TYPES.includes(contentType)
    if (json && (route.name === 'refresh' || route.name === 'logout')) {
      // The cookie never holds a live token: nothing to rotate or end (API.md §2.6, §5.7, §5.8).
      if (origin !== undefined && origin !== OWN_ORIGIN) expect(answer, req, 403, 'origin_not_allowed')
      else if (route.name === 'refresh') expect(answer, req, 401, 'invalid_refresh_token')
      else expect(answer, req, 204)
    }
  })

  await property(t, '3a. DELETE /sessions/{id} with random ids: 404 session_not_found, 414 over 1,024 code points, 400 bad encoding', n.ids, fc.record({
    id: idSpec,
    auth: fc.oneof({ weight: 4, arbitrary: fc.constant({ k: 'valid' as const } as AuthSpec) }, { weight: 1, arbitrary: authSpec }),
    query: fc.option(queryString, { freq: 8, nil: undefined })
  }), async ({ id, auth, query }) => {
    const encoded = encodedId(id)
    const { value, forged } = authorization(auth, fuzzer)
    const authorised = value !== undefined && !forged
    const req: Req = { method: 'DELETE', url: `${AUTH}/sessions/${encoded}${query ?? ''}`, headers: value === undefined ? {} : { authorization: value } }
    const answer = await send(app, stats, req)
    if (forged && answer.status < 300) fail('a forged access token was accepted', req, answer.res)
    if (!authorised && !forged) return // maybe valid, maybe not: the general rules only
    const [status, codes] = expectedForId(encoded, authorised)
    expect(answer, req, status, codes)
  })

  await property(t, '3b. unknown paths and methods: 400, 404, 405 or 414 problem documents', n.paths, unknownRequest, async ({ method, url }) => {
    const req: Req = { method, url }
    const answer = await send(app, stats, req)
    expect(answer, req, [400, 404, 405, 414], ['bad_request', 'not_found', 'method_not_allowed', 'uri_too_long'])
    if (method === 'HEAD' && answer.res.body !== '') fail('HEAD answered with a body', req, answer.res)
  })

  // 4. A user with two sessions; every batch of rejected requests aimed at them changes nothing.
  const victim = await signupAndLogin(app, { device_name: 'victim' })
  const other = await login(app, victim.email, { device_name: 'victim, other device' })
  const sid = String(decodeJwt(victim.accessToken).payload.sid)
  const current = { refreshToken: victim.refreshToken }
  const bearer = { authorization: `Bearer ${victim.accessToken}` }
  const listSessions = async () => {
    const req: Req = { method: 'GET', url: `${AUTH}/sessions`, headers: bearer }
    const answer = await send(app, stats, req)
    expect(answer, req, 200)
    return JSON.stringify((answer.res.json().sessions as Array<{ id: string }>).sort((a, b) => a.id.localeCompare(b.id)))
  }
  let snapshot = await listSessions()
  let argon2Budget = 16

  const refusedHow = fc.constantFrom('evil-origin', 'text-plain', 'form', 'extra-property', 'too-large', 'malformed', 'array', 'wrong-type', 'too-long')
  type Refused = 'evil-origin' | 'text-plain' | 'form' | 'extra-property' | 'too-large' | 'malformed' | 'array' | 'wrong-type' | 'too-long'
  const forgedToken = fc.oneof(
    fc.record({ v: fc.constant('mutated' as const), pos: fc.nat(), ch: fc.nat() }),
    fc.record({ v: fc.constant('forged' as const), s: forged86 }),
    fc.record({ v: fc.constant('text' as const), s: fc.string({ unit: 'binary', minLength: 1, maxLength: 100 }).filter((s) => codePoints(s) <= 512) })
  )
  const forgedAuth = authSpec.filter((a) => !['none', 'valid'].includes(a.k))
  const command = fc.oneof(
    { weight: 3, arbitrary: fc.record({ c: fc.constant('refresh-forged' as const), via: fc.constantFrom('body', 'cookie'), token: forgedToken }) },
    { weight: 3, arbitrary: fc.record({ c: fc.constant('refresh-refused' as const), how: refusedHow }) },
    { weight: 3, arbitrary: fc.record({ c: fc.constant('logout-forged' as const), via: fc.constantFrom('body', 'cookie'), token: forgedToken }) },
    { weight: 3, arbitrary: fc.record({ c: fc.constant('logout-refused' as const), how: refusedHow }) },
    { weight: 3, arbitrary: fc.record({ c: fc.constant('delete-random' as const), id: idSpec }) },
    { weight: 2, arbitrary: fc.record({ c: fc.constant('delete-forged-bearer' as const), auth: forgedAuth, which: fc.constantFrom('this', 'other') }) },
    { weight: 2, arbitrary: fc.record({ c: fc.constant('logout-all-refused' as const), how: fc.constantFrom('forged-bearer', 'body', 'text-plain', 'too-large'), auth: forgedAuth }) },
    { weight: 2, arbitrary: fc.record({ c: fc.constant('password-refused' as const), how: fc.constantFrom('wrong-current', 'weak-new', 'invalid-body', 'text-plain', 'forged-bearer', 'too-long-new'), auth: forgedAuth }) },
    { weight: 1, arbitrary: fc.record({ c: fc.constant('login-wrong-password' as const), withCookie: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ c: fc.constant('refresh-token-as-bearer' as const), route: fc.constantFrom('me', 'sessions', 'logout-all', 'delete-session', 'password') }) }
  )
  type Command = typeof command extends fc.Arbitrary<infer C> ? C : never

  const tokenOf = (spec: { v: 'mutated', pos: number, ch: number } | { v: 'forged' | 'text', s: string }) => {
    if (spec.v !== 'mutated') return spec.s
    const r = current.refreshToken
    const pos = spec.pos % r.length
    const choices = CHANGE_CHARS.filter((c) => c !== r[pos] && c !== 'é')
    return `${r.slice(0, pos)}${choices[spec.ch % choices.length]}${r.slice(pos + 1)}`
  }
  /** A request carrying the real refresh token that the contract refuses before any store access. */
  const refused = (url: string, how: Refused): [Req, number, string] => {
    const token = current.refreshToken
    const json = { 'content-type': 'application/json' }
    switch (how) {
      case 'evil-origin': return [{ method: 'POST', url, headers: { ...json, cookie: `refresh_token=${token}`, origin: 'https://evil.example' }, payload: Buffer.from('{}') }, 403, 'origin_not_allowed']
      case 'text-plain': return [{ method: 'POST', url, headers: { 'content-type': 'text/plain' }, payload: Buffer.from(JSON.stringify({ refresh_token: token })) }, 415, 'unsupported_media_type']
      case 'form': return [{ method: 'POST', url, headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `refresh_token=${token}` }, payload: Buffer.from(`refresh_token=${token}`) }, 415, 'unsupported_media_type']
      case 'extra-property': return [{ method: 'POST', url, headers: json, payload: Buffer.from(JSON.stringify({ refresh_token: token, extra: 1 })) }, 400, 'validation_failed']
      case 'too-large': return [{ method: 'POST', url, headers: { ...json, cookie: `refresh_token=${token}` }, payload: Buffer.from(JSON.stringify({ refresh_token: token, pad: 'a'.repeat(BODY_LIMIT) })) }, 413, 'payload_too_large']
      case 'malformed': return [{ method: 'POST', url, headers: { ...json, cookie: `refresh_token=${token}` }, payload: Buffer.from(`{"refresh_token":"${token}"`) }, 400, 'malformed_json']
      case 'array': return [{ method: 'POST', url, headers: json, payload: Buffer.from(JSON.stringify([{ refresh_token: token }])) }, 400, 'validation_failed']
      case 'wrong-type': return [{ method: 'POST', url, headers: json, payload: Buffer.from(JSON.stringify({ refresh_token: [token] })) }, 400, 'validation_failed']
      case 'too-long': return [{ method: 'POST', url, headers: { ...json, cookie: `refresh_token=${token}` }, payload: Buffer.from(JSON.stringify({ refresh_token: token.repeat(6) })) }, 400, 'validation_failed']
    }
  }

  /** A forged Authorization header for the victim ({} for none); null when the spec happens to be valid. */
  const forgedAuthorization = (spec: AuthSpec): Record<string, string> | null => {
    const { value, forged } = authorization(spec, { accessToken: victim.accessToken, refreshToken: current.refreshToken })
    if (value === undefined) return {}
    return forged ? { authorization: value } : null
  }

  const run = async (cmd: Command): Promise<void> => {
    const json = { 'content-type': 'application/json' }
    let req: Req
    let status: number | number[]
    let code: string | string[] | undefined
    switch (cmd.c) {
      case 'refresh-forged':
      case 'logout-forged': {
        const token = tokenOf(cmd.token)
        const url = `${AUTH}/${cmd.c === 'refresh-forged' ? 'refresh' : 'logout'}`
        req = cmd.via === 'body'
          ? { method: 'POST', url, headers: json, payload: Buffer.from(JSON.stringify({ refresh_token: token })) }
          : { method: 'POST', url, headers: { ...json, cookie: wire(`refresh_token=${token}`) }, payload: Buffer.from('{}') }
        ;[status, code] = cmd.c === 'refresh-forged' ? [401, 'invalid_refresh_token'] : [204, undefined]
        break
      }
      case 'refresh-refused':
      case 'logout-refused':
        ;[req, status, code] = refused(`${AUTH}/${cmd.c === 'refresh-refused' ? 'refresh' : 'logout'}`, cmd.how)
        break
      case 'delete-random': {
        const encoded = encodedId(cmd.id)
        req = { method: 'DELETE', url: `${AUTH}/sessions/${encoded}`, headers: bearer }
        ;[status, code] = expectedForId(encoded, true)
        break
      }
      case 'delete-forged-bearer': {
        const headers = forgedAuthorization(cmd.auth)
        if (headers === null) return
        const target = cmd.which === 'this' ? sid : String(decodeJwt(other.accessToken).payload.sid)
        req = { method: 'DELETE', url: `${AUTH}/sessions/${target}`, headers }
        ;[status, code] = [401, 'invalid_token']
        break
      }
      case 'logout-all-refused': {
        const url = `${AUTH}/logout-all`
        if (cmd.how === 'forged-bearer') {
          const headers = forgedAuthorization(cmd.auth)
          if (headers === null) return
          req = { method: 'POST', url, headers: { ...json, ...headers }, payload: Buffer.from('{}') }
          ;[status, code] = [401, 'invalid_token']
        } else if (cmd.how === 'body') {
          req = { method: 'POST', url, headers: { ...bearer, ...json }, payload: Buffer.from('{"all":true}') }
          ;[status, code] = [400, 'validation_failed']
        } else if (cmd.how === 'text-plain') {
          req = { method: 'POST', url, headers: { ...bearer, 'content-type': 'text/plain' }, payload: Buffer.from('{}') }
          ;[status, code] = [415, 'unsupported_media_type']
        } else {
          req = { method: 'POST', url, headers: { ...bearer, ...json }, payload: Buffer.from(`{"pad":"${'a'.repeat(BODY_LIMIT)}"}`) }
          ;[status, code] = [413, 'payload_too_large']
        }
        break
      }
      case 'password-refused': {
        const url = `${AUTH}/password`
        const body = (b: unknown) => Buffer.from(JSON.stringify(b))
        let how = cmd.how
        // Both verify the current password (argon2): a budget, then a cheap refusal instead.
        if ((how === 'wrong-current' || how === 'weak-new') && argon2Budget-- <= 0) how = 'invalid-body'
        if (how === 'wrong-current') {
          req = { method: 'POST', url, headers: { ...bearer, ...json }, payload: body({ current_password: 'not the password', new_password: NEW_PASSWORD }) }
          ;[status, code] = [[403, 429], ['invalid_credentials', 'too_many_requests']]
        } else if (how === 'weak-new') {
          // The right current password and a new one the policy refuses (API.md §3.3, §12.1).
          req = { method: 'POST', url, headers: { ...bearer, ...json }, payload: body({ current_password: PASSWORD, new_password: 'password123' }) }
          ;[status, code] = [400, 'weak_password']
        } else if (how === 'invalid-body') {
          req = { method: 'POST', url, headers: { ...bearer, ...json }, payload: body({ current_password: PASSWORD, new_password: 'short' }) }
          ;[status, code] = [400, 'validation_failed']
        } else if (how === 'text-plain') {
          req = { method: 'POST', url, headers: { ...bearer, 'content-type': 'text/plain' }, payload: body({ current_password: PASSWORD, new_password: NEW_PASSWORD }) }
          ;[status, code] = [415, 'unsupported_media_type']
        } else if (how === 'too-long-new') {
          // Over-long: refused by validation before the current password is checked.
          req = { method: 'POST', url, headers: { ...bearer, ...json }, payload: body({ current_password: PASSWORD, new_password: 'x'.repeat(129) }) }
          ;[status, code] = [400, 'validation_failed']
        } else {
          // The right current password: only the forged token stands between it and a change.
          const headers = forgedAuthorization(cmd.auth)
          if (headers === null) return
          req = { method: 'POST', url, headers: { ...json, ...headers }, payload: body({ current_password: PASSWORD, new_password: NEW_PASSWORD }) }
          ;[status, code] = [401, 'invalid_token']
        }
        break
      }
      case 'refresh-token-as-bearer': {
        // API.md §4.2: refused, and the misuse does not affect the session.
        const route = ROUTE[cmd.route]!
        const url = route.name === 'delete-session' ? `${AUTH}/sessions/${sid}` : route.url
        req = { method: route.method, url, headers: { authorization: `Bearer ${current.refreshToken}`, ...(route.method === 'POST' ? json : {}) }, ...(route.method === 'POST' ? { payload: Buffer.from(route.name === 'password' ? JSON.stringify({ current_password: PASSWORD, new_password: NEW_PASSWORD }) : '{}') } : {}) }
        ;[status, code] = [401, 'invalid_token']
        break
      }
      case 'login-wrong-password': {
        if (argon2Budget-- <= 0) return
        req = {
          method: 'POST',
          url: `${AUTH}/login`,
          headers: { ...json, ...(cmd.withCookie ? { cookie: `refresh_token=${current.refreshToken}` } : {}) },
          payload: Buffer.from(JSON.stringify({ email: victim.email, password: 'not the password' }))
        }
        ;[status, code] = [[401, 429], ['invalid_credentials', 'too_many_requests']]
        break
      }
    }
    expect(await send(app, stats, req), req, status, code)
  }

  await property(t, '4a. rejected requests aimed at a session change no store; the real refresh token still rotates', n.stores,
    fc.array(command, { minLength: 1, maxLength: 8 }), async (commands) => {
      for (const cmd of commands) await run(cmd)
      const after = await listSessions()
      if (after !== snapshot) throw new Error(`the session list changed:\n  before: ${snapshot}\n  after:  ${after}`)
      const me: Req = { method: 'GET', url: `${AUTH}/me`, headers: bearer }
      expect(await send(app, stats, me), me, 200)
      const rotate: Req = { method: 'POST', url: `${AUTH}/refresh`, headers: { 'content-type': 'application/json' }, payload: Buffer.from(JSON.stringify({ refresh_token: current.refreshToken })) }
      const answer = await send(app, stats, rotate)
      expect(answer, rotate, 200)
      const next = String(answer.res.json().refresh_token)
      if (next === current.refreshToken) fail('the refresh token did not rotate', rotate, answer.res)
      current.refreshToken = next
      snapshot = await listSessions()
    })

  const signupRefusal = fc.oneof(
    fc.record({ how: fc.constant('mutated' as const), body: jsonBody }).filter(({ body }) => materialise(ROUTE.signup!, body).surelyInvalid),
    fc.record({ how: fc.constant('weak' as const), password: fc.constantFrom('password123', 'PASSWORD123', 'qwertyuiop', '1234567890', '<email>', '<local>', 'Ada Lovelace', 'lovelace-2026', 'xx-lovelace-xx', 'ｐａｓｓｗｏｒｄ１２３') }),
    fc.record({ how: fc.constant('media-type' as const), type: fc.constantFrom(...NON_JSON_TYPES) }),
    fc.record({ how: fc.constant('too-large' as const), pad: fc.integer({ min: BODY_LIMIT, max: BODY_LIMIT + 1000 }) }),
    fc.record({ how: fc.constant('malformed' as const), keep: fc.nat() }),
    fc.record({ how: fc.constant('short-or-long' as const), password: fc.constantFrom('', 'a', 'seven77', 'x'.repeat(129), '😀'.repeat(129)) })
  )
  await property(t, '4b. rejected signups create no user', n.signups, fc.record({
    emailForm: fc.constantFrom('plain', 'padded upper case'),
    refusals: fc.array(signupRefusal, { minLength: 1, maxLength: 4 })
  }), async ({ emailForm, refusals }) => {
    const email = uniqueEmail()
    const sent = emailForm === 'plain' ? email : `  ${email.toUpperCase()} `
    const valid = { email: sent, password: PASSWORD, name: 'Ada Lovelace' }
    const json = { 'content-type': 'application/json' }
    for (const r of refusals) {
      let req: Req
      if (r.how === 'mutated') {
        const entries = entriesOf(ROUTE.signup!, r.body.mutations).map(([k, v]): [string, unknown] => [k, k === 'email' && v === 'fuzz-signup@example.test' ? sent : v])
        req = { method: 'POST', url: `${AUTH}/signup`, headers: json, payload: Buffer.from(objectText(entries)) }
      } else if (r.how === 'weak' || r.how === 'short-or-long') {
        const password = r.password === '<email>' ? email : r.password === '<local>' ? email.split('@')[0]! : r.password
        req = { method: 'POST', url: `${AUTH}/signup`, headers: json, payload: Buffer.from(JSON.stringify({ ...valid, password })) }
      } else if (r.how === 'media-type') {
        req = { method: 'POST', url: `${AUTH}/signup`, headers: { 'content-type': r.type }, payload: Buffer.from(JSON.stringify(valid)) }
      } else if (r.how === 'too-large') {
        req = { method: 'POST', url: `${AUTH}/signup`, headers: json, payload: Buffer.from(JSON.stringify({ ...valid, name: 'a'.repeat(r.pad) })) }
      } else {
        const text = JSON.stringify(valid)
        req = { method: 'POST', url: `${AUTH}/signup`, headers: json, payload: Buffer.from(text.slice(0, r.keep % text.length)) }
      }
      expect(await send(app, stats, req), req, [400, 413, 415])
    }
    // Never registered: the password of the refused signups does not log in.
    const probe: Req = { method: 'POST', url: `${AUTH}/login`, headers: json, payload: Buffer.from(JSON.stringify({ email, password: PASSWORD })) }
    stats.argon2++
    expect(await send(app, stats, probe), probe, 401, 'invalid_credentials')
  })

  await t.test('after the fuzzing: the fuzzed sessions still work', async (t) => {
    for (const [who, token] of [['victim', current.refreshToken], ['victim, other device', other.refreshToken]] as const) {
      const res = await app.inject({ method: 'POST', url: `${AUTH}/refresh`, payload: { refresh_token: token } })
      t.equal(res.statusCode, 200, `${who}: the refresh token rotates`)
    }
    const res = await app.inject({ method: 'GET', url: `${AUTH}/me`, headers: { authorization: `Bearer ${fuzzer.accessToken}` } })
    t.equal(res.statusCode, 200, "the fuzzer's access token still works")
  })
  t.comment(`${stats.requests} requests, ${stats.argon2} of them bound to an argon2 hash or verification, in ${Date.now() - started} ms`)
}

t.test('fuzz: PostgreSQL + Redis', async (t) => {
  await fuzz(t, STORE_MODES['PostgreSQL + Redis']!(), { bodies: 1200, headers: 1000, ids: 400, paths: 500, stores: 25, signups: 10 })
})

t.test('fuzz: PostgreSQL, sessions in the database', async (t) => {
  // A smaller run: the same properties against the database session store.
  await fuzz(t, STORE_MODES['PostgreSQL, sessions in the database']!(), { bodies: 250, headers: 200, ids: 150, paths: 100, stores: 6, signups: 3 })
})
