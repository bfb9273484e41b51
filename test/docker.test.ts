// The Docker deployment files: what `docker compose up` and the image rely on. No Docker engine
// is needed: the files are parsed, the image's file layout is rebuilt from the Dockerfile's COPY
// lines in a temporary folder and started with its CMD and HEALTHCHECK, and
// `docker compose config` is run when the Compose plugin is installed.
import { spawn, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, posix } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parse } from 'yaml'
import { parseConfig, SETTING_NAMES } from '../config.ts'
import { KEY_PREFIX, PASSWORD, REDIS_URL, testDatabaseUrl, uniqueEmail } from './fixtures/app.ts'
import { freePort } from './fixtures/ports.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8')
const SECRET = 'docker-test-secret-0123456789-abcdefghijklmnop'

// ---- docker-compose.yml --------------------------------------------------------------------

interface ComposeService {
  image?: string
  build?: string | { context?: string, dockerfile?: string }
  command?: string | string[]
  environment?: Record<string, string> | string[]
  env_file?: string | Array<string | { path: string, required?: boolean }>
  ports?: string[]
  volumes?: string[]
  healthcheck?: { test?: string | string[], interval?: string, timeout?: string, retries?: number, start_period?: string }
  depends_on?: string[] | Record<string, { condition?: string }>
  restart?: string
  stop_signal?: string
  stop_grace_period?: string
}

interface ComposeFile {
  version?: unknown
  services: Record<string, ComposeService>
  volumes?: Record<string, unknown>
}

/** Compose's variable interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}. */
function interpolate<T> (value: T, env: Record<string, string>): T {
  if (typeof value === 'string') {
    return value.replace(
      /\$\$|\$\{([A-Za-z_]\w*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)/g,
      (match: string, braced: string | undefined, op: string | undefined, arg: string | undefined, bare: string | undefined) => {
        if (match === '$$') return '$'
        const name = (braced ?? bare)!
        const present = op?.startsWith(':') ? (env[name] ?? '') !== '' : env[name] !== undefined
        if (op?.endsWith('-')) return present ? env[name]! : arg ?? ''
        if (op?.endsWith('?')) {
          if (!present) throw new Error(`required variable ${name} is missing a value: ${arg}`)
          return env[name]!
        }
        return env[name] ?? ''
      }) as T
  }
  if (Array.isArray(value)) return value.map((v) => interpolate(v, env)) as T
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, env)])) as T
  }
  return value
}

const compose = parse(read('docker-compose.yml')) as ComposeFile

/** The file as Compose sees it with these variables set (and no .env). */
const resolved = (env: Record<string, string>) => interpolate(compose, env)

function environmentOf (service: ComposeService | undefined): Record<string, string> {
  const env = service?.environment ?? {}
  if (Array.isArray(env)) return Object.fromEntries(env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]))
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)]))
}

function seconds (duration: string | undefined): number {
  let total = 0
  for (const [, n, unit] of (duration ?? '').matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us)/g)) {
    total += Number(n) * ({ h: 3600, m: 60, s: 1, ms: 0.001, us: 0.000001 }[unit as 'h'])
  }
  return total
}

const healthcheckText = (service: ComposeService | undefined) => [service?.healthcheck?.test ?? []].flat().join(' ')

