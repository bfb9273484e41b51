// The Redis session store: the shared contract (store-contract.ts), then what is particular to
// Redis: the key layout of API.md §7, TTLs on every key, and the index pruned of expired
// members. Every key lives under a prefix of this file and is deleted at the end.
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import t from 'tap'
import { createRedisSessionStore } from '../../sessions/redis-store.ts'
import { hashRefreshToken, mintRefreshToken } from '../../sessions/refresh-token.ts'
import { REDIS_URL } from '../fixtures/app.ts'
import { CONTRACT_SETTINGS, sessionStoreContract } from './store-contract.ts'

const PREFIX = `test:${randomUUID()}:`
const redis = new Redis(REDIS_URL)
const store = createRedisSessionStore(redis, PREFIX, CONTRACT_SETTINGS)

async function scanPrefix (): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 1000)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return keys
}

t.teardown(async () => {
  const keys = await scanPrefix()
  if (keys.length > 0) await redis.del(...keys)
  await redis.quit()
})

const sessionKey = (userId: string, sid: string) => `${PREFIX}{${userId}}:session:${sid}`
const indexKey = (userId: string) => `${PREFIX}{${userId}}:sessions`

async function storedText (userId: string): Promise<string> {
  const keys = (await scanPrefix()).filter((k) => k.includes(userId))
  const parts: string[] = [...keys]
  for (const key of keys) {
    parts.push(...(key.endsWith(':sessions')
      ? await redis.zrange(key, '0', '-1', 'WITHSCORES')
      : Object.entries(await redis.hgetall(key)).flat()))
  }
  return parts.join('\n')
}

t.test('contract', async (t) => sessionStoreContract(t, { store, storedText, withSettings: (settings) => createRedisSessionStore(redis, PREFIX, settings) }))

t.test('key layout and TTLs', async (t) => {
  const userId = randomUUID()
  const sessionId = randomUUID()
  const token = mintRefreshToken({ userId, sessionId })
  await store.create({ userId, sessionId, tokenHash: hashRefreshToken(token), deviceName: null, userAgent: null, ip: null })

  const keys = (await scanPrefix()).filter((k) => k.includes(userId)).sort()
  t.same(keys, [indexKey(userId), sessionKey(userId, sessionId)].sort(), 'exactly the session hash and the index')
  t.equal(await redis.type(sessionKey(userId, sessionId)), 'hash')
  t.equal(await redis.type(indexKey(userId)), 'zset')
  for (const key of keys) {
    const pttl = await redis.pttl(key)
    t.ok(pttl > 0 && pttl <= CONTRACT_SETTINGS.refreshMs, `${key} has a TTL (${pttl})`)
  }
  t.same(await redis.zrange(indexKey(userId), '0', '-1'), [sessionId])
  t.equal((await redis.hgetall(sessionKey(userId, sessionId))).current_hash, hashRefreshToken(token))
  await store.revokeAll(userId)
  t.same((await scanPrefix()).filter((k) => k.includes(userId)), [], 'revokeAll leaves no key of the user')
})

t.test('the next login prunes expired members from the index', async (t) => {
  const userId = randomUUID()
  const create = async () => {
    const sessionId = randomUUID()
    await store.create({ userId, sessionId, tokenHash: hashRefreshToken(mintRefreshToken({ userId, sessionId })), deviceName: null, userAgent: null, ip: null })
    return sessionId
  }
  await create()
  await sleep(1000)
  const used = await create()
  await sleep(1100)
  const third = await create()
  t.same((await redis.zrange(indexKey(userId), '0', '-1')).sort(), [used, third].sort(), 'index pruned of the expired member')
  await store.revokeAll(userId)
})
