// `npm run db:migrate`: applies the migrations once, for deployments that start instances
// with MIGRATE_ON_START=false. Reads the same settings as the service: the PostgreSQL server
// of DATABASE_URL, or else the embedded database in DATA_DIR.
import { parseDatabaseSettings, withEnvFile } from '../config.ts'
import { migrateDatabase } from './database.ts'

const env = withEnvFile(process.env)
const log = { info: (msg: string) => console.log(msg), warn: (msg: string) => console.warn(msg) }
try {
  const { DATABASE_URL: url, DATA_DIR: dataDir } = parseDatabaseSettings(env)
  if (url !== undefined) {
    await migrateDatabase(url, log)
  } else {
    const { openEmbeddedDatabase } = await import('./embedded.ts')
    await (await openEmbeddedDatabase(dataDir, { migrate: true, log })).close()
  }
} catch (error) {
  console.error(error instanceof Error ? error.message : 'Migration failed')
  process.exit(1)
}
