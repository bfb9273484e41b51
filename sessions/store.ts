// The session store contract (API.md §6, §7, §8), whatever holds the sessions and counters.
// Times come from the store's own clock so that every instance decides alike.
import { createHash } from 'node:crypto'

export interface SessionSettings {
  /** Idle lifetime, renewed by every rotation (REFRESH_DAYS). */
  refreshMs: number
  /** Absolute lifetime from login (SESSION_MAX_DAYS). */
  maxLifetimeMs: number
  /** Live sessions per user (MAX_SESSIONS_PER_USER). */
  maxPerUser: number
  /** Refresh grace window (REFRESH_GRACE_SECONDS). */
  graceMs: number
}

export interface DeviceInfo {
  deviceName: string | null
  userAgent: string | null
  ip: string | null
}

export interface SessionInfo extends DeviceInfo {
  id: string
  createdAt: Date
  lastUsedAt: Date
  expiresAt: Date
}

/** Remaining lifetime of a session, measured on the store's clock. */
export interface Lifetime {
  ttlMs: number
}

export type RotateOutcome =
  | ({ kind: 'rotated' } & Lifetime) // rule 1: the successor is now current
  | ({ kind: 'duplicate' } & Lifetime) // rule 2: within the grace window, the same successor again
  | { kind: 'in_progress' } // rule 2: the successor itself was rotated meanwhile
  | { kind: 'reused' } // rule 3: previous token after the window; the session is ended
  | { kind: 'invalid' } // rule 4

export interface NewSession extends DeviceInfo {
  userId: string
  sessionId: string
  tokenHash: string
  /** A session this login replaces (the browser's old refresh cookie), if its token matches. */
  replaces?: { sessionId: string, tokenHash: string }
}

/** How stores name a counter: a hash, so no email or address is stored in clear. */
export function counterId (key: string): string {
  return createHash('sha256').update(key).digest('base64url')
}

/** A rate-limit counter (API.md §8): its count and the time left in its window. */
export interface Count {
  count: number
  ttlMs: number
}

export interface Limit {
  key: string
  limit: number
}

/**
 * Rate-limit counters in fixed windows that start at the first counted event, shared by all
 * instances. Keys are opaque strings chosen by the caller; the counters of one `group` are
 * decided together (on Redis they share a cluster slot).
 */
export interface CounterStore {
  /** Counts one event; a window ended or absent starts anew. */
  hit (key: string, windowMs: number): Promise<Count>
  /**
   * In one atomic step: when every counter is below its limit, counts one on each and
   * returns 0; otherwise counts nothing and returns the time left until the counters at their
   * limit reopen (the longest).
   */
  reserve (group: string, limits: Limit[], windowMs: number): Promise<number>
  /** Takes back one reserved count from each counter (an attempt that ended in an outage). */
  release (group: string, keys: string[]): Promise<void>
  clear (group: string, keys: string[]): Promise<void>
}

export interface SessionStore {
  counters: CounterStore
  /** Creates a session; ends the least recently used ones beyond the per-user cap, atomically. */
  create (session: NewSession): Promise<Lifetime>
  /** Decides rules 1–4 of API.md §6 in one atomic step. */
  rotate (userId: string, sessionId: string, presentedHash: string, successorHash: string): Promise<RotateOutcome>
  /** Ends the session when the hash is its current or previous token; false when nothing matched. */
  revokeByToken (userId: string, sessionId: string, tokenHash: string): Promise<boolean>
  /** Ends one of the user's sessions; false when it is not a live session of that user. */
  revoke (userId: string, sessionId: string): Promise<boolean>
  /** Ends every session of the user. */
  revokeAll (userId: string): Promise<void>
  /** Ends every session of the user but one (a password change keeps the caller's). */
  revokeOthers (userId: string, keepSessionId: string): Promise<void>
  list (userId: string): Promise<SessionInfo[]>
  isAlive (userId: string, sessionId: string): Promise<boolean>
  /** Resolves when the store answers within about a second. */
  ping (): Promise<void>
}
