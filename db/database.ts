// Connecting to PostgreSQL and migrating it, shared by the db plugin and `npm run db:migrate`.
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { drizzle } from 'drizzle-orm/postgres-js'
import { migrate } from 'drizzle-orm/postgres-js/migrator'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import postgres from 'postgres'
import { PROJECT_ROOT } from '../lib/project-root.ts'
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
  const sql = postgres(url, {
    max: options.max ?? 10,
    // A dead or unreachable server must fail a request quickly (503), not hang it.
    connect_timeout: 2,
    idle_timeout: 60,
    onnotice: () => {},
    connection: { application_name: 'auth-api' }
  })
  return { sql, db: drizzle(sql, { schema }) as unknown as Database }
}

/** Waits until the database answers, for at most `waitMs`; throws a message naming it. */
export async function waitForDatabase (sql: postgres.Sql, url: string, waitMs: number, log: Logger): Promise<void> {
  const deadline = Date.now() + waitMs
  let warned = false
  for (;;) {
    try {
      await sql`select 1`
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

export class ForeignSchemaError extends Error {}

/**
 * Applies the committed migrations under a PostgreSQL advisory lock (safe when instances start
 * together). Refuses a database whose `users` table this service did not create, such as the
 * FastAPI version's, rather than migrating over it.
 */
export async function migrateDatabase (url: string, log: Logger): Promise<void> {
  // One connection, so the session-level lock and the migration share it.
  const { sql, db } = openDatabase(url, { max: 1 })
  try {
    await sql`select pg_advisory_lock(${MIGRATION_LOCK})`
    const [state] = await sql<Array<{ users: string | null, journal: string | null }>>`
      select to_regclass('public.users')::text as users,
             to_regclass('drizzle.__drizzle_migrations')::text as journal`
    if (state?.users) {
      const applied = state.journal ? await sql`select 1 from drizzle.__drizzle_migrations limit 1` : []
      if (applied.length === 0) {
        throw new ForeignSchemaError(
          `The database (${describeDatabase(url)}) already has a table "users" that this service did not create ` +
          '(for example the FastAPI version\'s). Use an empty database; importing those users is not supported.'
        )
      }
    }
    await migrate(db as never, { migrationsFolder: MIGRATIONS_FOLDER })
    log.info('Database schema is up to date')
  } finally {
    await sql`select pg_advisory_unlock(${MIGRATION_LOCK})`.catch(() => {})
    await sql.end({ timeout: 5 })
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
  // SQLSTATE classes 08 (connection), 53 (insufficient resources), 57 (operator intervention).
  return UNAVAILABLE_CODES.has(code) || /^(08|53|57)[0-9A-Z]{3}$/.test(code)
}

/** The driver's error code (SQLSTATE or system code), looking through Drizzle's wrapper. */
export function codeOf (error: unknown): string | undefined {
  for (let e = error as { code?: unknown, cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string') return e.code
  }
  return undefined
}
