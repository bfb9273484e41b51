// Throwaway Redis servers and PostgreSQL clusters for the dependency-failure tests (API.md §11).
// Each runs on its own free port, in its own temporary directory, and is stopped by its PID;
// the shared servers on 5432 and 6379 are never touched. Everything started here is stopped
// and removed in the test's teardown, and again (synchronously) if the process exits early.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises'
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
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
