// Decorates `users` (the user repository) and `database` (its readiness check): PostgreSQL
// through Drizzle, waited for and migrated at boot (API.md §1.1).
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { describeDatabase, migrateDatabase, openDatabase, waitForDatabase } from '../db/database.ts'
import { createUserRepository } from '../db/users.ts'
import { withTimeout } from '../lib/timeout.ts'

declare module 'fastify' {
  interface FastifyInstance {
    users: ReturnType<typeof createUserRepository>
    database: { describe: string, ping (): Promise<void> }
  }
}

export interface DbPluginOptions {
  /** How long boot waits for the database before giving up (API.md §1.1: 30 s). */
  connectWaitMs?: number
}

async function dbPlugin (app: FastifyInstance, opts: DbPluginOptions): Promise<void> {
  const url = app.config.DATABASE_URL
  const { sql, db } = openDatabase(url)
  app.addHook('onClose', async () => { await sql.end({ timeout: 5 }) })

  await waitForDatabase(sql, url, opts.connectWaitMs ?? 30_000, app.log)
  if (app.config.MIGRATE_ON_START) await migrateDatabase(url, app.log)

  app.decorate('users', createUserRepository(db))
  app.decorate('database', {
    describe: describeDatabase(url),
    ping: async () => { await withTimeout(sql`select 1`, 1000) }
  })
}

export default fp(dbPlugin, { name: 'db', fastify: '5.x', decorators: { fastify: ['config'] } })
