// Refresh tokens (API.md §4.2, §6): 64 bytes in base64url (86 characters, no dots, so never a
// JWT): the user id (16 bytes), the session id (16 bytes) and a 32-byte secret. The ids only
// locate the session; the secret decides. Only SHA-256 hashes are ever stored.
import { createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto'

export interface RefreshTokenParts {
  userId: string
  sessionId: string
}

const TOKEN = /^[A-Za-z0-9_-]{86}$/
const SECRET_BYTES = 32

function uuidToBytes (uuid: string): Buffer {
  return Buffer.from(uuid.replaceAll('-', ''), 'hex')
}

function bytesToUuid (bytes: Buffer): string {
  const hex = bytes.toString('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

function encode (parts: RefreshTokenParts, secret: Buffer): string {
  return Buffer.concat([uuidToBytes(parts.userId), uuidToBytes(parts.sessionId), secret]).toString('base64url')
}

/** The token issued at login: a fresh secret from the CSPRNG. */
export function mintRefreshToken (parts: RefreshTokenParts): string {
  return encode(parts, randomBytes(SECRET_BYTES))
}

/** The ids a token names, or null when it is not a well-formed token. */
export function parseRefreshToken (token: string): RefreshTokenParts | null {
  if (!TOKEN.test(token)) return null
  const bytes = Buffer.from(token, 'base64url')
  if (bytes.length !== 64) return null
  return { userId: bytesToUuid(bytes.subarray(0, 16)), sessionId: bytesToUuid(bytes.subarray(16, 32)) }
}

export function hashRefreshToken (token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}

/**
 * K_refresh: derived from the signing secret with a fixed label (HKDF-SHA256), so it is never
 * the JWT key itself.
 */
export function deriveRefreshKey (secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.alloc(0), 'auth-api refresh-token successor v1', 32))
}

/**
 * The successor of a token: same ids, secret = HMAC-SHA256(K_refresh, token). Deterministic,
 * so a duplicate request within the grace window gets the same successor without it being
 * stored, and unpredictable without the key.
 */
export function successorOf (token: string, parts: RefreshTokenParts, key: Buffer): string {
  return encode(parts, createHmac('sha256', key).update(token).digest())
}
