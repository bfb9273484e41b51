// The session store on a Redis Cluster (API.md §1.2 REDIS_CLUSTER_NODES, §7 key layout, §11):
// a real 3-master cluster of this file's own (throwaway.ts: free ports, a temporary directory,
// nodes killed by PID), never the shared Redis on 6379.
// - the settings: REDIS_URL and REDIS_CLUSTER_NODES together, or a malformed seed, stop the start;
// - the shared session-store contract through ioredis' Cluster client, one slot per user, users
//   spread over the masters;
// - the HTTP walkthrough, readiness and both rate limiters on an app with REDIS_CLUSTER_NODES;
// - one master killed and restarted: 503 (never 500 or 401) for the users it serves, recovery.
// Users live in the shared PostgreSQL (this file's own database).
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { Cluster, Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { parseConfig } from '../../config.ts'
import { createRedisSessionStore } from '../../sessions/redis-store.ts'
import { hashRefreshToken, mintRefreshToken } from '../../sessions/refresh-token.ts'
import { counterId } from '../../sessions/store.ts'
import { buildTestApp, JWT_SECRET, KEY_PREFIX, PASSWORD, signup, uniqueEmail } from '../fixtures/app.ts'
import { CONTRACT_SETTINGS, sessionStoreContract } from '../sessions/store-contract.ts'
import { assertNoDriverText, assertUnavailable, call, listen, pollUntil, Timings, type Answer } from './http.ts'
import { ThrowawayRedisCluster } from './throwaway.ts'

const STORE_LIMIT_MS = 5000
const LIVENESS_LIMIT_MS = 2000
const RECOVERY_LIMIT_MS = 20_000
const AUTH = '/api/v1/auth'

const timings = new Timings()
t.teardown(() => timings.report(t))

// Started before the first subtest; stopped (by PID) and removed in the root teardown.
const clusterStarted = performance.now()
const cluster = await ThrowawayRedisCluster.create(t)
timings.add('cluster created (3 masters, cluster_state:ok)', Math.round(performance.now() - clusterStarted))
const clusterSettings = { REDIS_URL: '', REDIS_CLUSTER_NODES: cluster.nodesSetting }

/** A Cluster client of the test itself (not the app's), closed at the end of `t`. */
async function testClient (t: Test): Promise<Cluster> {
  const client = new Cluster(cluster.seeds, { redisOptions: { connectTimeout: 2000 } })
  t.teardown(() => client.disconnect())
  if (client.status !== 'ready') {
    await new Promise<void>((resolve, reject) => {
      client.once('ready', resolve)
      client.once('error', reject)
    })
  }
  return client
}

/** Every key matching `pattern` on every master, with the port of the master holding it. */
async function scanMasters (client: Cluster, pattern: string): Promise<Array<{ key: string, port: number }>> {
  const found: Array<{ key: string, port: number }> = []
  for (const node of client.nodes('master')) {
    let cursor = '0'
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      for (const key of batch) found.push({ key, port: Number(node.options.port) })
    } while (cursor !== '0')
  }
  return found
}

/** The slot of `key` (CLUSTER KEYSLOT) and the port of the master serving it (CLUSTER SLOTS). */
async function slotOf (key: string): Promise<{ slot: number, port: number }> {
  const port = cluster.ports.find((p) => cluster.running(p))!
  const redis = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    const slot = Number(await redis.call('CLUSTER', 'KEYSLOT', key))
    const ranges = await redis.call('CLUSTER', 'SLOTS') as Array<[number, number, [string, number, ...unknown[]]]>
    const range = ranges.find(([start, end]) => slot >= start && slot <= end)
    if (range === undefined) throw new Error(`slot ${slot} is not served`)
    return { slot, port: Number(range[2][1]) }
  } finally {
    redis.disconnect()
  }
}

const userIndexKey = (prefix: string, userId: string) => `${prefix}{${userId}}:sessions`

