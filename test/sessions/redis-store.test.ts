// The Redis session store on its own (API.md §6, §7), with lifetimes of seconds: expiry, the
// absolute lifetime, the per-user cap (least recently used), revocation, the key layout and
// what is stored. Every key lives under a prefix of this file and is deleted at the end.
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import t from 'tap'
import { createRedisSessionStore } from '../../sessions/redis-store.ts'
import { hashRefreshToken, mintRefreshToken, successorOf, deriveRefreshKey } from '../../sessions/refresh-token.ts'
import type { DeviceInfo, SessionSettings } from '../../sessions/store.ts'
import { JWT_SECRET, REDIS_URL } from '../fixtures/app.ts'

const PREFIX = `test:${randomUUID()}:`
const redis = new Redis(REDIS_URL)
const KEY = deriveRefreshKey(JWT_SECRET)

const SETTINGS: SessionSettings = { refreshMs: 2000, maxLifetimeMs: 3000, graceMs: 500, maxPerUser: 3 }
const store = createRedisSessionStore(redis, PREFIX, SETTINGS)

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

const device: DeviceInfo = { deviceName: 'Work Laptop', userAgent: 'test-agent/1.0', ip: '127.0.0.1' }

/** A new session of `userId` with a fresh login token; returns its id and token. */
async function newSession (userId: string, extra: Partial<DeviceInfo> = {}) {
  const sessionId = randomUUID()
  const token = mintRefreshToken({ userId, sessionId })
  const lifetime = await store.create({ userId, sessionId, tokenHash: hashRefreshToken(token), ...device, ...extra })
  return { sessionId, token, lifetime }
}

/** Rotates `token` of the session; returns the outcome and the successor. */
async function rotate (userId: string, sessionId: string, token: string) {
  const successor = successorOf(token, { userId, sessionId }, KEY)
  const outcome = await store.rotate(userId, sessionId, hashRefreshToken(token), hashRefreshToken(successor))
  return { outcome, successor }
}

const sessionKey = (userId: string, sid: string) => `${PREFIX}{${userId}}:session:${sid}`
const indexKey = (userId: string) => `${PREFIX}{${userId}}:sessions`

t.test('key layout, TTLs, list fields, only hashes stored', async (t) => {
  const userId = randomUUID()
  const before = Date.now()
  const { sessionId, token, lifetime } = await newSession(userId)
  const after = Date.now()
  t.ok(lifetime.ttlMs > 1900 && lifetime.ttlMs <= 2000, `ttl of the idle lifetime (${lifetime.ttlMs})`)

  const keys = (await scanPrefix()).filter((k) => k.includes(userId)).sort()
  t.same(keys, [indexKey(userId), sessionKey(userId, sessionId)].sort(), 'exactly the session hash and the index')
  t.equal(await redis.type(sessionKey(userId, sessionId)), 'hash')
  t.equal(await redis.type(indexKey(userId)), 'zset')
  for (const key of keys) {
    const pttl = await redis.pttl(key)
    t.ok(pttl > 0 && pttl <= 2000, `${key} has a TTL (${pttl})`)
  }
  t.same(await redis.zrange(indexKey(userId), '0', '-1'), [sessionId])

  const fields = await redis.hgetall(sessionKey(userId, sessionId))
  t.equal(fields.current_hash, hashRefreshToken(token), 'the current token as its SHA-256 hash')

  const { successor } = await rotate(userId, sessionId, token)
  const rotatedFields = await redis.hgetall(sessionKey(userId, sessionId))
  t.equal(rotatedFields.current_hash, hashRefreshToken(successor))
  t.equal(rotatedFields.previous_hash, hashRefreshToken(token))
  for (const key of keys) {
    const dump = key.endsWith(':sessions')
      ? (await redis.zrange(key, '0', '-1', 'WITHSCORES')).join('\n')
      : Object.entries(await redis.hgetall(key)).flat().join('\n')
    for (const value of [token, successor]) {
      t.notOk(key.includes(value) || dump.includes(value), `no token in ${key}`)
    }
  }

  const list = await store.list(userId)
  t.equal(list.length, 1)
  const item = list[0]!
  t.same(Object.keys(item).sort(), ['createdAt', 'deviceName', 'expiresAt', 'id', 'ip', 'lastUsedAt', 'userAgent'])
  t.equal(item.id, sessionId)
  t.equal(item.deviceName, 'Work Laptop')
  t.equal(item.userAgent, 'test-agent/1.0')
  t.equal(item.ip, '127.0.0.1')
  t.ok(item.createdAt.getTime() >= before - 1000 && item.createdAt.getTime() <= after + 1000, 'created_at is the login time')
  t.ok(item.lastUsedAt.getTime() >= item.createdAt.getTime(), 'last used at the rotation')
  t.ok(item.expiresAt.getTime() > Date.now(), 'expires in the future')

  const bare = await newSession(userId, { deviceName: null, userAgent: null, ip: null })
  const bareItem = (await store.list(userId)).find((s) => s.id === bare.sessionId)
  t.same([bareItem?.deviceName, bareItem?.userAgent, bareItem?.ip], [null, null, null], 'absent device info is null')
  await store.revokeAll(userId)
})

