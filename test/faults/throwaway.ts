// Throwaway Redis servers, Redis Clusters and PostgreSQL clusters for the dependency-failure
// tests (API.md §11). Each runs on its own free ports, in its own temporary directory, and is
// stopped by its PID; the shared servers on 5432 and 6379 are never touched. Everything started
// here is stopped and removed in the test's teardown, and again (synchronously) if the process
// exits early.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises'
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'

const PG_BIN = process.env.TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin'

// Last-resort cleanup when the process dies before a teardown runs.
const exitCleanups = new Set<() => void>()
function runExitCleanups (): void {
  for (const cleanup of exitCleanups) {
    try { cleanup() } catch { /* best effort */ }
  }
  exitCleanups.clear()
}
process.once('exit', runExitCleanups)
// A test runner's timeout ends the process with a signal: clean up, then die of that signal.
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGALRM'] as const) {
  process.once(signal, () => {
    runExitCleanups()
    process.kill(process.pid, signal)
  })
}

import { freePort } from '../fixtures/ports.ts'

export { freePort }

/** Sends one RESP command on a fresh connection and resolves with the first reply line ('' on failure). */
export function rawRedisCommand (port: number, args: string[], timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' })
    let reply = ''
    const done = (line: string) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(line)
    }
    const timer = setTimeout(() => done(''), timeoutMs)
    socket.once('error', () => done(''))
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1')
      const end = reply.indexOf('\r\n')
      if (end >= 0) done(reply.slice(0, end))
    })
    socket.once('connect', () => {
      socket.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''))
    })
  })
}

/** A redis-server of our own: `--save "" --appendonly yes --dir <dir>`, stopped by PID. */
export class ThrowawayRedis {
  readonly port: number
  dir: string
  private process: ChildProcess | undefined
  private output = ''
  private readonly dirs: string[]

  private constructor (port: number, dir: string) {
    this.port = port
    this.dir = dir
    this.dirs = [dir]
  }

  get url (): string { return `redis://127.0.0.1:${this.port}` }
  get running (): boolean { return this.process !== undefined && this.process.exitCode === null && this.process.signalCode === null }

  /** Reserves a port and a data directory; nothing runs until start(). */
  static async create (t: Test): Promise<ThrowawayRedis> {
    const redis = new ThrowawayRedis(await freePort(), await mkdtemp(join(tmpdir(), 'auth-faults-redis-')))
    const cleanup = () => {
      if (redis.running) redis.process?.kill('SIGKILL')
      for (const dir of redis.dirs) rmSync(dir, { recursive: true, force: true })
    }
    exitCleanups.add(cleanup)
    t.teardown(async () => {
      await redis.kill()
      for (const dir of redis.dirs) await rm(dir, { recursive: true, force: true })
      exitCleanups.delete(cleanup)
    })
    return redis
  }

  /** Switches to a new, empty data directory (a Redis that comes back without its data). */
  async useEmptyDir (): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), 'auth-faults-redis-'))
    this.dirs.push(this.dir)
  }

  /** Starts redis-server and resolves once it answers PONG (its AOF loaded). */
  async start (): Promise<void> {
    if (this.running) throw new Error('redis-server is already running')
    this.output = ''
    const child = spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'yes', '--dir', this.dir,
      '--enable-debug-command', 'yes', '--daemonize', 'no'
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.process = child
    const keep = (chunk: Buffer) => { this.output = (this.output + chunk.toString()).slice(-4000) }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      if (!this.running) break
      if (await rawRedisCommand(this.port, ['PING'], 500) === '+PONG') return
      await sleep(50)
    }
    await this.kill()
    throw new Error(`redis-server on port ${this.port} did not start:\n${this.output}`)
  }

  /** Kills the server by its PID (SIGKILL by default: an abrupt outage) and waits for its exit. */
  async kill (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.process
    if (child === undefined || !this.running) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill(signal)
    const patience = new AbortController()
    await Promise.race([exited, sleep(5000, undefined, { signal: patience.signal }).catch(() => {})])
    patience.abort()
    if (this.running) {
      child.kill('SIGKILL')
      await exited
    }
  }
}

/**
 * A port for a Redis Cluster node: free, with its cluster bus port (port + 10000) free too, and
 * not among `taken`.
 */
async function clusterNodePort (taken: number[]): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await freePort()
    if (port + 10_000 > 65_535 || taken.includes(port) || taken.includes(port + 10_000)) continue
    const busFree = await new Promise<boolean>((resolve) => {
      const server = createServer()
      server.once('error', () => resolve(false))
      server.listen(port + 10_000, '127.0.0.1', () => server.close(() => resolve(true)))
    })
    if (busFree) return port
  }
  throw new Error('no free port pair for a Redis Cluster node')
}

