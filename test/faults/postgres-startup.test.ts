// Start-up with the database unreachable (API.md §1.1 step 2, §11.3): the build gives up after
// the connect wait with a message that names the database, never its password.
import type { FastifyBaseLogger } from 'fastify'
import { pino } from 'pino'
import t from 'tap'
import { buildApp } from '../../app.ts'
import { testConfig } from '../fixtures/app.ts'
import { freePort } from './throwaway.ts'

t.test('g. buildApp rejects when the database is unreachable', async (t) => {
  const port = await freePort() // nothing listens there
  const config = await testConfig({ DATABASE_URL: `postgres://postgres:s3cret@127.0.0.1:${port}/x` })
  const started = performance.now()
  let failure: unknown
  try {
    const app = await buildApp(config, { logger: pino({ level: 'silent' }) as FastifyBaseLogger, db: { connectWaitMs: 2000 } })
    t.teardown(() => app.close())
  } catch (error) {
    failure = error
  }
  const ms = Math.round(performance.now() - started)
  t.comment(`timings\nbuildApp rejected after: ${ms} ms`)

  t.ok(failure instanceof Error, 'buildApp rejects')
  const message = failure instanceof Error ? failure.message : String(failure)
  t.ok(ms >= 1900, `it waited for the database first (${ms} ms)`)
  t.ok(ms < 8000, `and gave up soon after the 2 s wait (${ms} ms)`)
  t.ok(message.includes(`127.0.0.1:${port}`), 'the message names the database host:port', { message })
  t.notOk(message.includes('s3cret'), 'the message does not contain the password', { message })
  t.notOk(/postgres(ql)?:\/\/[^@\s]*:[^@\s]*@/.test(message), 'no URL with credentials', { message })
  t.notOk(failure instanceof Error && String(failure.stack).includes('s3cret'), 'nor does its stack')
})
