// Yardstick: a bare Fastify route that only verifies the service's HS256 access token, with the
// checks of plugins/auth.ts `authenticate` and its @fastify/jwt options (same secret, pinned
// algorithm, required claims, iss/aud/typ), and no store access. Answers at the same path as
// GET /api/v1/auth/me, so the requests are byte for byte the same. Prints `READY <port>`.
import fastifyJwt from '@fastify/jwt'
import Fastify from 'fastify'

const secret = process.env.JWT_SECRET
if (!secret) throw new Error('JWT_SECRET is required')
const issuer = process.env.JWT_ISSUER ?? 'auth-api'
const audience = process.env.JWT_AUDIENCE ?? 'api'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const BEARER = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i

const app = Fastify({ logger: false })
await app.register(fastifyJwt, {
  secret,
  verify: {
    algorithms: ['HS256'],
    allowedIss: issuer,
    allowedAud: audience,
    requiredClaims: ['iss', 'aud', 'sub', 'sid', 'jti', 'iat', 'exp'],
    checkTyp: 'at+jwt'
  }
})

function rejected (reply) {
  return reply.code(401).header('www-authenticate', 'Bearer realm="api", error="invalid_token"').send({ code: 'invalid_token' })
}

app.get('/api/v1/auth/me', async (request, reply) => {
  const token = request.headers.authorization?.match(BEARER)?.[1]
  if (token === undefined) return rejected(reply)
  const signature = token.slice(token.lastIndexOf('.') + 1)
  if (Buffer.from(signature, 'base64url').toString('base64url') !== signature) return rejected(reply)
  let claims
  try {
    claims = app.jwt.verify(token)
  } catch {
    return rejected(reply)
  }
  const { sub, sid, jti } = claims
  if (typeof sub !== 'string' || !UUID.test(sub) || typeof sid !== 'string' || !UUID.test(sid) ||
      typeof jti !== 'string' || jti === '') {
    return rejected(reply)
  }
  return { sub, sid }
})

await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) })
process.stdout.write(`READY ${app.server.address().port}\n`)
process.on('SIGTERM', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
