// Decorates `sessions`: the refresh-session store of API.md §6–7.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { createRedisSessionStore } from '../sessions/redis-store.ts'
import type { SessionStore } from '../sessions/store.ts'

declare module 'fastify' {
  interface FastifyInstance {
    sessions: SessionStore
  }
}

const DAY_MS = 86_400_000

async function sessionsPlugin (app: FastifyInstance): Promise<void> {
  const { config } = app
  app.decorate('sessions', createRedisSessionStore(app.redis, config.REDIS_KEY_PREFIX, {
    refreshMs: config.REFRESH_DAYS * DAY_MS,
    maxLifetimeMs: config.SESSION_MAX_DAYS * DAY_MS,
    maxPerUser: config.MAX_SESSIONS_PER_USER,
    graceMs: config.REFRESH_GRACE_SECONDS * 1000
  }))
}

export default fp(sessionsPlugin, { name: 'sessions', fastify: '5.x', decorators: { fastify: ['config'] }, dependencies: ['redis'] })
