// API.md §12.2: the OpenAPI 3.1 document at GET /docs/json and the reference page at GET /docs.
// The committed openapi.json is the document served under default settings (and under any
// other: it depends on no setting); it is a valid OpenAPI 3.1 document; it lists every route
// with the statuses of §13, problem responses, security and the refresh cookie, which is what
// a client generator relies on; and the page and its assets load under the CSP of §2.3.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Validator } from '@seriousme/openapi-schema-validator'
import Ajv2020Module from 'ajv/dist/2020.js'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { PROJECT_ROOT } from '../lib/project-root.ts'
import { API_CSP, DOCS_CSP } from '../plugins/security-headers.ts'
import { buildTestApp } from './fixtures/app.ts'

// ajv is CommonJS: under Node's ESM its default export is the module object.
const Ajv2020 = Ajv2020Module.default

const OPENAPI_FILE = join(PROJECT_ROOT, 'openapi.json')
const AUTH = '/api/v1/auth'
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const
const PROBLEM_REF = '#/components/schemas/Problem'

// Routes that authenticate with `Authorization: Bearer` (API.md §4.1).
const BEARER_ROUTES = [
  `GET ${AUTH}/me`, `POST ${AUTH}/logout-all`, `GET ${AUTH}/sessions`, `DELETE ${AUTH}/sessions/{id}`, `POST ${AUTH}/password`
]
// Routes whose body may be left out and is then `{}` (API.md §2.1).
const OPTIONAL_BODY_ROUTES = [`POST ${AUTH}/refresh`, `POST ${AUTH}/logout`, `POST ${AUTH}/logout-all`]
// Routes the document leaves out on purpose: the reference page itself and /metrics (§12.2).
const UNDOCUMENTED = /^\/(docs|metrics)(\/|$)/

interface Schema { $ref?: string, required?: string[], [key: string]: unknown }
interface Response { description?: string, content?: Record<string, { schema?: Schema }> }
interface Operation {
  summary?: string
  description?: string
  tags?: string[]
  security?: Array<Record<string, string[]>>
  parameters?: Array<{ in: string, name: string, required?: boolean, schema?: Schema }>
  requestBody?: { required?: boolean, content?: Record<string, { schema?: Schema }> }
  responses: Record<string, Response>
}
interface Document {
  openapi: string
  tags?: Array<{ name: string }>
  paths: Record<string, Partial<Record<typeof METHODS[number], Operation>>>
  components: { schemas: Record<string, Schema>, securitySchemes: Record<string, Record<string, unknown>> }
}

const committedText = readFileSync(OPENAPI_FILE, 'utf8')
const committed = JSON.parse(committedText) as Document

/** Every operation of the document as `METHOD /path` → operation. */
function operationsOf (document: Document): Map<string, Operation> {
  const operations = new Map<string, Operation>()
  for (const [path, item] of Object.entries(document.paths)) {
    for (const method of METHODS) {
      const operation = item[method]
      if (operation) operations.set(`${method.toUpperCase()} ${path}`, operation)
    }
  }
  return operations
}

/**
 * Every route of the app as `METHOD /path` (path parameters written `{id}` as in OpenAPI),
 * read from Fastify's route tree: HEAD routes Fastify adds by itself and the CORS preflight
 * route (`OPTIONS *`) left out.
 */
function routesOf (app: FastifyInstance): Set<string> {
  const routes = new Set<string>()
  const parents: string[] = []
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^((?:[│ ] {3})*)[├└]── (.+) \(([A-Z, ]+)\)$/.exec(line)
    if (!match) continue
    const depth = (match[1] ?? '').length / 4
    const path = (depth === 0 ? '' : parents[depth - 1] ?? '') + (match[2] ?? '')
    parents[depth] = path
    parents.length = depth + 1
    for (const method of (match[3] ?? '').split(', ')) {
      if (method === 'HEAD' || method === 'OPTIONS') continue
      routes.add(`${method} ${path.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`)
    }
  }
  return routes
}

/**
 * The status-code summary of API.md §13 as `METHOD /path` → every status listed for it (success,
 * client errors, dependency), read from the contract itself.
 */
