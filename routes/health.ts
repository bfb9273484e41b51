// Liveness, readiness and the public key set (API.md §5.1–5.3). None of these is rate limited.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { usesRedis } from '../config.ts'
import { ProblemError } from '../plugins/errors.ts'
import { ChecksSchema, problemResponse } from '../schema/common.ts'

const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // Liveness consults no store: it answers while the database or Redis is down.
  app.get('/', {
    schema: {
      operationId: 'liveness',
      summary: 'Liveness',
      tags: ['health'],
      response: { 200: Type.Object({ status: Type.Literal('ready') }) }
    }
  }, async () => ({ status: 'ready' as const }))

  app.get('/health/ready', {
    schema: {
      operationId: 'readiness',
      summary: 'Readiness: every configured store answers',
      tags: ['health'],
      response: {
        200: Type.Object({ status: Type.Literal('ready'), checks: ChecksSchema }),
        503: problemResponse('ReadinessProblem')
      }
    }
  }, async () => {
    // Exactly the configured stores (API.md §5.2): the database, and Redis when it holds the sessions.
    const state = (check: Promise<void>) => check.then(() => 'up' as const, () => 'down' as const)
    const [postgres, redis] = await Promise.all([
      state(app.database.ping()),
      usesRedis(app.config) ? state(app.sessions.ping()) : undefined
    ])
    const checks = redis === undefined ? { postgres } : { postgres, redis }
    if (postgres === 'down' || redis === 'down') {
      throw new ProblemError('service_unavailable', { detail: 'A store is not answering.', extra: { checks } })
    }
    return { status: 'ready' as const, checks }
  })

  // Empty under HS256 (a shared secret has nothing public); the Ed25519 keys under EdDSA.
  app.get('/.well-known/jwks.json', {
    schema: {
      operationId: 'getJwks',
      summary: 'Public keys that verify access tokens',
      tags: ['health'],
      response: {
        200: Type.Object({
          keys: Type.Array(Type.Object({
            kty: Type.Literal('OKP'),
            crv: Type.Literal('Ed25519'),
            x: Type.String(),
            kid: Type.String({ description: 'RFC 7638 thumbprint' }),
            alg: Type.Literal('EdDSA'),
            use: Type.Literal('sig')
          }))
        })
      }
    }
  }, async () => app.jwks)
}

export default healthRoutes