function redisCli (args: string[], timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', args, { timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error) reject(new Error(`redis-cli ${args.join(' ')} failed: ${error.message}\n${stdout}\n${stderr}`))
      else resolve(stdout)
    })
  })
}

/**
 * A Redis Cluster of our own: `masters` redis-servers (no replicas, no persistence) on free
 * ports of 127.0.0.1, each with its nodes-<port>.conf in one temporary directory, joined with
 * `redis-cli --cluster create`. Nodes are killed by PID and restarted on the same port with the
 * same nodes file, so a restarted master rejoins owning its slots (and none of its data).
 */
export class ThrowawayRedisCluster {
  readonly ports: number[]
  readonly dir: string
  private readonly processes = new Map<number, ChildProcess>()
  private readonly output = new Map<number, string>()

  private constructor (ports: number[], dir: string) {
    this.ports = ports
    this.dir = dir
  }

  /** `host:port` seeds, comma-separated: a value for REDIS_CLUSTER_NODES. */
  get nodesSetting (): string { return this.ports.map((p) => `127.0.0.1:${p}`).join(',') }
  /** Seeds for ioredis' Cluster. */
  get seeds (): Array<{ host: string, port: number }> { return this.ports.map((port) => ({ host: '127.0.0.1', port })) }

  /** Starts the nodes, creates the cluster and resolves once every node reports cluster_state:ok. */
  static async create (t: Test, masters = 3): Promise<ThrowawayRedisCluster> {
    const ports: number[] = []
    while (ports.length < masters) ports.push(await clusterNodePort(ports))
    const cluster = new ThrowawayRedisCluster(ports, await mkdtemp(join(tmpdir(), 'auth-faults-cluster-')))
    const cleanup = () => {
      for (const port of cluster.ports) {
        if (cluster.running(port)) cluster.processes.get(port)?.kill('SIGKILL')
      }
      rmSync(cluster.dir, { recursive: true, force: true })
    }
    exitCleanups.add(cleanup)
    t.teardown(async () => {
      for (const port of cluster.ports) await cluster.kill(port)
      await rm(cluster.dir, { recursive: true, force: true })
      exitCleanups.delete(cleanup)
    })
    for (const port of ports) await cluster.start(port)
    await redisCli(['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'])
    await cluster.waitForState('ok', 20_000)
    return cluster
  }

  running (port: number): boolean {
    const child = this.processes.get(port)
    return child !== undefined && child.exitCode === null && child.signalCode === null
  }

  /** The PID of the node on `port`, while it runs. */
  pid (port: number): number | undefined {
    return this.running(port) ? this.processes.get(port)?.pid : undefined
  }

