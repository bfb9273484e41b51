// Settings of `npm run bench`: flags win over BENCH_* environment variables, which win over the
// defaults of the chosen profile (`--quick` for a smoke run of about a minute, else the full run).
import { parseArgs } from 'node:util'

export interface BenchOptions {
  /** The embedded database (PGlite) instead of PostgreSQL + Redis. */
  embedded: boolean
  quick: boolean
  rounds: number
  /** Seconds of each measured run. */
  duration: number
  /** Seconds of the unmeasured run before each measured one. */
  warmup: number
  /** Connections of the throughput scenarios (GET /, /me, refresh and their yardsticks). */
  connections: number
  /** Connections of login and signup, and in-flight operations of the raw argon2 runs. */
  argon2Connections: number
  /** Connections flooding /login while GET / is probed. */
  floodConnections: number
  /** Requests per second of the GET / probe during the flood. */
  probeRate: number
  baseUsers: number
  scaleUsers: number
  /** Access tokens (distinct users) cycled through by /me and the verify-only yardstick. */
  meTokens: number
  starts: number
  /** Seconds between the end of the bench and the RSS reading. */
  rssWait: number
  /** Rounds of the RSS replays (fresh services: default malloc, MALLOC_ARENA_MAX=2, a fixed mmap threshold); 0 skips them. */
  rssReplayRounds: number
  databaseUrl: string
  /** The maintenance database through which the bench database is dropped and created. */
  adminDatabaseUrl: string
  redisUrl: string
  redisPrefix: string
  /** Profile one scenario of the service with --cpu-prof instead of running the bench. */
  profile: string | undefined
  /** Keep the bench database and Redis keys afterwards. */
  keep: boolean
}

const FULL = {
  rounds: 3,
  duration: 10,
  warmup: 2,
  scaleUsers: 100_000,
  starts: 5,
  rssWait: 10,
  rssReplayRounds: 1
}

const QUICK: typeof FULL = {
  rounds: 1,
  duration: 2,
  warmup: 1,
  scaleUsers: 10_000,
  starts: 3,
  rssWait: 10,
  rssReplayRounds: 0
}

export const PROFILE_SCENARIOS = ['root', 'me', 'refresh', 'login', 'signup', 'flood', 'startup'] as const

const HELP = `Usage: npm run bench -- [flags]

  --quick                 smoke run (~1 minute): 1 round of 2 s, 10,000 users at scale
  --embedded              the embedded database (PGlite) instead of PostgreSQL + Redis
  --rounds N              interleaved rounds (BENCH_ROUNDS; full: ${FULL.rounds})
  --duration S            seconds per measured run (BENCH_DURATION; full: ${FULL.duration})
  --warmup S              seconds of warm-up before each run (BENCH_WARMUP; full: ${FULL.warmup})
  --connections N         connections of GET /, /me, refresh (BENCH_CONNECTIONS; 32)
  --argon2-connections N  connections of login/signup = raw argon2 concurrency (BENCH_ARGON2_CONNECTIONS; 8)
  --flood-connections N   connections flooding /login (BENCH_FLOOD_CONNECTIONS; 32)
  --probe-rate N          GET / requests per second during the flood (BENCH_PROBE_RATE; 200)
  --base-users N          users and sessions of the small store (BENCH_BASE_USERS; 1000)
  --scale-users N         users and sessions of the large store (BENCH_SCALE_USERS; full: ${FULL.scaleUsers})
  --me-tokens N           distinct access tokens cycled by /me (BENCH_ME_TOKENS; 10000)
  --starts N              start-up measurements (BENCH_STARTS; full: ${FULL.starts})
  --rss-wait S            seconds before reading RSS after the bench (BENCH_RSS_WAIT; 10)
  --rss-replay-rounds N   rounds of the malloc comparison (fresh services: default,
                          MALLOC_ARENA_MAX=2, MALLOC_MMAP_THRESHOLD_), 0 = skip (BENCH_RSS_REPLAY_ROUNDS; full: ${FULL.rssReplayRounds})
  --profile SCENARIO      run one scenario against a service under --cpu-prof and summarise the
                          profile: ${PROFILE_SCENARIOS.join(', ')}
  --keep                  keep the bench database and Redis keys afterwards
  Stores: BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/auth_bench), BENCH_REDIS_URL
  (redis://127.0.0.1:6379), BENCH_REDIS_PREFIX (bench:). The database is dropped and re-created.
`

