// `npm run openapi`: writes the OpenAPI document the service serves at GET /docs/json
// (API.md §12.2) to openapi.json at the repository root. Needs no PostgreSQL or Redis: the app
// is built on the embedded database in a temporary DATA_DIR, removed afterwards. The document
// depends on no setting, so these settings yield the one served under any configuration.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { buildApp } from '../app.ts'
import { parseConfig } from '../config.ts'
import { PROJECT_ROOT } from '../lib/project-root.ts'

const OPENAPI_FILE = join(PROJECT_ROOT, 'openapi.json')

async function main (): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'auth-api-openapi-'))
  try {
    // Settings passed in, never read from process.env or .env: no store but the embedded one.
    const { config } = parseConfig({ DATA_DIR: dataDir, LOG_LEVEL: 'silent' })
    const app = await buildApp(config, { logger: pino({ level: 'silent' }) })
    try {
      await app.ready()
      // 2-space indentation and a trailing newline, as test/openapi.test.ts expects.
      writeFileSync(OPENAPI_FILE, JSON.stringify(app.swagger(), null, 2) + '\n')
    } finally {
      await app.close()
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
  console.log(`wrote ${OPENAPI_FILE}`)
}

await main()
