// HTTP helpers for the dependency-failure tests: a real listening server, fetch with a hard time
// bound, wall-time measurement, and the checks every 503 of API.md §2.2 and §11 must pass.
import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import { request } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'

export interface Answer {
  status: number
  contentType: string
  body: string
  setCookie: string[]
  /** Wall time from sending the request to the end of the body. */
  ms: number
  json (): Record<string, unknown>
}

export interface CallOptions {
  json?: unknown
  token?: string
  cookie?: string
  /** The request is aborted (and the test fails) after this long. */
  timeoutMs?: number
}

/** Listens on a free port of 127.0.0.1 and returns the base URL. */
export async function listen (app: FastifyInstance): Promise<string> {
  return await app.listen({ port: 0, host: '127.0.0.1' })
}

/**
 * One request on its own connection (no keep-alive pool, so no client socket outlives it and
 * none holds up the server's close). Rejects when no answer came within `timeoutMs`.
 */
export function call (base: string, method: string, path: string, options: CallOptions = {}): Promise<Answer> {
  const headers: Record<string, string> = { connection: 'close' }
  const payload = options.json === undefined ? undefined : JSON.stringify(options.json)
  if (payload !== undefined) {
    headers['content-type'] = 'application/json'
    headers['content-length'] = String(Buffer.byteLength(payload))
  }
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
  if (options.cookie !== undefined) headers.cookie = options.cookie
  const timeoutMs = options.timeoutMs ?? 15_000
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, base), { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('error', fail)
      res.on('end', () => {
        clearTimeout(timer)
        const body = Buffer.concat(chunks).toString('utf8')
        const setCookie = res.headers['set-cookie'] ?? []
        resolve({
          status: res.statusCode ?? 0,
          contentType: String(res.headers['content-type'] ?? ''),
          body,
          setCookie,
          ms: Math.round(performance.now() - started),
          json: () => {
            try {
              const value: unknown = JSON.parse(body)
              return typeof value === 'object' && value !== null ? value as Record<string, unknown> : {}
            } catch {
              return {}
            }
          }
        })
      })
    })
    function fail (error: Error) {
      clearTimeout(timer)
      reject(error)
    }
    const timer = setTimeout(() => {
      const error = new Error(`${method} ${path}: no answer within ${timeoutMs} ms`)
      error.name = 'TimeoutError'
      req.destroy(error)
    }, timeoutMs)
    req.on('error', fail)
    req.end(payload)
  })
}

// Text that must never reach a client (API.md §2.2): driver errors, connection URLs, stacks.
const LEAKS: Array<[string, RegExp]> = [
  ['ECONNREFUSED', /ECONNREFUSED/i],
  ['other socket error codes', /ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN/],
  ['ioredis "Connection is closed"', /Connection is closed/i],
  ['ioredis "Stream isn\'t writeable"', /Stream isn't writeable|enableOfflineQueue/i],
  ['ioredis timeouts / retries', /Command timed out|timed out|MaxRetriesPerRequest|Reached the max retries/i],
  ['Redis reply errors', /NOSCRIPT|LOADING|READONLY|MISCONF|BUSY /],
  ['driver names', /ioredis|postgres\.js|drizzle/i],
  ['connection URLs', /redis:\/\/|rediss:\/\/|postgres(ql)?:\/\//i],
  ['SQL text or SQLSTATE', /\bselect\b.*\bfrom\b|\binsert into\b|SQLSTATE|\bsqlstate\b|"users"/i],
  ['stack traces', /"stack"|\n\s+at |\bat [\w.<>]+ \(|\.(ts|js|mjs):\d+/],
  ['error class names', /\b(TypeError|ReferenceError|AggregateError|ReplyError|PostgresError|DrizzleQueryError)\b/]
]

export function assertNoDriverText (t: Test, answer: Answer, label: string): void {
  const leaked = LEAKS.filter(([, pattern]) => pattern.test(answer.body)).map(([name]) => name)
  t.same(leaked, [], `${label}: no driver text in the body`, { body: answer.body })
}

/** A 503 `service_unavailable` problem document without tokens, cookies or driver text, within `limitMs`. */
export function assertUnavailable (t: Test, answer: Answer, limitMs: number, label: string): void {
  t.equal(answer.status, 503, `${label}: 503`, { body: answer.body })
  t.match(answer.contentType, /^application\/problem\+json/, `${label}: problem+json`)
  const body = answer.json()
  t.equal(body.code, 'service_unavailable', `${label}: code service_unavailable`)
  t.equal(body.status, 503, `${label}: status member 503`)
  t.notOk('access_token' in body, `${label}: no access_token`)
  t.notOk('refresh_token' in body, `${label}: no refresh_token`)
  t.same(answer.setCookie, [], `${label}: no Set-Cookie`)
  t.ok(answer.ms < limitMs, `${label}: answered in ${answer.ms} ms (limit ${limitMs} ms)`)
  assertNoDriverText(t, answer, label)
}

export interface Polled {
  answer: Answer
  /** Time from the start of polling to the start of the request that succeeded (or gave up). */
  ms: number
  /** Statuses answered before the final one. */
  interim: number[]
}

/** Repeats `attempt` until `done` says so or `limitMs` has passed; bounded, never endless. */
export async function pollUntil (
  limitMs: number,
  attempt: () => Promise<Answer>,
  done: (answer: Answer) => boolean,
  intervalMs = 200
): Promise<Polled> {
  const started = performance.now()
  const interim: number[] = []
  for (;;) {
    const before = performance.now()
    const answer = await attempt()
    if (done(answer) || before - started >= limitMs) {
      return { answer, ms: Math.round(before - started), interim }
    }
    interim.push(answer.status)
    await sleep(intervalMs)
  }
}

/** Timings collected by a test file, printed as one comment at its end. */
export class Timings {
  private readonly rows: string[] = []
  add (label: string, ms: number): void { this.rows.push(`${label}: ${ms} ms`) }
  report (t: Test): void { t.comment(`timings\n${this.rows.join('\n')}`) }
}
