// Assertions shared by the cross-cutting HTTP tests: problem documents (API.md §2.2), security
// headers (§2.3), and raw-socket requests for what app.inject cannot send.
import net from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'

export const API_CSP = "default-src 'none'; frame-ancestors 'none'"
const PROBLEM_MEMBERS = ['code', 'detail', 'request_id', 'status', 'title', 'type']
const CODE_PATTERN = /^[A-Za-z][A-Za-z0-9_.:-]*$/

export type Headers = Record<string, string | string[] | number | undefined>

/** What a response looks like to these helpers: inject's answer or a parsed raw response. */
export interface Answer {
  statusCode: number
  headers: Headers
  body: string
}

export function header (headers: Headers, name: string): string | undefined {
  const value = headers[name.toLowerCase()]
  if (value === undefined) return undefined
  return Array.isArray(value) ? value.join(', ') : String(value)
}

/** The security headers of API.md §2.3, on any response. */
export function assertSecurityHeaders (t: Test, res: Answer, label = `${res.statusCode}`): void {
  t.equal(header(res.headers, 'x-content-type-options'), 'nosniff', `${label}: X-Content-Type-Options`)
  t.equal(header(res.headers, 'content-security-policy'), API_CSP, `${label}: Content-Security-Policy`)
  t.equal(header(res.headers, 'referrer-policy'), 'no-referrer', `${label}: Referrer-Policy`)
  t.equal(header(res.headers, 'x-powered-by'), undefined, `${label}: no X-Powered-By`)
}

export function assertNoStore (t: Test, res: Answer, label = `${res.statusCode}`): void {
  t.equal(header(res.headers, 'cache-control'), 'no-store', `${label}: Cache-Control: no-store`)
}