t.test('docker-compose.yml', async (t) => {
  t.notOk('version' in compose, 'Compose spec: no obsolete version key')
  t.same(Object.keys(compose.services).sort(), ['app', 'postgres', 'redis'], 'three services: postgres, redis, app')
  const { postgres, redis, app } = resolved({ JWT_SECRET: SECRET }).services
  const declaredVolumes = Object.keys(compose.volumes ?? {})

  t.test('postgres', async (t) => {
    t.equal(postgres?.image, 'postgres:16')
    const env = environmentOf(postgres)
    for (const name of ['POSTGRES_USER', 'POSTGRES_PASSWORD', 'POSTGRES_DB']) t.ok(env[name], `${name} is set`)
    t.same(postgres?.ports, ['127.0.0.1:25000:5432'], 'published on 127.0.0.1:25000 only')
    const data = postgres?.volumes?.find((v) => v.endsWith(':/var/lib/postgresql/data'))
    t.ok(data, 'the data folder is a volume')
    t.ok(declaredVolumes.includes(data?.split(':')[0] ?? ''), 'a named volume declared at the top level')
    t.match(healthcheckText(postgres), /pg_isready/, 'healthcheck with pg_isready')
  })

  t.test('redis', async (t) => {
    t.equal(redis?.image, 'redis:7')
    const command = [redis?.command ?? []].flat().join(' ')
    t.match(command, /--appendonly yes/, 'append-only file on')
    t.match(command, /--appendfsync everysec/, 'fsync every second')
    const data = redis?.volumes?.find((v) => v.endsWith(':/data'))
    t.ok(data, '/data (the AOF) is a volume')
    t.ok(declaredVolumes.includes(data?.split(':')[0] ?? ''), 'a named volume declared at the top level')
    t.same(redis?.ports, ['127.0.0.1:25100:6379'], 'published on 127.0.0.1:25100 only')
    t.match(healthcheckText(redis), /redis-cli ping/, 'healthcheck with redis-cli ping')
  })

  t.test('app', async (t) => {
    const build = typeof app?.build === 'string' ? { context: app.build } : app?.build
    t.equal(build?.context, '.', 'built from this folder')
    t.ok(existsSync(join(ROOT, build?.dockerfile ?? 'Dockerfile')), 'with the Dockerfile')
    t.same(app?.ports, ['8000:8000'])
    t.same(app?.env_file, [{ path: '.env', required: false }], '.env is read when it exists, not required')
    t.same(app?.depends_on, { postgres: { condition: 'service_healthy' }, redis: { condition: 'service_healthy' } },
      'starts once postgres and redis are healthy')
    t.equal(app?.restart, 'unless-stopped')
    t.ok(app?.healthcheck?.test, 'has a healthcheck')
    t.equal(app?.stop_signal ?? 'SIGTERM', 'SIGTERM')
    t.ok(seconds(app?.stop_grace_period) >= 15, `stop_grace_period ${app?.stop_grace_period} leaves the 10 s graceful shutdown room`)
    for (const service of ['postgres', 'redis']) {
      t.ok(compose.services[service]?.healthcheck?.test, `${service} has the healthcheck that service_healthy waits for`)
    }
  })

  t.test('the app environment points at the compose services', async (t) => {
    const variableSets: Array<Record<string, string>> = [
      { JWT_SECRET: SECRET },
      { JWT_SECRET: SECRET, POSTGRES_USER: 'u1', POSTGRES_PASSWORD: 'p1', POSTGRES_DB: 'd1' }
    ]
    for (const variables of variableSets) {
      const services = resolved(variables).services
      const pg = environmentOf(services.postgres)
      const env = environmentOf(services.app)
      const database = new URL(env.DATABASE_URL ?? '')
      t.match(database.protocol, /^postgres(ql)?:$/)
      t.equal(database.hostname, 'postgres', 'DATABASE_URL names the postgres service')
      t.ok(database.hostname in services, 'which is a service of this file')
      t.equal(database.port || '5432', '5432', 'on its container port')
      t.equal(decodeURIComponent(database.username), pg.POSTGRES_USER, `user matches POSTGRES_USER (${JSON.stringify(variables)})`)
      t.equal(decodeURIComponent(database.password), pg.POSTGRES_PASSWORD, 'password matches POSTGRES_PASSWORD')
      t.equal(database.pathname, `/${pg.POSTGRES_DB}`, 'database matches POSTGRES_DB')
      const redisUrl = new URL(env.REDIS_URL ?? '')
      t.equal(redisUrl.protocol, 'redis:')
      t.equal(redisUrl.hostname, 'redis', 'REDIS_URL names the redis service')
      t.equal(redisUrl.port || '6379', '6379')
    }

    const env = environmentOf(resolved({ JWT_SECRET: SECRET }).services.app)
    t.equal(env.APP_ENV, 'prod', 'APP_ENV defaults to prod')
    t.equal(env.JWT_SECRET, SECRET, 'JWT_SECRET comes from the environment or .env')
    t.equal(environmentOf(resolved({ JWT_SECRET: SECRET, APP_ENV: 'dev' }).services.app).APP_ENV, 'dev', 'APP_ENV can be overridden')
    const published = (app?.ports ?? []).map((p) => p.split(':').at(-1))
    t.same(published, [env.PORT ?? '8000'], 'the published container port is the one the service listens on')
    t.notOk(['127.0.0.1', 'localhost', '::1'].includes(env.HOST ?? '0.0.0.0'), 'listens on every interface of the container')
    for (const name of Object.keys(env)) t.ok((SETTING_NAMES as readonly string[]).includes(name), `${name} is a setting of the service`)
    t.doesNotThrow(() => parseConfig(env), 'the service accepts the environment compose gives it')

    t.throws(() => resolved({}), /JWT_SECRET.*32 characters/, 'without JWT_SECRET compose stops with a message naming it')
    t.throws(() => resolved({ JWT_SECRET: '' }), /JWT_SECRET/, 'an empty JWT_SECRET too')
  })
})

