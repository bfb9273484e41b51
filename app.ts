// Builds the service from a Config. The only place that knows the order of plugins and routes.
import { randomUUID } from 'node:crypto'
import { Server } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import cookie from '@fastify/cookie'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { pino } from 'pino'
import ajvFormats from 'ajv-formats'
import { usesRedis, type Config } from './config.ts'
import { requestPath } from './lib/request-path.ts'
import authPlugin from './plugins/auth.ts'
import corsPlugin, { corsHeaders } from './plugins/cors.ts'
import dbPlugin, { type DbPluginOptions } from './plugins/db.ts'
import errorsPlugin, { clientErrorHandler, frameworkErrors, ProblemError } from './plugins/errors.ts'
import metricsPlugin from './plugins/metrics.ts'
import openapiPlugin from './plugins/openapi.ts'
import { rateLimits } from './plugins/rate-limit.ts'
import redisPlugin from './plugins/redis.ts'
import securityHeaders from './plugins/security-headers.ts'
import sessionsPlugin from './plugins/sessions.ts'
import authRoutes, { AUTH_PREFIX } from './routes/auth.ts'
import healthRoutes from './routes/health.ts'
import metricsRoutes from './routes/metrics.ts'
import { normalizeEmail, ProblemSchema, ReadinessProblemSchema } from './schema/common.ts'
import { SessionSchema } from './schema/auth.ts'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

export interface BuildOptions {
  /** The pino logger to use; by default one is made from LOG_LEVEL. */
  logger?: FastifyBaseLogger
  db?: DbPluginOptions
}

export const BODY_LIMIT = 1_048_576

// How long open connections may still bring requests (answered 503) after shutdown begins.
const SHUTDOWN_DRAIN_MS = 1000

function openConnections (server: Server): Promise<number> {
  return new Promise((resolve) => server.getConnections((error, count) => resolve(error ? 0 : count)))
}

// Secrets never reach the logs, whatever a future serializer includes.
export const LOG_REDACT = [
  'req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]',
  '*.password', '*.current_password', '*.new_password', '*.refresh_token', '*.access_token', '*.token'
]

// The `email` format is our normaliser (API.md §3.1), so validation and storage agree.
function addEmailFormat (ajv: { addFormat (name: string, format: { type: 'string', validate (s: string): boolean }): unknown }) {
  ajv.addFormat('email', { type: 'string', validate: (s) => normalizeEmail(s) !== null })
  return ajv
}

// API.md §2.3: nothing under the auth API may be cached.
function cacheHeaders (url: string): Record<string, string> {
  return requestPath(url).startsWith(AUTH_PREFIX) ? { 'cache-control': 'no-store' } : {}
}

export function createLogger (level: string): FastifyBaseLogger {
  return pino({ level, redact: { paths: LOG_REDACT, censor: '[redacted]' } })
}

export async function buildApp (config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: options.logger ?? createLogger(config.LOG_LEVEL),
    genReqId: () => randomUUID(),
    // A hop count is valid at run time; Fastify's types omit it.
    trustProxy: config.TRUST_PROXY as boolean | string[],
    bodyLimit: BODY_LIMIT,
    // Route long ids to the handler so it can answer 414 (API.md §5.11) instead of a 404;
    // Node's 16 KiB header limit (431) bounds the URL before this does.
    routerOptions: { maxParamLength: 16_384 },
    // Timeouts in one place: a slow client gets 408, a hung one is cut off.
    requestTimeout: 30_000,
    connectionTimeout: 60_000,
    keepAliveTimeout: 72_000,
    // Boot waits up to 30 s for the database (API.md §1.1); avvio's default 10 s would cut it.
    pluginTimeout: 60_000,
    // Requests arriving during shutdown get our own 503 problem document (hook below).
    return503OnClosing: false,
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false },
      // ajv-formats first (Fastify would add it last, over our `email`), then our formats.
      plugins: [ajvFormats as never, addEmailFormat as never]
    },
    // Errors raised before routing (a malformed URL) run no hooks: give them the headers the
    // hooks would have set.
    frameworkErrors: (error, request, reply) => {
      reply.headers({ ...corsHeaders(config.CORS_ORIGINS, request.headers.origin), ...cacheHeaders(request.url) })
      frameworkErrors(error, request, reply)
    },
    clientErrorHandler
  }).withTypeProvider<TypeBoxTypeProvider>()

  app.decorate('config', config)
  app.addSchema(ProblemSchema)
  app.addSchema(ReadinessProblemSchema)
  app.addSchema(SessionSchema)

  await app.register(errorsPlugin)
  await app.register(securityHeaders)
  // Before every other hook and route, so each response is counted (API.md §12.3).
  await app.register(metricsPlugin)

  // Shutdown (API.md §1.1): stop accepting connections at once, but keep the open ones for a
  // moment, answering whatever arrives on them with 503 and `Connection: close`. Closing idle
  // keep-alive connections straight away (what server.close() does) would reset a request a
  // client is sending at that instant. Then Fastify closes what is left.
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
    const server = app.server
    if (!server.listening) return
    Server.prototype.close.call(server) // net.Server's close: no new connections, open ones kept
    const deadline = Date.now() + SHUTDOWN_DRAIN_MS
    while (Date.now() < deadline && await openConnections(server) > 0) await sleep(50)
  })
  app.addHook('onRequest', async (request, reply) => {
    reply.headers(cacheHeaders(request.url))
    // Fastify has already set `Connection: close` on requests that arrive while closing. This
    // hook runs before the CORS plugin's, so the 503 carries CORS headers itself.
    if (closing) {
      reply.headers(corsHeaders(config.CORS_ORIGINS, request.headers.origin))
      throw new ProblemError('service_unavailable', { detail: 'The service is shutting down.' })
    }
  })
  // A request that was in flight when shutdown began closes its keep-alive connection after
  // answering, so the server can finish closing.
  app.addHook('onSend', async (_request, reply, payload) => {
    if (closing) reply.header('connection', 'close')
    return payload
  })

  await app.register(corsPlugin)
  await app.register(cookie)

  // JSON only (API.md §2.1): every other media type is a 415, and an empty JSON body is `{}`.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    if (body === '') return done(null, {})
    try {
      done(null, JSON.parse(body as string))
    } catch {
      done(new ProblemError('malformed_json'), undefined)
    }
  })

  await app.register(dbPlugin, options.db ?? {})
  if (usesRedis(config)) await app.register(redisPlugin)
  await app.register(sessionsPlugin)
  await app.register(authPlugin)
  await app.register(rateLimits)

  await app.register(openapiPlugin)
  await app.register(healthRoutes)
  if (config.METRICS) await app.register(metricsRoutes)
  await app.register(authRoutes, { prefix: AUTH_PREFIX })

  return app
}
