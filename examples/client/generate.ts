// `npm run client:generate`: regenerates schema.d.ts, the types of the API, from the
// repository's openapi.json with openapi-typescript (run `npm run openapi` first when the routes
// changed). test/client.test.ts checks that the committed file is what this generates.
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import openapiTS, { astToString, COMMENT_HEADER } from 'openapi-typescript'

export const OPENAPI_URL = new URL('../../openapi.json', import.meta.url)
export const SCHEMA_FILE = fileURLToPath(new URL('./schema.d.ts', import.meta.url))

// Generated code keeps openapi-typescript's own formatting; the linter leaves it alone.
const LINT_OFF = '/* eslint-disable */\n'

/** The text of schema.d.ts for openapi.json as it is now (openapi-typescript's defaults, as its CLI). */
export async function generateClientSchema (): Promise<string> {
  return LINT_OFF + COMMENT_HEADER + astToString(await openapiTS(OPENAPI_URL, { silent: true }))
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(SCHEMA_FILE, await generateClientSchema())
  console.log(`wrote ${SCHEMA_FILE}`)
}
