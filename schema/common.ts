// Shared TypeBox schemas and the data rules of API.md §3 that JSON Schema alone cannot state.
import { Type, type Static } from 'typebox'

/**
 * API.md §3.1: trim ASCII whitespace, refuse anything outside printable ASCII before any case
 * mapping (so no Unicode folds into ASCII), lower-case, then check the shape. Returns the
 * normalised address, or null when it is not acceptable. Registered as the `email` format, so
 * validation and normalisation cannot disagree.
 */
export function normalizeEmail (raw: string): string | null {
  const trimmed = raw.replace(/^[ \t\n\r]+/, '').replace(/[ \t\n\r]+$/, '')
  if (!/^[\x21-\x7e]+$/.test(trimmed)) return null
  const email = trimmed.toLowerCase()
  if (email.length > 254) return null
  const parts = email.split('@')
  if (parts.length !== 2) return null
  const [local = '', domain = ''] = parts
  if (!/^[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}$/.test(local)) return null
  if (local.startsWith('.') || local.endsWith('.') || local.includes('..')) return null
  const labels = domain.split('.')
  return labels.length >= 2 && labels.every((l) => /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(l))
    ? email
    : null
}

export const EmailSchema = Type.String({
  format: 'email',
  maxLength: 320,
  description: 'Email address; surrounding whitespace is ignored and it is stored lower-cased',
  examples: ['ada@example.com']
})

// API.md §3.2: at least one non-whitespace character; no control (Cc) or format (Cf)
// characters except ZWNJ/ZWJ, no unpaired surrogates, no line/paragraph separators.
// Ajv compiles patterns with the `u` flag, so \p{..} classes and lone surrogates work.
const DISPLAY_TEXT = '^(?!\\s*$)(?:[^\\p{Cc}\\p{Cf}\\p{Cs}\\u2028\\u2029]|[\\u200C\\u200D])+$'

export const NameSchema = Type.String({ minLength: 1, maxLength: 100, pattern: DISPLAY_TEXT, examples: ['Ada Lovelace'] })
export const DeviceNameSchema = Type.String({ minLength: 1, maxLength: 100, pattern: DISPLAY_TEXT, examples: ["Ada's phone"] })

export const UserIdSchema = Type.String({ format: 'uuid', description: 'User id (canonical lower-case UUID)' })
export const TimestampSchema = Type.String({ format: 'date-time', description: 'ISO 8601 UTC with milliseconds' })

const FieldErrorSchema = Type.Object({ field: Type.String(), message: Type.String() })

const problemMembers = {
  type: Type.String({ description: 'URI reference of the problem type' }),
  title: Type.String(),
  status: Type.Integer({ description: 'The HTTP status code' }),
  detail: Type.String(),
  code: Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_.:-]*$', description: 'Stable machine-readable error code' }),
  errors: Type.Optional(Type.Array(FieldErrorSchema)),
  request_id: Type.String({ description: 'Id under which the request is logged' })
}

export const ProblemSchema = Type.Object(problemMembers, {
  $id: 'Problem',
  description: 'RFC 9457 problem document (application/problem+json)'
})
export type ProblemBody = Static<typeof ProblemSchema> & Record<string, unknown>

const StoreStateSchema = Type.Union([Type.Literal('up'), Type.Literal('down')])
export const ChecksSchema = Type.Object({ postgres: StoreStateSchema, redis: Type.Optional(StoreStateSchema) })

export const ReadinessProblemSchema = Type.Object({ ...problemMembers, checks: ChecksSchema }, {
  $id: 'ReadinessProblem',
  description: 'Problem document of a failed readiness check, with the state of each store'
})

/** A response of media type application/problem+json (RFC 9457), as Fastify and OpenAPI read it. */
export function problemResponse (ref: 'Problem' | 'ReadinessProblem' = 'Problem') {
  return {
    description: 'Problem document (RFC 9457)',
    content: { 'application/problem+json': { schema: Type.Ref(ref) } }
  }
}

/** Response schemas for the error statuses a route can send, all the shared problem document. */
export function problemResponses (...statuses: number[]): Record<number, ReturnType<typeof problemResponse>> {
  return Object.fromEntries(statuses.map((s) => [s, problemResponse()]))
}
