// Security headers of every response (API.md §2.3): @fastify/helmet for routed requests, plus
// the exact Content-Security-Policy of the contract (helmet renders directives without the
// space after `;`). Responses written before routing (malformed URLs, unreadable requests)
// bypass hooks, so they get the contract headers from preRoutingHeaders().
import helmet from '@fastify/helmet'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { requestPath } from '../lib/request-path.ts'

// A JSON API loads nothing and may be framed by nobody.
export const API_CSP = "default-src 'none'; frame-ancestors 'none'"
// The reference page at /docs loads its own scripts, styles and images, and the document.
export const DOCS_CSP = `${API_CSP}; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'`

export function preRoutingHeaders (): Record<string, string> {
  return {
    'content-security-policy': API_CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer'
  }
}

async function securityHeaders (app: FastifyInstance): Promise<void> {
  await app.register(helmet, {
    global: true,
    contentSecurityPolicy: false,
    referrerPolicy: { policy: 'no-referrer' },
    xFrameOptions: { action: 'deny' },
    // HSTS only means something over TLS, which the reverse proxy terminates and sets.
    strictTransportSecurity: false
  })
  app.addHook('onRequest', async (request, reply) => {
    const path = requestPath(request.url)
    const docs = path === '/docs' || path.startsWith('/docs/')
    reply.header('content-security-policy', docs ? DOCS_CSP : API_CSP)
  })
}

export default fp(securityHeaders, { name: 'security-headers', fastify: '5.x' })