function positive (name: string, raw: string | undefined, fallback: number, allowZero = false): number {
  if (raw === undefined || raw.trim() === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new Error(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, not "${raw}"`)
  }
  return value
}

export function parseOptions (argv: string[], env: NodeJS.ProcessEnv): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h' },
      quick: { type: 'boolean' },
      embedded: { type: 'boolean' },
      keep: { type: 'boolean' },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      'argon2-connections': { type: 'string' },
      'flood-connections': { type: 'string' },
      'probe-rate': { type: 'string' },
      'base-users': { type: 'string' },
      'scale-users': { type: 'string' },
      'me-tokens': { type: 'string' },
      starts: { type: 'string' },
      'rss-wait': { type: 'string' },
      'rss-replay-rounds': { type: 'string' },
      profile: { type: 'string' }
    },
    strict: true
  })
  if (values.help) {
    process.stdout.write(HELP)
    process.exit(0)
  }
  const flag = (value: boolean | undefined, name: string) => value === true || /^(1|true|yes)$/i.test(env[name] ?? '')
  const quick = flag(values.quick, 'BENCH_QUICK')
  const base = quick ? QUICK : FULL
  const pick = (flagValue: string | undefined, envName: string) => flagValue ?? env[envName]
  const profile = values.profile
  if (profile !== undefined && !(PROFILE_SCENARIOS as readonly string[]).includes(profile)) {
    throw new Error(`--profile must be one of ${PROFILE_SCENARIOS.join(', ')}`)
  }
  const databaseUrl = env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/auth_bench'
  const admin = new URL(databaseUrl)
  admin.pathname = '/postgres'
  const options: BenchOptions = {
    embedded: flag(values.embedded, 'BENCH_EMBEDDED'),
    quick,
    rounds: Math.round(positive('rounds', pick(values.rounds, 'BENCH_ROUNDS'), base.rounds)),
    duration: positive('duration', pick(values.duration, 'BENCH_DURATION'), base.duration),
    warmup: positive('warmup', pick(values.warmup, 'BENCH_WARMUP'), base.warmup, true),
    connections: Math.round(positive('connections', pick(values.connections, 'BENCH_CONNECTIONS'), 32)),
    argon2Connections: Math.round(positive('argon2-connections', pick(values['argon2-connections'], 'BENCH_ARGON2_CONNECTIONS'), 8)),
    floodConnections: Math.round(positive('flood-connections', pick(values['flood-connections'], 'BENCH_FLOOD_CONNECTIONS'), 32)),
    probeRate: Math.round(positive('probe-rate', pick(values['probe-rate'], 'BENCH_PROBE_RATE'), 200)),
    baseUsers: Math.round(positive('base-users', pick(values['base-users'], 'BENCH_BASE_USERS'), 1000)),
    scaleUsers: Math.round(positive('scale-users', pick(values['scale-users'], 'BENCH_SCALE_USERS'), base.scaleUsers)),
    meTokens: Math.round(positive('me-tokens', pick(values['me-tokens'], 'BENCH_ME_TOKENS'), 10_000)),
    starts: Math.round(positive('starts', pick(values.starts, 'BENCH_STARTS'), base.starts)),
    rssWait: positive('rss-wait', pick(values['rss-wait'], 'BENCH_RSS_WAIT'), base.rssWait, true),
    rssReplayRounds: Math.round(positive('rss-replay-rounds', pick(values['rss-replay-rounds'], 'BENCH_RSS_REPLAY_ROUNDS'), base.rssReplayRounds, true)),
    databaseUrl,
    adminDatabaseUrl: admin.toString(),
    redisUrl: env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
    redisPrefix: env.BENCH_REDIS_PREFIX ?? 'bench:',
    profile,
    keep: flag(values.keep, 'BENCH_KEEP')
  }
  if (options.scaleUsers < options.baseUsers) throw new Error('--scale-users must be at least --base-users')
  if (!/^[A-Za-z0-9_:-]+$/.test(options.redisPrefix)) throw new Error('BENCH_REDIS_PREFIX may only hold letters, digits, _ : -')
  if (!/^\/[A-Za-z0-9_]+$/.test(new URL(databaseUrl).pathname)) throw new Error('BENCH_DATABASE_URL must name a database')
  return options
}
