// GET /metrics (API.md §12.3): the app's registry in the Prometheus text format, on the API
// port and without authentication, so expose it only to trusted networks. Registered only
// when METRICS=true; left out of the OpenAPI document (§12.2) and never rate limited (§8).
import type { FastifyPluginAsync } from 'fastify'

const metricsRoutes: FastifyPluginAsync = async (app) => {
  const registry = app.metricsRegistry
  if (registry === null) throw new Error('the metrics route needs METRICS=true')

  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    const body = await registry.metrics()
    return reply.type(registry.contentType).send(body)
  })
}

export default metricsRoutes