t.test('rotation outcomes (rules 1–4)', async (t) => {
  const userId = randomUUID()
  const { sessionId, token: t0 } = await newSession(userId)
  const r1 = await rotate(userId, sessionId, t0)
  t.equal(r1.outcome.kind, 'rotated', 'rule 1')
  t.equal((await rotate(userId, sessionId, t0)).outcome.kind, 'duplicate', 'rule 2: the previous token within the grace window')
  const r2 = await rotate(userId, sessionId, r1.successor)
  t.equal(r2.outcome.kind, 'rotated')
  t.equal((await rotate(userId, sessionId, t0)).outcome.kind, 'in_progress', 'rule 2: its successor was rotated meanwhile')
  const r3 = await rotate(userId, sessionId, r2.successor)
  t.equal(r3.outcome.kind, 'rotated')
  t.equal((await rotate(userId, sessionId, t0)).outcome.kind, 'invalid', 'rule 4: two generations back')
  t.equal((await rotate(userId, sessionId, mintRefreshToken({ userId, sessionId }))).outcome.kind, 'invalid', 'rule 4: never issued')
  t.ok(await store.isAlive(userId, sessionId), 'no side effect of rule 4')
  await sleep(SETTINGS.graceMs + 50)
  t.equal((await rotate(userId, sessionId, r1.successor)).outcome.kind, 'invalid', 'rule 4: older generation after the window')
  t.ok(await store.isAlive(userId, sessionId))
  t.equal((await rotate(userId, sessionId, r2.successor)).outcome.kind, 'reused', 'rule 3: previous after the window')
  t.notOk(await store.isAlive(userId, sessionId), 'the session is ended')
  t.equal((await rotate(userId, sessionId, r3.successor)).outcome.kind, 'invalid', 'its newest token is dead')
  t.same(await redis.zrange(indexKey(userId), '0', '-1'), [], 'removed from the index')
})

t.test('idle lifetime: a session not used for refreshMs ends', async (t) => {
  const userId = randomUUID()
  const idle = await newSession(userId)
  await sleep(1000)
  const used = await newSession(userId)
  await sleep(1100) // idle is 2.1 s old, used 1.1 s
  t.notOk(await store.isAlive(userId, idle.sessionId), 'expired after its idle lifetime')
  t.ok(await store.isAlive(userId, used.sessionId))
  t.same((await store.list(userId)).map((s) => s.id), [used.sessionId], 'list excludes the expired session')
  t.equal((await rotate(userId, idle.sessionId, idle.token)).outcome.kind, 'invalid', 'its token is dead')
  t.equal(await store.revokeByToken(userId, idle.sessionId, hashRefreshToken(idle.token)), false)

  // The next login prunes the expired member from the index.
  const third = await newSession(userId)
  t.same((await redis.zrange(indexKey(userId), '0', '-1')).sort(), [used.sessionId, third.sessionId].sort(), 'index pruned of the expired member')
  await store.revokeAll(userId)
})

