// The database session store: the shared contract (store-contract.ts) on a PostgreSQL server
// (this file's own database) and on the embedded database (a temporary DATA_DIR), then what is
// particular to the table: expired rows are deleted by later logins, without a cron job.
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { eq, sql } from 'drizzle-orm'
import t, { type Test } from 'tap'
import { migrateDatabase, openDatabase, queryRows, type Database } from '../../db/database.ts'
import { openEmbeddedDatabase } from '../../db/embedded.ts'
import { sessions } from '../../db/schema.ts'
import { createDatabaseSessionStore } from '../../sessions/database-store.ts'
import { hashRefreshToken, mintRefreshToken } from '../../sessions/refresh-token.ts'
import { testDatabaseUrl } from '../fixtures/app.ts'
import { CONTRACT_SETTINGS, sessionStoreContract } from './store-contract.ts'

const quiet = { info () {}, warn () {} }

function suite (t: Test, db: Database) {
  const store = createDatabaseSessionStore(db, CONTRACT_SETTINGS)
  const storedText = async (userId: string) => {
    const rows = await queryRows<{ row: string }>(db, sql`select row_to_json(s)::text as row from sessions s where user_id = ${userId}`)
    return rows.map((r) => r.row).join('\n')
  }
  sessionStoreContract(t, { store, storedText, withSettings: (settings) => createDatabaseSessionStore(db, settings) })

  t.test('expired rows are deleted by later logins', async (t) => {
    const userId = randomUUID()
    const create = async (user = userId) => {
      const sessionId = randomUUID()
      await store.create({ userId: user, sessionId, tokenHash: hashRefreshToken(mintRefreshToken({ userId: user, sessionId })), deviceName: null, userAgent: null, ip: null })
      return sessionId
    }
    const stranger = randomUUID()
    await create(stranger)
    await create()
    await sleep(CONTRACT_SETTINGS.refreshMs + 100)
    t.equal((await db.select().from(sessions).where(eq(sessions.userId, stranger))).length, 1, 'an expired row stays until a login passes')
    const fresh = await create()
    t.same((await db.select({ id: sessions.id }).from(sessions).where(eq(sessions.userId, userId))).map((r) => r.id), [fresh], 'the user\'s expired rows are gone')
    t.same(await db.select().from(sessions).where(eq(sessions.userId, stranger)), [], 'and other users\' expired rows')
    await store.revokeAll(userId)
  })
}

t.test('PostgreSQL server', async (t) => {
  const url = await testDatabaseUrl()
  await migrateDatabase(url, quiet)
  const { sql: client, db } = openDatabase(url)
  t.teardown(() => client.end())
  suite(t, db)
})

t.test('embedded database (PGlite)', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'auth-api-store-'))
  const database = await openEmbeddedDatabase(dataDir, { migrate: true, log: quiet })
  t.teardown(async () => {
    await database.close()
    await rm(dataDir, { recursive: true, force: true })
  })
  suite(t, database.db)
})
