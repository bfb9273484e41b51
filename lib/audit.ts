// Audit events (API.md §12.4): one structured log line per auth event, with who, from where
// and the outcome. Never a password, token, cookie or hash: only the fields below are written.
// Each event is also counted for GET /metrics (plugins/metrics.ts, API.md §12.3).
import type { FastifyRequest } from 'fastify'

export type AuditEvent =
  | 'signup' | 'login' | 'refresh' | 'reuse_detected' | 'logout' | 'logout_all'
  | 'session_ended' | 'password_changed' | 'throttled' | 'rate_limited'

export interface AuditDetails {
  outcome: 'ok' | 'failed' | 'denied'
  userId?: string | null
  sessionId?: string | null
  /** The normalised email attempted, for failed and throttled logins. */
  email?: string
  /** A stable code saying why, e.g. the problem code answered. */
  reason?: string
}

const MAX_USER_AGENT_LENGTH = 512

export function truncateUserAgent (userAgent: string | undefined): string | null {
  if (userAgent === undefined) return null
  const codePoints = [...userAgent]
  return codePoints.length > MAX_USER_AGENT_LENGTH ? codePoints.slice(0, MAX_USER_AGENT_LENGTH).join('') : userAgent
}

export function audit (request: FastifyRequest, event: AuditEvent, details: AuditDetails): void {
  request.server.authEvents.count(event, details.outcome)
  request.log.info({
    event,
    outcome: details.outcome,
    user_id: details.userId ?? null,
    session_id: details.sessionId ?? null,
    ip: request.ip,
    user_agent: truncateUserAgent(request.headers['user-agent']),
    ...(details.email !== undefined ? { email: details.email } : {}),
    ...(details.reason !== undefined ? { reason: details.reason } : {})
  }, `audit: ${event} ${details.outcome}`)
}
