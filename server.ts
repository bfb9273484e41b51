// Entry point: the only reader of the environment. Reads `.env`, validates the settings,
// builds the app, listens, and shuts down gracefully (API.md §1.1).
import type { FastifyInstance } from 'fastify'
import { buildApp, createLogger } from './app.ts'
import { ConfigError, parseConfig, withEnvFile } from './config.ts'
import { DataDirError } from './lib/data-dir.ts'

// Process managers may deliver SIGTERM twice (to npm and to node); only this deadline forces
// an exit, so a repeated signal never cuts a graceful shutdown short.
const SHUTDOWN_DEADLINE_MS = 9_500
const FORCE_CLOSE_CONNECTIONS_MS = 5_000

const env = withEnvFile(process.env)
// Made before the settings are validated, so that even a bad setting is reported as a JSON line.
const log = createLogger(/^(fatal|error|warn|info|debug|trace|silent)$/i.test(env.LOG_LEVEL ?? '') ? env.LOG_LEVEL!.toLowerCase() : 'info')

let parsed
try {
  parsed = parseConfig(env)
} catch (error) {
  log.fatal(error instanceof ConfigError || error instanceof DataDirError ? error.message : 'Invalid settings')
  process.exit(1)
}
const { config, warnings } = parsed
for (const warning of warnings) log.warn(warning)

let app: FastifyInstance
try {
  app = await buildApp(config, { logger: log })
} catch (error) {
  // Boot failures name the store, never a password (the messages are ours; see db/database.ts).
  log.fatal({ reason: error instanceof Error ? error.message : String(error) }, 'Start-up failed')
  process.exit(1)
}

let shuttingDown = false
async function shutdown (signal: NodeJS.Signals): Promise<void> {
  if (shuttingDown) {
    log.warn({ signal }, 'Already shutting down; signal ignored')
    return
  }
  shuttingDown = true
  log.info({ signal }, 'Shutting down: finishing in-flight requests')
  setTimeout(() => {
    log.error(`Shutdown did not finish within ${SHUTDOWN_DEADLINE_MS} ms; exiting`)
    process.exit(1)
  }, SHUTDOWN_DEADLINE_MS)
  // A connection that never sends a request (a browser's preconnect) would hold close()
  // until its timeout: after a few seconds, in-flight work is done, so drop what is left.
  setTimeout(() => app.server.closeAllConnections(), FORCE_CLOSE_CONNECTIONS_MS).unref()
  try {
    await app.close()
    log.info('Stopped')
    process.exit(0)
  } catch (error) {
    log.error({ err: error }, 'Error while shutting down')
    process.exit(1)
  }
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)

try {
  await app.listen({ host: config.HOST, port: config.PORT })
} catch (error) {
  log.fatal({ reason: error instanceof Error ? error.message : String(error) }, `Cannot listen on ${config.HOST}:${config.PORT}`)
  process.exit(1)
}
const address = `http://${config.HOST}:${config.PORT}`
log.info({ address, users: app.database.describe, sessions: app.sessionStoreName },
  `Listening on ${address}; users in ${app.database.describe}; sessions in ${app.sessionStoreName}`)