function contractStatuses (): Map<string, Set<number>> {
  const text = readFileSync(join(PROJECT_ROOT, 'docs', 'API.md'), 'utf8')
  const section = text.slice(text.indexOf('## 13. Status-code summary'))
  const statuses = new Map<string, Set<number>>()
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((cell) => cell.trim())
    if (cells.length < 5) continue
    const endpoints = [...(cells[1] ?? '').matchAll(/`([A-Z]+) ([^`]+)`/g)]
    const codes = cells.slice(2).join(' ').match(/\b[1-5]\d\d\b/g) ?? []
    for (const [, method, path] of endpoints) statuses.set(`${method} ${path}`, new Set(codes.map(Number)))
  }
  return statuses
}

/** Every `$ref` anywhere in a value. */
function refsIn (value: unknown, found: string[] = []): string[] {
  if (Array.isArray(value)) {
    for (const item of value) refsIn(item, found)
  } else if (value !== null && typeof value === 'object') {
    for (const [key, member] of Object.entries(value)) {
      if (key === '$ref' && typeof member === 'string') found.push(member)
      else refsIn(member, found)
    }
  }
  return found
}

function header (res: LightMyRequestResponse, name: string): string | undefined {
  const value = res.headers[name]
  return Array.isArray(value) ? value.join(', ') : value === undefined ? undefined : String(value)
}

t.test('openapi.json is the document served at GET /docs/json under default settings', async (t) => {
  const app = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/docs/json' })
  t.equal(res.statusCode, 200)
  t.match(header(res, 'content-type'), /^application\/json/)
  t.same(res.json(), committed, 'served document equals openapi.json (run `npm run openapi` after changing a route schema)')
  t.equal(committedText, JSON.stringify(res.json(), null, 2) + '\n', 'openapi.json is written with 2-space indentation and a trailing newline')
  t.same(app.swagger(), committed, 'app.swagger() (what `npm run openapi` writes) is the served document')
})

t.test('the document depends on no setting', async (t) => {
  // Another store set-up, the cookie off, a CORS list, the per-IP limit and metrics on.
  const app = await buildTestApp(t, {
    REDIS_URL: '',
    REFRESH_IN_COOKIE: 'false',
    CORS_ORIGINS: 'http://localhost:3000',
    RATE_LIMIT_IP_PER_MINUTE: '100',
    ACCESS_MIN: '5',
    METRICS: 'true',
    PORT: '9999'
  })
  const res = await app.inject({ method: 'GET', url: '/docs/json' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), committed)
})

t.test('openapi.json is a valid OpenAPI 3.1 document', async (t) => {
  t.equal(committed.openapi, '3.1.0')
  const validator = new Validator()
  const result = await validator.validate(structuredClone(committed) as unknown as Record<string, unknown>)
  t.same(result.errors, undefined, 'no validation errors')
  t.equal(result.valid, true)
  t.equal(validator.version, '3.1')

  // The validator does not follow references: each one must name a component that exists.
  for (const ref of refsIn(committed)) {
    const name = ref.replace(/^#\/components\/schemas\//, '')
    t.ok(ref !== name && committed.components.schemas[name] !== undefined, `${ref} resolves`)
  }

  // A broken document is refused, so the check above means something.
  const broken = structuredClone(committed)
  delete broken.paths['/']!.get!.responses['200']!.description
  t.equal((await new Validator().validate(broken as unknown as Record<string, unknown>)).valid, false, 'a response without description is invalid')
})

t.test('every Schema Object is a JSON Schema 2020-12 schema (the dialect of OpenAPI 3.1)', async (t) => {
  // The OpenAPI 3.1 meta-schema leaves Schema Objects unchecked; the JSON Schema one does not.
  const ajv = new Ajv2020({ strict: false })
  const schemas: Array<[string, unknown]> = Object.entries(committed.components.schemas).map(([name, schema]) => [`components.schemas.${name}`, schema])
  for (const [key, operation] of operationsOf(committed)) {
    for (const [type, media] of Object.entries(operation.requestBody?.content ?? {})) schemas.push([`${key} body ${type}`, media.schema])
    for (const parameter of operation.parameters ?? []) schemas.push([`${key} ${parameter.in} ${parameter.name}`, parameter.schema])
    for (const [status, response] of Object.entries(operation.responses)) {
      for (const [type, media] of Object.entries(response.content ?? {})) schemas.push([`${key} ${status} ${type}`, media.schema])
    }
  }
  t.ok(schemas.length > 30, `${schemas.length} schemas`)
  for (const [label, schema] of schemas) {
    t.ok(schema !== undefined && ajv.validateSchema(schema as object), `${label}: ${ajv.errorsText(ajv.errors)}`)
    // OpenAPI 3.0 spellings mean nothing under 3.1.
    t.notOk(/"(nullable|x-nullable)":/.test(JSON.stringify(schema)), `${label}: no 3.0-only keywords`)
  }
})

t.test('what a client generator relies on', async (t) => {
  const app = await buildTestApp(t)
  const operations = operationsOf(committed)
  const documented = [...operations.keys()]

  t.test('every route of the app is in paths, and nothing else', async (t) => {
    const routes = [...routesOf(app)].filter((route) => !UNDOCUMENTED.test(route.split(' ')[1] ?? ''))
    t.ok(routes.length >= 12, `the route tree was read (${routes.length} routes)`)
    t.same(documented.sort(), routes.sort())
  })

  t.test('shared schemas and security schemes are named components', async (t) => {
    const { schemas, securitySchemes } = committed.components
    t.has(schemas, { Problem: { type: 'object' }, ReadinessProblem: { type: 'object' }, Session: { type: 'object' } })
    t.same(schemas.Problem?.required, ['type', 'title', 'status', 'detail', 'code', 'request_id'])
    t.ok(schemas.ReadinessProblem?.required?.includes('checks'), 'ReadinessProblem has checks')
    t.same(securitySchemes.bearerAuth, { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: securitySchemes.bearerAuth?.description })
    t.has(securitySchemes.refreshCookie, { type: 'apiKey', in: 'cookie', name: 'refresh_token' })
  })

  t.test('each operation has a summary, known tags and the statuses of §13', async (t) => {
    const contract = contractStatuses()
    const tags = new Set((committed.tags ?? []).map((tag) => tag.name))
    for (const [key, operation] of operations) {
      const [method, path = ''] = key.split(' ')
      t.ok(typeof operation.summary === 'string' && operation.summary.length > 0, `${key}: summary`)
      t.ok(operation.tags !== undefined && operation.tags.length > 0, `${key}: tags`)
      for (const tag of operation.tags ?? []) t.ok(tags.has(tag), `${key}: tag ${tag} is declared`)

      const expected = contract.get(key)
      if (!t.ok(expected, `${key} is in the §13 summary`) || expected === undefined) continue
      // §5: every auth route can be rate limited and fail unexpectedly; every route with a body
      // can answer 413 and 415 (§2.1).
      if (path.startsWith(AUTH)) for (const s of [429, 500]) expected.add(s)
      if (operation.requestBody) for (const s of [400, 413, 415]) expected.add(s)
      const listed = Object.keys(operation.responses).map(Number)
      t.same(listed.sort(), [...expected].sort(), `${key}: responses are exactly ${[...expected].sort().join(', ')}`)
      if (method === 'GET') t.equal(operation.requestBody, undefined, `${key}: a GET takes no body`)
    }
    // The summary names every documented route, and the document every summarised API route.
    for (const key of contract.keys()) {
      if (!UNDOCUMENTED.test(key.split(' ')[1] ?? '')) t.ok(operations.has(key), `${key} of §13 is documented`)
    }
  })

  t.test('responses: problem documents and success bodies', async (t) => {
    for (const [key, operation] of operations) {
      for (const [status, response] of Object.entries(operation.responses)) {
        const label = `${key} ${status}`
        t.ok(response.description, `${label}: description`)
        const code = Number(status)
        if (code >= 400) {
          const ref = key === 'GET /health/ready' && code === 503 ? '#/components/schemas/ReadinessProblem' : PROBLEM_REF
          t.same(response.content, { 'application/problem+json': { schema: { $ref: ref } } }, `${label}: application/problem+json, ${ref}`)
        } else if (code === 204) {
          t.equal(response.content, undefined, `${label}: no content`)
        } else {
          t.same(Object.keys(response.content ?? {}), ['application/json'], `${label}: application/json`)
          t.ok(response.content?.['application/json']?.schema, `${label}: a schema`)
        }
      }
    }
    const sessions = operations.get(`GET ${AUTH}/sessions`)?.responses['200']?.content?.['application/json']?.schema
    t.match(sessions, { properties: { sessions: { type: 'array', items: { $ref: '#/components/schemas/Session' } } } }, 'sessions list items are Session')
  })

  t.test('request bodies and parameters', async (t) => {
    for (const [key, operation] of operations) {
      if (!operation.requestBody) continue
      t.same(Object.keys(operation.requestBody.content ?? {}), ['application/json'], `${key}: JSON only`)
      t.match(operation.requestBody.content?.['application/json']?.schema, { type: 'object', additionalProperties: false }, `${key}: strict object`)
      t.equal(operation.requestBody.required, !OPTIONAL_BODY_ROUTES.includes(key), `${key}: body ${OPTIONAL_BODY_ROUTES.includes(key) ? 'optional' : 'required'}`)
    }
    t.same(operations.get(`DELETE ${AUTH}/sessions/{id}`)?.parameters, [{ schema: { type: 'string' }, in: 'path', name: 'id', required: true }])
    t.match(operations.get(`POST ${AUTH}/login`)?.requestBody?.content?.['application/json']?.schema, {
      required: ['email', 'password'],
      properties: { return_refresh_in_body: { type: 'boolean' }, device_name: { type: 'string' } }
    })
  })

  t.test('security: Bearer routes, and the refresh cookie on refresh and logout', async (t) => {
    for (const [key, operation] of operations) {
      if (BEARER_ROUTES.includes(key)) {
        t.same(operation.security, [{ bearerAuth: [] }], `${key}: bearerAuth`)
      } else {
        t.notOk(JSON.stringify(operation.security ?? []).includes('bearerAuth'), `${key}: no bearerAuth`)
      }
    }
    t.same(BEARER_ROUTES.filter((key) => !operations.has(key)), [], 'every Bearer route is documented')
    for (const key of [`POST ${AUTH}/refresh`, `POST ${AUTH}/logout`]) {
      const operation = operations.get(key)
      // The cookie, or the token in the body: the empty requirement makes the cookie optional.
      t.same(operation?.security, [{ refreshCookie: [] }, {}], `${key}: refreshCookie or none`)
      t.match(operation?.description, /cookie/, `${key}: the description mentions the cookie`)
      t.match(operation?.requestBody?.content?.['application/json']?.schema, { properties: { refresh_token: { type: 'string' } } })
    }
    t.match(operations.get(`POST ${AUTH}/login`)?.description, /cookie/, 'login: the description mentions the cookie')
  })
})

t.test('GET /docs serves the reference page and its assets under the docs CSP', async (t) => {
  const app = await buildTestApp(t)

  // Follow redirects, as a browser would.
  let url = '/docs'
  let res = await app.inject({ method: 'GET', url })
  for (let hops = 0; res.statusCode >= 300 && res.statusCode < 400 && hops < 5; hops++) {
    url = new URL(String(header(res, 'location')), `http://localhost${url}`).pathname
    res = await app.inject({ method: 'GET', url })
  }
  t.equal(res.statusCode, 200, `${url} answers 200`)
  t.match(header(res, 'content-type'), /^text\/html/)
  t.equal(header(res, 'content-security-policy'), DOCS_CSP)
  t.equal(header(res, 'x-content-type-options'), 'nosniff')

  // Every script, stylesheet and icon the page names, resolved as a browser resolves it.
  const assets = [...res.body.matchAll(/\b(?:src|href)="([^"]+)"/g)].map(([, ref]) => new URL(ref!, `http://localhost${url}`))
  t.ok(assets.length >= 3, `the page names its assets (${assets.length})`)
  for (const asset of assets) {
    t.equal(asset.host, 'localhost', `${asset.href} is served by the service itself`)
    const loaded = await app.inject({ method: 'GET', url: asset.pathname + asset.search })
    t.equal(loaded.statusCode, 200, `${asset.pathname} loads`)
    t.equal(header(loaded, 'content-security-policy'), DOCS_CSP, `${asset.pathname}: docs CSP`)
  }

  // The page's script fetches the document from the same origin (connect-src 'self').
  const json = await app.inject({ method: 'GET', url: '/docs/json' })
  t.equal(json.statusCode, 200)
  t.equal(header(json, 'content-security-policy'), DOCS_CSP)

  // The API keeps the plain policy, success and error alike, and so do look-alike paths.
  for (const [path, status] of [['/', 200], ['/health/ready', 200], ['/.well-known/jwks.json', 200], [`${AUTH}/me`, 401], ['/docsx', 404]] as const) {
    const api = await app.inject({ method: 'GET', url: path })
    t.equal(api.statusCode, status, `GET ${path}`)
    t.equal(header(api, 'content-security-policy'), API_CSP, `GET ${path}: plain CSP`)
  }
})
