// The session store on Redis (API.md §7). One hash per device session,
// `<prefix>{<userId>}:session:<sid>`, and one sorted set of the user's sessions by last use,
// `<prefix>{<userId>}:sessions`. The `{<userId>}` hash tag keeps a user's keys in one cluster
// slot, so every script below touches one slot. Each decision is one Lua script (atomic), run
// through ioredis `defineCommand` (EVALSHA, re-sent as EVAL after a Redis restart empties the
// script cache). Times come from Redis `TIME`.
//
// The create and revoke-all scripts reach the user's other sessions through the index, so they
// build those keys from the user's key prefix (ARGV) inside Lua: they cannot be listed in KEYS
// before the script reads the index, and they share the hash tag, hence the slot, of KEYS[1].
import { Cluster, type Redis } from 'ioredis'
import { unavailable } from '../plugins/errors.ts'
import { counterId, type Lifetime, type NewSession, type RotateOutcome, type SessionInfo, type SessionSettings, type SessionStore } from './store.ts'

// Every write script first checks the caller's deadline (last ARGV, on Redis' clock): a
// command that reaches Redis after the caller has timed out and answered 503 (Redis stalled,
// then woke up) must change nothing, or a client told "unavailable" would find its token
// rotated or its session gone (API.md §5.7, §5.8, §11.1). The refusal is an error reply,
// which becomes a 503 like any other Redis failure.
const DEADLINE = `
do
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[#ARGV]) then
    return redis.error_reply('LATE the caller has given up')
  end
end
`

const PRELUDE = DEADLINE + `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function int(n) return string.format('%.0f', n) end
-- the index lives as long as the longest-lived session in it
local function extend_index(index, expires_at)
  if redis.call('PEXPIRETIME', index) < expires_at then redis.call('PEXPIREAT', index, int(expires_at)) end
end
`

// KEYS: index, session. ARGV: user key prefix, sid, token hash, refresh ms, max lifetime ms,
// cap, device name, user agent, ip, replaced sid, replaced token hash ('' = none), deadline.
const CREATE = PRELUDE + `
local index, key, prefix = KEYS[1], KEYS[2], ARGV[1]
local now = now_ms()
if ARGV[10] ~= '' then
  local old = prefix .. ARGV[10]
  local tokens = redis.call('HMGET', old, 'current_hash', 'previous_hash')
  if tokens[1] == ARGV[11] or tokens[2] == ARGV[11] then
    redis.call('DEL', old)
    redis.call('ZREM', index, ARGV[10])
  end
end
for _, sid in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  if redis.call('EXISTS', prefix .. sid) == 0 then redis.call('ZREM', index, sid) end
end
local cap = tonumber(ARGV[6])
while redis.call('ZCARD', index) >= cap do
  local oldest = redis.call('ZPOPMIN', index)
  redis.call('DEL', prefix .. oldest[1])
end
local max_expires_at = now + tonumber(ARGV[5])
local expires_at = math.min(now + tonumber(ARGV[4]), max_expires_at)
redis.call('HSET', key, 'current_hash', ARGV[3], 'previous_hash', '', 'rotated_at', '0', 'previous_rotated_at', '0',
  'created_at', int(now), 'last_used_at', int(now), 'expires_at', int(expires_at), 'max_expires_at', int(max_expires_at))
if ARGV[7] ~= '' then redis.call('HSET', key, 'device_name', ARGV[7]) end
if ARGV[8] ~= '' then redis.call('HSET', key, 'user_agent', ARGV[8]) end
if ARGV[9] ~= '' then redis.call('HSET', key, 'ip', ARGV[9]) end
redis.call('PEXPIREAT', key, int(expires_at))
redis.call('ZADD', index, int(now), ARGV[2])
extend_index(index, expires_at)
return expires_at - now
`

// KEYS: session, index. ARGV: presented hash, successor hash, grace ms, refresh ms, sid, deadline.
const ROTATE = PRELUDE + `
local key, index = KEYS[1], KEYS[2]
local presented, successor = ARGV[1], ARGV[2]
local f = redis.call('HMGET', key, 'current_hash', 'previous_hash', 'rotated_at', 'previous_rotated_at', 'expires_at', 'max_expires_at')
if not f[1] then return {'invalid'} end
local now = now_ms()
local grace = tonumber(ARGV[3])
if presented == f[1] then
  local expires_at = math.min(now + tonumber(ARGV[4]), tonumber(f[6]))
  redis.call('HSET', key, 'current_hash', successor, 'previous_hash', presented, 'previous_rotated_at', f[3],
    'rotated_at', int(now), 'last_used_at', int(now), 'expires_at', int(expires_at))
  redis.call('PEXPIREAT', key, int(expires_at))
  redis.call('ZADD', index, int(now), ARGV[5])
  extend_index(index, expires_at)
  return {'rotated', expires_at - now}
end
if presented == f[2] then
  if now - tonumber(f[3]) < grace then
    if successor == f[1] then return {'duplicate', tonumber(f[5]) - now} end
    return {'invalid'}
  end
  redis.call('DEL', key)
  redis.call('ZREM', index, ARGV[5])
  return {'reused'}
end
if successor == f[2] and now - tonumber(f[4]) < grace then return {'in_progress'} end
return {'invalid'}
`

