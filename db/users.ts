// The users table, as the routes need it. Availability failures become 503 (see `guarded`).
import { eq } from 'drizzle-orm'
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

    async updatePasswordHash (id: string, passwordHash: string): Promise<void> {
      await guarded(db.update(users).set({ passwordHash }).where(eq(users.id, id)))
    },

    async findById (id: string): Promise<User | null> {
      const rows = await guarded(db.select().from(users).where(eq(users.id, id)).limit(1))
      return rows[0] ?? null
    }
  }
}

export type UserRepository = ReturnType<typeof createUserRepository>
