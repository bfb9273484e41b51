// Decorates `redis`: the ioredis client of the session store.
//
// Not @fastify/redis: it holds boot until Redis answers, and API.md §1.1 requires the service
// to start while Redis is down and answer 503 until it is back. The client below never blocks
// boot, fails commands at once while disconnected (no offline queue) or after 1 s (command
// timeout), and reconnects forever in the background.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import { redactUrl } from '../config.ts'

declare module 'fastify' {
  interface FastifyInstance {
    redis: Redis
  }
}

async function redisPlugin (app: FastifyInstance): Promise<void> {
  const url = app.config.REDIS_URL
  if (url === undefined) throw new Error('the redis plugin needs REDIS_URL')
  const redis = new Redis(url, {
    connectTimeout: 1000,
    commandTimeout: 1000,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // Reconnect quickly and forever: recovery must take seconds (API.md §11.2).
    retryStrategy: (attempt) => Math.min(100 * attempt, 1000),
    connectionName: 'auth-api'
  })

  let state: 'connecting' | 'up' | 'down' = 'connecting'
  redis.on('ready', () => {
    state = 'up'
    app.log.info({ store: redactUrl(url) }, 'Redis connected')
  })
  redis.on('error', (error: Error) => {
    // ioredis reports every failed reconnect; log the transitions, not each attempt.
    if (state === 'connecting') {
      app.log.warn({ store: redactUrl(url), reason: error.message }, 'Redis is unreachable; routes that need sessions answer 503 until it is back')
    } else if (state === 'up') {
      app.log.warn({ store: redactUrl(url), reason: error.message }, 'Redis connection lost; reconnecting')
    }
    state = 'down'
  })

  app.decorate('redis', redis)
  app.addHook('onClose', async () => {
    if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect())
    else redis.disconnect()
  })
}

export default fp(redisPlugin, { name: 'redis', fastify: '5.x', decorators: { fastify: ['config'] } })
