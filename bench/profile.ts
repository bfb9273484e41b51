// Summarises a V8 .cpuprofile (node --cpu-prof): where the samples fall, by function (self and
// inclusive time) and by area (a package, Node internals, the app's own files, GC, idle).
// Also usable on its own: node --import tsx bench/profile.ts <file.cpuprofile>
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

interface CallFrame { functionName: string, url: string, lineNumber: number }
interface ProfileNode { id: number, callFrame: CallFrame, children?: number[] }
export interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

export interface ProfileEntry { name: string, ms: number, share: number }
export interface ProfileSummary {
  totalMs: number
  idleMs: number
  busyMs: number
  areas: ProfileEntry[]
  self: ProfileEntry[]
  inclusive: ProfileEntry[]
}

function area (frame: CallFrame): string {
  const { url, functionName } = frame
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg) return pkg[1] as string
  if (url.startsWith('node:')) return 'node internals'
  const app = /\/dist\/(.+)$/.exec(url)
  return app ? `app: ${app[1]}` : url.replace(/^file:\/\//, '')
}

function frameName (frame: CallFrame): string {
  const where = frame.url === '' ? '' : ` ${frame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${frame.lineNumber + 1}`
  return `${frame.functionName || '(anonymous)'}${where}`
}

/**
 * Only the samples between `fromMs` and `toMs` after the profile started (the profiler starts
 * with the process, so these are offsets from its spawn) count: a scenario's profile leaves out
 * the start-up and the shutdown.
 */
export function summarizeProfile (profile: CpuProfile, top = 20, window: { fromMs?: number, toMs?: number } = {}): ProfileSummary {
  const fromUs = (window.fromMs ?? 0) * 1000
  const toUs = (window.toMs ?? Infinity) * 1000
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)

  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  const areas = new Map<string, number>()
  let total = 0
  let idle = 0
  let elapsedUs = 0
  profile.samples.forEach((id, i) => {
    elapsedUs += profile.timeDeltas[i] ?? 0
    if (elapsedUs < fromUs || elapsedUs > toUs) return
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000
    const node = byId.get(id)
    if (!node) return
    total += ms
    if (node.callFrame.functionName === '(idle)') {
      idle += ms
      return
    }
    const name = frameName(node.callFrame)
    self.set(name, (self.get(name) ?? 0) + ms)
    const a = area(node.callFrame)
    areas.set(a, (areas.get(a) ?? 0) + ms)
    const seen = new Set<string>()
    for (let cursor: number | undefined = id; cursor !== undefined; cursor = parent.get(cursor)) {
      const frame = byId.get(cursor)?.callFrame
      if (!frame || frame.functionName === '(root)') continue
      const key = frameName(frame)
      if (seen.has(key)) continue
      seen.add(key)
      inclusive.set(key, (inclusive.get(key) ?? 0) + ms)
    }
  })
  const busy = total - idle
  const list = (map: Map<string, number>, n: number) => [...map].sort((a, b) => b[1] - a[1]).slice(0, n)
    .map(([name, ms]) => ({ name, ms, share: busy > 0 ? ms / busy : 0 }))
  return { totalMs: total, idleMs: idle, busyMs: busy, areas: list(areas, top), self: list(self, top), inclusive: list(inclusive, top) }
}

/** Per slice of `sliceMs`: how busy the main thread was and which areas took the time. */
export function profileTimeline (profile: CpuProfile, sliceMs: number, toMs = Infinity): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  // The innermost frame of a package or of the app's own code: module loading (only Node's
  // loader on the stack) stays `node internals`, schema compilation shows as ajv or
  // fast-json-stringify, and native work is charged to the package that asked for it.
  const owner = (id: number): string => {
    for (let cursor: number | undefined = id; cursor !== undefined; cursor = parent.get(cursor)) {
      const frame = byId.get(cursor)?.callFrame
      if (frame && frame.url !== '' && !frame.url.startsWith('node:')) return area(frame)
    }
    const frame = byId.get(id)?.callFrame
    return frame ? area(frame) : '?'
  }
  const slices: Array<{ idle: number, total: number, areas: Map<string, number> }> = []
  let elapsedUs = 0
  profile.samples.forEach((id, i) => {
    elapsedUs += profile.timeDeltas[i] ?? 0
    if (elapsedUs > toMs * 1000) return
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000
    const slice = (slices[Math.floor(elapsedUs / 1000 / sliceMs)] ??= { idle: 0, total: 0, areas: new Map() })
    slice.total += ms
    const frame = byId.get(id)?.callFrame
    if (frame?.functionName === '(idle)') {
      slice.idle += ms
      return
    }
    const key = owner(id)
    slice.areas.set(key, (slice.areas.get(key) ?? 0) + ms)
  })
  const lines = ['| ms | busy % | mostly |', '|---|---:|---|']
  slices.forEach((slice, i) => {
    if (!slice) return
    const top = [...slice.areas].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([name, ms]) => `${name} ${ms.toFixed(0)}`).join(', ')
    lines.push(`| ${i * sliceMs}–${(i + 1) * sliceMs} | ${(100 * (slice.total - slice.idle) / Math.max(1e-9, slice.total)).toFixed(0)} | ${top} |`)
  })
  return lines.join('\n')
}

export function profileMarkdown (title: string, s: ProfileSummary): string {
  const table = (heading: string, entries: ProfileEntry[]) => [
    `| ${heading} | ms | % of busy |`, '|---|---:|---:|',
    ...entries.map((e) => `| \`${e.name.replaceAll('|', '\\|')}\` | ${e.ms.toFixed(0)} | ${(e.share * 100).toFixed(1)} |`)
  ].join('\n')
  return [
    `### ${title}`,
    '',
    `Sampled ${(s.totalMs / 1000).toFixed(1)} s: busy ${(s.busyMs / 1000).toFixed(1)} s, idle ${(s.idleMs / 1000).toFixed(1)} s (main thread only; argon2 runs on the libuv pool and is not sampled).`,
    '',
    table('area', s.areas.slice(0, 12)),
    '',
    table('function (self time)', s.self.slice(0, 15)),
    '',
    table('function (inclusive time)', s.inclusive.slice(0, 20)),
    ''
  ].join('\n')
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2]
  if (!file) {
    process.stderr.write('usage: node --import tsx bench/profile.ts <file.cpuprofile>\n')
    process.exit(2)
  }
  process.stdout.write(profileMarkdown(file, summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile)))
}
