// The OpenAPI 3.1 document (API.md §12.2), built by @fastify/swagger from the TypeBox schemas
// the routes already declare, served at GET /docs/json with a Swagger UI reference page at
// GET /docs. Shared schemas added with an $id (app.addSchema) become named components.
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { PROJECT_ROOT } from '../lib/project-root.ts'

export const DOCS_PREFIX = '/docs'

const { version, description } = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string, description: string }

interface Operation {
  requestBody?: { required?: boolean, content?: Record<string, { schema?: { required?: string[] } }> }
}

/**
 * @fastify/swagger marks every request body required. A body whose schema requires no member
 * may be left out (refresh, logout and logout-all take a request with no body as `{}`,
 * API.md §2.1), so its requestBody says `required: false` and generated clients make it optional.
 */
function optionalBodies<T extends { paths?: object }> (document: T): T {
  for (const operations of Object.values(document.paths ?? {}) as Array<Record<string, Operation>>) {
    for (const operation of Object.values(operations)) {
      const schema = operation.requestBody?.content?.['application/json']?.schema
      if (operation.requestBody && schema && (schema.required ?? []).length === 0) operation.requestBody.required = false
    }
  }
  return document
}

async function openapiPlugin (app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Auth API', version, description },
      tags: [
        { name: 'auth', description: 'Accounts, login and tokens' },
        { name: 'sessions', description: 'The caller\'s device sessions' },
        { name: 'health', description: 'Liveness, readiness and public keys' }
      ],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'Access token from login or refresh' },
          refreshCookie: { type: 'apiKey', in: 'cookie', name: 'refresh_token', description: 'HttpOnly refresh cookie set by login and refresh (REFRESH_IN_COOKIE=true)' }
        }
      }
    },
    // Named components keep their $id as their name: #/components/schemas/Problem.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}` },
    transformObject: (document) => 'openapiObject' in document ? optionalBodies(document.openapiObject) : document.swaggerObject
  })
  await app.register(swaggerUi, { routePrefix: DOCS_PREFIX, staticCSP: false, uiConfig: { deepLinking: true } })
}

export default fp(openapiPlugin, { name: 'openapi', fastify: '5.x' })
