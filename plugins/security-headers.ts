// Security headers of every response (API.md §2.3), through @fastify/helmet for routed requests.
// Responses written before routing (malformed URLs, unreadable requests) bypass hooks, so they
// get the same contract headers from preRoutingHeaders(), rendered from the same policy.
import helmet from '@fastify/helmet'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

// A JSON API loads nothing and may be framed by nobody.
const API_CSP = { defaultSrc: ["'none'"], frameAncestors: ["'none'"] }

function renderCsp (directives: Record<string, string[]>): string {
  const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
  return Object.entries(directives).map(([name, values]) => `${kebab(name)} ${values.join(' ')}`).join('; ')
}

export function preRoutingHeaders (): Record<string, string> {
  return {
    'content-security-policy': renderCsp(API_CSP),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer'
  }
}

async function securityHeaders (app: FastifyInstance): Promise<void> {
  await app.register(helmet, {
    global: true,
    contentSecurityPolicy: { useDefaults: false, directives: API_CSP },
    referrerPolicy: { policy: 'no-referrer' },
    // HSTS only means something over TLS, which a reverse proxy terminates; it sends its own.
    strictTransportSecurity: false
  })
}

export default fp(securityHeaders, { name: 'security-headers', fastify: '5.x' })
