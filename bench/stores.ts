// The bench's own stores and their seeding: a database of its own (dropped and re-created at
// every run) and Redis keys under a prefix of its own; or, with --embedded, an embedded
// database in a temporary DATA_DIR. Users go in through one multi-row INSERT ... SELECT per
// chunk with a precomputed argon2id hash; Redis sessions through the session store's own create
// script (the same keys and fields as a login makes), database sessions through INSERT ... unnest.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { PGlite } from '@electric-sql/pglite'
import { Redis } from 'ioredis'
import postgres from 'postgres'
import { openEmbeddedDatabase } from '../db/embedded.ts'
import { createRedisSessionStore } from '../sessions/redis-store.ts'
import type { SessionSettings } from '../sessions/store.ts'
import type { BenchOptions } from './options.ts'
import { hashRefreshToken, mintRefreshToken, sessionId, USER_AGENT, userId } from './tokens.ts'

const DAY_MS = 86_400_000
/** The service's defaults (config.ts), which the bench does not change. */
export const SESSION_SETTINGS: SessionSettings = { refreshMs: 14 * DAY_MS, maxLifetimeMs: 90 * DAY_MS, maxPerUser: 50, graceMs: 10_000 }

const USER_CHUNK = 20_000
const SESSION_CHUNK = 2_000

type Query = (text: string, params?: unknown[]) => Promise<Array<Record<string, unknown>>>

const INSERT_USERS = `
  insert into users (id, email, name, password_hash)
  select md5('bench-user-' || i)::uuid, 'user-' || i || '@bench.example', 'Bench User ' || i, $1
  from generate_series($2::int, $3::int) as i`

const countUsers = async (query: Query) => Number((await query('select count(*)::int as n from users'))[0]?.n)

async function insertUsers (query: Query, from: number, to: number, passwordHash: string): Promise<void> {
  for (let start = from; start <= to; start += USER_CHUNK) {
    await query(INSERT_USERS, [passwordHash, start, Math.min(to, start + USER_CHUNK - 1)])
  }
}

export interface SessionSample {
  sessions: number
  /** Mean bytes of a session: its hash plus its share of the user's index (MEMORY USAGE). */
  meanBytes: number
  meanHashBytes: number
  meanIndexShareBytes: number
  /** Sessions rotated at least once (previous_hash set) and their mean bytes. */
  rotated: { sessions: number, meanBytes: number }
  fresh: { sessions: number, meanBytes: number }
}

export interface BenchStores {
  /** Where sessions live, for the report. */
  describe: string
  /** The service's DATA_DIR. */
  dataDir: string
  /** Seeding needs the service stopped (the embedded database belongs to one process). */
  exclusive: boolean
  /** Empties the stores: a fresh database, no keys under the prefix. */
  reset (): Promise<void>
  /** Users from..to (inclusive) and one session each: their refresh tokens, and the users stored now. */
  seed (from: number, to: number, passwordHash: string): Promise<{ tokens: string[], users: number }>
  /** Redis bytes per session over a sample of the seeded sessions, or null without Redis. */
  sessionBytes (seeded: number, sample: number): Promise<SessionSample | null>
  /** PIDs of the PostgreSQL backends of the service (application_name auth-api). */
  postgresPids (): Promise<number[]>
  /** Redis' CPU seconds so far (INFO cpu), or null without Redis. */
  redisCpuSeconds (): Promise<number | null>
  /** Removes everything the bench made. */
  cleanup (): Promise<void>
  close (): Promise<void>
}

export function createStores (options: BenchOptions): BenchStores {
  return options.embedded ? embeddedStores() : serverStores(options)
}

