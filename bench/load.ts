// One load run: autocannon (programmatic API, in this process) against one port, with the
// latency of every 2xx response kept to the microsecond for exact percentiles.
import autocannon from 'autocannon'
import type { CpuUse } from './cpu.ts'

export interface Plan {
  method: 'GET' | 'POST'
  path: string
  headers?: Record<string, string>
  body?: string
  /** Per request: headers to add and/or the body (a fresh token, a unique email). */
  next?: () => { headers?: Record<string, string>, body?: string }
  onResponse?: (status: number, body: string) => void
}

export interface RunStats {
  seconds: number
  /** 2xx answers per second: a 401 or any other non-2xx answer counts as a failure. */
  rate: number
  ok: number
  non2xx: number
  errors: number
  timeouts: number
  statusCodes: Record<string, number>
  /** Latency of 2xx answers in ms, from the request's write to the end of its answer. */
  p50: number
  p97_5: number
  p99: number
  max: number
  /** autocannon's own p99 (whole ms; corrected for coordinated omission when rate-limited). */
  autocannonP99: number
  /** Where the CPU went during the run. */
  cpu?: CpuUse
}

export function percentile (sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank] as number
}

export interface LoadOptions {
  connections: number
  seconds: number
  overallRate?: number
}

/** Starts a run; `stop()` ends it early (the flood ends when its probe does). */
export function startLoad (port: number, plan: Plan, options: LoadOptions): { done: Promise<RunStats>, stop (): void } {
  const { next, onResponse } = plan
  const request: autocannon.Request = {
    method: plan.method,
    path: plan.path,
    headers: plan.headers ?? {},
    ...(plan.body === undefined ? {} : { body: plan.body })
  }
  if (next) {
    request.setupRequest = (req) => {
      const change = next()
      if (change.headers) req.headers = { ...req.headers, ...change.headers }
      if (change.body !== undefined) req.body = change.body
      return req
    }
  }
  if (onResponse) request.onResponse = (status, body) => onResponse(status, body)

  const instance = autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: options.connections,
    duration: options.seconds,
    timeout: 10,
    requests: [request],
    ...(options.overallRate === undefined ? {} : { overallRate: options.overallRate })
  })
  let latencies = new Float64Array(1 << 16)
  let count = 0
  instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
    if (status < 200 || status > 299) return
    if (count === latencies.length) {
      const grown = new Float64Array(latencies.length * 2)
      grown.set(latencies)
      latencies = grown
    }
    latencies[count++] = ms
  })
  const done = Promise.resolve(instance).then((result): RunStats => {
    const sorted = latencies.subarray(0, count).sort()
    const statusCodes: Record<string, number> = {}
    for (const [code, { count: n }] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = Number(n)
    const ok = result['2xx']
    return {
      seconds: result.duration,
      rate: ok / result.duration,
      ok,
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
      statusCodes,
      p50: percentile(sorted, 50),
      p97_5: percentile(sorted, 97.5),
      p99: percentile(sorted, 99),
      max: count === 0 ? NaN : sorted[count - 1] as number,
      autocannonP99: result.latency.p99
    }
  })
  return { done, stop: () => instance.stop() }
}

export function runLoad (port: number, plan: Plan, options: LoadOptions): Promise<RunStats> {
  return startLoad(port, plan, options).done
}
