// Request and response schemas of /api/v1/auth (API.md §5). Validation, serialization and the
// OpenAPI document all come from these.
import { Type, type Static } from 'typebox'
import { DeviceNameSchema, EmailSchema, NameSchema, TimestampSchema, UserIdSchema } from './common.ts'

// Length limits count code points of the password as received (API.md §3.3).
export const NewPasswordSchema = Type.String({ minLength: 8, maxLength: 128, description: '8–128 characters; no composition rules' })
export const PasswordSchema = Type.String({ minLength: 1, maxLength: 128 })

// Opaque; any 1–512 character string passes validation so garbage is a 401, not a 400 (API.md §4.2).
export const RefreshTokenSchema = Type.String({ minLength: 1, maxLength: 512, description: 'Opaque refresh token' })

export const SignupBodySchema = Type.Object({
  email: EmailSchema,
  password: NewPasswordSchema,
  name: NameSchema
}, { additionalProperties: false })

export const LoginBodySchema = Type.Object({
  email: EmailSchema,
  password: PasswordSchema,
  return_refresh_in_body: Type.Optional(Type.Boolean({ default: false, description: 'Also return the refresh token in the body' })),
  device_name: Type.Optional(DeviceNameSchema)
}, { additionalProperties: false })

export const RefreshBodySchema = Type.Object({
  refresh_token: Type.Optional(RefreshTokenSchema)
}, { additionalProperties: false, description: 'Optional: without refresh_token the refresh_token cookie is used' })

export const PasswordChangeBodySchema = Type.Object({
  current_password: PasswordSchema,
  new_password: NewPasswordSchema
}, { additionalProperties: false })

export const EmptyBodySchema = Type.Object({}, { additionalProperties: false })

export const UserSchema = Type.Object({
  id: UserIdSchema,
  email: Type.String({ format: 'email' }),
  name: Type.String(),
  created_at: TimestampSchema
})
export type UserBody = Static<typeof UserSchema>

const tokenMembers = {
  access_token: Type.String({ description: 'Access JWT, sent as Authorization: Bearer' }),
  token_type: Type.Literal('bearer'),
  expires_in: Type.Integer({ minimum: 1, description: 'Seconds until the access token expires' })
}

export const LoginResponseSchema = Type.Object({
  ...tokenMembers,
  user: Type.Object({ id: UserIdSchema, email: Type.String({ format: 'email' }), name: Type.String() }),
  refresh_token: Type.Optional(Type.String({ description: 'Present when requested, or when the cookie is disabled' }))
})

export const RefreshResponseSchema = Type.Object({
  ...tokenMembers,
  refresh_token: Type.Optional(Type.String({ description: 'The successor, present when the token came in the body' }))
})

export const SessionSchema = Type.Object({
  id: Type.String({ description: 'Session id (the sid claim of its access tokens)' }),
  device_name: Type.Union([Type.String(), Type.Null()]),
  user_agent: Type.Union([Type.String(), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  created_at: TimestampSchema,
  last_used_at: TimestampSchema,
  expires_at: TimestampSchema,
  current: Type.Boolean({ description: 'True for the session of the access token of this request' })
}, { $id: 'Session' })

export const SessionListSchema = Type.Object({ sessions: Type.Array(Type.Ref('Session')) })

export const SessionParamsSchema = Type.Object({ id: Type.String() })
