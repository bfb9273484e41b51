// The session store in the database (API.md §7), when no Redis is configured: the `sessions`
// table of db/schema.ts, on a PostgreSQL server or the embedded database alike. Same contract
// as the Redis store (sessions/store.ts), the same decisions, and each decision is one
// transaction: the session's row lock (FOR UPDATE) orders rotations and revocations of one
// session, and a per-user advisory lock orders the logins of one user, so the cap holds.
// Times come from the database's clock (`clock_timestamp()`, read after the locks are held).
//
// Expired rows count as gone in every query and are deleted without a cron job: a login
// deletes its user's expired rows and a bounded batch of anyone's.
import { and, asc, desc, eq, gt, inArray, lte, ne, or, sql } from 'drizzle-orm'
import { guarded, queryRows, type Database } from '../db/database.ts'
import { rateLimitCounters, sessions, type SessionRow } from '../db/schema.ts'
import { counterId, type Lifetime, type NewSession, type RotateOutcome, type SessionInfo, type SessionSettings, type SessionStore } from './store.ts'

// Within the 5 s that a request needing an unavailable store may take (API.md §9).
const STORE_TIMEOUT_MS = 2000
// Rate-limit counters fail open (plugins/rate-limit.ts): give up on them sooner.
const COUNTER_TIMEOUT_MS = 1000
// Expired rows of other users a login deletes on its way.
const SWEEP_BATCH = 100

// Session ids are lower-case UUIDs (as in tokens and Redis keys); anything else (a path parameter) names no session, and must not
// reach the uuid column, where it is a type error rather than "no such row".
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const isUuid = (id: string) => UUID.test(id)

const notExpired = () => gt(sessions.expiresAt, sql`clock_timestamp()`)

async function clock (tx: Database): Promise<number> {
  const [row] = await queryRows<{ now: number }>(tx, sql`select (extract(epoch from clock_timestamp()) * 1000)::float8 as now`)
  return Math.floor(Number(row?.now))
}

