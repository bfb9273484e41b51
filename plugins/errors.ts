// The one error shape of the service: RFC 9457 problem documents with a stable `code`
// (API.md §2.2). Every error, from routes, Fastify, its plugins or the HTTP parser, ends here.
import { randomUUID } from 'node:crypto'
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { ProblemBody } from '../schema/common.ts'
import { preRoutingHeaders } from './security-headers.ts'

const problems = {
  malformed_json: [400, 'Malformed JSON', 'The request body is not valid JSON.'],
  validation_failed: [400, 'Validation failed', 'The request is invalid.'],
  weak_password: [400, 'Weak password', 'The password is too easy to guess.'],
  bad_request: [400, 'Bad request', 'The request could not be read.'],
  invalid_credentials: [401, 'Invalid credentials', 'The email or password is incorrect.'],
  invalid_token: [401, 'Invalid token', 'The access token is missing, invalid or expired.'],
  invalid_refresh_token: [401, 'Invalid refresh token', 'The refresh token is missing, invalid or expired. Log in again.'],
  refresh_reused: [401, 'Refresh token reused', 'The refresh token was already used; the session has been ended. Log in again.'],
  origin_not_allowed: [403, 'Origin not allowed', 'Cookie requests from this origin are not allowed.'],
  not_found: [404, 'Not found', 'No such resource.'],
  session_not_found: [404, 'Session not found', 'No such session.'],
  request_timeout: [408, 'Request timeout', 'The request was not received in time.'],
  email_taken: [409, 'Email taken', 'An account with this email already exists.'],
  refresh_in_progress: [409, 'Refresh in progress', 'This refresh token was already rotated twice moments ago; use the newest token.'],
  payload_too_large: [413, 'Payload too large', 'The request body exceeds 1 MiB.'],
  uri_too_long: [414, 'URI too long', 'A path segment is too long.'],
  unsupported_media_type: [415, 'Unsupported media type', 'Request bodies must be JSON (Content-Type: application/json).'],
  too_many_requests: [429, 'Too many requests', 'Too many requests; retry later.'],
  request_header_fields_too_large: [431, 'Request header fields too large', 'The request headers are too large.'],
  internal_error: [500, 'Internal error', 'An unexpected error occurred.'],
  service_unavailable: [503, 'Service unavailable', 'A backing service is unavailable; retry shortly.']
} as const satisfies Record<string, readonly [number, string, string]>

export type ProblemCode = keyof typeof problems

export interface FieldError { field: string, message: string }

interface ProblemOptions {
  /** A status other than the code's usual one (403 invalid_credentials at password change). */
  status?: number
  detail?: string
  errors?: FieldError[]
  headers?: Record<string, string>
  /** Extra members of the body, declared by the route's response schema (e.g. readiness `checks`). */
  extra?: Record<string, unknown>
  cause?: unknown
}

export class ProblemError extends Error {
  readonly code: ProblemCode
  readonly statusCode: number
  readonly options: ProblemOptions

  constructor (code: ProblemCode, options: ProblemOptions = {}) {
    super(options.detail ?? problems[code][2], { cause: options.cause })
    this.name = 'ProblemError'
    this.code = code
    this.statusCode = options.status ?? problems[code][0]
    this.options = options
  }
}

/** A dependency (database, session store) failed: 503, with the cause logged, never sent. */
export function unavailable (cause: unknown): ProblemError {
  return cause instanceof ProblemError ? cause : new ProblemError('service_unavailable', { cause })
}

/** The document of API.md §2.2 for an error; `detail` is always text the service wrote. */
export function problemBody (error: ProblemError, requestId: string): ProblemBody {
  const [, title, genericDetail] = problems[error.code]
  const status = error.statusCode
  return {
    type: 'about:blank',
    title,
    status,
    detail: error.options.detail ?? genericDetail,
    code: error.code,
    ...(error.options.errors ? { errors: error.options.errors } : {}),
    request_id: requestId,
    ...error.options.extra
  }
}

// A field name from the client is echoed only when it is plainly a name (API.md §2.1).
const ECHOABLE_FIELD = /^[A-Za-z0-9_]{1,64}$/

interface AjvError { keyword: string, instancePath: string, params: Record<string, unknown>, parentSchema?: { format?: string } }

