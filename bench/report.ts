// Medians over rounds, ratios to the yardsticks, the targets, and the Markdown and JSON output.
import type { RunStats } from './load.ts'

export function median (values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/** The runs of each scenario key, one per round (and per replay). */
export type Runs = Map<string, RunStats[]>

export interface Summary {
  rounds: number
  rate: number
  p50: number
  p97_5: number
  p99: number
  errors: number
  non2xx: number
  statusCodes: Record<string, number>
}

export function summarize (runs: RunStats[]): Summary {
  const statusCodes: Record<string, number> = {}
  for (const run of runs) {
    for (const [code, n] of Object.entries(run.statusCodes)) statusCodes[code] = (statusCodes[code] ?? 0) + n
  }
  return {
    rounds: runs.length,
    rate: median(runs.map((r) => r.rate)),
    p50: median(runs.map((r) => r.p50)),
    p97_5: median(runs.map((r) => r.p97_5)),
    p99: median(runs.map((r) => r.p99)),
    errors: runs.reduce((n, r) => n + r.errors + r.timeouts, 0),
    non2xx: runs.reduce((n, r) => n + r.non2xx, 0),
    statusCodes
  }
}

/** Median of the per-round ratios of two scenarios measured in the same rounds. */
export function pairedRatio (runs: Runs, key: string, yardstick: string): number {
  const a = runs.get(key) ?? []
  const b = runs.get(yardstick) ?? []
  const n = Math.min(a.length, b.length)
  return median(Array.from({ length: n }, (_, i) => (a[i] as RunStats).rate / (b[i] as RunStats).rate))
}

export interface Row {
  label: string
  key: string
  /** Yardstick keys the ratio columns compare with. */
  hello?: string
  verify?: string
  ceiling?: string
}

export interface Target {
  name: string
  goal: string
  measured: string
  value: number
  met: boolean
  note?: string
}

const fmt = (value: number, digits: number) => Number.isFinite(value) ? value.toFixed(digits) : '–'
const rateText = (value: number) => Number.isFinite(value) ? (value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(1)) : '–'
const ratioText = (value: number | undefined) => value === undefined || !Number.isFinite(value) ? '' : `${value.toFixed(2)}×`

export interface TableLine {
  label: string
  summary: Summary
  hello?: number
  verify?: number
  ceiling?: number
}

export function tableLines (runs: Runs, rows: Row[]): TableLine[] {
  return rows.filter((row) => (runs.get(row.key)?.length ?? 0) > 0).map((row) => ({
    label: row.label,
    summary: summarize(runs.get(row.key) ?? []),
    ...(row.hello ? { hello: pairedRatio(runs, row.key, row.hello) } : {}),
    ...(row.verify ? { verify: pairedRatio(runs, row.key, row.verify) } : {}),
    ...(row.ceiling ? { ceiling: pairedRatio(runs, row.key, row.ceiling) } : {})
  }))
}

export function markdownTable (lines: TableLine[]): string {
  const out = [
    '| scenario | req/s (median) | p50 ms | p97.5 ms | p99 ms | errors | non-2xx | × bare GET / | × verify-only | × raw argon2 |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
  ]
  for (const { label, summary: s, hello, verify, ceiling } of lines) {
    out.push(`| ${label} | ${rateText(s.rate)} | ${fmt(s.p50, 2)} | ${fmt(s.p97_5, 2)} | ${fmt(s.p99, 2)} | ${s.errors} | ${s.non2xx} | ${ratioText(hello)} | ${ratioText(verify)} | ${ratioText(ceiling)} |`)
  }
  return out.join('\n')
}

export function targetsTable (targets: Target[]): string {
  const out = ['| target | goal | measured | met |', '|---|---|---|---|']
  for (const t of targets) out.push(`| ${t.name} | ${t.goal} | ${t.measured}${t.note ? ` (${t.note})` : ''} | ${t.met ? 'yes' : '**no**'} |`)
  return out.join('\n')
}

/**
 * CPU per answered request (medians over rounds): the measured process, the PostgreSQL
 * backends serving it, Redis (the whole server) and the load generator; and how busy the
 * machine was, with the part no process of the bench accounts for (other people's work).
 */
export function cpuTable (runs: Runs, rows: Row[]): string {
  const out = [
    '| scenario | measured process µs/req | PostgreSQL µs/req | Redis µs/req | load generator µs/req | machine busy % | other work, cores |',
    '|---|---:|---:|---:|---:|---:|---:|'
  ]
  const us = (v: number) => Number.isFinite(v) ? v.toFixed(0) : '–'
  for (const row of rows) {
    const list = (runs.get(row.key) ?? []).map((r) => r.cpu).filter((c) => c !== undefined)
    if (list.length === 0) continue
    const m = (pick: (c: typeof list[number]) => number | null) => median(list.map((c) => pick(c) ?? NaN))
    out.push(`| ${row.label} | ${us(m((c) => c.usPerRequest.target))} | ${us(m((c) => c.usPerRequest.postgres))} | ${us(m((c) => c.usPerRequest.redis))} | ` +
      `${us(m((c) => c.usPerRequest.loadgen))} | ${fmt(m((c) => c.machineBusyPercent), 0)} | ${fmt(m((c) => c.cores.other), 2)} |`)
  }
  return out.join('\n')
}