  /** Starts (or restarts) the node on `port` with its nodes file; resolves once it answers PONG. */
  async start (port: number): Promise<void> {
    if (this.running(port)) throw new Error(`the cluster node on port ${port} is already running`)
    this.output.set(port, '')
    const child = spawn('redis-server', [
      '--port', String(port), '--cluster-enabled', 'yes',
      '--cluster-config-file', join(this.dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000',
      '--save', '', '--appendonly', 'no', '--dir', this.dir, '--bind', '127.0.0.1', '--daemonize', 'no'
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.processes.set(port, child)
    const keep = (chunk: Buffer) => { this.output.set(port, ((this.output.get(port) ?? '') + chunk.toString()).slice(-4000)) }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      if (!this.running(port)) break
      if (await rawRedisCommand(port, ['PING'], 500) === '+PONG') return
      await sleep(50)
    }
    await this.kill(port)
    throw new Error(`cluster node on port ${port} did not start:\n${this.output.get(port) ?? ''}`)
  }

  /** Kills the node on `port` by its PID (SIGKILL by default) and waits for its exit. */
  async kill (port: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.processes.get(port)
    if (child === undefined || !this.running(port)) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    process.kill(child.pid!, signal)
    const patience = new AbortController()
    await Promise.race([exited, sleep(5000, undefined, { signal: patience.signal }).catch(() => {})])
    patience.abort()
    if (this.running(port)) {
      child.kill('SIGKILL')
      await exited
    }
  }

  /** `CLUSTER INFO` of one node as name → value ({} when it does not answer). */
  async info (port: number): Promise<Record<string, string>> {
    const text = await redisCli(['-p', String(port), 'cluster', 'info'], 2000).catch(() => '')
    return Object.fromEntries(text.split(/\r?\n/).filter((l) => l.includes(':')).map((l) => {
      const at = l.indexOf(':')
      return [l.slice(0, at), l.slice(at + 1).trim()]
    }))
  }

  /** Resolves once every running node (or those of `ports`) reports cluster_state `state`. */
  async waitForState (state: 'ok' | 'fail', timeoutMs: number, ports = this.ports.filter((p) => this.running(p))): Promise<number> {
    const started = performance.now()
    for (;;) {
      const states = await Promise.all(ports.map(async (p) => (await this.info(p)).cluster_state))
      if (states.every((s) => s === state)) return Math.round(performance.now() - started)
      if (performance.now() - started > timeoutMs) {
        throw new Error(`cluster_state is not ${state} on every node after ${timeoutMs} ms: ${states.join(', ')}`)
      }
      await sleep(100)
    }
  }
}

function postgresOwner (): { uid: number, gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'))
  const fields = line?.split(':')
  if (!fields || fields.length < 4) throw new Error('no OS user "postgres"')
  return { uid: Number(fields[2]), gid: Number(fields[3]) }
}

function isPostgres (pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres'
  } catch {
    return false
  }
}

function asPostgres (command: string, args: string[], cwd: string, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('runuser', ['-u', 'postgres', '--', join(PG_BIN, command), ...args], { cwd, timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} failed: ${error.message}\n${stdout}\n${stderr}`))
      else resolve(stdout)
    })
  })
}

/** A PostgreSQL cluster of our own (initdb, trust auth), started and stopped with pg_ctl. */
export class ThrowawayPostgres {
  readonly port: number
  readonly dir: string
  private frozen = false
  private constructor (port: number, dir: string) {
    this.port = port
    this.dir = dir
  }

  get dataDir (): string { return join(this.dir, 'data') }
  get url (): string { return `postgres://postgres@127.0.0.1:${this.port}/postgres` }

  /** initdb into a new directory owned by the OS user postgres; not started yet. */
  static async create (t: Test): Promise<ThrowawayPostgres> {
    const dir = await mkdtemp(join('/tmp', 'auth-faults-pg-'))
    const { uid, gid } = postgresOwner()
    await chown(dir, uid, gid)
    const pg = new ThrowawayPostgres(await freePort(), dir)
    const cleanup = () => {
      for (const pid of pg.clusterPidsSync()) {
        try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
      }
      rmSync(dir, { recursive: true, force: true })
    }
    exitCleanups.add(cleanup)
    t.teardown(async () => {
      if (pg.frozen) await pg.freeze(false)
      await pg.stop().catch(() => {})
      const leftovers = pg.clusterPidsSync()
      for (const pid of leftovers) {
        try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
      }
      if (leftovers.length > 0) await sleep(200)
      await rm(dir, { recursive: true, force: true })
      exitCleanups.delete(cleanup)
    })
    await asPostgres('initdb', ['-D', pg.dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '--no-instructions'], dir)
    return pg
  }

  private postmasterPidSync (): number | undefined {
    try {
      const pid = Number(readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
      return Number.isInteger(pid) && pid > 0 ? pid : undefined
    } catch {
      return undefined
    }
  }

  async start (): Promise<void> {
    await asPostgres('pg_ctl', [
      '-D', this.dataDir, '-l', join(this.dir, 'server.log'), '-w', '-t', '30',
      '-o', `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1`, 'start'
    ], this.dir)
  }

  /** An abrupt stop: `pg_ctl stop -m immediate` signals the postmaster by its PID. */
  async stop (): Promise<void> {
    if (this.postmasterPidSync() === undefined) return
    await asPostgres('pg_ctl', ['-D', this.dataDir, '-w', '-t', '20', '-m', 'immediate', 'stop'], this.dir, 30_000)
  }

  /** The postmaster and its children (backends, background workers), by PID. */
  private clusterPidsSync (): number[] {
    const postmaster = this.postmasterPidSync()
    // A stale postmaster.pid may name a PID reused by another program: only ever a postgres.
    if (postmaster === undefined || !isPostgres(postmaster)) return []
    const pids = [postmaster]
    for (const entry of readdirSync('/proc')) {
      if (!/^[0-9]+$/.test(entry)) continue
      let stat = ''
      try { stat = readFileSync(`/proc/${entry}/stat`, 'utf8') } catch { continue }
      // pid (comm) state ppid ...: comm may contain spaces, so read after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === postmaster && isPostgres(Number(entry))) pids.push(Number(entry))
    }
    return pids
  }

  /** Freezes (SIGSTOP) or thaws (SIGCONT) every process of the cluster: a hung server. */
  async freeze (frozen: boolean): Promise<void> {
    for (const pid of this.clusterPidsSync()) {
      try { process.kill(pid, frozen ? 'SIGSTOP' : 'SIGCONT') } catch { /* gone */ }
    }
    this.frozen = frozen
  }

  async log (): Promise<string> {
    return await readFile(join(this.dir, 'server.log'), 'utf8').catch(() => '')
  }
}
