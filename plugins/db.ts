// Decorates `users` (the user repository) and `database` (the connection: Drizzle, readiness
// check, name for logs). The PostgreSQL server of DATABASE_URL, waited for and migrated at boot
// (API.md §1.1); without DATABASE_URL, the embedded database in DATA_DIR.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { connectServerDatabase, type DatabaseConnection } from '../db/database.ts'
import { createUserRepository } from '../db/users.ts'

declare module 'fastify' {
  interface FastifyInstance {
    users: ReturnType<typeof createUserRepository>
    database: DatabaseConnection
  }
}

export interface DbPluginOptions {
  /** How long boot waits for a database server before giving up (API.md §1.1: 30 s). */
  connectWaitMs?: number
}

async function dbPlugin (app: FastifyInstance, opts: DbPluginOptions): Promise<void> {
  const { DATABASE_URL: url, DATA_DIR: dataDir, MIGRATE_ON_START: migrate } = app.config
  const database = url !== undefined
    ? await connectServerDatabase(url, { waitMs: opts.connectWaitMs ?? 30_000, migrate, log: app.log })
    : await (await import('../db/embedded.ts')).openEmbeddedDatabase(dataDir, { migrate, log: app.log })
  app.addHook('onClose', () => database.close())

  app.decorate('database', database)
  app.decorate('users', createUserRepository(database.db))
}

export default fp(dbPlugin, { name: 'db', fastify: '5.x', decorators: { fastify: ['config'] } })
