// The embedded database (API.md §1.1, §1.2): PostgreSQL compiled to WebAssembly (PGlite), in
// this process, with its files in DATA_DIR. Same schema, same migrations, same queries as a
// PostgreSQL server, through Drizzle's PGlite driver. One process only: a lock file in
// DATA_DIR turns a second process away before it can touch the files.
// Imported on demand, so a service with DATABASE_URL never loads the WebAssembly module.
import { join } from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import { drizzle } from 'drizzle-orm/pglite'
import { migrate } from 'drizzle-orm/pglite/migrator'
import { lockDataDir } from '../lib/data-dir.ts'
import { withTimeout } from '../lib/timeout.ts'
import { applyMigrations, type Database, type DatabaseConnection, type Logger } from './database.ts'
import * as schema from './schema.ts'

export async function openEmbeddedDatabase (dataDir: string, options: { migrate: boolean, log: Logger }): Promise<DatabaseConnection> {
  const release = lockDataDir(dataDir)
  const describe = `the embedded database at ${dataDir}`
  let client: PGlite | undefined
  try {
    client = await PGlite.create(join(dataDir, 'pgdata'))
    const db = drizzle(client, { schema }) as unknown as Database
    if (options.migrate) await applyMigrations(db, migrate as never, describe, options.log)
    const open = client
    return {
      db,
      describe,
      ping: async () => { await withTimeout(open.query('select 1'), 1000) },
      close: async () => {
        try {
          await open.close()
        } finally {
          release()
        }
      }
    }
  } catch (error) {
    await client?.close().catch(() => {})
    release()
    throw error
  }
}
