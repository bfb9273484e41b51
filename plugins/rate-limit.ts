// Rate limiting (API.md §8), with counters in the session store so every instance shares them.
// - `ipRateLimit`: RATE_LIMIT_IP_PER_MINUTE requests per client address and minute to the
//   routes of the scope it is registered in, counted in `onRequest` (before the body is read),
//   through @fastify/rate-limit with the session store's counters as its store.
// - decorates `loginThrottle`: the failed-login throttle, keyed by email + client address
//   (LOGIN_FAIL_MAX) and by email alone (5 × LOGIN_FAIL_MAX). The second key stops guessing
//   spread over many addresses; the first, lower one means a stranger's failures from one
//   address block that address only, and the owner logs in from elsewhere (OWASP ASVS 5.0
//   V6.3, "account lockout" without a permanent lock). Windows end by themselves.
// The per-IP limit fails open: when the store is down the request goes on and meets the 503 of
// its own store access. A login or password change needs the store anyway, so it answers 503
// before any password is checked. After a failure the per-IP counters are skipped for a
// moment, so a store that hangs costs one timeout, not two, within the 5 s of API.md §9.
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { audit } from '../lib/audit.ts'
import { clientAddress } from '../lib/client-address.ts'
import type { CounterStore } from '../sessions/store.ts'
import { ProblemError } from './errors.ts'

declare module 'fastify' {
  interface FastifyInstance {
    loginThrottle: ReturnType<typeof createLoginThrottle>
    ipCounters: ReturnType<typeof failOpen>
  }
}

const EMAIL_FACTOR = 5

/** 429 too_many_requests with Retry-After in whole seconds, at least 1 (API.md §8). */
export function tooManyRequests (ttlMs: number): ProblemError {
  return new ProblemError('too_many_requests', { headers: { 'retry-after': String(Math.max(1, Math.ceil(ttlMs / 1000))) } })
}

/**
 * The counters, failing open: on a store failure, `fallback` now, and no store calls for
 * `skipMs` after it (so a hung store costs a request one timeout, not one per limiter).
 */
function failOpen (counters: CounterStore, log: FastifyInstance['log'], skipMs: number) {
  let skipUntil = 0
  return async <T>(work: (counters: CounterStore) => Promise<T>, fallback: T): Promise<T> => {
    if (Date.now() < skipUntil) return fallback
    try {
      return await work(counters)
    } catch (error) {
      skipUntil = Date.now() + skipMs
      log.warn({ err: error }, 'Rate-limit counters unavailable; not limiting')
      return fallback
    }
  }
}

function createLoginThrottle (counted: ReturnType<typeof failOpen>, max: number, windowMs: number) {
  const limits = (email: string, request: FastifyRequest) => [
    { key: `login:${email}|${clientAddress(request.ip)}`, limit: max },
    { key: `login:${email}`, limit: EMAIL_FACTOR * max }
  ]
  return {
    /**
     * Before a password is checked: counts the attempt as a failure in advance and returns 0,
     * or, when the email is throttled for this client, counts nothing and returns the time
     * left. Counting first makes the limit hold under concurrency: at most LOGIN_FAIL_MAX
     * guesses are ever checked, however many arrive at once. Throws 503 when the counters
     * cannot be reached: checking the password anyway would answer uncounted guesses 401
     * (and the right one 503) for as long as the store is down.
     */
    attempt: async (email: string, request: FastifyRequest): Promise<number> => {
      const wait = await counted((counters) => counters.reserve(`login:${email}`, limits(email, request), windowMs), null)
      if (wait === null) throw new ProblemError('service_unavailable')
      return wait
    },
    /** The attempt ended before its password was judged (an outage): it does not count. */
    release: (email: string, request: FastifyRequest): Promise<void> => counted(async (counters) => {
      await counters.release(`login:${email}`, limits(email, request).map(({ key }) => key))
    }, undefined),
    /** A correct password: the attempt counted in advance and earlier failures are cleared. */
    succeeded: (email: string, request: FastifyRequest): Promise<void> => counted(async (counters) => {
      await counters.clear(`login:${email}`, limits(email, request).map(({ key }) => key))
    }, undefined)
  }
}

async function rateLimitPlugin (app: FastifyInstance): Promise<void> {
  const { config } = app
  // Each limiter on its own: a slow per-IP count must not turn logins into 503s. The per-IP
  // limit steps aside for a second after a failure; the throttle asks the store every time, as
  // its failure ends the request at once (503) and a login must work as soon as the store does.
  app.decorate('ipCounters', failOpen(app.sessions.counters, app.log, 1000))
  app.decorate('loginThrottle', createLoginThrottle(failOpen(app.sessions.counters, app.log, 0), config.LOGIN_FAIL_MAX, config.LOGIN_FAIL_WINDOW_SECONDS * 1000))
}

/** Decorates `loginThrottle` (and `ipCounters`, the per-IP limit's fail-open counters). */
export const rateLimits = fp(rateLimitPlugin, { name: 'rate-limits', fastify: '5.x', dependencies: ['sessions'] })

async function ipRateLimitPlugin (app: FastifyInstance): Promise<void> {
  const max = app.config.RATE_LIMIT_IP_PER_MINUTE
  if (max === 0) return
  const counted = app.ipCounters
  // @fastify/rate-limit's store interface, over the session store's counters. Failures are
  // absorbed by `counted` (count 0: not limited).
  class SessionStoreCounters {
    incr (key: string, done: (error: Error | null, result?: { current: number, ttl: number }) => void, timeWindow: number): void {
      counted(async (counters) => {
        const { count, ttlMs } = await counters.hit(`ip:${key}`, timeWindow)
        return { current: count, ttl: ttlMs }
      }, { current: 0, ttl: timeWindow }).then((result) => done(null, result), done)
    }

    child () {
      return this
    }
  }
  await app.register(rateLimit, {
    max,
    timeWindow: 60_000,
    hook: 'onRequest',
    store: SessionStoreCounters as never,
    keyGenerator: (request) => clientAddress(request.ip),
    // Only Retry-After: responses carry only what API.md defines (§2.2).
    addHeaders: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false, 'retry-after': false },
    addHeadersOnExceeding: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false },
    onExceeded: (request) => { audit(request, 'rate_limited', { outcome: 'denied', reason: 'too_many_requests' }) },
    errorResponseBuilder: (_request, context) => tooManyRequests(context.ttl)
  })
}

export const ipRateLimit = fp(ipRateLimitPlugin, { name: 'ip-rate-limit', fastify: '5.x', dependencies: ['rate-limits'] })
