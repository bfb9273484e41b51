// A typed client of the Auth API: openapi-fetch over the types openapi-typescript generated
// from openapi.json (schema.d.ts; `npm run client:generate` regenerates them). Paths, bodies,
// answers and problem documents are all checked by the compiler.
//
//   const api = createAuthClient('http://localhost:8000', { accessToken: () => tokens.access })
//   const { data, error } = await api.POST('/api/v1/auth/login', { body: { email, password } })
//   if (error) console.log(error.status, error.code)   // a Problem (RFC 9457)
//   else tokens.access = data.access_token
import createClient, { type Client } from 'openapi-fetch'
import type { components, paths } from './schema.d.ts'

export type { components, paths }
export type AuthClient = Client<paths>
export type Problem = components['schemas']['Problem']
export type Session = components['schemas']['Session']

export interface AuthClientOptions {
  /**
   * The access token to send as `Authorization: Bearer` (me, logout-all, sessions, password);
   * read before each request, so a refreshed token is picked up. No header when it returns
   * undefined, or when the request sets its own.
   */
  accessToken?: () => string | undefined
  /** Another fetch, e.g. one that keeps the refresh cookie in a server-side client. */
  fetch?: (request: Request) => Promise<Response>
}

/** A typed client for the service at `baseUrl` (e.g. `http://localhost:8000`). */
export function createAuthClient (baseUrl: string, options: AuthClientOptions = {}): AuthClient {
  const client = createClient<paths>({ baseUrl, ...(options.fetch ? { fetch: options.fetch } : {}) })
  const { accessToken } = options
  if (accessToken) {
    client.use({
      onRequest ({ request }) {
        const token = accessToken()
        if (token !== undefined && !request.headers.has('authorization')) request.headers.set('authorization', `Bearer ${token}`)
        return request
      }
    })
  }
  return client
}