function fieldError (e: AjvError): FieldError {
  const topLevel = e.instancePath.split('/')[1]
  switch (e.keyword) {
    case 'required':
      return { field: String(e.params.missingProperty), message: 'is required' }
    case 'additionalProperties': {
      const name = String(e.params.additionalProperty)
      return { field: ECHOABLE_FIELD.test(name) ? name : '(unknown)', message: 'is not an allowed property' }
    }
    case 'type':
      return { field: topLevel ?? '(body)', message: `must be ${e.params.type === 'object' ? 'a JSON object' : `of type ${String(e.params.type)}`}` }
    case 'minLength':
      return { field: topLevel ?? '(body)', message: `must be at least ${Number(e.params.limit)} characters long` }
    case 'maxLength':
      return { field: topLevel ?? '(body)', message: `must be at most ${Number(e.params.limit)} characters long` }
    case 'format':
      return { field: topLevel ?? '(body)', message: e.params.format === 'email' ? 'is not a valid email address' : 'has an invalid format' }
    case 'pattern':
      return { field: topLevel ?? '(body)', message: 'contains characters that are not allowed' }
    default:
      return { field: topLevel ?? '(body)', message: 'is invalid' }
  }
}

export function validationProblem (errors: FieldError[]): ProblemError {
  const detail = errors.map((e) => `${e.field} ${e.message}`).join('; ')
  return new ProblemError('validation_failed', { detail, errors })
}

const STATUS_TO_CODE: Record<number, ProblemCode> = {
  400: 'bad_request',
  404: 'not_found',
  408: 'request_timeout',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  429: 'too_many_requests',
  431: 'request_header_fields_too_large',
  503: 'service_unavailable'
}

/** Narrows anything thrown into a ProblemError; unknown failures become a generic 500. */
export function toProblem (error: unknown): ProblemError {
  if (error instanceof ProblemError) return error
  const e = error as Partial<FastifyError> | null
  if (e && Array.isArray(e.validation)) {
    return validationProblem((e.validation as unknown as AjvError[]).map(fieldError))
  }
  if (e?.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || e?.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return new ProblemError('malformed_json')
  }
  const mapped = typeof e?.statusCode === 'number' ? STATUS_TO_CODE[e.statusCode] : undefined
  return mapped ? new ProblemError(mapped, { cause: error }) : new ProblemError('internal_error', { cause: error })
}

function sendProblem (error: ProblemError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const level = error.statusCode >= 500 ? (error.code === 'internal_error' ? 'error' : 'warn') : 'info'
  if (error.statusCode >= 500) {
    request.log[level]({ err: error.options.cause ?? error, code: error.code }, `answered ${error.statusCode} ${error.code}`)
  } else if (error.options.cause !== undefined) {
    request.log[level]({ code: error.code }, `answered ${error.statusCode} ${error.code}`)
  }
  if (error.options.headers) reply.headers(error.options.headers)
  return reply
    .code(error.statusCode)
    .type('application/problem+json')
    .send(problemBody(error, request.id))
}

/** For Fastify's `frameworkErrors`: errors raised before routing (malformed URL). No hooks run for these. */
export function frameworkErrors (error: unknown, request: FastifyRequest, reply: FastifyReply): void {
  reply.headers(preRoutingHeaders())
  sendProblem(toProblem(error), request, reply)
}

/** For Fastify's `clientErrorHandler`: requests the HTTP parser could not read. Written raw to the socket. */
export function clientErrorHandler (error: NodeJS.ErrnoException, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const code: ProblemCode = error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    ? 'request_timeout'
    : error.code === 'HPE_HEADER_OVERFLOW' ? 'request_header_fields_too_large' : 'bad_request'
  const problem = new ProblemError(code)
  const body = JSON.stringify(problemBody(problem, randomUUID()))
  const headers = {
    ...preRoutingHeaders(),
    'content-type': 'application/problem+json',
    'content-length': String(Buffer.byteLength(body)),
    connection: 'close'
  }
  if (socket.writable) {
    const head = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')
    socket.write(`HTTP/1.1 ${problem.statusCode} ${STATUS_CODES[problem.statusCode]}\r\n${head}\r\n${body}`)
  }
  socket.destroy()
}

async function errorsPlugin (app: FastifyInstance): Promise<void> {
  app.setErrorHandler((error, request, reply) => sendProblem(toProblem(error), request, reply))

  // 404s never reach the error handler.
  app.setNotFoundHandler((request, reply) => sendProblem(new ProblemError('not_found'), request, reply))

  // API.md §4.3: no error response sets a cookie, whatever a handler did before failing.
  app.addHook('onSend', async (_request, reply, payload) => {
    if (reply.statusCode >= 400) reply.removeHeader('set-cookie')
    return payload
  })
}

export default fp(errorsPlugin, { name: 'errors', fastify: '5.x' })