// KEYS: session, index. ARGV: token hash, sid, deadline.
const REVOKE_BY_TOKEN = DEADLINE + `
local f = redis.call('HMGET', KEYS[1], 'current_hash', 'previous_hash')
if f[1] and (f[1] == ARGV[1] or f[2] == ARGV[1]) then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 1
end
return 0
`

// KEYS: counters. Takes one back from each open window.
const RELEASE = `
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0
`

// KEYS: session, index. ARGV: sid, deadline.
const REVOKE = DEADLINE + `
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
`

// KEYS: index. ARGV: user key prefix, sid to keep ('' = none), deadline.
const REVOKE_ALL = DEADLINE + `
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if sid ~= ARGV[2] then
    redis.call('DEL', ARGV[1] .. sid)
    redis.call('ZREM', KEYS[1], sid)
  end
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return 1
`

// KEYS: counter. ARGV: window ms. The window starts at the first event (API.md §8).
const HIT = `
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
`

// KEYS: counters of one group. ARGV: window ms, then each counter's limit.
const RESERVE = `
local wait = 0
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i + 1]) then wait = math.max(wait, redis.call('PTTL', key)) end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 or redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[1]) end
end
return 0
`

const WRITE_DEADLINE_MS = 800

type ScriptRunner = (...args: Array<string | number>) => Promise<unknown>

function defineScript (redis: Redis | Cluster, name: string, numberOfKeys: number, lua: string): ScriptRunner {
  redis.defineCommand(name, { numberOfKeys, lua })
  const command = (redis as unknown as Record<string, ScriptRunner>)[name]
  if (!command) throw new Error(`Redis script ${name} was not defined`)
  return command.bind(redis)
}

function time (value: string | undefined): Date {
  return new Date(Number(value))
}

