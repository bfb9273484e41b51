// Where the CPU of a run goes (Linux): the measured process (all its threads, from
// /proc/<pid>/task/*/schedstat), the PostgreSQL backends serving it, Redis (INFO cpu: the whole
// server), the load generator (this process) and the whole machine (/proc/stat), so a run can
// say what bound it and how much CPU other people's work took meanwhile.
import { readdirSync, readFileSync } from 'node:fs'
import { cpus } from 'node:os'

const TICK_MS = 10 // USER_HZ = 100 on Linux

function taskCpuMs (pid: number): number {
  let ns = 0
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0])
      } catch {}
    }
  } catch {}
  return ns / 1e6
}

function machineMs (): { busy: number, total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number)
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0)
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0)
  return { busy: (total - idle) * TICK_MS, total: total * TICK_MS }
}

export interface CpuSources {
  /** PIDs of the PostgreSQL backends serving the measured process (none for the yardsticks). */
  postgresPids (): Promise<number[]>
  /** Redis' own CPU seconds (user + sys), or null without Redis. */
  redisCpuSeconds (): Promise<number | null>
}

interface Snapshot {
  at: number
  target: number
  postgres: Map<number, number>
  redis: number | null
  loadgen: number
  machine: { busy: number, total: number }
}

/** CPU of one run in cores (CPU-seconds per second) and in microseconds per answered request. */
export interface CpuUse {
  cores: { target: number, postgres: number, redis: number | null, loadgen: number, machineBusy: number, other: number }
  usPerRequest: { target: number, postgres: number, redis: number | null, loadgen: number }
  /** Machine CPUs busy, in percent of all of them. */
  machineBusyPercent: number
}

export class CpuMeter {
  private readonly sources: CpuSources

  constructor (sources: CpuSources) {
    this.sources = sources
  }

  async snapshot (targetPid: number, withStores: boolean): Promise<Snapshot> {
    const pids = withStores ? await this.sources.postgresPids() : []
    const redis = withStores ? await this.sources.redisCpuSeconds() : null
    const usage = process.cpuUsage()
    return {
      at: performance.now(),
      target: taskCpuMs(targetPid),
      postgres: new Map(pids.map((pid) => [pid, taskCpuMs(pid)])),
      redis: redis === null ? null : redis * 1000,
      loadgen: (usage.user + usage.system) / 1000,
      machine: machineMs()
    }
  }

  async since (before: Snapshot, targetPid: number, withStores: boolean, requests: number): Promise<CpuUse> {
    const after = await this.snapshot(targetPid, withStores)
    const wall = after.at - before.at
    let postgres = 0
    // Backends that appeared during the run count from zero.
    for (const [pid, ms] of after.postgres) postgres += ms - (before.postgres.get(pid) ?? 0)
    const redis = before.redis === null || after.redis === null ? null : after.redis - before.redis
    const target = after.target - before.target
    const loadgen = after.loadgen - before.loadgen
    const busy = after.machine.busy - before.machine.busy
    const capacity = after.machine.total - before.machine.total
    const perRequest = (ms: number) => requests > 0 ? ms * 1000 / requests : NaN
    return {
      cores: {
        target: target / wall,
        postgres: postgres / wall,
        redis: redis === null ? null : redis / wall,
        loadgen: loadgen / wall,
        machineBusy: busy / wall,
        other: Math.max(0, busy - target - postgres - (redis ?? 0) - loadgen) / wall
      },
      usPerRequest: { target: perRequest(target), postgres: perRequest(postgres), redis: redis === null ? null : perRequest(redis), loadgen: perRequest(loadgen) },
      machineBusyPercent: capacity > 0 ? 100 * busy / capacity : NaN
    }
  }
}

export const CPU_COUNT = cpus().length
