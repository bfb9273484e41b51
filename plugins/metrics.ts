// Prometheus metrics (API.md §12.3), through prom-client. Each app has its own Registry (no
// global one), so several apps in one process never share or double-register metrics.
// - HTTP: every routed response is counted and timed by method, route template (never the
//   raw URL) and status code; requests that match no route are labelled `unmatched`.
// - Auth events: `authEvents.count` is called by audit() (lib/audit.ts), the one place every
//   auth event goes through; the table below maps each event to its counter. Labels are fixed
//   words: never an email, id or token.
// With METRICS=false no registry exists and `authEvents.count` does nothing; the route that
// serves the registry (routes/metrics.ts) is registered only with METRICS=true.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client'
import type { AuditDetails, AuditEvent } from '../lib/audit.ts'

export interface AuthEvents {
  count (event: AuditEvent, outcome: AuditDetails['outcome']): void
}

declare module 'fastify' {
  interface FastifyInstance {
    /** This app's metrics, or null when METRICS=false. */
    metricsRegistry: Registry | null
    authEvents: AuthEvents
  }
}

export const UNMATCHED_ROUTE = 'unmatched'

function authEventCounters (registry: Registry): AuthEvents {
  const registers = [registry]
  const signups = new Counter({ name: 'auth_signups_total', help: 'Signups, by outcome (failed: the email was taken)', labelNames: ['outcome'], registers })
  const logins = new Counter({ name: 'auth_logins_total', help: 'Password logins, by outcome (failed: invalid credentials; throttled ones are in auth_rate_limited_total)', labelNames: ['outcome'], registers })
  const refreshes = new Counter({ name: 'auth_refreshes_total', help: 'Successful refresh-token rotations', registers })
  const reuse = new Counter({ name: 'auth_refresh_reuse_detected_total', help: 'Refresh tokens presented again after their grace window (the session is ended)', registers })
  const sessionsEnded = new Counter({
    name: 'auth_sessions_ended_total',
    help: 'Events that ended sessions, by reason: logout, logout_all (all of a user\'s sessions, counted once), deleted (DELETE /sessions/{id}), reuse_detected',
    labelNames: ['reason'],
    registers
  })
  const passwordChanges = new Counter({ name: 'auth_password_changes_total', help: 'Password changes, by outcome (failed: wrong current password)', labelNames: ['outcome'], registers })
  const rateLimited = new Counter({
    name: 'auth_rate_limited_total',
    help: 'Requests answered 429, by limiter: failed_login (LOGIN_FAIL_MAX) or ip (RATE_LIMIT_IP_PER_MINUTE)',
    labelNames: ['limiter'],
    registers
  })

  const outcome = (value: AuditDetails['outcome']) => ({ outcome: value === 'ok' ? 'succeeded' : 'failed' })
  // Every audit event, and what it counts: a new event does not compile until it is listed.
  const byEvent: Record<AuditEvent, (value: AuditDetails['outcome']) => void> = {
    signup: (value) => signups.inc(outcome(value)),
    login: (value) => logins.inc(outcome(value)),
    refresh: () => refreshes.inc(),
    reuse_detected: () => {
      reuse.inc()
      sessionsEnded.inc({ reason: 'reuse_detected' })
    },
    logout: () => sessionsEnded.inc({ reason: 'logout' }),
    logout_all: () => sessionsEnded.inc({ reason: 'logout_all' }),
    session_ended: () => sessionsEnded.inc({ reason: 'deleted' }),
    password_changed: (value) => passwordChanges.inc(outcome(value)),
    throttled: () => rateLimited.inc({ limiter: 'failed_login' }),
    rate_limited: () => rateLimited.inc({ limiter: 'ip' })
  }

  // Every series exists from the start at 0, so rates and alerts work before the first event.
  for (const counter of [signups, logins, passwordChanges]) {
    counter.inc({ outcome: 'succeeded' }, 0)
    counter.inc({ outcome: 'failed' }, 0)
  }
  for (const reason of ['logout', 'logout_all', 'deleted', 'reuse_detected']) sessionsEnded.inc({ reason }, 0)
  for (const limiter of ['failed_login', 'ip']) rateLimited.inc({ limiter }, 0)

  return { count: (event, value) => byEvent[event](value) }
}

async function metricsPlugin (app: FastifyInstance): Promise<void> {
  if (!app.config.METRICS) {
    app.decorate('metricsRegistry', null)
    app.decorate('authEvents', { count: () => {} })
    return
  }
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })

  const labelNames = ['method', 'route', 'status_code'] as const
  const requests = new Counter({ name: 'http_requests_total', help: 'HTTP responses, by method, route template and status code', labelNames, registers: [registry] })
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from receiving a request to finishing its response, by method, route template and status code',
    labelNames,
    registers: [registry]
  })

  app.decorate('metricsRegistry', registry)
  app.decorate('authEvents', authEventCounters(registry))

  // onResponse runs for routed requests and for the 404 handler; responses written before
  // routing (malformed URLs, unreadable requests) run no hooks and are not counted.
  app.addHook('onResponse', async (request, reply) => {
    const labels = {
      method: request.method,
      route: request.is404 ? UNMATCHED_ROUTE : request.routeOptions.url ?? UNMATCHED_ROUTE,
      status_code: String(reply.statusCode)
    }
    requests.inc(labels)
    duration.observe(labels, reply.elapsedTime / 1000)
  })
}

/** Decorates `metricsRegistry` and `authEvents`; with METRICS=true, counts and times every response. */
export default fp(metricsPlugin, { name: 'metrics', fastify: '5.x', decorators: { fastify: ['config'] } })
