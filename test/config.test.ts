// Settings (API.md §1.2): parsing rules, and that .env.example and the README list each one.
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { parseConfig, SETTING_NAMES } from '../config.ts'
import { tempDataDir } from './fixtures/app.ts'

const required = { DATABASE_URL: 'postgres://u@localhost/db', REDIS_URL: 'redis://localhost:6379', JWT_SECRET: 'x'.repeat(32), DATA_DIR: tempDataDir() }

t.test('defaults are the FastAPI version\'s', async (t) => {
  const { config } = parseConfig(required)
  t.equal(config.PORT, 8000)
  t.equal(config.APP_ENV, 'dev')
  t.equal(config.ACCESS_MIN, 15)
  t.equal(config.REFRESH_DAYS, 14)
  t.equal(config.REFRESH_IN_COOKIE, true)
  t.equal(config.CORS_ORIGINS, '*')
  t.equal(config.JWT_ALG, 'HS256')
})

t.test('booleans, integers, URLs, origins and proxies', async (t) => {
  for (const value of ['true', 'TRUE', '1', 'yes', 'On']) t.equal(parseConfig({ ...required, REFRESH_IN_COOKIE: value }).config.REFRESH_IN_COOKIE, true, value)
  for (const value of ['false', '0', 'no', 'OFF']) t.equal(parseConfig({ ...required, REFRESH_IN_COOKIE: value }).config.REFRESH_IN_COOKIE, false, value)
  t.equal(parseConfig({ ...required, DATABASE_URL: 'postgresql+asyncpg://developer:devpassword@postgres:5432/developer' }).config.DATABASE_URL,
    'postgresql://developer:devpassword@postgres:5432/developer', 'the FastAPI URL form is accepted')
  t.equal(parseConfig({ ...required, REDIS_URL: 'REDISS://h:6380' }).config.REDIS_URL, 'rediss://h:6380',
    'an upper-case scheme is lower-cased: ioredis enables TLS for rediss:// only')
  t.same(parseConfig({ ...required, CORS_ORIGINS: ' http://localhost:3000 , http://127.0.0.1:5173' }).config.CORS_ORIGINS, ['http://localhost:3000', 'http://127.0.0.1:5173'])
  t.same(parseConfig({ ...required, TRUST_PROXY: '10.0.0.0/8, 127.0.0.1' }).config.TRUST_PROXY, ['10.0.0.0/8', '127.0.0.1'])
  t.equal(parseConfig({ ...required, TRUST_PROXY: '2' }).config.TRUST_PROXY, 2)
  const invalid: Array<[string, string]> = [
    ['PORT', '0'], ['PORT', '65536'], ['PORT', '80a'], ['ACCESS_MIN', '1441'], ['REFRESH_DAYS', '0'],
    ['REFRESH_GRACE_SECONDS', '61'], ['APP_ENV', 'staging'], ['JWT_ALG', 'RS256'], ['REFRESH_IN_COOKIE', 'maybe'],
    ['CORS_ORIGINS', 'http://localhost:3000/'], ['CORS_ORIGINS', 'localhost:3000'], ['DATABASE_URL', 'mysql://x/y'],
    ['REDIS_URL', 'http://localhost'], ['TRUST_PROXY', 'somewhere']
  ]
  for (const [name, value] of invalid) {
    t.throws(() => parseConfig({ ...required, [name]: value }), new RegExp(name), `${name}=${value} is refused, naming it`)
  }
})

t.test('prod requires a real secret; dev warns and generates one', async (t) => {
  t.throws(() => parseConfig({ ...required, APP_ENV: 'prod', JWT_SECRET: '' }), /JWT_SECRET is required/)
  t.throws(() => parseConfig({ ...required, APP_ENV: 'prod', JWT_SECRET: 'short-but-secret' }), /JWT_SECRET/)
  try {
    parseConfig({ ...required, APP_ENV: 'prod', JWT_SECRET: 'short-but-secret' })
  } catch (error) {
    t.notOk(String(error).includes('short-but-secret'), 'the message never contains the secret')
  }
  const dataDir = join(tempDataDir(), 'data')
  const generated = parseConfig({ ...required, JWT_SECRET: undefined, DATA_DIR: dataDir })
  t.ok(generated.config.refreshKeySource.length >= 32)
  t.match(generated.warnings.join('\n'), /JWT_SECRET is not set: using the secret generated into/)
  const file = join(dataDir, 'jwt-secret')
  t.equal(statSync(file).mode & 0o777, 0o600, 'kept in DATA_DIR, readable by its owner only')
  t.equal(statSync(dataDir).mode & 0o777, 0o700, 'DATA_DIR is private too')
  const again = parseConfig({ ...required, JWT_SECRET: undefined, DATA_DIR: dataDir })
  t.same(again.config.signing, generated.config.signing, 'the next start reads the same secret back')
  t.match(again.warnings.join('\n'), /kept in/)
  t.throws(() => parseConfig({ ...required, APP_ENV: 'prod', DATABASE_URL: '' }), /DATABASE_URL is required when APP_ENV=prod/)
  t.notOk(parseConfig({ ...required, DATABASE_URL: '', REDIS_URL: '' }).config.DATABASE_URL, 'dev without DATABASE_URL: the embedded database')
  t.match(parseConfig({ ...required, JWT_SECRET: 'short' }).warnings.join('\n'), /shorter than 32/)
  t.match(parseConfig({ ...required, APP_ENV: 'prod' }).warnings.join('\n'), /CORS_ORIGINS=\*/)
})

t.test('.env.example and the README document every setting', async (t) => {
  const example = readFileSync(new URL('../.env.example', import.meta.url), 'utf8')
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  for (const name of SETTING_NAMES) {
    t.match(example, new RegExp(`^${name}=`, 'm'), `.env.example sets ${name}`)
    t.match(readme, new RegExp(`\`${name}\``), `README lists ${name}`)
  }
})
