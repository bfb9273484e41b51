// Connecting to PostgreSQL and migrating it, shared by the db plugin and `npm run db:migrate`.
// The embedded database (db/embedded.ts) shares the schema, the migrations and every query.
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { drizzle } from 'drizzle-orm/postgres-js'
import { migrate } from 'drizzle-orm/postgres-js/migrator'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import { sql, type SQL } from 'drizzle-orm'
import postgres from 'postgres'
import { PROJECT_ROOT } from '../lib/project-root.ts'
import { withTimeout } from '../lib/timeout.ts'
import { unavailable } from '../plugins/errors.ts'
import * as schema from './schema.ts'

export type Database = PgDatabase<PgQueryResultHKT, typeof schema>

export interface Logger {
  info (msg: string): void
  warn (msg: string): void
}

/** The database as people name it in messages: host, port and name, never credentials. */
export function describeDatabase (url: string): string {
  const u = new URL(url)
  return `PostgreSQL at ${u.hostname}:${u.port || '5432'}${u.pathname}`
}

export function openDatabase (url: string, options: { max?: number } = {}) {
  const client = postgres(url, {
    max: options.max ?? 10,
    // A dead or unreachable server must fail a request quickly (503), not hang it.
    connect_timeout: 2,
    idle_timeout: 60,
    onnotice: () => {},
    connection: { application_name: 'auth-api' }
  })
  return { sql: client, db: drizzle(client, { schema }) as unknown as Database }
}

/** Waits until the database answers, for at most `waitMs`; throws a message naming it. */
export async function waitForDatabase (client: postgres.Sql, url: string, waitMs: number, log: Logger): Promise<void> {
  const deadline = Date.now() + waitMs
  let warned = false
  for (;;) {
    try {
      await client`select 1`
      return
    } catch {
      if (Date.now() >= deadline) {
        throw new Error(`Cannot connect to the database (${describeDatabase(url)}) after ${Math.round(waitMs / 1000)} s`)
      }
      if (!warned) log.warn(`Waiting for the database (${describeDatabase(url)}) to accept connections`)
      warned = true
      await sleep(Math.min(1000, Math.max(0, deadline - Date.now())))
    }
  }
}

// tsc does not copy the .sql files: they are read from the project, from sources and dist/ alike.
export const MIGRATIONS_FOLDER = join(PROJECT_ROOT, 'db', 'migrations')

// Any fixed 64-bit number; instances starting together take turns on it.
const MIGRATION_LOCK = 4_242_001_337

class ForeignSchemaError extends Error {}

/** The rows of a raw query, whichever driver runs it (postgres.js: an array; PGlite: `.rows`). */
export async function queryRows<T> (db: Database, query: SQL): Promise<T[]> {
  const result = await db.execute(query) as unknown
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[]
}

/**
 * Applies the committed migrations with the driver's migrator. Refuses a database whose
 * `users` table this service did not create, such as the FastAPI version's, rather than
 * migrating over it.
 */
export async function applyMigrations (
  db: Database,
  migrator: (db: Database, config: { migrationsFolder: string }) => Promise<void>,
  describe: string,
  log: Logger
): Promise<void> {
  const [state] = await queryRows<{ users: string | null, journal: string | null }>(db, sql`
    select to_regclass('public.users')::text as users,
           to_regclass('drizzle.__drizzle_migrations')::text as journal`)
  if (state?.users) {
    const applied = state.journal ? await queryRows(db, sql`select 1 from drizzle.__drizzle_migrations limit 1`) : []
    if (applied.length === 0) {
      throw new ForeignSchemaError(
        `The database (${describe}) already has a table "users" that this service did not create ` +
        '(for example the FastAPI version\'s). Use an empty database; importing those users is not supported.'
      )
    }
  }
  await migrator(db, { migrationsFolder: MIGRATIONS_FOLDER })
  log.info('Database schema is up to date')
}

/** Migrates a PostgreSQL server under an advisory lock, so instances starting together are safe. */
export async function migrateDatabase (url: string, log: Logger): Promise<void> {
  // One connection, so the session-level lock and the migration share it.
  const { sql: client, db } = openDatabase(url, { max: 1 })
  try {
    await client`select pg_advisory_lock(${MIGRATION_LOCK})`
    await applyMigrations(db, migrate as never, describeDatabase(url), log)
  } finally {
    await client`select pg_advisory_unlock(${MIGRATION_LOCK})`.catch(() => {})
    await client.end({ timeout: 5 })
  }
}

/** A database the service uses: a PostgreSQL server or the embedded one. */
export interface DatabaseConnection {
  db: Database
  /** How logs and messages name it, never with credentials. */
  describe: string
  /** Resolves when the database answers within about a second (readiness). */
  ping (): Promise<void>
  close (): Promise<void>
}

/** The PostgreSQL server of DATABASE_URL: waited for (1.1), then migrated if asked to. */
export async function connectServerDatabase (
  url: string,
  options: { waitMs: number, migrate: boolean, log: Logger }
): Promise<DatabaseConnection> {
  const { sql: client, db } = openDatabase(url)
  try {
    await waitForDatabase(client, url, options.waitMs, options.log)
    if (options.migrate) await migrateDatabase(url, options.log)
  } catch (error) {
    await client.end({ timeout: 1 })
    throw error
  }
  return {
    db,
    describe: describeDatabase(url),
    ping: async () => { await withTimeout(client`select 1`, 1000) },
    close: async () => { await client.end({ timeout: 5 }) }
  }
}

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
  'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED'
])

/**
 * True when an error means the database is unreachable or refusing work (a 503), as opposed to
 * a bug (a 500). Looks through Drizzle's wrapper at the driver error's code.
 */
export function isDatabaseUnavailable (error: unknown): boolean {
  const code = codeOf(error) ?? ''
  // SQLSTATE classes 08 (connection), 53 (insufficient resources), 57 (operator intervention),
  // 40 (serialization failure, deadlock: retrying helps) and 25006 (read-only after a failover).
  return UNAVAILABLE_CODES.has(code) || /^(08|53|57|40)[0-9A-Z]{3}$/.test(code) || code === '25006'
}

/** The driver's error code (SQLSTATE or system code), looking through Drizzle's wrapper. */
export function codeOf (error: unknown): string | undefined {
  for (let e = error as { code?: unknown, cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string') return e.code
  }
  return undefined
}

// postgres.js has no query timeout: a server that stops answering on an open connection would
// hold the request forever. Every request must end within 15 s (API.md §9).
const QUERY_TIMEOUT_MS = 3000

/**
 * Runs a query (or transaction) with a timeout. An unreachable or unanswering database becomes
 * a 503; anything else a plain error (a 500) that carries only the driver's code: Drizzle's
 * wrapper holds the query and its parameters (password hashes, emails, token hashes) in its
 * message and fields, and none of them may reach a log.
 */
export async function guarded<T> (work: Promise<T>, timeoutMs = QUERY_TIMEOUT_MS): Promise<T> {
  try {
    return await withTimeout(work, timeoutMs)
  } catch (error) {
    const code = codeOf(error)
    throw isDatabaseUnavailable(error)
      ? unavailable({ code })
      : new Error(`database query failed (${code ?? 'no code'})`)
  }
}
