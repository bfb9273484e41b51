// The users table, as the routes need it. Availability failures become 503 here.
import { eq } from 'drizzle-orm'
import { withTimeout } from '../lib/timeout.ts'
import { unavailable } from '../plugins/errors.ts'
import { codeOf, isDatabaseUnavailable, type Database } from './database.ts'
import { users, type User } from './schema.ts'

// postgres.js has no query timeout: a server that stops answering on an open connection would
// hold the request forever. Every request must end within 15 s (API.md §9).
const QUERY_TIMEOUT_MS = 3000

async function guarded<T> (work: Promise<T>): Promise<T> {
  try {
    return await withTimeout(work, QUERY_TIMEOUT_MS)
  } catch (error) {
    // Drizzle's wrapper carries the query and its parameters (password hashes, emails) in its
    // message and fields: only the driver's code goes on, so nothing of them reaches a log.
    const code = codeOf(error)
    throw isDatabaseUnavailable(error)
      ? unavailable({ code })
      : new Error(`database query failed (${code ?? 'no code'})`)
  }
}

export function createUserRepository (db: Database) {
  return {
    /** Inserts a user; null when the (normalised) email is taken. The unique index decides races. */
    async create (user: { email: string, name: string, passwordHash: string }): Promise<User | null> {
      const rows = await guarded(db.insert(users).values(user).onConflictDoNothing({ target: users.email }).returning())
      return rows[0] ?? null
    },

    async findByEmail (email: string): Promise<User | null> {
      const rows = await guarded(db.select().from(users).where(eq(users.email, email)).limit(1))
      return rows[0] ?? null
    },

    async findById (id: string): Promise<User | null> {
      const rows = await guarded(db.select().from(users).where(eq(users.id, id)).limit(1))
      return rows[0] ?? null
    }
  }
}

export type UserRepository = ReturnType<typeof createUserRepository>