t.test('rotation renews the idle lifetime but never past the absolute lifetime', async (t) => {
  const userId = randomUUID()
  const { sessionId, token } = await newSession(userId)
  const createdAt = (await store.list(userId))[0]!.createdAt.getTime()
  const cap = createdAt + SETTINGS.maxLifetimeMs

  await sleep(800)
  const r1 = await rotate(userId, sessionId, token)
  t.equal(r1.outcome.kind, 'rotated')
  let item = (await store.list(userId))[0]!
  t.equal(item.expiresAt.getTime(), Math.min(item.lastUsedAt.getTime() + SETTINGS.refreshMs, cap), 'renewed to last use + refreshMs')
  t.ok(item.expiresAt.getTime() > createdAt + SETTINGS.refreshMs, 'beyond the first idle lifetime')

  await sleep(800) // 1.6 s: last use + 2 s would pass the 3 s cap
  const r2 = await rotate(userId, sessionId, r1.successor)
  t.equal(r2.outcome.kind, 'rotated')
  item = (await store.list(userId))[0]!
  t.equal(item.expiresAt.getTime(), cap, 'capped at created_at + maxLifetimeMs')
  if (r2.outcome.kind === 'rotated') t.ok(r2.outcome.ttlMs <= cap - item.lastUsedAt.getTime(), 'returned lifetime capped')
  t.ok(await redis.pttl(sessionKey(userId, sessionId)) <= cap - Date.now() + 50, 'key TTL capped')

  await sleep(800) // 2.4 s
  const r3 = await rotate(userId, sessionId, r2.successor)
  t.equal(r3.outcome.kind, 'rotated')
  t.equal((await store.list(userId))[0]!.expiresAt.getTime(), cap, 'still capped')

  await sleep(Math.max(0, cap - Date.now()) + 100)
  t.notOk(await store.isAlive(userId, sessionId), 'ended at the absolute lifetime although used 0.7 s ago')
  t.equal((await rotate(userId, sessionId, r3.successor)).outcome.kind, 'invalid')
  t.same(await store.list(userId), [])
})

t.test('the per-user cap ends the least recently used session, not the oldest', async (t) => {
  const userId = randomUUID()
  const a = await newSession(userId)
  await sleep(20)
  const b = await newSession(userId)
  await sleep(20)
  const c = await newSession(userId)
  await sleep(20)
  t.equal((await rotate(userId, a.sessionId, a.token)).outcome.kind, 'rotated', 'a (oldest created) is used again')
  await sleep(20)
  const d = await newSession(userId)
  t.notOk(await store.isAlive(userId, b.sessionId), 'b, the least recently used, is ended')
  for (const [name, s] of [['a', a], ['c', c], ['d', d]] as const) t.ok(await store.isAlive(userId, s.sessionId), `${name} lives`)
  t.same((await store.list(userId)).map((s) => s.id).sort(), [a.sessionId, c.sessionId, d.sessionId].sort())
  t.equal(await redis.zcard(indexKey(userId)), 3, 'index holds exactly the cap')
  t.equal(await redis.exists(sessionKey(userId, b.sessionId)), 0, 'the evicted hash is deleted')
  t.equal((await rotate(userId, b.sessionId, b.token)).outcome.kind, 'invalid')

  const e = await newSession(userId)
  t.notOk(await store.isAlive(userId, c.sessionId), 'next: c')
  t.same((await store.list(userId)).map((s) => s.id).sort(), [a.sessionId, d.sessionId, e.sessionId].sort())
  await store.revokeAll(userId)
})

t.test('revoke, revokeByToken and revokeAll', async (t) => {
  const userId = randomUUID()
  const otherUser = randomUUID()
  const s1 = await newSession(userId)
  const s2 = await newSession(userId)
  const s3 = await newSession(userId)
  const foreign = await newSession(otherUser)

  t.equal(await store.revoke(otherUser, s1.sessionId), false, 'not a session of that user')
  t.ok(await store.isAlive(userId, s1.sessionId))
  t.equal(await store.revoke(userId, s1.sessionId), true)
  t.notOk(await store.isAlive(userId, s1.sessionId))
  t.equal(await store.revoke(userId, s1.sessionId), false, 'already ended')

  const { successor } = await rotate(userId, s2.sessionId, s2.token)
  t.equal(await store.revokeByToken(userId, s2.sessionId, hashRefreshToken(mintRefreshToken({ userId, sessionId: s2.sessionId }))), false, 'unknown token')
  t.ok(await store.isAlive(userId, s2.sessionId))
  t.equal(await store.revokeByToken(userId, s2.sessionId, hashRefreshToken(s2.token)), true, 'the previous token ends the session')
  t.notOk(await store.isAlive(userId, s2.sessionId))
  t.equal((await rotate(userId, s2.sessionId, successor)).outcome.kind, 'invalid')

  const s4 = await newSession(userId)
  await store.revokeAll(userId)
  for (const s of [s3, s4]) t.notOk(await store.isAlive(userId, s.sessionId))
  t.same(await store.list(userId), [])
  t.same((await scanPrefix()).filter((k) => k.includes(userId)), [], 'no key of the user is left')
  t.ok(await store.isAlive(otherUser, foreign.sessionId), 'another user is unaffected')
  await store.revokeAll(otherUser)
})