// What must never reach a client (API.md §2.2): stack frames, file paths, driver and runtime
// error names, connection URLs.
const LEAKS: Array<[string, RegExp]> = [
  ['stack frame', /\bat \S+ \(|\bat (?:file:|node:|\/)/],
  ['source path', /\/work\/|node_modules|\.[cm]?[jt]s:\d+|\.[cm]?[jt]s\b/],
  ['framework error code', /FST_[A-Z_]+|ERR_[A-Z_]{3,}/],
  ['driver error', /ECONN[A-Z]+|ETIMEDOUT|SQLSTATE|\bsyntax error at\b|duplicate key|violates|relation "|WRONGTYPE|NOSCRIPT/],
  ['runtime error name', /\b(?:TypeError|SyntaxError|RangeError|ReferenceError|Error):/],
  ['connection URL', /\b(?:redis|rediss|postgres|postgresql):\/\//i]
]

export function assertNoLeaks (t: Test, res: Answer, label = `${res.statusCode}`): void {
  const text = `${res.body}\n${JSON.stringify(res.headers)}`
  for (const [what, pattern] of LEAKS) t.notMatch(text, pattern, `${label}: no ${what}`)
}

export interface ProblemExpectation {
  /** A field that must be named in errors[].field and in detail. */
  field?: string
  /** When false (the default) the response must not carry Set-Cookie. */
  allowSetCookie?: boolean
}

/**
 * A problem document exactly as API.md §2.2 defines it: the media type, `status` equal to the
 * HTTP status, a stable `code`, only the documented members (`errors` only for validation and
 * weak passwords), no leaks, no Set-Cookie (§4.3).
 */
export function assertProblem (t: Test, res: Answer, status: number, code: string, expect: ProblemExpectation = {}): Record<string, unknown> {
  const label = `${status} ${code}`
  t.equal(res.statusCode, status, `${label}: HTTP status`)
  t.match(String(header(res.headers, 'content-type')), /^application\/problem\+json(\s*;.*)?$/, `${label}: problem media type`)
  let body: Record<string, unknown> = {}
  try {
    body = JSON.parse(res.body)
  } catch {
    t.fail(`${label}: body is JSON (got ${JSON.stringify(res.body.slice(0, 200))})`)
    return body
  }
  t.equal(typeof body, 'object', `${label}: body is an object`)
  t.notOk(Array.isArray(body), `${label}: body is not an array`)
  const withErrors = code === 'validation_failed' || code === 'weak_password'
  t.same(Object.keys(body).sort(), (withErrors ? [...PROBLEM_MEMBERS, 'errors'] : PROBLEM_MEMBERS).sort(), `${label}: exactly the documented members`)
  t.equal(body.status, status, `${label}: status member equals the HTTP status`)
  t.equal(body.code, code, `${label}: code`)
  t.match(String(body.code), CODE_PATTERN, `${label}: code pattern`)
  for (const member of ['type', 'title', 'detail', 'request_id']) {
    t.ok(typeof body[member] === 'string' && body[member] !== '', `${label}: ${member} is a non-empty string`)
  }
  if (withErrors) {
    const errors = body.errors as Array<Record<string, unknown>>
    t.ok(Array.isArray(errors) && errors.length > 0, `${label}: errors is a non-empty array`)
    for (const e of Array.isArray(errors) ? errors : []) {
      t.same(Object.keys(e).sort(), ['field', 'message'], `${label}: errors[] items are { field, message }`)
      t.equal(typeof e.field, 'string')
      t.equal(typeof e.message, 'string')
    }
  }
  if (expect.field !== undefined) {
    const fields = Array.isArray(body.errors) ? (body.errors as Array<{ field: unknown }>).map((e) => e.field) : []
    t.ok(fields.includes(expect.field), `${label}: errors[].field names ${expect.field} (got ${JSON.stringify(fields)})`)
    t.ok(String(body.detail).includes(expect.field), `${label}: detail names ${expect.field} (got ${JSON.stringify(body.detail)})`)
  }
  if (expect.allowSetCookie !== true) t.equal(header(res.headers, 'set-cookie'), undefined, `${label}: no Set-Cookie`)
  assertNoLeaks(t, res, label)
  return body
}

export async function listen (app: FastifyInstance): Promise<number> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return (app.server.address() as net.AddressInfo).port
}

/** Sends bytes as they are and parses the HTTP/1.1 answer (the connection is closed by either side). */
export function rawRequest (port: number, request: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    // Written, not ended: a half-closed connection may be dropped before an async handler answers.
    const socket = net.connect(port, '127.0.0.1', () => { socket.write(request) })
    socket.on('data', (d: Buffer) => chunks.push(d))
    socket.on('error', reject)
    socket.setTimeout(5000, () => socket.destroy(new Error('raw request timed out')))
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      const split = text.indexOf('\r\n\r\n')
      if (split < 0) return reject(new Error(`no HTTP response: ${JSON.stringify(text.slice(0, 200))}`))
      const [statusLine = '', ...lines] = text.slice(0, split).split('\r\n')
      const headers: Record<string, string | string[]> = {}
      for (const line of lines) {
        const colon = line.indexOf(':')
        const name = line.slice(0, colon).trim().toLowerCase()
        const value = line.slice(colon + 1).trim()
        const previous = headers[name]
        headers[name] = previous === undefined ? value : [...(Array.isArray(previous) ? previous : [previous]), value]
      }
      resolve({ statusCode: Number(statusLine.split(' ')[1]), headers, body: text.slice(split + 4) })
    })
  })
}

export function get (port: number, path: string, extraHeaders: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  const lines = Object.entries({ host: `127.0.0.1:${port}`, connection: 'close', ...extraHeaders }).map(([k, v]) => `${k}: ${v}\r\n`).join('')
  return rawRequest(port, `${method} ${path} HTTP/1.1\r\n${lines}\r\n`)
}

/** Parses one Set-Cookie header into its name, value and attributes (names as sent). */
export function parseSetCookie (text: string): { name: string, value: string, attributes: Map<string, string> } {
  const [pair = '', ...rest] = text.split(';').map((s) => s.trim())
  const eq = pair.indexOf('=')
  const attributes = new Map<string, string>()
  for (const part of rest) {
    const i = part.indexOf('=')
    attributes.set(i < 0 ? part : part.slice(0, i), i < 0 ? '' : part.slice(i + 1))
  }
  return { name: pair.slice(0, eq), value: pair.slice(eq + 1), attributes }
}

export function setCookies (res: Answer): string[] {
  const value = res.headers['set-cookie']
  if (value === undefined) return []
  return Array.isArray(value) ? value : [String(value)]
}
