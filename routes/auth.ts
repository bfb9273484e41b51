// The /api/v1/auth routes (API.md §5.4–5.11, §12.1): signup, login, me, refresh, logout,
// logout-all, the caller's device sessions and password change. Every route here counts
// toward the per-IP rate limit (§8); every auth event is audited (§12.4).
import { randomUUID } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { User } from '../db/schema.ts'
import { audit, truncateUserAgent } from '../lib/audit.ts'
import { passwordProblem } from '../lib/password-policy.ts'
import { invalidToken } from '../plugins/auth.ts'
import { ProblemError } from '../plugins/errors.ts'
import { ipRateLimit, tooManyRequests } from '../plugins/rate-limit.ts'
import {
  EmptyBodySchema, LoginBodySchema, LoginResponseSchema, PasswordChangeBodySchema, RefreshBodySchema,
  RefreshResponseSchema, SessionListSchema, SessionParamsSchema, SignupBodySchema, UserSchema, type UserBody
} from '../schema/auth.ts'
import { normalizeEmail, problemResponses } from '../schema/common.ts'
import { hashRefreshToken, mintRefreshToken, parseRefreshToken, successorOf } from '../sessions/refresh-token.ts'

export const AUTH_PREFIX = '/api/v1/auth'
const REFRESH_COOKIE = 'refresh_token'
const MAX_SESSION_ID_LENGTH = 1024

const NoContent = Type.Null({ description: 'No content' })
const bearer = [{ bearerAuth: [] }]

function userBody (user: User): UserBody {
  return { id: user.id, email: user.email, name: user.name, created_at: user.createdAt.toISOString() }
}

/** 400 weak_password when the policy of API.md §3.3 refuses the password. */
function checkPasswordPolicy (password: string, account: { email: string, name: string }, field: string): void {
  const problem = passwordProblem(password, account)
  if (problem === null) return
  const message = problem === 'common' ? 'is too common: it appears in lists of breached passwords' : 'must not contain the email or the name'
  throw new ProblemError('weak_password', { detail: `${field} ${message}`, errors: [{ field, message }] })
}

// Refresh, logout and logout-all also accept a request without a body (API.md §2.1).
async function bodyIsOptional (request: FastifyRequest): Promise<void> {
  if (request.body === undefined) (request as { body: unknown }).body = {}
}

const authRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { config } = app
  await app.register(ipRateLimit)
  const cookieAttributes = {
    path: AUTH_PREFIX,
    httpOnly: true,
    sameSite: 'strict',
    secure: config.APP_ENV === 'prod'
  } as const

  function setRefreshCookie (reply: FastifyReply, token: string, ttlMs: number): void {
    if (!config.REFRESH_IN_COOKIE) return
    // Whole seconds, never past the session's end (API.md §4.3).
    const maxAge = Math.floor(ttlMs / 1000)
    reply.setCookie(REFRESH_COOKIE, token, { ...cookieAttributes, maxAge, expires: new Date(Date.now() + maxAge * 1000) })
  }

  function clearRefreshCookie (reply: FastifyReply): void {
    if (!config.REFRESH_IN_COOKIE) return
    reply.setCookie(REFRESH_COOKIE, '', { ...cookieAttributes, maxAge: 0, expires: new Date(0) })
  }

  /** The refresh token of a request: the body's when present, else the cookie's (when enabled). */
  function presentedRefreshToken (request: FastifyRequest, body: { refresh_token?: string }) {
    if (body.refresh_token !== undefined) return { token: body.refresh_token, fromBody: true }
    const cookie = config.REFRESH_IN_COOKIE ? request.cookies[REFRESH_COOKIE] : undefined
    return { token: cookie || undefined, fromBody: false }
  }

  /**
   * Cross-site protection (API.md §2.6): a cookie-authenticated request from a foreign Origin
   * is refused before the cookie is read. SameSite=Strict already keeps the cookie off
   * cross-site requests in current browsers; this also covers same-site origins (another port
   * or subdomain) and older browsers.
   */
  function checkCookieOrigin (request: FastifyRequest, body: { refresh_token?: string }): void {
    const origin = request.headers.origin
    if (!config.REFRESH_IN_COOKIE || body.refresh_token !== undefined || origin === undefined) return
    const listed = Array.isArray(config.CORS_ORIGINS) && config.CORS_ORIGINS.includes(origin)
    if (!listed && origin !== `${request.protocol}://${request.host}`) throw new ProblemError('origin_not_allowed')
  }

  function principalOf (request: FastifyRequest) {
    if (!request.principal) throw new Error('route requires the authenticate preHandler')
    return request.principal
  }

  app.post('/signup', {
    schema: {
      operationId: 'signup',
      summary: 'Create an account',
      description: 'Creates a user. Starts no session: log in afterwards.',
      tags: ['auth'],
      body: SignupBodySchema,
      response: { 201: UserSchema, ...problemResponses(400, 409, 413, 415, 429, 500, 503) }
    }
  }, async (request, reply) => {
    const { password, name } = request.body
    const email = normalizeEmail(request.body.email)
    if (email === null) throw new Error('email passed validation but does not normalise')
    checkPasswordPolicy(password, { email, name }, 'password')
    const passwordHash = await app.passwords.hash(password)
    const user = await app.users.create({ email, name, passwordHash })
    if (user === null) {
      audit(request, 'signup', { outcome: 'failed', reason: 'email_taken' })
      throw new ProblemError('email_taken')
    }
    audit(request, 'signup', { outcome: 'ok', userId: user.id })
    return reply.code(201).send(userBody(user))
  })

  app.post('/login', {
    schema: {
      operationId: 'login',
      summary: 'Log in and start a device session',
      description: 'Returns an access token; the refresh token goes in an HttpOnly cookie, and in the body when asked for.',
      tags: ['auth'],
      body: LoginBodySchema,
      response: { 200: LoginResponseSchema, ...problemResponses(400, 401, 413, 415, 429, 500, 503) }
    }
  }, async (request, reply) => {
    const { password, device_name: deviceName, return_refresh_in_body: refreshInBody } = request.body
    const email = normalizeEmail(request.body.email) ?? ''
    // Throttled: refused without checking the password, so no guess is tested (API.md §8).
    const waitMs = await app.loginThrottle.attempt(email, request)
    if (waitMs > 0) {
      audit(request, 'throttled', { outcome: 'denied', email, reason: 'too_many_requests' })
      throw tooManyRequests(waitMs)
    }
    let user: User | null
    let passwordOk: boolean
    try {
      user = await app.users.findByEmail(email)
      // Unknown email or wrong password: the same work, answer and timing (API.md §9).
      passwordOk = await app.passwords.verify(user?.passwordHash ?? null, password)
    } catch (error) {
      await app.loginThrottle.release(email, request)
      throw error
    }
    if (user === null || !passwordOk) {
      audit(request, 'login', { outcome: 'failed', userId: user?.id, email, reason: 'invalid_credentials' })
      throw new ProblemError('invalid_credentials')
    }
    await app.loginThrottle.succeeded(email, request)

    const sessionId = randomUUID()
    const refreshToken = mintRefreshToken({ userId: user.id, sessionId })
    // A browser logging in again replaces the session its old cookie belongs to (API.md §7).
    const { token: oldToken } = presentedRefreshToken(request, {})
    const old = oldToken === undefined ? null : parseRefreshToken(oldToken)
    const { ttlMs } = await app.sessions.create({
      userId: user.id,
      sessionId,
      tokenHash: hashRefreshToken(refreshToken),
      deviceName: deviceName ?? null,
      userAgent: truncateUserAgent(request.headers['user-agent']),
      ip: request.ip ?? null,
      replaces: old && oldToken && old.userId === user.id ? { sessionId: old.sessionId, tokenHash: hashRefreshToken(oldToken) } : undefined
    })

    audit(request, 'login', { outcome: 'ok', userId: user.id, sessionId })
    const access = app.accessTokens.issue({ userId: user.id, sessionId })
    setRefreshCookie(reply, refreshToken, ttlMs)
    return {
      access_token: access.token,
      token_type: 'bearer' as const,
      expires_in: access.expiresIn,
      user: { id: user.id, email: user.email, name: user.name },
      ...(refreshInBody === true || !config.REFRESH_IN_COOKIE ? { refresh_token: refreshToken } : {})
    }
  })

  app.get('/me', {
    preHandler: app.authenticate,
    schema: {
      operationId: 'getMe',
      summary: 'The current user',
      tags: ['auth'],
      security: bearer,
      response: { 200: UserSchema, ...problemResponses(401, 429, 500, 503) }
    }
  }, async (request) => {
    const user = await app.users.findById(principalOf(request).userId)
    if (user === null) throw invalidToken(request)
    return userBody(user)
  })

  app.post('/refresh', {
    preValidation: bodyIsOptional,
    schema: {
      operationId: 'refresh',
      summary: 'Rotate the refresh token',
      description: 'Takes the refresh token from the body, else from the cookie. Returns a new access token; the successor refresh token goes in the cookie, and in the body when the token came in the body.',
      tags: ['auth'],
      // The refresh_token cookie, or the token in the body (no security scheme).
      security: [{ refreshCookie: [] }, {}],
      body: RefreshBodySchema,
      response: { 200: RefreshResponseSchema, ...problemResponses(400, 401, 403, 409, 413, 415, 429, 500, 503) }
    }
  }, async (request, reply) => {
    checkCookieOrigin(request, request.body)
    const { token, fromBody } = presentedRefreshToken(request, request.body)
    const parts = token === undefined ? null : parseRefreshToken(token)
    if (token === undefined || parts === null) throw new ProblemError('invalid_refresh_token')

    const successor = successorOf(token, parts, app.refreshKey)
    const outcome = await app.sessions.rotate(parts.userId, parts.sessionId, hashRefreshToken(token), hashRefreshToken(successor))
    const who = { userId: parts.userId, sessionId: parts.sessionId }
    switch (outcome.kind) {
      case 'in_progress': throw new ProblemError('refresh_in_progress')
      case 'reused':
        audit(request, 'reuse_detected', { outcome: 'denied', ...who, reason: 'refresh_reused' })
        throw new ProblemError('refresh_reused')
      case 'invalid': throw new ProblemError('invalid_refresh_token')
    }
    audit(request, 'refresh', { outcome: 'ok', ...who, ...(outcome.kind === 'duplicate' ? { reason: 'duplicate_within_grace' } : {}) })
    const access = app.accessTokens.issue(parts)
    setRefreshCookie(reply, successor, outcome.ttlMs)
    return {
      access_token: access.token,
      token_type: 'bearer' as const,
      expires_in: access.expiresIn,
      ...(fromBody ? { refresh_token: successor } : {})
    }
  })

  app.post('/logout', {
    preValidation: bodyIsOptional,
    schema: {
      operationId: 'logout',
      summary: 'End this device session',
      description: 'Ends the session of the presented refresh token (body, else cookie) and clears the cookie. Answers 204 whether or not the token was live.',
      tags: ['auth'],
      // The refresh_token cookie, the token in the body, or neither (204 all the same).
      security: [{ refreshCookie: [] }, {}],
      body: RefreshBodySchema,
      response: { 204: NoContent, ...problemResponses(400, 403, 413, 415, 429, 500, 503) }
    }
  }, async (request, reply) => {
    checkCookieOrigin(request, request.body)
    const { token } = presentedRefreshToken(request, request.body)
    const parts = token === undefined ? null : parseRefreshToken(token)
    if (token !== undefined && parts !== null &&
        await app.sessions.revokeByToken(parts.userId, parts.sessionId, hashRefreshToken(token))) {
      audit(request, 'logout', { outcome: 'ok', userId: parts.userId, sessionId: parts.sessionId })
    }
    clearRefreshCookie(reply)
    return reply.code(204).send(null)
  })

  app.post('/logout-all', {
    preValidation: bodyIsOptional,
    preHandler: app.authenticate,
    schema: {
      operationId: 'logoutAll',
      summary: 'End every session of the user',
      tags: ['auth'],
      security: bearer,
      body: EmptyBodySchema,
      response: { 204: NoContent, ...problemResponses(400, 401, 413, 415, 429, 500, 503) }
    }
  }, async (request, reply) => {
    const principal = principalOf(request)
    await app.sessions.revokeAll(principal.userId)
    audit(request, 'logout_all', { outcome: 'ok', ...principal })
    clearRefreshCookie(reply)
    return reply.code(204).send(null)
  })

  app.get('/sessions', {
    preHandler: app.authenticate,
    schema: {
      operationId: 'listSessions',
      summary: "The user's live device sessions",
      tags: ['sessions'],
      security: bearer,
      response: { 200: SessionListSchema, ...problemResponses(401, 429, 500, 503) }
    }
  }, async (request) => {
    const principal = principalOf(request)
    const sessions = await app.sessions.list(principal.userId)
    return {
      sessions: sessions.map((s) => ({
        id: s.id,
        device_name: s.deviceName,
        user_agent: s.userAgent,
        ip: s.ip,
        created_at: s.createdAt.toISOString(),
        last_used_at: s.lastUsedAt.toISOString(),
        expires_at: s.expiresAt.toISOString(),
        current: s.id === principal.sessionId
      }))
    }
  })

  app.delete('/sessions/:id', {
    // An over-long id is refused before anything else, like an over-long URL (API.md §2.2).
    onRequest: async (request) => {
      const { id } = request.params as { id?: string }
      if (id !== undefined && [...id].length > MAX_SESSION_ID_LENGTH) throw new ProblemError('uri_too_long')
    },
    preHandler: app.authenticate,
    schema: {
      operationId: 'deleteSession',
      summary: 'End one of the user\'s sessions',
      tags: ['sessions'],
      security: bearer,
      params: SessionParamsSchema,
      response: { 204: NoContent, ...problemResponses(401, 404, 414, 429, 500, 503) }
    }
  }, async (request, reply) => {
    const principal = principalOf(request)
    const ended = await app.sessions.revoke(principal.userId, request.params.id)
    if (!ended) throw new ProblemError('session_not_found')
    audit(request, 'session_ended', { outcome: 'ok', userId: principal.userId, sessionId: request.params.id })
    return reply.code(204).send(null)
  })

  app.post('/password', {
    preHandler: app.authenticate,
    schema: {
      operationId: 'changePassword',
      summary: 'Change the password',
      description: 'Requires the current password. Ends every other session of the user; this one keeps working.',
      tags: ['auth'],
      security: bearer,
      body: PasswordChangeBodySchema,
      response: { 204: NoContent, ...problemResponses(400, 401, 403, 413, 415, 429, 500, 503) }
    }
  }, async (request, reply) => {
    const principal = principalOf(request)
    const user = await app.users.findById(principal.userId)
    if (user === null) throw invalidToken(request)
    const { current_password: currentPassword, new_password: newPassword } = request.body

    const waitMs = await app.loginThrottle.attempt(user.email, request)
    if (waitMs > 0) {
      audit(request, 'throttled', { outcome: 'denied', ...principal, email: user.email, reason: 'too_many_requests' })
      throw tooManyRequests(waitMs)
    }
    if (!await app.passwords.verify(user.passwordHash, currentPassword)) {
      audit(request, 'password_changed', { outcome: 'failed', ...principal, email: user.email, reason: 'invalid_credentials' })
      // 403, not 401: the access token is fine, and a 401 would tell clients to log in again.
      throw new ProblemError('invalid_credentials', { status: 403 })
    }
    await app.loginThrottle.succeeded(user.email, request)
    checkPasswordPolicy(newPassword, user, 'new_password')
    const passwordHash = await app.passwords.hash(newPassword)
    // A 503 must change nothing (API.md §12.1): the password first, then the other sessions;
    // when ending them fails, the old password is put back (unless it changed again since).
    if (!await app.users.replacePasswordHash(principal.userId, user.passwordHash, passwordHash)) {
      // Changed by a concurrent request since it was read: the current password is no longer it.
      throw new ProblemError('invalid_credentials', { status: 403 })
    }
    try {
      await app.sessions.revokeOthers(principal.userId, principal.sessionId)
    } catch (error) {
      await app.users.replacePasswordHash(principal.userId, passwordHash, user.passwordHash).catch(() => {})
      throw error
    }
    audit(request, 'password_changed', { outcome: 'ok', ...principal })
    return reply.code(204).send(null)
  })
}

export default authRoutes
