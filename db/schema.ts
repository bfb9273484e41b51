// Drizzle tables. Imports only from packages: drizzle-kit loads this file on its own.
import { pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'

export const users = pgTable('users', {
  id: uuid('id').primaryKey().defaultRandom(),
  // Stored normalised (API.md §3.1); the unique index is what decides a signup race.
  email: text('email').notNull(),
  name: text('name').notNull(),
  passwordHash: text('password_hash').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true, precision: 3 }).notNull().defaultNow()
}, (t) => [uniqueIndex('users_email_key').on(t.email)])

export type User = typeof users.$inferSelect
