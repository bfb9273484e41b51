// `npm start` runs this first (API.md §1.1): compile the TypeScript sources into dist/ when
// dist/ is missing or older than the sources. A production image ships dist/ without the
// compiler, so there it only checks that dist/ is present.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const entry = join(root, 'dist', 'server.js')
const compiler = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
const SOURCE_DIRS = ['.', 'plugins', 'routes', 'schema', 'db', 'lib', 'sessions']

function newestSource () {
  let newest = 0
  for (const dir of SOURCE_DIRS) {
    const path = join(root, dir)
    if (!existsSync(path)) continue
    for (const name of readdirSync(path)) {
      if (name.endsWith('.ts') || name.startsWith('tsconfig')) newest = Math.max(newest, statSync(join(path, name)).mtimeMs)
    }
  }
  return newest
}

const built = existsSync(entry)
if (!existsSync(compiler)) {
  if (built) process.exit(0)
  console.error('dist/ is missing and TypeScript is not installed: run `npm ci` first.')
  process.exit(1)
}
if (built && statSync(entry).mtimeMs >= newestSource()) process.exit(0)

console.error(built ? 'Sources changed: rebuilding dist/ ...' : 'Building dist/ ...')
// A clean build, so no file of a deleted source lingers in dist/.
rmSync(join(root, 'dist'), { recursive: true, force: true })
const result = spawnSync(process.execPath, [compiler, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root })
process.exit(result.status ?? 1)