function serverStores (options: BenchOptions): BenchStores {
  const database = new URL(options.databaseUrl).pathname.slice(1)
  const dataDir = mkdtempSync(join(tmpdir(), 'auth-bench-'))
  let sql: postgres.Sql | undefined
  const db = () => (sql ??= postgres(options.databaseUrl, { max: 4, onnotice: () => {} }))
  const query: Query = async (text, params = []) => [...await db().unsafe(text, params as never[])]
  const redis = new Redis(options.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 3 })
  const store = createRedisSessionStore(redis, options.redisPrefix, SESSION_SETTINGS)
  const prefix = options.redisPrefix

  async function deleteKeys (): Promise<number> {
    let cursor = '0'
    let deleted = 0
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) deleted += await redis.unlink(...keys)
    } while (cursor !== '0')
    return deleted
  }

  async function dropDatabase (): Promise<void> {
    const admin = postgres(options.adminDatabaseUrl, { max: 1, onnotice: () => {} })
    try {
      await admin.unsafe(`drop database if exists "${database}" with (force)`)
      return await admin.unsafe(`create database "${database}"`).then(() => {})
    } finally {
      await admin.end({ timeout: 5 })
    }
  }

  return {
    describe: `PostgreSQL database ${database}, sessions in Redis under ${prefix}`,
    dataDir,
    exclusive: false,
    async reset () {
      await sql?.end({ timeout: 5 })
      sql = undefined
      await redis.connect().catch(() => {})
      await deleteKeys()
      await dropDatabase()
    },
    async seed (from, to, passwordHash) {
      await insertUsers(query, from, to, passwordHash)
      const tokens: string[] = []
      for (let start = from; start <= to; start += SESSION_CHUNK) {
        const batch: Array<Promise<unknown>> = []
        for (let i = start; i <= Math.min(to, start + SESSION_CHUNK - 1); i++) {
          const token = mintRefreshToken(userId(i), sessionId(i))
          tokens.push(token)
          batch.push(store.create({
            userId: userId(i), sessionId: sessionId(i), tokenHash: hashRefreshToken(token), deviceName: null, userAgent: USER_AGENT, ip: '127.0.0.1'
          }))
        }
        await Promise.all(batch)
      }
      return { tokens, users: await countUsers(query) }
    },
    async sessionBytes (seeded, sample) {
      const totals = { all: [0, 0, 0], rotated: [0, 0], fresh: [0, 0] }
      const picks = new Set<number>()
      while (picks.size < Math.min(sample, seeded)) picks.add(1 + Math.floor(Math.random() * seeded))
      for (const i of picks) {
        const key = `${prefix}{${userId(i)}}:session:${sessionId(i)}`
        const index = `${prefix}{${userId(i)}}:sessions`
        const [hashBytes, indexBytes, members, previous] = await Promise.all([
          redis.memory('USAGE', key, 'SAMPLES', 0), redis.memory('USAGE', index, 'SAMPLES', 0), redis.zcard(index), redis.hget(key, 'previous_hash')
        ])
        if (hashBytes === null || indexBytes === null || members === 0) continue
        const bytes = hashBytes + indexBytes / members
        totals.all[0]! += 1
        totals.all[1]! += hashBytes
        totals.all[2]! += indexBytes / members
        const kind = previous ? totals.rotated : totals.fresh
        kind[0]! += 1
        kind[1]! += bytes
      }
      const n = totals.all[0]!
      const mean = (sum: number, count: number) => count === 0 ? 0 : sum / count
      return {
        sessions: n,
        meanBytes: mean(totals.all[1]! + totals.all[2]!, n),
        meanHashBytes: mean(totals.all[1]!, n),
        meanIndexShareBytes: mean(totals.all[2]!, n),
        rotated: { sessions: totals.rotated[0]!, meanBytes: mean(totals.rotated[1]!, totals.rotated[0]!) },
        fresh: { sessions: totals.fresh[0]!, meanBytes: mean(totals.fresh[1]!, totals.fresh[0]!) }
      }
    },
    postgresPids: async () => (await query("select pid from pg_stat_activity where datname = $1 and application_name = 'auth-api'", [database]))
      .map((row) => Number(row.pid)),
    async redisCpuSeconds () {
      const info = await redis.info('cpu')
      const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN)
      return field('used_cpu_user') + field('used_cpu_sys')
    },
    async cleanup () {
      await sql?.end({ timeout: 5 })
      sql = undefined
      await deleteKeys()
      rmSync(dataDir, { recursive: true, force: true })
      const admin = postgres(options.adminDatabaseUrl, { max: 1, onnotice: () => {} })
      try {
        await admin.unsafe(`drop database if exists "${database}" with (force)`)
      } finally {
        await admin.end({ timeout: 5 })
      }
    },
    async close () {
      await sql?.end({ timeout: 5 })
      sql = undefined
      redis.disconnect()
    }
  }
}

const INSERT_SESSIONS = `
  insert into sessions (id, user_id, current_hash, user_agent, ip, created_at, last_used_at, expires_at, max_expires_at)
  select s.id, s.user_id, s.hash, $4, '127.0.0.1', now(), now(), now() + $5 * interval '1 millisecond', now() + $6 * interval '1 millisecond'
  from unnest($1::uuid[], $2::uuid[], $3::text[]) as s(id, user_id, hash)`

function embeddedStores (): BenchStores {
  const dataDir = mkdtempSync(join(tmpdir(), 'auth-bench-embedded-'))
  const log = { info: () => {}, warn: (msg: string) => process.stderr.write(`${msg}\n`) }

  async function withDatabase<T> (work: (query: Query) => Promise<T>): Promise<T> {
    const connection = await openEmbeddedDatabase(dataDir, { migrate: true, log })
    const client = (connection.db as unknown as { $client: PGlite }).$client
    try {
      return await work(async (text, params) => (await client.query<Record<string, unknown>>(text, params)).rows)
    } finally {
      await connection.close()
    }
  }

  return {
    describe: `the embedded database in ${dataDir} (sessions in its sessions table)`,
    dataDir,
    exclusive: true,
    async reset () {
      rmSync(join(dataDir, 'pgdata'), { recursive: true, force: true })
    },
    seed: (from, to, passwordHash) => withDatabase(async (query) => {
      await insertUsers(query, from, to, passwordHash)
      const tokens: string[] = []
      for (let start = from; start <= to; start += SESSION_CHUNK) {
        const ids: string[] = []
        const users: string[] = []
        const hashes: string[] = []
        for (let i = start; i <= Math.min(to, start + SESSION_CHUNK - 1); i++) {
          const token = mintRefreshToken(userId(i), sessionId(i))
          tokens.push(token)
          ids.push(sessionId(i))
          users.push(userId(i))
          hashes.push(hashRefreshToken(token))
        }
        await query(INSERT_SESSIONS, [ids, users, hashes, USER_AGENT, SESSION_SETTINGS.refreshMs, SESSION_SETTINGS.maxLifetimeMs])
      }
      return { tokens, users: await countUsers(query) }
    }),
    sessionBytes: async () => null,
    postgresPids: async () => [],
    redisCpuSeconds: async () => null,
    async cleanup () {
      rmSync(dataDir, { recursive: true, force: true })
    },
    async close () {}
  }
}
