// Every setting of the service, parsed and validated in one place (API.md §1.2).
// The table below is the only definition: the Config type is derived from it, and error
// messages name the variable and the rule, never the value of a secret.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { parseEnv } from 'node:util'
import { generatedSecret } from './lib/data-dir.ts'
import { PROJECT_ROOT } from './lib/project-root.ts'

export class ConfigError extends Error {}

interface Setting<T> {
  parse (raw: string | undefined, name: string): T
}

function fail (name: string, rule: string): never {
  throw new ConfigError(`Invalid setting ${name}: ${rule}`)
}

const blank = (raw: string | undefined): raw is undefined => raw === undefined || raw.trim() === ''

function int (fallback: number, min: number, max: number): Setting<number> {
  return {
    parse (raw, name) {
      if (blank(raw)) return fallback
      const text = raw.trim()
      const value = Number(text)
      if (!/^\d+$/.test(text) || value < min || value > max) fail(name, `must be an integer from ${min} to ${max}`)
      return value
    }
  }
}

const TRUE = new Set(['true', '1', 'yes', 'on'])
const FALSE = new Set(['false', '0', 'no', 'off'])

function parseBool (raw: string, name: string): boolean {
  const text = raw.trim().toLowerCase()
  if (TRUE.has(text)) return true
  if (FALSE.has(text)) return false
  return fail(name, 'must be one of true/false/1/0/yes/no/on/off')
}

function bool (fallback: boolean): Setting<boolean> {
  return { parse: (raw, name) => blank(raw) ? fallback : parseBool(raw, name) }
}

function text (fallback: string): Setting<string> {
  return { parse: (raw) => blank(raw) ? fallback : raw.trim() }
}

// Secrets are used verbatim (their UTF-8 bytes): never trimmed.
function secret (): Setting<string | undefined> {
  return { parse: (raw) => raw === undefined || raw === '' ? undefined : raw }
}

function oneOf<const T extends string> (values: readonly T[], fallback: T): Setting<T> {
  return {
    parse (raw, name) {
      if (blank(raw)) return fallback
      const found = values.find((v) => v.toLowerCase() === raw.trim().toLowerCase())
      return found ?? fail(name, `must be one of ${values.join(', ')}`)
    }
  }
}

// The FastAPI version's SQLAlchemy URL (postgresql+asyncpg://) names the same database.
const databaseUrl: Setting<string | undefined> = {
  parse (raw, name) {
    if (blank(raw)) return undefined
    const url = raw.trim().replace(/^postgresql\+asyncpg:\/\//i, 'postgresql://')
    if (!/^postgres(ql)?:\/\/./i.test(url)) fail(name, 'must be a postgres:// or postgresql:// URL')
    try {
      // eslint-disable-next-line no-new
      new URL(url)
    } catch {
      fail(name, 'is not a valid URL')
    }
    return url
  }
}

const redisUrl: Setting<string | undefined> = {
  parse (raw, name) {
    if (blank(raw)) return undefined
    const url = raw.trim()
    if (!/^rediss?:\/\/./i.test(url)) fail(name, 'must be a redis:// or rediss:// URL')
    // ioredis turns TLS on only for a lower-case `rediss://`: REDISS:// would connect in clear.
    return url.replace(/^rediss?:/i, (scheme) => scheme.toLowerCase())
  }
}

// Seeds of a Redis Cluster: `host:port` entries, comma-separated.
const clusterNodes: Setting<Array<{ host: string, port: number }> | undefined> = {
  parse (raw, name) {
    if (blank(raw)) return undefined
    return raw.split(',').map((e) => e.trim()).filter((e) => e !== '').map((entry) => {
      const match = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):(\d{1,5})$/.exec(entry)
      const port = Number(match?.[2])
      if (!match?.[1] || port < 1 || port > 65535) fail(name, `entry "${entry}" must be host:port`)
      return { host: match[1].replace(/^\[|\]$/g, ''), port }
    })
  }
}

