// What the bench presents to the service: access tokens minted like plugins/auth.ts mints them
// (HS256, typ at+jwt, the same claims), refresh tokens in the format of sessions/refresh-token.ts,
// and the deterministic ids of the seeded users and sessions.
import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto'

export const PASSWORD = 'Tq8#vLm2-Zp4!wXr-9kDs'
/** A browser-like User-Agent, so stored sessions are as large as real ones. */
export const USER_AGENT = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36'

/** md5 of a label as a UUID: the same value PostgreSQL's md5(label)::uuid gives. */
export function md5Uuid (label: string): string {
  const hex = createHash('md5').update(label).digest('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

export const userLabel = (i: number) => `bench-user-${i}`
export const sessionLabel = (i: number) => `bench-session-${i}`
export const userId = (i: number) => md5Uuid(userLabel(i))
export const sessionId = (i: number) => md5Uuid(sessionLabel(i))
export const userEmail = (i: number) => `user-${i}@bench.example`

const b64 = (value: string) => Buffer.from(value).toString('base64url')
const HEADER = b64(JSON.stringify({ alg: 'HS256', typ: 'at+jwt' }))

export interface TokenClaims {
  issuer: string
  audience: string
  lifetimeSeconds: number
}

/** An access token for a user's session, as `app.accessTokens.issue` makes it. */
export function mintAccessToken (secret: string, sub: string, sid: string, claims: TokenClaims): string {
  const iat = Math.floor(Date.now() / 1000)
  const payload = b64(JSON.stringify({ sub, sid, jti: randomUUID(), iat, exp: iat + claims.lifetimeSeconds, iss: claims.issuer, aud: claims.audience }))
  const signature = createHmac('sha256', secret).update(`${HEADER}.${payload}`).digest('base64url')
  return `${HEADER}.${payload}.${signature}`
}

const uuidBytes = (uuid: string) => Buffer.from(uuid.replaceAll('-', ''), 'hex')

/** A refresh token naming the user and the session, with a fresh 256-bit secret. */
export function mintRefreshToken (user: string, session: string): string {
  return Buffer.concat([uuidBytes(user), uuidBytes(session), randomBytes(32)]).toString('base64url')
}

/** What the session store keeps of a refresh token. */
export function hashRefreshToken (token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}

/** The claim names of a JWT's payload, to compare the bench's tokens with the service's. */
export function claimNames (token: string): { header: Record<string, unknown>, claims: string[] } {
  const [header = '', payload = ''] = token.split('.')
  return {
    header: JSON.parse(Buffer.from(header, 'base64url').toString()) as Record<string, unknown>,
    claims: Object.keys(JSON.parse(Buffer.from(payload, 'base64url').toString()) as object).sort()
  }
}

/** Fisher–Yates, in place. */
export function shuffle<T> (items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    const a = items[i] as T
    items[i] = items[j] as T
    items[j] = a
  }
  return items
}

/**
 * Refresh tokens not yet used, oldest first. Each request takes one; its answer's successor
 * goes to the back. Every token is presented once, and the store keeps its size.
 */
export class RefreshQueue {
  private items: string[] = []
  private head = 0

  get size (): number {
    return this.items.length - this.head
  }

  push (token: string): void {
    this.items.push(token)
  }

  take (): string | undefined {
    if (this.head === this.items.length) return undefined
    const token = this.items[this.head++]
    if (this.head > 65_536 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return token
  }

  /** Mixes the waiting tokens, so consecutive requests hit different sessions. */
  shuffle (): void {
    this.items = shuffle(this.items.slice(this.head))
    this.head = 0
  }
}
