// The users table, as the routes need it. Availability failures become 503 (see `guarded`).
import { and, eq } from 'drizzle-orm'
import { guarded, type Database } from './database.ts'
import { users, type User } from './schema.ts'

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

    /**
     * Replaces the password hash only while it is still `from`, so that neither a concurrent
     * change nor an undo can overwrite another change; false when it was not `from`.
     */
    async replacePasswordHash (id: string, from: string, to: string): Promise<boolean> {
      const rows = await guarded(db.update(users).set({ passwordHash: to })
        .where(and(eq(users.id, id), eq(users.passwordHash, from))).returning({ id: users.id }))
      return rows.length > 0
    },

    async findById (id: string): Promise<User | null> {
      const rows = await guarded(db.select().from(users).where(eq(users.id, id)).limit(1))
      return rows[0] ?? null
    }
  }
}

export type UserRepository = ReturnType<typeof createUserRepository>
