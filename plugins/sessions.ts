// Decorates `sessions`: the refresh-session store of API.md §6–7. Redis when it is configured
// (the `redis` plugin is registered), otherwise the database (PostgreSQL or embedded).
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { usesRedis } from '../config.ts'
import { createDatabaseSessionStore } from '../sessions/database-store.ts'
import { createRedisSessionStore } from '../sessions/redis-store.ts'
import type { SessionSettings, SessionStore } from '../sessions/store.ts'

declare module 'fastify' {
  interface FastifyInstance {
    sessions: SessionStore
    /** Where sessions live, as logs name it. */
    sessionStoreName: string
  }
}

const DAY_MS = 86_400_000

async function sessionsPlugin (app: FastifyInstance): Promise<void> {
  const { config } = app
  const settings: SessionSettings = {
    refreshMs: config.REFRESH_DAYS * DAY_MS,
    maxLifetimeMs: config.SESSION_MAX_DAYS * DAY_MS,
    maxPerUser: config.MAX_SESSIONS_PER_USER,
    graceMs: config.REFRESH_GRACE_SECONDS * 1000
  }
  if (usesRedis(config)) {
    app.decorate('sessions', createRedisSessionStore(app.redis, config.REDIS_KEY_PREFIX, settings))
    app.decorate('sessionStoreName', app.redisName)
  } else {
    app.decorate('sessions', createDatabaseSessionStore(app.database.db, settings))
    app.decorate('sessionStoreName', 'the database')
  }
}

export default fp(sessionsPlugin, { name: 'sessions', fastify: '5.x', decorators: { fastify: ['config', 'database'] } })
