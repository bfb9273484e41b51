// Decorates `redis`: the ioredis client of the session store.
//
// Not @fastify/redis: it holds boot until Redis answers, and API.md §1.1 requires the service
// to start while Redis is down and answer 503 until it is back. The client below never blocks
// boot, fails commands at once while disconnected (no offline queue) or after 1 s (command
// timeout), and reconnects forever in the background.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Cluster, Redis, type RedisOptions } from 'ioredis'
import { redactUrl } from '../config.ts'

declare module 'fastify' {
  interface FastifyInstance {
    redis: Redis | Cluster
    /** The Redis server or cluster, as logs name it (no credentials). */
    redisName: string
  }
}

// Reconnect quickly and forever: recovery must take seconds (API.md §11.2).
const reconnectDelay = (attempt: number) => Math.min(100 * attempt, 1000)

const connectionOptions = {
  connectTimeout: 1000,
  commandTimeout: 1000,
  maxRetriesPerRequest: 0,
  retryStrategy: reconnectDelay,
  connectionName: 'auth-api'
} satisfies RedisOptions

async function redisPlugin (app: FastifyInstance): Promise<void> {
  const { REDIS_URL: url, REDIS_CLUSTER_NODES: nodes } = app.config
  let redis: Redis | Cluster
  let name: string
  if (nodes !== undefined) {
    // A Redis Cluster: every key of one user carries the user id as hash tag, so each script
    // touches one slot (API.md §7). Nodes are found from the seeds; moved slots are followed.
    redis = new Cluster(nodes, {
      enableOfflineQueue: false,
      clusterRetryStrategy: reconnectDelay,
      slotsRefreshTimeout: 1000,
      redisOptions: connectionOptions
    })
    name = `Redis Cluster at ${nodes.map((n) => `${n.host}:${n.port}`).join(',')}`
  } else if (url !== undefined) {
    redis = new Redis(url, { ...connectionOptions, enableOfflineQueue: false })
    name = `Redis at ${redactUrl(url)}`
  } else {
    throw new Error('the redis plugin needs REDIS_URL or REDIS_CLUSTER_NODES')
  }
  const store = name

  let state: 'connecting' | 'up' | 'down' = 'connecting'
  redis.on('ready', () => {
    state = 'up'
    app.log.info({ store }, 'Redis connected')
  })
  redis.on('error', (error: Error) => {
    // ioredis reports every failed reconnect; log the transitions, not each attempt.
    if (state === 'connecting') {
      app.log.warn({ store, reason: error.message }, 'Redis is unreachable; routes that need sessions answer 503 until it is back')
    } else if (state === 'up') {
      app.log.warn({ store, reason: error.message }, 'Redis connection lost; reconnecting')
    }
    state = 'down'
  })

  // A getter: Fastify's decorate() typing distributes over a union value.
  app.decorate('redis', { getter: () => redis })
  app.decorate('redisName', name)
  app.addHook('onClose', async () => {
    if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect())
    else redis.disconnect()
  })
}

export default fp(redisPlugin, { name: 'redis', fastify: '5.x', decorators: { fastify: ['config'] } })
