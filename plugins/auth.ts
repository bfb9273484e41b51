// Decorates `passwords` (argon2id), `accessTokens` (JWT issuing), `refreshKey` (K_refresh of
// API.md §6) and the `authenticate` preHandler, which sets `request.principal`.
import { randomBytes, randomUUID } from 'node:crypto'
import fastifyJwt from '@fastify/jwt'
import argon2 from 'argon2'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { publicJwk, publicPem, type PublicJwk } from '../lib/jwt-keys.ts'
import { normalizePassword } from '../lib/password-policy.ts'
import { deriveRefreshKey } from '../sessions/refresh-token.ts'
import { ProblemError } from './errors.ts'

export interface Principal {
  userId: string
  sessionId: string
}

declare module 'fastify' {
  interface FastifyInstance {
    passwords: {
      hash (password: string): Promise<string>
      /** Verifies against `hash`, or, when there is no user, against a dummy hash of the same cost. */
      verify (hash: string | null, password: string): Promise<boolean>
    }
    accessTokens: { issue (principal: Principal): { token: string, expiresIn: number } }
    refreshKey: Buffer
    /** The JSON Web Key Set of /.well-known/jwks.json: public keys only. */
    jwks: { keys: PublicJwk[] }
    authenticate (request: FastifyRequest): Promise<void>
  }
  interface FastifyRequest {
    principal: Principal | null
  }
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: { sub: string, sid: string, jti: string }
  }
}

// OWASP's argon2id minimum (m = 19 MiB, t = 2, p = 1), API.md §9. argon2 hashes on the libuv
// thread pool, off the event loop.
const ARGON2_OPTIONS = { type: argon2.argon2id, memoryCost: 19 * 1024, timeCost: 2, parallelism: 1 } as const

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

// RFC 6750 §2.1: the scheme (case-insensitive), one space, a non-empty token; nothing after it.
const BEARER = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i

/** 401 invalid_token with the RFC 6750 challenge of API.md §4.1. */
export function invalidToken (request: FastifyRequest): ProblemError {
  const challenge = request.headers.authorization === undefined ? 'Bearer realm="api"' : 'Bearer realm="api", error="invalid_token"'
  return new ProblemError('invalid_token', { headers: { 'www-authenticate': challenge } })
}

async function authPlugin (app: FastifyInstance): Promise<void> {
  const { config } = app
  const accessSeconds = config.ACCESS_MIN * 60

  const dummyHash = await argon2.hash(randomBytes(32).toString('base64url'), ARGON2_OPTIONS)
  app.decorate('passwords', {
    hash: (password: string) => argon2.hash(normalizePassword(password), ARGON2_OPTIONS),
    async verify (hash: string | null, password: string) {
      const ok = await argon2.verify(hash ?? dummyHash, normalizePassword(password))
      return hash !== null && ok
    }
  })

  // HS256: one shared secret, nothing to publish. EdDSA: the current key signs and is
  // published with its kid; keys of JWT_PREVIOUS_PUBLIC_KEYS still verify and are published,
  // so a key rotation logs no one out (API.md §5.3).
  const { signing } = config
  const currentJwk = signing.alg === 'EdDSA' ? publicJwk(signing.privateKey) : null
  const previousKeys = new Map(signing.alg === 'EdDSA'
    ? signing.previousPublicKeys.map((key) => [publicJwk(key).kid, publicPem(key)] as const)
    : [])
  app.decorate('jwks', {
    keys: signing.alg === 'EdDSA' ? [currentJwk!, ...signing.previousPublicKeys.map(publicJwk)] : []
  })

  // The defaults of @fastify/jwt and fast-jwt would accept tokens API.md §4.1 rejects: pin the
  // algorithm, require every claim, check iss/aud/typ. Keys come only from the settings: a
  // token's `kid` picks one of them, and header hints (jwk, jku) are never used.
  await app.register(fastifyJwt, {
    secret: signing.alg === 'HS256'
      ? signing.secret
      : { private: signing.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), public: publicPem(signing.privateKey) },
    sign: {
      algorithm: signing.alg,
      iss: config.JWT_ISSUER,
      aud: config.JWT_AUDIENCE,
      expiresIn: accessSeconds,
      header: { alg: signing.alg, typ: 'at+jwt', ...(currentJwk ? { kid: currentJwk.kid } : {}) }
    },
    verify: {
      algorithms: [signing.alg],
      allowedIss: config.JWT_ISSUER,
      allowedAud: config.JWT_AUDIENCE,
      requiredClaims: ['iss', 'aud', 'sub', 'sid', 'jti', 'iat', 'exp'],
      checkTyp: 'at+jwt'
    }
  })

  app.decorate('accessTokens', {
    issue: (principal: Principal) => ({
      token: app.jwt.sign({ sub: principal.userId, sid: principal.sessionId, jti: randomUUID() }),
      expiresIn: accessSeconds
    })
  })
  app.decorate('refreshKey', deriveRefreshKey(config.refreshKeySource))

  function verifyAccessToken (token: string): { sub?: unknown, sid?: unknown, jti?: unknown } {
    if (currentJwk === null) return app.jwt.verify(token)
    const { kid } = (app.jwt.decode(token, { complete: true }) as { header: { kid?: unknown } }).header
    if (kid === currentJwk.kid) return app.jwt.verify(token)
    const previous = typeof kid === 'string' ? previousKeys.get(kid) : undefined
    if (previous === undefined) throw new Error('unknown kid')
    return app.jwt.verify(token, { key: previous })
  }

  app.decorateRequest('principal', null)
  app.decorate('authenticate', async function authenticate (request: FastifyRequest) {
    const header = request.headers.authorization
    const rejected = () => invalidToken(request)
    const token = header?.match(BEARER)?.[1]
    if (token === undefined) throw rejected()
    // fast-jwt decodes the signature leniently, ignoring the unused low bits of its last
    // base64url character: accept only the canonical encoding, so any changed character fails.
    const signature = token.slice(token.lastIndexOf('.') + 1)
    if (Buffer.from(signature, 'base64url').toString('base64url') !== signature) throw rejected()

    // Signature and claims first: a forged or expired token costs no store access.
    let claims: { sub?: unknown, sid?: unknown, jti?: unknown }
    try {
      claims = verifyAccessToken(token)
    } catch {
      throw rejected()
    }
    const { sub, sid, jti } = claims
    if (typeof sub !== 'string' || !UUID.test(sub) || typeof sid !== 'string' || !UUID.test(sid) ||
        typeof jti !== 'string' || jti === '') {
      throw rejected()
    }
    // Liveness of the session makes logout and revocation end access tokens at once.
    if (!await app.sessions.isAlive(sub, sid)) throw rejected()
    request.principal = { userId: sub, sessionId: sid }
  })
}

export default fp(authPlugin, { name: 'auth', fastify: '5.x', decorators: { fastify: ['config'] }, dependencies: ['sessions'] })