// ---- Dockerfile ----------------------------------------------------------------------------

interface Instruction { keyword: string, args: string }
interface Stage { from: string, name: string | undefined, instructions: Instruction[] }

/** Splits a Dockerfile into stages of instructions (continuations joined, comments dropped). */
function parseDockerfile (text: string): Stage[] {
  const stages: Stage[] = []
  let pending = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line.startsWith('#') || (pending === '' && line === '')) continue
    if (line.endsWith('\\')) {
      pending += line.slice(0, -1) + ' '
      continue
    }
    const full = (pending + line).trim()
    pending = ''
    const [, keyword = '', args = ''] = /^(\S+)\s*(.*)$/.exec(full) ?? []
    const instruction = { keyword: keyword.toUpperCase(), args: args.trim() }
    if (instruction.keyword === 'FROM') {
      const [from = '', , name] = instruction.args.split(/\s+/)
      stages.push({ from, name, instructions: [] })
    } else {
      stages.at(-1)?.instructions.push(instruction)
    }
  }
  return stages
}

const of = (stage: Stage | undefined, keyword: string) => stage?.instructions.filter((i) => i.keyword === keyword) ?? []

interface Copy { from: string | undefined, sources: string[], dest: string }
function copies (stage: Stage | undefined): Copy[] {
  return of(stage, 'COPY').map(({ args }) => {
    const words = args.split(/\s+/)
    const flags = words.filter((w) => w.startsWith('--'))
    const paths = args.includes('[') ? JSON.parse(args.slice(args.indexOf('['))) as string[] : words.filter((w) => !w.startsWith('--'))
    const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length)
    return { from, sources: paths.slice(0, -1), dest: paths.at(-1) ?? '' }
  })
}

function workdir (stage: Stage | undefined): string {
  return of(stage, 'WORKDIR').at(-1)?.args ?? '/'
}

/** The command of an exec-form CMD or HEALTHCHECK ... CMD instruction. */
function execForm (args: string | undefined): string[] {
  const text = args ?? ''
  const json = text.slice(text.indexOf('['))
  return text.includes('[') ? JSON.parse(json) as string[] : []
}

/** .dockerignore: is this path (relative to the context) left out of the build context? */
function dockerignored (text: string): (path: string) => boolean {
  const rules = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#')).map((line) => {
    const negate = line.startsWith('!')
    const pattern = posix.normalize((negate ? line.slice(1) : line).replace(/^\/+/, '')).replace(/\/+$/, '')
    const source = pattern.split('**').map((part) =>
      part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')).join('.*')
    return { negate, regex: new RegExp(`^${source}$`) }
  })
  return (path) => {
    const parts = posix.normalize(path).replace(/^\.$|\/+$/g, '').split('/')
    let ignored = false
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/')
      for (const rule of rules) if (prefix !== '' && rule.regex.test(prefix)) ignored = !rule.negate
    }
    return ignored
  }
}

const stages = parseDockerfile(read('Dockerfile'))
const final = stages.at(-1)
const isIgnored = dockerignored(read('.dockerignore'))
const packageJson = JSON.parse(read('package.json')) as { dependencies: Record<string, string> }

