// `npm run db:migrate`: applies the migrations once, for deployments that start instances
// with MIGRATE_ON_START=false. Reads the same settings as the service.
import { ConfigError, parseDatabaseUrl, withEnvFile } from '../config.ts'
import { migrateDatabase } from './database.ts'

const env = withEnvFile(process.env)
const log = { info: (msg: string) => console.log(msg), warn: (msg: string) => console.warn(msg) }
try {
  await migrateDatabase(parseDatabaseUrl(env), log)
} catch (error) {
  console.error(error instanceof ConfigError || error instanceof Error ? error.message : 'Migration failed')
  process.exit(1)
}