export function createRedisSessionStore (redis: Redis | Cluster, keyPrefix: string, settings: SessionSettings): SessionStore {
  const userPrefix = (userId: string) => `${keyPrefix}{${userId}}:`
  const sessionPrefix = (userId: string) => `${userPrefix(userId)}session:`
  const sessionKey = (userId: string, sessionId: string) => sessionPrefix(userId) + sessionId
  const indexKey = (userId: string) => `${userPrefix(userId)}sessions`

  // Redis' clock minus ours, measured at each (re)connect, to express deadlines on Redis' clock.
  let clockOffsetMs = 0
  const measureClock = () => {
    const sent = Date.now()
    redis.time().then(([seconds, micros]) => {
      clockOffsetMs = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - Math.round((sent + Date.now()) / 2)
    }, () => {})
  }
  redis.on('ready', measureClock)
  if (redis.status === 'ready') measureClock()
  // Inside the client's 1 s command timeout, so Redis gives up before the caller does.
  const deadline = () => Date.now() + clockOffsetMs + WRITE_DEADLINE_MS

  async function guarded<T> (work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (error) {
      // A refused deadline may mean this host's clock stepped: measure the offset again.
      if (error instanceof Error && error.message.startsWith('LATE')) measureClock()
      // Any Redis failure (refused, timed out, LOADING, READONLY, ...) is an outage, never a 500.
      // ioredis attaches the command and its arguments (token hashes, ids, user agents) to
      // its errors: only the message goes on to the log.
      throw unavailable(new Error(error instanceof Error ? error.message : String(error)))
    }
  }

  const scripts = {
    create: defineScript(redis, 'authSessionCreate', 2, CREATE),
    rotate: defineScript(redis, 'authSessionRotate', 2, ROTATE),
    revokeByToken: defineScript(redis, 'authSessionRevokeByToken', 2, REVOKE_BY_TOKEN),
    revoke: defineScript(redis, 'authSessionRevoke', 2, REVOKE),
    revokeAll: defineScript(redis, 'authSessionRevokeAll', 1, REVOKE_ALL),
    hit: defineScript(redis, 'authCounterHit', 1, HIT)
  }
  // Variable numbers of keys: the key count is the first argument of each call.
  redis.defineCommand('authCounterReserve', { lua: RESERVE })
  redis.defineCommand('authCounterRelease', { lua: RELEASE })
  const reserve = (redis as unknown as Record<string, ScriptRunner>).authCounterReserve!.bind(redis)
  const release = (redis as unknown as Record<string, ScriptRunner>).authCounterRelease!.bind(redis)
  // The group's hash tag keeps its counters in one cluster slot, for the RESERVE script.
  const counterKey = (group: string, key: string) => `${keyPrefix}ratelimit:{${counterId(group)}}:${counterId(key)}`

  return {
    create: (s: NewSession): Promise<Lifetime> => guarded(async () => {
      const ttlMs = await scripts.create(
        indexKey(s.userId), sessionKey(s.userId, s.sessionId),
        sessionPrefix(s.userId), s.sessionId, s.tokenHash, settings.refreshMs, settings.maxLifetimeMs, settings.maxPerUser,
        s.deviceName ?? '', s.userAgent ?? '', s.ip ?? '', s.replaces?.sessionId ?? '', s.replaces?.tokenHash ?? '', deadline()
      )
      return { ttlMs: Number(ttlMs) }
    }),

    rotate: (userId, sessionId, presentedHash, successorHash) => guarded(async () => {
      const [kind, ttlMs] = await scripts.rotate(
        sessionKey(userId, sessionId), indexKey(userId),
        presentedHash, successorHash, settings.graceMs, settings.refreshMs, sessionId, deadline()
      ) as [RotateOutcome['kind'], number | undefined]
      return (kind === 'rotated' || kind === 'duplicate') ? { kind, ttlMs: Number(ttlMs) } : { kind }
    }),

    revokeByToken: (userId, sessionId, tokenHash) => guarded(async () =>
      await scripts.revokeByToken(sessionKey(userId, sessionId), indexKey(userId), tokenHash, sessionId, deadline()) === 1),

    revoke: (userId, sessionId) => guarded(async () =>
      await scripts.revoke(sessionKey(userId, sessionId), indexKey(userId), sessionId, deadline()) === 1),

    revokeAll: (userId) => guarded(async () => {
      await scripts.revokeAll(indexKey(userId), sessionPrefix(userId), '', deadline())
    }),

    revokeOthers: (userId, keepSessionId) => guarded(async () => {
      await scripts.revokeAll(indexKey(userId), sessionPrefix(userId), keepSessionId, deadline())
    }),

    list: (userId) => guarded(async () => {
      const ids = await redis.zrange(indexKey(userId), '0', '-1', 'REV')
      if (ids.length === 0) return []
      const pipeline = redis.pipeline()
      for (const id of ids) pipeline.hgetall(sessionKey(userId, id))
      const replies = await pipeline.exec() ?? []
      const sessions: SessionInfo[] = []
      replies.forEach(([error, fields], i) => {
        if (error) throw error
        const f = fields as Record<string, string>
        const id = ids[i]
        if (id === undefined || f.current_hash === undefined) return // expired since the index was read
        sessions.push({
          id,
          deviceName: f.device_name ?? null,
          userAgent: f.user_agent ?? null,
          ip: f.ip ?? null,
          createdAt: time(f.created_at),
          lastUsedAt: time(f.last_used_at),
          expiresAt: time(f.expires_at)
        })
      })
      return sessions
    }),

    isAlive: (userId, sessionId) => guarded(async () => await redis.exists(sessionKey(userId, sessionId)) === 1),

    // A cluster node answers PING even while the cluster is down (CLUSTERDOWN for every key):
    // readiness asks for the cluster's state instead.
    ping: () => guarded(async () => {
      if (!(redis instanceof Cluster)) {
        await redis.ping()
      } else if (!String(await redis.cluster('INFO')).includes('cluster_state:ok')) {
        throw new Error('the Redis Cluster is down')
      }
    }),

    counters: {
      hit: (key, windowMs) => guarded(async () => {
        const [count, ttlMs] = await scripts.hit(counterKey(key, key), windowMs) as [number, number]
        return { count: Number(count), ttlMs: Number(ttlMs) }
      }),
      reserve: (group, limits, windowMs) => guarded(async () => Number(await reserve(
        limits.length, ...limits.map(({ key }) => counterKey(group, key)), windowMs, ...limits.map(({ limit }) => limit)))),
      release: (group, keys) => guarded(async () => {
        await release(keys.length, ...keys.map((key) => counterKey(group, key)))
      }),
      clear: (group, keys) => guarded(async () => {
        await redis.del(...keys.map((key) => counterKey(group, key)))
      })
    }
  }
}
