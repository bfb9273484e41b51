// Yardstick: a bare Fastify server answering GET / with the service's liveness body, and
// nothing else (no hooks, plugins, schemas or logger). Prints `READY <port>` once listening.
import Fastify from 'fastify'

const app = Fastify({ logger: false })
app.get('/', async () => ({ status: 'ready' }))

await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) })
process.stdout.write(`READY ${app.server.address().port}\n`)
process.on('SIGTERM', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
