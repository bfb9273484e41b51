// CORS (API.md §2.5) through @fastify/cors, asked per request because the contract differs
// from its defaults: credentials are never sent in wildcard mode, an unlisted origin gets no
// CORS headers, a non-preflight OPTIONS is a 404 that still carries CORS headers, and
// `Vary: Origin` is always sent. corsHeaders() gives responses written before routing (no
// hooks run there) the same headers from the same decision.
import cors, { type FastifyCorsOptions } from '@fastify/cors'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.ts'

const EXPOSED_HEADERS = 'Retry-After, WWW-Authenticate'

/** How an Origin header is treated: null when there is none. */
function decide (allowed: Config['CORS_ORIGINS'], origin: string | undefined): 'wildcard' | 'listed' | 'unlisted' | null {
  if (origin === undefined) return null
  if (allowed === '*') return 'wildcard'
  return allowed.includes(origin) ? 'listed' : 'unlisted'
}

export function corsHeaders (allowed: Config['CORS_ORIGINS'], origin: string | undefined): Record<string, string> {
  const decision = decide(allowed, origin)
  if (decision === 'wildcard') return { vary: 'Origin', 'access-control-allow-origin': '*', 'access-control-expose-headers': EXPOSED_HEADERS }
  if (decision === 'listed' && origin !== undefined) {
    return { vary: 'Origin', 'access-control-allow-origin': origin, 'access-control-allow-credentials': 'true', 'access-control-expose-headers': EXPOSED_HEADERS }
  }
  return { vary: 'Origin' }
}

async function corsPlugin (app: FastifyInstance): Promise<void> {
  const allowed = app.config.CORS_ORIGINS
  const shared = { methods: 'GET, POST, DELETE, OPTIONS', allowedHeaders: 'Authorization, Content-Type', strictPreflight: false }

  const delegator = (request: FastifyRequest, callback: (error: Error | null, options: FastifyCorsOptions) => void) => {
    const origin = request.headers.origin
    const decision = decide(allowed, origin)
    if (decision === null) return callback(null, { origin: false })
    // An OPTIONS without Access-Control-Request-Method is not a preflight: it gets the CORS
    // headers of any request, then its 404 from the router.
    const preflight = request.method !== 'OPTIONS' || request.headers['access-control-request-method'] !== undefined
    if (decision === 'unlisted') {
      // Preflights still get their 204, without Allow-Origin/Credentials/Expose headers.
      return callback(null, { ...shared, preflight, origin: allowed, credentials: false })
    }
    callback(null, {
      ...shared,
      preflight,
      origin: decision === 'listed' ? origin : '*',
      credentials: decision === 'listed',
      exposedHeaders: EXPOSED_HEADERS
    })
  }
  await app.register(cors, { delegator })
}

export default fp(corsPlugin, { name: 'cors', fastify: '5.x', decorators: { fastify: ['config'] } })
