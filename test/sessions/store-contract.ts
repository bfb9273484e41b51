// The session-store contract (API.md §6, §7, §10), run against every implementation (Redis,
// PostgreSQL server, embedded PGlite) so that they cannot drift apart. Lifetimes are seconds
// long so that expiry happens during the test; every user id is fresh.
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { deriveRefreshKey, hashRefreshToken, mintRefreshToken, successorOf } from '../../sessions/refresh-token.ts'
import type { DeviceInfo, SessionSettings, SessionStore } from '../../sessions/store.ts'
import { JWT_SECRET } from '../fixtures/app.ts'

export const CONTRACT_SETTINGS: SessionSettings = { refreshMs: 2000, maxLifetimeMs: 3000, graceMs: 500, maxPerUser: 3 }

export interface ContractSubject {
  store: SessionStore
  /** The same implementation, on the same backend, with other settings. */
  withSettings (settings: SessionSettings): SessionStore
  /** Everything the store keeps about a user, as text: no refresh token may appear in it. */
  storedText (userId: string): Promise<string>
}

const KEY = deriveRefreshKey(JWT_SECRET)
const device: DeviceInfo = { deviceName: 'Work Laptop', userAgent: 'test-agent/1.0', ip: '127.0.0.1' }

export function sessionStoreContract (t: Test, { store, storedText, withSettings }: ContractSubject): void {
  const settings = CONTRACT_SETTINGS

  /** A new session of `userId` with a fresh login token. */
  async function newSession (userId: string, extra: Partial<DeviceInfo> & { replaces?: { sessionId: string, token: string } } = {}) {
    const sessionId = randomUUID()
    const token = mintRefreshToken({ userId, sessionId })
    const { replaces, ...info } = extra
    const lifetime = await store.create({
      userId,
      sessionId,
      tokenHash: hashRefreshToken(token),
      ...device,
      ...info,
      ...(replaces ? { replaces: { sessionId: replaces.sessionId, tokenHash: hashRefreshToken(replaces.token) } } : {})
    })
    return { sessionId, token, lifetime }
  }

  /** Rotates `token`; returns the outcome and the successor. */
  async function rotate (userId: string, sessionId: string, token: string) {
    const successor = successorOf(token, { userId, sessionId }, KEY)
    const outcome = await store.rotate(userId, sessionId, hashRefreshToken(token), hashRefreshToken(successor))
    return { outcome, successor }
  }

  const liveIds = async (userId: string) => (await store.list(userId)).map((s) => s.id).sort()

  t.test('create and list: fields, order by last use, only hashes stored', async (t) => {
    const userId = randomUUID()
    const before = Date.now()
    const { sessionId, token, lifetime } = await newSession(userId)
    const after = Date.now()
    t.ok(lifetime.ttlMs > settings.refreshMs - 200 && lifetime.ttlMs <= settings.refreshMs, `lifetime is the idle lifetime (${lifetime.ttlMs})`)
    t.ok(await store.isAlive(userId, sessionId))

    const { successor } = await rotate(userId, sessionId, token)
    const stored = await storedText(userId)
    t.ok(stored.includes(hashRefreshToken(successor)), 'the current token is kept as its SHA-256 hash')
    for (const value of [token, successor]) t.notOk(stored.includes(value), 'no refresh token is stored')

    const list = await store.list(userId)
    t.equal(list.length, 1)
    const item = list[0]!
    t.same(Object.keys(item).sort(), ['createdAt', 'deviceName', 'expiresAt', 'id', 'ip', 'lastUsedAt', 'userAgent'])
    t.same([item.id, item.deviceName, item.userAgent, item.ip], [sessionId, 'Work Laptop', 'test-agent/1.0', '127.0.0.1'])
    t.ok(item.createdAt.getTime() >= before - 1000 && item.createdAt.getTime() <= after + 1000, 'created_at is the login time')
    t.ok(item.lastUsedAt.getTime() >= item.createdAt.getTime(), 'last used at the rotation')
    t.ok(item.expiresAt.getTime() > Date.now(), 'expires in the future')

    await sleep(10)
    const bare = await newSession(userId, { deviceName: null, userAgent: null, ip: null })
    const listed = await store.list(userId)
    t.same(listed.map((s) => s.id), [bare.sessionId, sessionId], 'most recently used first')
    t.same([listed[0]?.deviceName, listed[0]?.userAgent, listed[0]?.ip], [null, null, null], 'absent device info is null')
    t.same(await store.list(randomUUID()), [], 'a user without sessions has an empty list')
    await store.revokeAll(userId)
  })

  t.test('rotation outcomes (rules 1–4)', async (t) => {
    const userId = randomUUID()
    const { sessionId, token: t0 } = await newSession(userId)
    const r1 = await rotate(userId, sessionId, t0)
    t.equal(r1.outcome.kind, 'rotated', 'rule 1')
    if (r1.outcome.kind === 'rotated') t.ok(r1.outcome.ttlMs > settings.refreshMs - 200 && r1.outcome.ttlMs <= settings.refreshMs, 'renewed lifetime')
    t.equal((await rotate(userId, sessionId, t0)).outcome.kind, 'duplicate', 'rule 2: the previous token within the grace window')
    const r2 = await rotate(userId, sessionId, r1.successor)
    t.equal(r2.outcome.kind, 'rotated')
    t.equal((await rotate(userId, sessionId, t0)).outcome.kind, 'in_progress', 'rule 2: its successor was rotated meanwhile')
    const r3 = await rotate(userId, sessionId, r2.successor)
    t.equal(r3.outcome.kind, 'rotated')
    t.equal((await rotate(userId, sessionId, t0)).outcome.kind, 'invalid', 'rule 4: two generations back')
    t.equal((await rotate(userId, sessionId, mintRefreshToken({ userId, sessionId }))).outcome.kind, 'invalid', 'rule 4: never issued')
    t.equal((await rotate(randomUUID(), sessionId, r3.successor)).outcome.kind, 'invalid', 'rule 4: another user\'s id')
    t.equal((await rotate(userId, randomUUID(), r3.successor)).outcome.kind, 'invalid', 'rule 4: no such session')
    t.ok(await store.isAlive(userId, sessionId), 'no side effect of rule 4')
    await sleep(settings.graceMs + 50)
    t.equal((await rotate(userId, sessionId, r1.successor)).outcome.kind, 'invalid', 'rule 4: older generation after the window')
    t.ok(await store.isAlive(userId, sessionId))
    t.equal((await rotate(userId, sessionId, r2.successor)).outcome.kind, 'reused', 'rule 3: previous after the window')
    t.notOk(await store.isAlive(userId, sessionId), 'the session is ended')
    t.equal((await rotate(userId, sessionId, r3.successor)).outcome.kind, 'invalid', 'its newest token is dead')
    t.same(await store.list(userId), [])
  })

  t.test('reuse ends only that device session', async (t) => {
    const userId = randomUUID()
    const stolen = await newSession(userId)
    const other = await newSession(userId)
    await rotate(userId, stolen.sessionId, stolen.token)
    await sleep(settings.graceMs + 50)
    t.equal((await rotate(userId, stolen.sessionId, stolen.token)).outcome.kind, 'reused')
    t.notOk(await store.isAlive(userId, stolen.sessionId))
    t.ok(await store.isAlive(userId, other.sessionId), 'the other device is unaffected')
    t.equal((await rotate(userId, other.sessionId, other.token)).outcome.kind, 'rotated', 'and keeps refreshing')
    await store.revokeAll(userId)
  })

  t.test('20 concurrent rotations of one token: one rotation, the identical successor for all', async (t) => {
    // A grace window far longer than 20 serialised decisions can take on a loaded machine.
    const patient = withSettings({ ...settings, graceMs: 60_000 })
    const userId = randomUUID()
    const { sessionId, token } = await newSession(userId)
    const outcomes = await Promise.all(Array.from({ length: 20 }, async () => {
      const successor = successorOf(token, { userId, sessionId }, KEY)
      return { outcome: await patient.rotate(userId, sessionId, hashRefreshToken(token), hashRefreshToken(successor)), successor }
    }))
    const kinds = outcomes.map((o) => o.outcome.kind)
    t.equal(kinds.filter((k) => k === 'rotated').length, 1, 'exactly one rotation')
    t.equal(kinds.filter((k) => k === 'duplicate').length, 19, 'every other one is a benign duplicate')
    t.equal(new Set(outcomes.map((o) => o.successor)).size, 1, 'one successor')
    t.equal((await rotate(userId, sessionId, outcomes[0]!.successor)).outcome.kind, 'rotated', 'the session survives: its successor rotates')
    await store.revokeAll(userId)
  })

  t.test('idle lifetime: a session not used for refreshMs ends', async (t) => {
    const userId = randomUUID()
    const idle = await newSession(userId)
    await sleep(1000)
    const used = await newSession(userId)
    await sleep(1100) // idle is 2.1 s old, used 1.1 s
    t.notOk(await store.isAlive(userId, idle.sessionId), 'expired after its idle lifetime')
    t.ok(await store.isAlive(userId, used.sessionId))
    t.same(await liveIds(userId), [used.sessionId], 'list excludes the expired session')
    t.equal((await rotate(userId, idle.sessionId, idle.token)).outcome.kind, 'invalid', 'its token is dead')
    t.equal(await store.revokeByToken(userId, idle.sessionId, hashRefreshToken(idle.token)), false)
    t.equal(await store.revoke(userId, idle.sessionId), false)
    await store.revokeAll(userId)
  })

  t.test('rotation renews the idle lifetime but never past the absolute lifetime', async (t) => {
    const userId = randomUUID()
    const { sessionId, token } = await newSession(userId)
    const createdAt = (await store.list(userId))[0]!.createdAt.getTime()
    const cap = createdAt + settings.maxLifetimeMs

    await sleep(800)
    const r1 = await rotate(userId, sessionId, token)
    t.equal(r1.outcome.kind, 'rotated')
    let item = (await store.list(userId))[0]!
    t.equal(item.expiresAt.getTime(), Math.min(item.lastUsedAt.getTime() + settings.refreshMs, cap), 'renewed to last use + refreshMs')
    t.ok(item.expiresAt.getTime() > createdAt + settings.refreshMs, 'beyond the first idle lifetime')

    await sleep(800) // 1.6 s: last use + 2 s would pass the 3 s cap
    const r2 = await rotate(userId, sessionId, r1.successor)
    t.equal(r2.outcome.kind, 'rotated')
    item = (await store.list(userId))[0]!
    t.equal(item.expiresAt.getTime(), cap, 'capped at created_at + maxLifetimeMs')
    if (r2.outcome.kind === 'rotated') t.ok(r2.outcome.ttlMs <= cap - item.lastUsedAt.getTime(), 'returned lifetime capped')

    await sleep(Math.max(0, cap - Date.now()) + 100)
    t.notOk(await store.isAlive(userId, sessionId), 'ended at the absolute lifetime although used recently')
    t.equal((await rotate(userId, sessionId, r2.successor)).outcome.kind, 'invalid')
    t.same(await store.list(userId), [])
  })

  t.test('the per-user cap ends the least recently used session, not the oldest', async (t) => {
    const userId = randomUUID()
    const a = await newSession(userId)
    await sleep(20)
    const b = await newSession(userId)
    await sleep(20)
    const c = await newSession(userId)
    await sleep(20)
    t.equal((await rotate(userId, a.sessionId, a.token)).outcome.kind, 'rotated', 'a (oldest created) is used again')
    await sleep(20)
    const d = await newSession(userId)
    t.notOk(await store.isAlive(userId, b.sessionId), 'b, the least recently used, is ended')
    t.same(await liveIds(userId), [a.sessionId, c.sessionId, d.sessionId].sort())
    t.equal((await rotate(userId, b.sessionId, b.token)).outcome.kind, 'invalid')
    await sleep(20)
    const e = await newSession(userId)
    t.notOk(await store.isAlive(userId, c.sessionId), 'next: c')
    t.same(await liveIds(userId), [a.sessionId, d.sessionId, e.sessionId].sort())
    await store.revokeAll(userId)
  })

  t.test('10 concurrent logins of one user keep the cap', async (t) => {
    const userId = randomUUID()
    const created = await Promise.all(Array.from({ length: 10 }, () => newSession(userId)))
    const live = await liveIds(userId)
    t.equal(live.length, settings.maxPerUser, `exactly ${settings.maxPerUser} sessions live`)
    for (const id of live) t.ok(created.some((s) => s.sessionId === id), 'each is one of the new sessions')
    await store.revokeAll(userId)
  })

  t.test('a login that replaces a session ends it only when its token matches', async (t) => {
    const userId = randomUUID()
    const old = await newSession(userId)
    const forged = await newSession(userId, { replaces: { sessionId: old.sessionId, token: mintRefreshToken({ userId, sessionId: old.sessionId }) } })
    t.ok(await store.isAlive(userId, old.sessionId), 'a token that does not match ends nothing')
    const otherUser = randomUUID()
    await newSession(otherUser, { replaces: { sessionId: old.sessionId, token: old.token } })
    t.ok(await store.isAlive(userId, old.sessionId), 'another user\'s login ends nothing of this user')
    const replacing = await newSession(userId, { replaces: { sessionId: old.sessionId, token: old.token } })
    t.notOk(await store.isAlive(userId, old.sessionId), 'the replaced session is ended')
    t.same(await liveIds(userId), [forged.sessionId, replacing.sessionId].sort())
    await store.revokeAll(userId)
    await store.revokeAll(otherUser)
  })

  t.test('revoke, revokeByToken and revokeAll', async (t) => {
    const userId = randomUUID()
    const otherUser = randomUUID()
    const s1 = await newSession(userId)
    const s2 = await newSession(userId)
    const s3 = await newSession(userId)
    const foreign = await newSession(otherUser)

    t.equal(await store.revoke(otherUser, s1.sessionId), false, 'not a session of that user')
    t.ok(await store.isAlive(userId, s1.sessionId))
    t.equal(await store.revoke(userId, s1.sessionId), true)
    t.notOk(await store.isAlive(userId, s1.sessionId))
    t.equal(await store.revoke(userId, s1.sessionId), false, 'already ended')

    const { successor } = await rotate(userId, s2.sessionId, s2.token)
    t.equal(await store.revokeByToken(userId, s2.sessionId, hashRefreshToken(mintRefreshToken({ userId, sessionId: s2.sessionId }))), false, 'unknown token')
    t.equal(await store.revokeByToken(otherUser, s2.sessionId, hashRefreshToken(successor)), false, 'another user')
    t.ok(await store.isAlive(userId, s2.sessionId))
    t.equal(await store.revokeByToken(userId, s2.sessionId, hashRefreshToken(s2.token)), true, 'the previous token ends the session')
    t.notOk(await store.isAlive(userId, s2.sessionId))
    t.equal((await rotate(userId, s2.sessionId, successor)).outcome.kind, 'invalid')

    const s4 = await newSession(userId)
    t.equal(await store.revokeByToken(userId, s4.sessionId, hashRefreshToken(s4.token)), true, 'the current token ends the session')
    const s5 = await newSession(userId)
    await store.revokeAll(userId)
    for (const s of [s3, s5]) t.notOk(await store.isAlive(userId, s.sessionId))
    t.same(await store.list(userId), [])
    t.equal(await storedText(userId), '', 'nothing of the user is left')
    t.ok(await store.isAlive(otherUser, foreign.sessionId), 'another user is unaffected')
    await store.revokeAll(otherUser)
  })

  t.test('rate-limit counters: fixed windows from the first event', async (t) => {
    const key = `ip:${randomUUID()}`
    const first = await store.counters.hit(key, 1000)
    t.equal(first.count, 1)
    t.ok(first.ttlMs > 800 && first.ttlMs <= 1000, `the window starts at the first event (${first.ttlMs})`)
    await sleep(300)
    const second = await store.counters.hit(key, 1000)
    t.equal(second.count, 2)
    t.ok(second.ttlMs <= first.ttlMs - 200, 'later events do not extend the window')
    await sleep(second.ttlMs + 50)
    t.equal((await store.counters.hit(key, 1000)).count, 1, 'a new window after the old one ends')
  })

  t.test('rate-limit reservations hold under concurrency', async (t) => {
    const group = `login:${randomUUID()}`
    const limits = [{ key: `${group}|a`, limit: 3 }, { key: group, limit: 5 }]
    const waits = await Promise.all(Array.from({ length: 20 }, () => store.counters.reserve(group, limits, 1000)))
    t.equal(waits.filter((w) => w === 0).length, 3, 'exactly the limit of reservations is granted')
    for (const wait of waits.filter((w) => w > 0)) t.ok(wait > 0 && wait <= 1000, 'the others learn the time left')

    await store.counters.release(group, limits.map((l) => l.key))
    t.equal(await store.counters.reserve(group, limits, 1000), 0, 'a released count can be reserved again')
    t.ok(await store.counters.reserve(group, limits, 1000) > 0, 'and then the limit holds again')

    const otherAddress = [{ key: `${group}|b`, limit: 3 }, { key: group, limit: 5 }]
    t.equal(await store.counters.reserve(group, otherAddress, 1000), 0, 'another address has its own counter')
    t.equal(await store.counters.reserve(group, otherAddress, 1000), 0)
    t.ok(await store.counters.reserve(group, otherAddress, 1000) > 0, 'until the shared counter reaches its own limit')

    await store.counters.clear(group, [...limits, ...otherAddress].map((l) => l.key))
    t.equal(await store.counters.reserve(group, limits, 1000), 0, 'cleared counters start again')
    await sleep(1050)
    t.equal(await store.counters.reserve(group, [{ key: `${group}|a`, limit: 1 }], 1000), 0, 'windows end by themselves')
  })

  t.test('ping answers', async (t) => {
    await t.resolves(store.ping())
  })
}