// `*`, or exact serialised origins compared by string equality (API.md §2.5).
const corsOrigins: Setting<'*' | string[]> = {
  parse (raw, name) {
    if (blank(raw) || raw.trim() === '*') return '*'
    const entries = raw.split(',').map((e) => e.trim()).filter((e) => e !== '')
    for (const entry of entries) {
      let origin = ''
      try {
        origin = new URL(entry).origin
      } catch {}
      if (origin !== entry || !/^https?:\/\//.test(entry)) {
        fail(name, `entry "${entry}" is not an origin of the form scheme://host[:port] (no path, no trailing slash)`)
      }
    }
    if (entries.length === 0) fail(name, 'must be * or a comma-separated list of origins')
    return entries
  }
}

// Fastify's trustProxy: a boolean, a hop count, or a list of addresses and CIDR ranges.
const trustProxy: Setting<boolean | number | string[]> = {
  parse (raw, name) {
    if (blank(raw)) return false
    const value = raw.trim()
    if (/^\d+$/.test(value)) return Number(value)
    if (TRUE.has(value.toLowerCase()) || FALSE.has(value.toLowerCase())) return parseBool(value, name)
    const entries = value.split(',').map((e) => e.trim()).filter((e) => e !== '')
    for (const entry of entries) {
      const [address = '', prefix, ...rest] = entry.split('/')
      const family = isIP(address)
      const maxPrefix = family === 6 ? 128 : 32
      const prefixOk = prefix === undefined || (/^\d+$/.test(prefix) && Number(prefix) <= maxPrefix)
      if (family === 0 || !prefixOk || rest.length > 0) {
        fail(name, `entry "${entry}" must be true, false, a hop count, or IP addresses/CIDR ranges`)
      }
    }
    return entries
  }
}

const settings = {
  PORT: int(8000, 1, 65535),
  HOST: text('0.0.0.0'),
  APP_ENV: oneOf(['dev', 'prod'], 'dev'),
  DATABASE_URL: databaseUrl,
  MIGRATE_ON_START: bool(true),
  REDIS_URL: redisUrl,
  REDIS_CLUSTER_NODES: clusterNodes,
  REDIS_KEY_PREFIX: text('auth:'),
  DATA_DIR: text('./data'),
  JWT_SECRET: secret(),
  JWT_ALG: oneOf(['HS256', 'EdDSA'], 'HS256'),
  JWT_PRIVATE_KEY: secret(),
  JWT_PREVIOUS_PUBLIC_KEYS: secret(),
  REFRESH_TOKEN_KEY: secret(),
  JWT_ISSUER: text('auth-api'),
  JWT_AUDIENCE: text('api'),
  ACCESS_MIN: int(15, 1, 1440),
  REFRESH_DAYS: int(14, 1, 365),
  SESSION_MAX_DAYS: int(90, 1, 365),
  MAX_SESSIONS_PER_USER: int(50, 1, 1000),
  REFRESH_IN_COOKIE: bool(true),
  REFRESH_GRACE_SECONDS: int(10, 1, 60),
  LOGIN_FAIL_MAX: int(10, 1, 49),
  LOGIN_FAIL_WINDOW_SECONDS: int(900, 60, 86_400),
  RATE_LIMIT_IP_PER_MINUTE: int(1000, 0, 1_000_000),
  CORS_ORIGINS: corsOrigins,
  TRUST_PROXY: trustProxy,
  METRICS: bool(false),
  LOG_LEVEL: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info')
} satisfies Record<string, Setting<unknown>>

type Parsed = { [K in keyof typeof settings]: ReturnType<(typeof settings)[K]['parse']> }

/** The keys access tokens are signed and verified with (API.md §4.1, §5.3). */
export type Signing =
  | { alg: 'HS256', secret: string }
  | { alg: 'EdDSA', privateKey: KeyObject, previousPublicKeys: KeyObject[] }