t.test('Dockerfile', async (t) => {
  t.ok(stages.length >= 2, 'multi-stage')
  for (const stage of stages) {
    t.match(stage.from, /^node:\d+-[a-z]+-slim$/, `${stage.name ?? 'a stage'} is on a Debian slim Node image (glibc, for argon2)`)
    t.notMatch(stage.from, /alpine/)
  }
  const build = stages.find((s) => of(s, 'RUN').some((r) => /npm run build/.test(r.args)))
  t.ok(build && build !== final, 'a build stage runs npm run build')
  t.ok(of(build, 'RUN').some((r) => /\bnpm ci\b/.test(r.args) && !/--omit=dev/.test(r.args)), 'with every dependency (npm ci)')

  t.ok(of(final, 'RUN').some((r) => /\bnpm ci\b.*--omit=dev/.test(r.args)), 'the final stage installs production dependencies only')
  t.notOk(of(final, 'RUN').some((r) => /npm run build|\btsc\b/.test(r.args)), 'and compiles nothing')
  const finalCopies = copies(final)
  const fromBuild = finalCopies.filter((c) => c.from !== undefined)
  t.ok(fromBuild.every((c) => c.from === build?.name), 'copies from the build stage by name')
  t.ok(fromBuild.some((c) => c.sources.includes(posix.join(workdir(build), 'dist'))), 'copies dist/ from the build stage')
  const fromContext = finalCopies.filter((c) => c.from === undefined).flatMap((c) => c.sources)
  for (const path of ['db/migrations', 'package.json', 'package-lock.json']) t.ok(fromContext.includes(path), `copies ${path}`)

  const user = of(final, 'USER').at(-1)?.args
  t.ok(user && !/^(root|0)(:|$)/.test(user), `runs as a non-root user (${user})`)
  t.same(execForm(of(final, 'CMD').at(-1)?.args), ['node', 'dist/server.js'], 'CMD runs node dist/server.js directly (exec form, no npm)')
  t.equal(of(final, 'STOPSIGNAL').at(-1)?.args ?? 'SIGTERM', 'SIGTERM')
  t.ok(of(final, 'EXPOSE').some((e) => e.args.split(/\s+/).includes('8000')), 'EXPOSE 8000')
  const healthcheck = execForm(of(final, 'HEALTHCHECK').at(-1)?.args)
  t.equal(healthcheck[0], 'node', 'HEALTHCHECK uses node (no curl in slim images)')
  t.match(healthcheck.join(' '), /http:\/\/127\.0\.0\.1:/, 'and asks the service on the loopback address')
  t.same([compose.services.app?.healthcheck?.test ?? []].flat(), ['CMD', ...healthcheck], 'compose runs the same healthcheck as the image')
  t.ok(of(final, 'ENV').some((e) => /NODE_ENV=production/.test(e.args)), 'NODE_ENV=production')
  t.notOk(stages.some((s) => of(s, 'ENV').some((e) => /\bAPP_ENV\b|JWT_SECRET|DATABASE_URL|REDIS_URL/.test(e.args))),
    'APP_ENV, secrets and store URLs are left to the deployment')

  t.test('every path copied from the build context exists and is not in .dockerignore', async (t) => {
    for (const stage of stages) {
      for (const copy of copies(stage).filter((c) => c.from === undefined)) {
        for (const source of copy.sources) {
          if (source === '.') continue
          t.ok(existsSync(join(ROOT, source)), `${source} exists`)
          t.notOk(isIgnored(source), `${source} is in the build context`)
        }
      }
    }
  })

  t.test('.dockerignore keeps local state out and the build inputs in', async (t) => {
    for (const path of ['node_modules', 'dist', 'data', '.git', '.env', '.tap', 'coverage', 'node_modules/x/y.js']) {
      t.ok(isIgnored(path), `${path} is left out`)
    }
    const tsconfig = JSON.parse(read('tsconfig.build.json')) as { include: string[] }
    const inputs = ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'db/migrations', 'app.ts', 'server.ts', 'config.ts',
      ...tsconfig.include.filter((p) => !p.includes('*'))]
    for (const path of inputs) t.notOk(isIgnored(path), `${path} is sent to the build`)
  })
})

// ---- the image's file layout, run as the image runs it -------------------------------------

function jsFiles (dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.js')).map((f) => join(dir, f))
}

