// Drizzle tables. Imports only from packages: drizzle-kit loads this file on its own.
import { index, integer, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'

export const users = pgTable('users', {
  id: uuid('id').primaryKey().defaultRandom(),
  // Stored normalised (API.md §3.1); the unique index is what decides a signup race.
  email: text('email').notNull(),
  name: text('name').notNull(),
  passwordHash: text('password_hash').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true, precision: 3 }).notNull().defaultNow()
}, (t) => [uniqueIndex('users_email_key').on(t.email)])

export type User = typeof users.$inferSelect

const time = (name: string) => timestamp(name, { withTimezone: true, precision: 3 })

// The session store when no Redis is configured (API.md §7): one row per device session, the
// same fields as the Redis hash. No foreign key to users, like Redis: the store is independent
// of where users live. Rows past `expires_at` count as gone and are deleted as logins go by.
export const sessions = pgTable('sessions', {
  id: uuid('id').primaryKey(),
  userId: uuid('user_id').notNull(),
  // SHA-256 (base64url) of the current and the previous refresh token; never a token.
  currentHash: text('current_hash').notNull(),
  previousHash: text('previous_hash'),
  rotatedAt: time('rotated_at'),
  previousRotatedAt: time('previous_rotated_at'),
  deviceName: text('device_name'),
  userAgent: text('user_agent'),
  ip: text('ip'),
  createdAt: time('created_at').notNull(),
  lastUsedAt: time('last_used_at').notNull(),
  expiresAt: time('expires_at').notNull(),
  maxExpiresAt: time('max_expires_at').notNull()
}, (t) => [
  index('sessions_user_id_last_used_at_idx').on(t.userId, t.lastUsedAt),
  index('sessions_expires_at_idx').on(t.expiresAt)
])

export type SessionRow = typeof sessions.$inferSelect

// Rate-limit counters (API.md §8) when no Redis is configured: fixed windows keyed by a hash of
// what they count (never an email or address in clear). Expired rows are swept like sessions.
export const rateLimitCounters = pgTable('rate_limit_counters', {
  key: text('key').primaryKey(),
  count: integer('count').notNull(),
  expiresAt: time('expires_at').notNull()
}, (t) => [index('rate_limit_counters_expires_at_idx').on(t.expiresAt)])