// Settings whose text only builds `signing` and `refreshKeySource`; Config does not carry them.
const SECRET_SETTINGS = ['JWT_SECRET', 'JWT_PRIVATE_KEY', 'JWT_PREVIOUS_PUBLIC_KEYS', 'REFRESH_TOKEN_KEY'] as const
type SecretSettings = typeof SECRET_SETTINGS[number]

export type Config = Omit<Parsed, SecretSettings> & {
  signing: Signing
  /** What K_refresh is derived from (API.md §6): JWT_SECRET under HS256, REFRESH_TOKEN_KEY under EdDSA. */
  refreshKeySource: string
}

export const SETTING_NAMES = Object.keys(settings) as ReadonlyArray<keyof typeof settings>

const MIN_SECRET_LENGTH = 32

/**
 * Parses an environment object into a Config. Throws ConfigError naming the first invalid
 * variable; returns the start-up warnings for the caller to log. Outside production, a secret
 * left unset is read from DATA_DIR, where it is generated on first use.
 */
export function parseConfig (env: Record<string, string | undefined>): { config: Config, warnings: string[] } {
  const parsed = Object.fromEntries(
    SETTING_NAMES.map((name) => [name, settings[name].parse(env[name], name)])
  ) as Parsed
  const warnings: string[] = []
  const prod = parsed.APP_ENV === 'prod'

  if (parsed.REDIS_URL !== undefined && parsed.REDIS_CLUSTER_NODES !== undefined) {
    throw new ConfigError('Set either REDIS_URL or REDIS_CLUSTER_NODES, not both')
  }
  if (prod && parsed.DATABASE_URL === undefined) {
    throw new ConfigError('DATABASE_URL is required when APP_ENV=prod: the embedded database is for development and single-process installs under APP_ENV=dev')
  }

  const signing = parseSigning(parsed, prod, warnings)
  const refreshKeySource = signing.alg === 'HS256'
    ? signing.secret
    : requiredSecret(parsed.REFRESH_TOKEN_KEY, 'REFRESH_TOKEN_KEY', 'refresh-token-key', parsed.DATA_DIR, prod, warnings)

  if (parsed.SESSION_MAX_DAYS < parsed.REFRESH_DAYS) {
    warnings.push('SESSION_MAX_DAYS is below REFRESH_DAYS: every session ends after SESSION_MAX_DAYS.')
  }
  if (prod && parsed.CORS_ORIGINS === '*') {
    warnings.push('CORS_ORIGINS=* under APP_ENV=prod: any web page may call this API with a Bearer token. List your origins.')
  }

  // The secret settings live on only as `signing` and `refreshKeySource`, in one place each.
  const rest: Partial<Parsed> = { ...parsed }
  for (const name of SECRET_SETTINGS) delete rest[name]
  return { config: { ...rest as Omit<Parsed, SecretSettings>, signing, refreshKeySource }, warnings }
}

/**
 * A secret setting: required under prod (at least 32 characters); outside prod, when unset,
 * generated once into DATA_DIR so restarts keep sessions and tokens valid.
 */
function requiredSecret (value: string | undefined, name: string, file: string, dataDir: string, prod: boolean, warnings: string[]): string {
  if (value === undefined) {
    if (prod) throw new ConfigError(`${name} is required when APP_ENV=prod (at least ${MIN_SECRET_LENGTH} characters)`)
    const generated = generatedSecret(dataDir, file)
    warnings.push(`${name} is not set: using the secret ${generated.created ? 'generated into' : 'kept in'} ${generated.file} (development only). Set ${name} in production.`)
    return generated.value
  }
  if ([...value].length < MIN_SECRET_LENGTH) {
    if (prod) throw new ConfigError(`Invalid setting ${name}: must be at least ${MIN_SECRET_LENGTH} characters when APP_ENV=prod`)
    warnings.push(`${name} is shorter than ${MIN_SECRET_LENGTH} characters; this is refused under APP_ENV=prod.`)
  }
  return value
}