t.test('the image layout builds, starts with CMD, passes HEALTHCHECK and stops on SIGTERM', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'auth-api-docker-'))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  const buildStage = stages.find((s) => s !== final && s.name !== undefined && copies(final).some((c) => c.from === s.name))
  const buildRoot = join(tmp, 'build') // stands for the build stage's WORKDIR
  const appRoot = join(tmp, 'app') // stands for the final stage's WORKDIR

  // `npm run build`, into a temporary folder so the real dist/ is left alone.
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', join(buildRoot, 'dist')],
    { cwd: ROOT, encoding: 'utf8' })
  t.equal(tsc.status, 0, `tsc -p tsconfig.build.json builds ${tsc.stdout}${tsc.stderr}`)
  for (const file of ['server.js', 'app.js', 'config.js']) t.ok(existsSync(join(buildRoot, 'dist', file)), `dist/${file} is built`)

  // The final stage's COPY lines, in order, relative to its WORKDIR.
  mkdirSync(appRoot)
  for (const copy of copies(final)) {
    const dest = join(appRoot, posix.relative(workdir(final), posix.resolve(workdir(final), copy.dest)))
    for (const source of copy.sources) {
      const from = copy.from === undefined
        ? join(ROOT, source)
        : join(buildRoot, posix.relative(workdir(buildStage), posix.resolve(workdir(buildStage), source)))
      t.ok(existsSync(from), `COPY ${copy.from ? `--from=${copy.from} ` : ''}${source}: the source exists`)
      const target = copy.dest.endsWith('/') && !statSync(from).isDirectory() ? join(dest, posix.basename(source)) : dest
      mkdirSync(dirname(target), { recursive: true })
      cpSync(from, target, { recursive: true })
    }
  }
  t.ok(existsSync(join(appRoot, 'dist/server.js')), 'dist/server.js is where CMD expects it')
  t.ok(existsSync(join(appRoot, 'db/migrations/meta/_journal.json')), 'the migrations are next to package.json')
  t.notOk(existsSync(join(appRoot, '.env')), 'no .env in the image')

  // What `npm ci --omit=dev` installs must cover every package dist/ imports.
  const builtins = new Set(builtinModules)
  const imported = new Set<string>()
  for (const file of jsFiles(join(appRoot, 'dist'))) {
    for (const [, specifier = ''] of readFileSync(file, 'utf8').matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)['"]([^'"]+)['"]/g)) {
      if (specifier.startsWith('.') || specifier.startsWith('node:') || builtins.has(specifier.split('/')[0]!)) continue
      imported.add(specifier.split('/').slice(0, specifier.startsWith('@') ? 2 : 1).join('/'))
    }
  }
  t.ok(imported.has('fastify'), 'dist/ imports were found')
  for (const name of imported) t.ok(name in packageJson.dependencies, `${name} is a production dependency`)
  // Stand-in for `npm ci --omit=dev`: the installed packages.
  symlinkSync(join(ROOT, 'node_modules'), join(appRoot, 'node_modules'), 'dir')

  const port = await freePort()
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    NODE_ENV: 'production',
    ...environmentOf(resolved({ JWT_SECRET: SECRET }).services.app),
    // this machine's stores instead of the compose services, on a free port
    DATABASE_URL: await testDatabaseUrl(),
    REDIS_URL,
    REDIS_KEY_PREFIX: KEY_PREFIX,
    HOST: '127.0.0.1',
    PORT: String(port)
  }
  t.equal(env.APP_ENV, 'prod', 'under APP_ENV=prod, as compose runs it')
  const [command, ...args] = execForm(of(final, 'CMD').at(-1)?.args)
  t.equal(command, 'node')
  const child = spawn(process.execPath, args, { cwd: appRoot, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk) => { output += chunk })
  child.stderr.on('data', (chunk) => { output += chunk })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })

  const healthcheck = () => {
    const [node, ...hcArgs] = execForm(of(final, 'HEALTHCHECK').at(-1)?.args)
    t.equal(node, 'node')
    return spawnSync(process.execPath, hcArgs, { env: { PATH: env.PATH, PORT: String(port) }, encoding: 'utf8', timeout: 10_000 }).status
  }

  const startedAt = Date.now()
  let up = false
  while (!up && child.exitCode === null && Date.now() - startedAt < 60_000) {
    up = await fetch(`http://127.0.0.1:${port}/`).then((r) => r.ok, () => false)
    if (!up) await new Promise((resolve) => setTimeout(resolve, 200))
  }
  if (!t.ok(up, 'GET / answers')) {
    t.comment(output)
    return
  }
  t.equal(healthcheck(), 0, 'the HEALTHCHECK command passes')
  const signup = await fetch(`http://127.0.0.1:${port}/api/v1/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: uniqueEmail(), password: PASSWORD, name: 'Ada' })
  })
  t.equal(signup.status, 201, 'signup works: the migrations were found and applied')

  const stopAt = Date.now()
  child.kill('SIGTERM')
  t.equal(await exited, 0, 'SIGTERM stops it with status 0')
  t.ok(Date.now() - stopAt < 10_000, 'within 10 s, inside stop_grace_period')
  t.not(healthcheck(), 0, 'the HEALTHCHECK command fails once the service is down')
})

// ---- docker compose config (when the Compose plugin is installed) -------------------------

function composeSkipReason (): string | false {
  const version = spawnSync('docker', ['compose', 'version', '--short'], { encoding: 'utf8' })
  if (version.error || version.status !== 0) return 'the docker compose plugin is not installed: `docker compose config` was not run'
  const [major = 0, minor = 0] = version.stdout.trim().replace(/^v/, '').split('.').map(Number)
  if (major < 2 || (major === 2 && minor < 24)) return `docker compose ${version.stdout.trim()} is older than 2.24 (env_file required: false): not run`
  return false
}

t.test('docker compose config', { skip: composeSkipReason() }, async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'auth-api-compose-'))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  const emptyEnvFile = join(tmp, 'empty.env')
  writeFileSync(emptyEnvFile, '')
  const env: Record<string, string | undefined> = { ...process.env }
  for (const name of ['JWT_SECRET', 'APP_ENV', 'POSTGRES_USER', 'POSTGRES_PASSWORD', 'POSTGRES_DB', 'COMPOSE_FILE', 'COMPOSE_PROJECT_NAME']) delete env[name]
  const config = (variables: Record<string, string>, ...args: string[]) => spawnSync('docker',
    ['compose', '-f', 'docker-compose.yml', '--env-file', emptyEnvFile, 'config', ...args],
    { cwd: ROOT, env: { ...env, ...variables }, encoding: 'utf8' })

  const quiet = config({ JWT_SECRET: SECRET }, '-q')
  t.equal(quiet.status, 0, `docker compose config -q accepts the file ${quiet.stderr}`)
  const missing = config({}, '-q')
  t.not(missing.status, 0, 'without JWT_SECRET it fails')
  t.match(missing.stderr, /JWT_SECRET/, 'naming JWT_SECRET')

  const json = config({ JWT_SECRET: SECRET }, '--format', 'json')
  t.equal(json.status, 0)
  const full = JSON.parse(json.stdout) as { services: Record<string, { environment?: Record<string, string>, ports?: Array<{ target: number, published: string, host_ip?: string }> }> }
  const appEnv = full.services.app?.environment ?? {}
  const pgEnv = full.services.postgres?.environment ?? {}
  const database = new URL(appEnv.DATABASE_URL ?? '')
  t.equal(database.hostname, 'postgres')
  t.equal(database.username, pgEnv.POSTGRES_USER)
  t.equal(database.password, pgEnv.POSTGRES_PASSWORD)
  t.equal(database.pathname, `/${pgEnv.POSTGRES_DB}`)
  t.equal(new URL(appEnv.REDIS_URL ?? '').hostname, 'redis')
  t.equal(appEnv.APP_ENV, 'prod')
  const ports = (name: string) => (full.services[name]?.ports ?? []).map((p) => `${p.host_ip ? `${p.host_ip}:` : ''}${p.published}:${p.target}`)
  t.same(ports('postgres'), ['127.0.0.1:25000:5432'])
  t.same(ports('redis'), ['127.0.0.1:25100:6379'])
  t.same(ports('app'), ['8000:8000'])
})