/** Polls GET /health/ready (inject) until 200: the app's Cluster client connects in the background. */
async function untilReady (app: FastifyInstance, limitMs = 10_000): Promise<number> {
  const started = performance.now()
  for (;;) {
    const res = await app.inject({ method: 'GET', url: '/health/ready' })
    if (res.statusCode === 200 || performance.now() - started > limitMs) return res.statusCode
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

t.test('settings: REDIS_CLUSTER_NODES is exclusive with REDIS_URL and must list host:port seeds', async (t) => {
  const base = { DATABASE_URL: 'postgres://u@localhost/db', JWT_SECRET, LOG_LEVEL: 'silent' }
  const nodes = '127.0.0.1:7000,127.0.0.1:7001'
  t.same(parseConfig({ ...base, REDIS_CLUSTER_NODES: ` ${nodes} , [::1]:7002` }).config.REDIS_CLUSTER_NODES,
    [{ host: '127.0.0.1', port: 7000 }, { host: '127.0.0.1', port: 7001 }, { host: '::1', port: 7002 }], 'seeds are parsed')
  t.throws(() => parseConfig({ ...base, REDIS_URL: 'redis://127.0.0.1:6379', REDIS_CLUSTER_NODES: nodes }),
    /REDIS_URL.*REDIS_CLUSTER_NODES|REDIS_CLUSTER_NODES.*REDIS_URL/, 'both set: refused, naming both')
  for (const value of ['localhost', '127.0.0.1:7000,localhost', '127.0.0.1:0', '127.0.0.1:65536', 'redis://127.0.0.1:7000', '127.0.0.1:70a']) {
    t.throws(() => parseConfig({ ...base, REDIS_CLUSTER_NODES: value }), /REDIS_CLUSTER_NODES/, `REDIS_CLUSTER_NODES=${value} is refused, naming it`)
  }
})

t.test('session store contract on the cluster', async (t) => {
  const client = await testClient(t)
  const prefix = `test:${randomUUID()}:`
  const store = createRedisSessionStore(client, prefix, CONTRACT_SETTINGS)

  // Everything stored about a user, read from every master (a user's keys may be on any one).
  async function storedText (userId: string): Promise<string> {
    const keys = (await scanMasters(client, `${prefix}*`)).map(({ key }) => key).filter((k) => k.includes(userId))
    const parts: string[] = [...keys]
    for (const key of keys) {
      parts.push(...(key.endsWith(':sessions')
        ? await client.zrange(key, '0', '-1', 'WITHSCORES')
        : Object.entries(await client.hgetall(key)).flat()))
    }
    return parts.join('\n')
  }

  await t.test('contract', async (t) => sessionStoreContract(t, { store, storedText, withSettings: (settings) => createRedisSessionStore(client, prefix, settings) }))

  await t.test('one slot per user; users spread over more than one master', async (t) => {
    const users = Array.from({ length: 30 }, () => randomUUID())
    await Promise.all(users.map(async (userId) => {
      for (let i = 0; i < 2; i++) {
        const sessionId = randomUUID()
        await store.create({ userId, sessionId, tokenHash: hashRefreshToken(mintRefreshToken({ userId, sessionId })), deviceName: null, userAgent: null, ip: null })
      }
    }))
    const stored = await scanMasters(client, `${prefix}*`)
    const mastersUsed = new Set<number>()
    for (const userId of users) {
      const keys = stored.filter(({ key }) => key.includes(userId))
      t.equal(keys.length, 3, `user ${userId}: two session hashes and the index`)
      const slots = new Set(await Promise.all(keys.map(async ({ key }) => Number(await client.call('CLUSTER', 'KEYSLOT', key)))))
      t.equal(slots.size, 1, `user ${userId}: every key in one slot (${[...slots].join(', ')})`)
      const ports = new Set(keys.map(({ port }) => port))
      t.equal(ports.size, 1, `user ${userId}: every key on one master`)
      mastersUsed.add([...ports][0]!)
    }
    t.ok(mastersUsed.size > 1, `30 users are spread over ${mastersUsed.size} of 3 masters`)

    // A counter group's keys share the group's hash tag, hence a slot (the RESERVE script).
    const group = `login:${randomUUID()}@example.test`
    t.equal(await store.counters.reserve(group, [{ key: `${group}|10.0.0.1`, limit: 2 }, { key: group, limit: 10 }], 60_000), 0)
    const counters = await scanMasters(client, `${prefix}ratelimit:{${counterId(group)}}:*`)
    const counterSlots = new Set(await Promise.all(counters.map(async ({ key }) => Number(await client.call('CLUSTER', 'KEYSLOT', key)))))
    t.ok(counters.length >= 2, `the group's counters are stored (${counters.length})`)
    t.equal(counterSlots.size, 1, 'the counters of one group share one slot')

    await Promise.all(users.map((userId) => store.revokeAll(userId)))
    const left = (await scanMasters(client, `${prefix}*`)).filter(({ key }) => users.some((userId) => key.includes(userId)))
    t.same(left, [], 'revokeAll leaves no key of these users on any master')
  })
})

t.test('HTTP on an app with REDIS_CLUSTER_NODES', async (t) => {
  const client = await testClient(t)

  await t.test('signup → login → me → refresh → replay within grace → logout → 401; ready', async (t) => {
    const app = await buildTestApp(t, clusterSettings)
    t.equal(await untilReady(app), 200, 'the app connects to the cluster')
    const ready = await app.inject({ method: 'GET', url: '/health/ready' })
    t.same(ready.json(), { status: 'ready', checks: { postgres: 'up', redis: 'up' } }, 'readiness checks the cluster')

    const email = uniqueEmail()
    const user = await signup(app, email)
    const login = await app.inject({ method: 'POST', url: `${AUTH}/login`, payload: { email, password: PASSWORD, return_refresh_in_body: true } })
    t.equal(login.statusCode, 200, 'login')
    const { access_token: access, refresh_token: first } = login.json() as { access_token: string, refresh_token: string }
    t.type(first, 'string', 'a refresh token')

    const index = await scanMasters(client, userIndexKey(KEY_PREFIX, user.id))
    t.equal(index.length, 1, 'the session index is on the cluster, under the user\'s hash tag')
    const sessionKeys = await scanMasters(client, `${KEY_PREFIX}{${user.id}}:session:*`)
    t.equal(sessionKeys.length, 1, 'one session hash on the cluster')
    t.equal(sessionKeys[0]?.port, index[0]?.port, 'on the same master as the index')

    const me = await app.inject({ method: 'GET', url: `${AUTH}/me`, headers: { authorization: `Bearer ${access}` } })
    t.equal(me.statusCode, 200, 'me')
    t.equal(me.json().id, user.id)

    const refresh = (token: string) => app.inject({ method: 'POST', url: `${AUTH}/refresh`, payload: { refresh_token: token } })
    const rotated = await refresh(first)
    t.equal(rotated.statusCode, 200, 'refresh')
    const second = String(rotated.json().refresh_token)
    t.not(second, first, 'the refresh token rotates')
    t.equal((await app.inject({ method: 'GET', url: `${AUTH}/me`, headers: { authorization: `Bearer ${rotated.json().access_token}` } })).statusCode, 200,
      'the new access token works')

    const replay = await refresh(first)
    t.equal(replay.statusCode, 200, 'the old token again within the grace window')
    t.equal(replay.json().refresh_token, second, 'the same successor')

    const logout = await app.inject({ method: 'POST', url: `${AUTH}/logout`, payload: { refresh_token: second } })
    t.equal(logout.statusCode, 204, 'logout')
    const after = await refresh(second)
    t.equal(after.statusCode, 401, 'refresh after logout is 401')
    t.equal(after.json().code, 'invalid_refresh_token')
    t.equal((await app.inject({ method: 'GET', url: `${AUTH}/me`, headers: { authorization: `Bearer ${access}` } })).statusCode, 401,
      'the ended session\'s access token is 401')
    t.same(await scanMasters(client, `${KEY_PREFIX}{${user.id}}:*`), [], 'no key of the user is left on the cluster')
  })

  await t.test('the per-IP limit counts on the cluster (RATE_LIMIT_IP_PER_MINUTE=3)', async (t) => {
    const app = await buildTestApp(t, { ...clusterSettings, RATE_LIMIT_IP_PER_MINUTE: '3' })
    t.equal(await untilReady(app), 200, 'the app connects to the cluster')
    const ip = '10.77.0.1'
    for (let i = 1; i <= 3; i++) {
      const res = await app.inject({ method: 'GET', url: `${AUTH}/me`, remoteAddress: ip })
      t.equal(res.statusCode, 401, `request ${i} passes the limit (401 without a token)`)
    }
    const limited = await app.inject({ method: 'GET', url: `${AUTH}/me`, remoteAddress: ip })
    t.equal(limited.statusCode, 429, 'the 4th request is 429')
    t.equal(limited.json().code, 'too_many_requests')
    const retryAfter = Number(limited.headers['retry-after'])
    t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter} within the minute`)
    t.equal((await app.inject({ method: 'GET', url: `${AUTH}/me`, remoteAddress: '10.77.0.2' })).statusCode, 401, 'another address is not limited')
    t.ok((await scanMasters(client, `${KEY_PREFIX}ratelimit:*`)).length > 0, 'the counters live on the cluster')
  })

  await t.test('the failed-login throttle counts on the cluster (LOGIN_FAIL_MAX=2)', async (t) => {
    const app = await buildTestApp(t, { ...clusterSettings, LOGIN_FAIL_MAX: '2' })
    t.equal(await untilReady(app), 200, 'the app connects to the cluster')
    const email = uniqueEmail()
    await signup(app, email)
    const attempt = (password: string) => app.inject({ method: 'POST', url: `${AUTH}/login`, remoteAddress: '10.78.0.1', payload: { email, password } })
    for (let i = 1; i <= 2; i++) {
      const res = await attempt('wrong password, not this one')
      t.equal(res.statusCode, 401, `failure ${i} is 401`)
      t.equal(res.json().code, 'invalid_credentials')
    }
    const third = await attempt('wrong password, not this one')
    t.equal(third.statusCode, 429, 'the 3rd login is 429')
    t.equal(third.json().code, 'too_many_requests')
    t.ok(Number(third.headers['retry-after']) >= 1, 'with Retry-After')
    t.equal((await attempt(PASSWORD)).statusCode, 429, 'the right password is not checked while throttled')
  })
})

t.test('a master killed and restarted', async (t) => {
  const app = await buildTestApp(t, clusterSettings)
  t.equal(await untilReady(app), 200, 'the app connects to the cluster')
  const base = await listen(app)

  const login = (email: string) => call(base, 'POST', `${AUTH}/login`, { json: { email, password: PASSWORD, return_refresh_in_body: true } })
  const me = (token: string) => call(base, 'GET', `${AUTH}/me`, { token })
  const refresh = (token: string) => call(base, 'POST', `${AUTH}/refresh`, { json: { refresh_token: token } })
  const ready = () => call(base, 'GET', '/health/ready')

  interface User { id: string, email: string, access: string, refresh: string, port: number }
  async function newUser (): Promise<User> {
    const email = uniqueEmail()
    const { id } = await signup(app, email)
    const res = await login(email)
    if (res.status !== 200) throw new Error(`login failed: ${res.status} ${res.body}`)
    const body = res.json() as { access_token: string, refresh_token: string }
    const { port } = await slotOf(userIndexKey(KEY_PREFIX, id))
    return { id, email, access: body.access_token, refresh: body.refresh_token, port }
  }

  // Users until one lives on another master than the first: the first one's master is killed.
  const users = [await newUser()]
  while (users.every((u) => u.port === users[0]!.port) && users.length < 20) users.push(await newUser())
  const victim = users[0]!
  const other = users.find((u) => u.port !== victim.port)
  if (other === undefined) throw new Error('20 users, all on one master')
  const survivors = cluster.ports.filter((p) => p !== victim.port)
  t.comment(`killing the master on port ${victim.port} (pid ${cluster.pid(victim.port)}); the other user is on ${other.port}`)

  const sessionRoutes = (u: User): Array<[string, () => Promise<Answer>]> => [
    ['login', () => login(u.email)],
    ['refresh', () => refresh(u.refresh)],
    ['me', () => me(u.access)],
    ['GET /sessions', () => call(base, 'GET', `${AUTH}/sessions`, { token: u.access })]
  ]

  await t.test('users on the killed master: 503 within 5 s, never 500 or 401; GET / 200', async (t) => {
    await cluster.kill(victim.port, 'SIGKILL')
    // Two rounds: at once (the survivors still count the cluster as ok, and answer for their
    // slots), and once the survivors have marked the killed master as failing (node timeout 2 s)
    // and, without replicas to promote, put the whole cluster in cluster_state:fail
    // (cluster-require-full-coverage yes, Redis' default).
    for (const round of ['at once', 'cluster_state:fail']) {
      if (round !== 'at once') timings.add('survivors report cluster_state:fail', await cluster.waitForState('fail', 15_000, survivors))
      const label = (what: string) => `${what} (${round})`

      // Everything at once: each request must be answered within its limit on its own.
      const [live, answers, others] = await Promise.all([
        call(base, 'GET', '/'),
        Promise.all(sessionRoutes(victim).map(async ([name, request]) => [name, await request()] as const)),
        Promise.all(sessionRoutes(other).slice(2).map(async ([name, request]) => [name, await request()] as const))
      ])
      t.equal(live.status, 200, label('GET / is 200'))
      t.equal(live.body, '{"status":"ready"}', label('GET / body'))
      t.ok(live.ms < LIVENESS_LIMIT_MS, label(`GET / in ${live.ms} ms`))

      for (const [name, res] of answers) {
        t.not(res.status, 401, label(`${name} is never 401`))
        t.not(res.status, 500, label(`${name} is never 500`))
        assertUnavailable(t, res, STORE_LIMIT_MS, label(name))
        timings.add(label(`killed master: ${name}`), res.ms)
      }

      // A user on a surviving master: served while the survivors still report ok, refused
      // (CLUSTERDOWN → 503) once they report fail. Which one "at once" sees depends on how soon
      // the survivors flag the failure, so only the fail round is asserted to be 503.
      for (const [name, res] of others) {
        t.not(res.status, 500, label(`other master, ${name}: never 500`))
        t.not(res.status, 401, label(`other master, ${name}: never 401`))
        assertNoDriverText(t, res, label(`other master, ${name}`))
        if (round === 'at once') t.comment(label(`other master, ${name}: ${res.status} in ${res.ms} ms`))
        else assertUnavailable(t, res, STORE_LIMIT_MS, label(`other master, ${name}`))
      }

      const readiness = await ready()
      t.not(readiness.status, 500, label('GET /health/ready is never 500'))
      t.comment(label(`GET /health/ready: ${readiness.status} ${readiness.body}`))
      if (round !== 'at once') {
        // Every key is refused now: the session store is unavailable (API.md §11.1). A node
        // still answers PING in cluster_state:fail, so readiness asks for the cluster's state.
        t.equal(readiness.status, 503, label('GET /health/ready is 503 while the cluster is down'))
      }
    }
  })

  await t.test('restarted with its nodes file: recovery within 20 s', async (t) => {
    await cluster.start(victim.port)
    const polled = await pollUntil(RECOVERY_LIMIT_MS, () => login(victim.email), (a) => a.status !== 503)
    timings.add('restart: first login 200 of a user on the restarted master', polled.ms)
    t.same(polled.interim.filter((s) => s !== 503), [], 'only 503 while the cluster recovers')
    t.equal(polled.answer.status, 200, `login works again after ${polled.ms} ms`, { body: polled.answer.body })
    t.ok(polled.ms < RECOVERY_LIMIT_MS, 'within 20 s')
    const fresh = polled.answer.json() as { access_token?: string, refresh_token?: string }
    t.equal((await me(String(fresh.access_token))).status, 200, 'the new session works at /me')
    t.equal((await refresh(String(fresh.refresh_token))).status, 200, 'and its refresh token rotates')

    const readiness = await pollUntil(RECOVERY_LIMIT_MS, ready, (a) => a.status === 200)
    t.equal(readiness.answer.status, 200, 'readiness 200 again')
    t.same(readiness.answer.json(), { status: 'ready', checks: { postgres: 'up', redis: 'up' } }, 'readiness body')

    // The other master kept its data: that user's pre-outage session goes on.
    const kept = await refresh(other.refresh)
    t.equal(kept.status, 200, 'a pre-outage token of a user on a surviving master rotates', { body: kept.body })
    t.equal((await me(other.access)).status, 200, 'and its access token works')
    // These nodes run without persistence (--save "" --appendonly no): the restarted master
    // came back empty, so the sessions it held are gone (401, never 500).
    const lost = await refresh(victim.refresh)
    t.equal(lost.status, 401, 'a pre-outage token of a user on the restarted, empty master is 401')
    t.equal(lost.json().code, 'invalid_refresh_token')
  })
})