// PEM in an environment variable often arrives with its line breaks written as \n.
const pemText = (value: string) => value.includes('\n') ? value : value.replaceAll('\\n', '\n')

function ed25519Key (pem: string, name: string, kind: 'private' | 'public'): KeyObject {
  try {
    const key = kind === 'private' ? createPrivateKey(pem) : createPublicKey(pem)
    if (key.asymmetricKeyType === 'ed25519') return key
  } catch {}
  return fail(name, kind === 'private' ? 'must be a PEM (PKCS#8) Ed25519 private key' : 'must be PEM Ed25519 public keys')
}

function parseSigning (parsed: Parsed, prod: boolean, warnings: string[]): Signing {
  if (parsed.JWT_ALG === 'HS256') {
    return { alg: 'HS256', secret: requiredSecret(parsed.JWT_SECRET, 'JWT_SECRET', 'jwt-secret', parsed.DATA_DIR, prod, warnings) }
  }
  let pem = parsed.JWT_PRIVATE_KEY
  if (pem === undefined) {
    if (prod) throw new ConfigError('JWT_PRIVATE_KEY is required when APP_ENV=prod and JWT_ALG=EdDSA (a PEM PKCS#8 Ed25519 private key)')
    const generated = generatedSecret(parsed.DATA_DIR, 'jwt-private-key.pem',
      () => generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString())
    warnings.push(`JWT_PRIVATE_KEY is not set: using the key ${generated.created ? 'generated into' : 'kept in'} ${generated.file} (development only). Set JWT_PRIVATE_KEY in production.`)
    pem = generated.value
  }
  const previous = parsed.JWT_PREVIOUS_PUBLIC_KEYS === undefined ? [] : pemText(parsed.JWT_PREVIOUS_PUBLIC_KEYS).match(PEM_PUBLIC_KEY) ?? []
  if (parsed.JWT_PREVIOUS_PUBLIC_KEYS !== undefined && previous.length === 0) fail('JWT_PREVIOUS_PUBLIC_KEYS', 'must be one or more PEM public keys')
  return {
    alg: 'EdDSA',
    privateKey: ed25519Key(pemText(pem), 'JWT_PRIVATE_KEY', 'private'),
    previousPublicKeys: previous.map((block) => ed25519Key(block, 'JWT_PREVIOUS_PUBLIC_KEYS', 'public'))
  }
}

const PEM_PUBLIC_KEY = /-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g

/** True when the session store is Redis (a server or a cluster); otherwise it is the database. */
export function usesRedis (config: Pick<Config, 'REDIS_URL' | 'REDIS_CLUSTER_NODES'>): boolean {
  return config.REDIS_URL !== undefined || config.REDIS_CLUSTER_NODES !== undefined
}

/** Only where the database is, for `npm run db:migrate`, which needs nothing else. */
export function parseDatabaseSettings (env: Record<string, string | undefined>): Pick<Config, 'DATABASE_URL' | 'DATA_DIR'> {
  return {
    DATABASE_URL: settings.DATABASE_URL.parse(env.DATABASE_URL, 'DATABASE_URL'),
    DATA_DIR: settings.DATA_DIR.parse(env.DATA_DIR, 'DATA_DIR')
  }
}

/** The environment with the project's `.env` file under it: real environment variables win. */
export function withEnvFile (env: Record<string, string | undefined>): Record<string, string | undefined> {
  const file = join(PROJECT_ROOT, '.env')
  return { ...(existsSync(file) ? parseEnv(readFileSync(file, 'utf8')) : {}), ...env }
}

/** A URL with its password removed, for logs and error messages. */
export function redactUrl (url: string): string {
  try {
    const u = new URL(url)
    if (u.password !== '') u.password = '***'
    return u.toString()
  } catch {
    return '(unparsable URL)'
  }
}