export function createDatabaseSessionStore (db: Database, settings: SessionSettings): SessionStore {
  /**
   * Runs one decision as a transaction. A transaction that finishes after the caller has
   * timed out (and answered 503) rolls back: a client told "unavailable" must not find its
   * token rotated or its session gone (API.md §11.1).
   */
  async function decide<T> (work: (tx: Database) => Promise<T>): Promise<T> {
    let abandoned = false
    const transaction = db.transaction(async (tx) => {
      const result = await work(tx as unknown as Database)
      if (abandoned) throw new Error('the caller has given up')
      return result
    })
    try {
      return await guarded(transaction, STORE_TIMEOUT_MS)
    } catch (error) {
      abandoned = true
      throw error
    }
  }

  const ofSession = (userId: string, sessionId: string) => and(eq(sessions.id, sessionId), eq(sessions.userId, userId))

  return {
    create: (s: NewSession): Promise<Lifetime> => decide(async (tx) => {
      await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${s.userId}, 0))`)
      const now = await clock(tx)
      if (s.replaces) {
        const { sessionId, tokenHash } = s.replaces
        await tx.delete(sessions).where(and(ofSession(s.userId, sessionId),
          or(eq(sessions.currentHash, tokenHash), eq(sessions.previousHash, tokenHash))))
      }
      await tx.delete(sessions).where(and(eq(sessions.userId, s.userId), lte(sessions.expiresAt, new Date(now))))
      // Beyond the cap, the least recently used sessions end: keep the newest cap - 1.
      const evicted = tx.select({ id: sessions.id }).from(sessions)
        .where(eq(sessions.userId, s.userId))
        .orderBy(desc(sessions.lastUsedAt)).offset(settings.maxPerUser - 1)
      await tx.delete(sessions).where(inArray(sessions.id, evicted))

      const maxExpiresAt = now + settings.maxLifetimeMs
      const expiresAt = Math.min(now + settings.refreshMs, maxExpiresAt)
      await tx.insert(sessions).values({
        id: s.sessionId,
        userId: s.userId,
        currentHash: s.tokenHash,
        deviceName: s.deviceName,
        userAgent: s.userAgent,
        ip: s.ip,
        createdAt: new Date(now),
        lastUsedAt: new Date(now),
        expiresAt: new Date(expiresAt),
        maxExpiresAt: new Date(maxExpiresAt)
      })
      // Anyone's expired rows, a batch at a time; rows another transaction holds are skipped,
      // so this never waits (nor deadlocks) on them.
      const expired = tx.select({ id: sessions.id }).from(sessions)
        .where(lte(sessions.expiresAt, new Date(now))).limit(SWEEP_BATCH).for('update', { skipLocked: true })
      await tx.delete(sessions).where(inArray(sessions.id, expired))
      const expiredCounters = tx.select({ key: rateLimitCounters.key }).from(rateLimitCounters)
        .where(lte(rateLimitCounters.expiresAt, new Date(now))).limit(SWEEP_BATCH).for('update', { skipLocked: true })
      await tx.delete(rateLimitCounters).where(inArray(rateLimitCounters.key, expiredCounters))
      return { ttlMs: expiresAt - now }
    }),

    rotate: (userId, sessionId, presentedHash, successorHash): Promise<RotateOutcome> => decide(async (tx) => {
      const [row] = await tx.select().from(sessions).where(ofSession(userId, sessionId)).for('update')
      if (!row) return { kind: 'invalid' }
      const now = await clock(tx)
      const since = (time: Date | null) => time === null ? Infinity : now - time.getTime()
      if (row.expiresAt.getTime() <= now) return { kind: 'invalid' }

      if (presentedHash === row.currentHash) {
        const expiresAt = Math.min(now + settings.refreshMs, row.maxExpiresAt.getTime())
        await tx.update(sessions).set({
          currentHash: successorHash,
          previousHash: presentedHash,
          previousRotatedAt: row.rotatedAt,
          rotatedAt: new Date(now),
          lastUsedAt: new Date(now),
          expiresAt: new Date(expiresAt)
        }).where(eq(sessions.id, sessionId))
        return { kind: 'rotated', ttlMs: expiresAt - now }
      }
      if (presentedHash === row.previousHash) {
        if (since(row.rotatedAt) < settings.graceMs) {
          return successorHash === row.currentHash ? { kind: 'duplicate', ttlMs: row.expiresAt.getTime() - now } : { kind: 'invalid' }
        }
        await tx.delete(sessions).where(eq(sessions.id, sessionId))
        return { kind: 'reused' }
      }
      if (successorHash === row.previousHash && since(row.previousRotatedAt) < settings.graceMs) return { kind: 'in_progress' }
      return { kind: 'invalid' }
    }),

    revokeByToken: (userId, sessionId, tokenHash) => decide(async (tx) => {
      const ended = await tx.delete(sessions).where(and(ofSession(userId, sessionId), notExpired(),
        or(eq(sessions.currentHash, tokenHash), eq(sessions.previousHash, tokenHash)))).returning({ id: sessions.id })
      return ended.length > 0
    }),

    revoke: async (userId, sessionId) => isUuid(userId) && isUuid(sessionId) && decide(async (tx) => {
      const ended = await tx.delete(sessions).where(and(ofSession(userId, sessionId), notExpired())).returning({ id: sessions.id })
      return ended.length > 0
    }),

    revokeAll: (userId) => decide(async (tx) => {
      await tx.delete(sessions).where(eq(sessions.userId, userId))
    }),

    revokeOthers: (userId, keepSessionId) => decide(async (tx) => {
      await tx.delete(sessions).where(and(eq(sessions.userId, userId), ne(sessions.id, keepSessionId)))
    }),

    list: async (userId) => {
      const rows = await guarded(db.select().from(sessions)
        .where(and(eq(sessions.userId, userId), notExpired()))
        .orderBy(desc(sessions.lastUsedAt), asc(sessions.id)), STORE_TIMEOUT_MS)
      return rows.map(toSessionInfo)
    },

    isAlive: async (userId, sessionId) => {
      if (!isUuid(userId) || !isUuid(sessionId)) return false
      const rows = await guarded(db.select({ id: sessions.id }).from(sessions)
        .where(and(ofSession(userId, sessionId), notExpired())), STORE_TIMEOUT_MS)
      return rows.length > 0
    },

    ping: async () => { await guarded(queryRows(db, sql`select 1`), 1000) },

    counters: {
      // One statement: a new row, a count added to an open window, or a window started anew.
      hit: async (key, windowMs) => {
        const [row] = await guarded(countOne(db, counterId(key), windowMs), COUNTER_TIMEOUT_MS)
        return { count: Number(row?.count), ttlMs: Math.max(1, Math.ceil(Number(row?.ttl_ms))) }
      },
      // One transaction; the group's advisory lock orders reservations of the same group.
      reserve: async (group, limits, windowMs) => guarded(db.transaction(async (tx) => {
        await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${'ratelimit:' + counterId(group)}, 0))`)
        const ids = limits.map(({ key }) => counterId(key))
        const rows = await queryRows<{ key: string, count: number, ttl_ms: number }>(tx as unknown as Database, sql`
          select key, count, (extract(epoch from expires_at - clock_timestamp()) * 1000)::float8 as ttl_ms
          from rate_limit_counters where key in (${sql.join(ids.map((id) => sql`${id}`), sql`, `)}) and expires_at > clock_timestamp()`)
        let wait = 0
        limits.forEach(({ limit }, i) => {
          const row = rows.find((r) => r.key === ids[i])
          if (row && Number(row.count) >= limit) wait = Math.max(wait, Math.ceil(Number(row.ttl_ms)), 1)
        })
        if (wait > 0) return wait
        for (const id of ids) await countOne(tx as unknown as Database, id, windowMs)
        return 0
      }), COUNTER_TIMEOUT_MS),
      release: async (_group, keys) => {
        await guarded(db.update(rateLimitCounters).set({ count: sql`${rateLimitCounters.count} - 1` })
          .where(and(inArray(rateLimitCounters.key, keys.map(counterId)), gt(rateLimitCounters.count, 0))), COUNTER_TIMEOUT_MS)
      },
      clear: async (_group, keys) => {
        await guarded(db.delete(rateLimitCounters).where(inArray(rateLimitCounters.key, keys.map(counterId))), COUNTER_TIMEOUT_MS)
      }
    }
  }
}

function countOne (db: Database, id: string, windowMs: number) {
  return queryRows<{ count: number, ttl_ms: number }>(db, sql`
    insert into rate_limit_counters as c (key, count, expires_at)
    values (${id}, 1, clock_timestamp() + ${windowMs} * interval '1 millisecond')
    on conflict (key) do update set
      count = case when c.expires_at <= clock_timestamp() then 1 else c.count + 1 end,
      expires_at = case when c.expires_at <= clock_timestamp() then excluded.expires_at else c.expires_at end
    returning count, (extract(epoch from expires_at - clock_timestamp()) * 1000)::float8 as ttl_ms`)
}

function toSessionInfo (row: SessionRow): SessionInfo {
  return {
    id: row.id,
    deviceName: row.deviceName,
    userAgent: row.userAgent,
    ip: row.ip,
    createdAt: row.createdAt,
    lastUsedAt: row.lastUsedAt,
    expiresAt: row.expiresAt
  }
}
