// The users repository on an unreachable database: 503, and nothing of the query's parameters
// (a password hash, an email) in what gets logged.
import t from 'tap'
import { openDatabase } from '../../db/database.ts'
import { createUserRepository } from '../../db/users.ts'
import { ProblemError } from '../../plugins/errors.ts'
import { freePort } from '../fixtures/ports.ts'

t.test('a failed insert becomes a 503 carrying only the driver code', async (t) => {
  const { sql, db } = openDatabase(`postgres://postgres@127.0.0.1:${await freePort()}/nothing`)
  t.teardown(() => sql.end({ timeout: 1 }))
  const users = createUserRepository(db)
  const user = { email: 'leak-check@example.test', name: 'Leak Check', passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA' }
  const error = await users.create(user).then(() => null, (e: unknown) => e)
  t.ok(error instanceof ProblemError, 'a problem error')
  t.equal((error as ProblemError).code, 'service_unavailable')
  const logged = JSON.stringify({ message: (error as Error).message, cause: (error as ProblemError).options.cause })
  t.same((error as ProblemError).options.cause, { code: 'ECONNREFUSED' })
  for (const secret of [user.email, user.passwordHash, user.name, 'insert into']) {
    t.notOk(logged.includes(secret), `nothing logged contains ${secret.slice(0, 12)}…`)
  }
})
