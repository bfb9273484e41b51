// DATA_DIR (API.md §1.2): the home of the embedded database, its lock file and the secrets
// generated outside production. Created on first use, readable by its owner only.
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

export class DataDirError extends Error {}

function ensureDataDir (dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
}

/**
 * Creates `file` with `content` only if it does not exist, and never exposes a half-written
 * file: the content goes to a temporary file first, then is linked into place (link fails
 * when the name is taken, so two processes racing on first start agree on one value).
 */
function createExclusive (file: string, content: string): boolean {
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  writeFileSync(temporary, content, { mode: 0o600 })
  try {
    linkSync(temporary, file)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  } finally {
    unlinkSync(temporary)
  }
}

/**
 * A secret kept in DATA_DIR: generated (32 random bytes, base64url) the first time, then read
 * back, so a restart keeps every session and token valid. Used only outside production.
 */
export function generatedSecret (
  dataDir: string,
  name: string,
  generate: () => string = () => randomBytes(32).toString('base64url')
): { value: string, file: string, created: boolean } {
  const file = join(dataDir, name)
  try {
    ensureDataDir(dataDir)
    const created = createExclusive(file, generate())
    const value = readFileSync(file, 'utf8')
    if (value.trim() === '') throw new DataDirError(`${file} is empty; delete it to generate a new secret`)
    return { value, file, created }
  } catch (error) {
    if (error instanceof DataDirError) throw error
    throw new DataDirError(`Cannot keep a generated secret in ${file}: ${(error as Error).message}`)
  }
}

export const LOCK_FILE = 'auth-api.lock'

interface LockHolder {
  pid: number
  host: string
}

// Directories this process has locked. A lock file naming our own pid is either ours (this
// set says so) or left by an earlier process that had the same pid (a restarted container,
// where the service is always pid 1): PostgreSQL's postmaster.pid makes the same distinction.
const lockedHere = new Set<string>()

function isRunning (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function readHolder (file: string): LockHolder | null {
  try {
    const holder = JSON.parse(readFileSync(file, 'utf8')) as Partial<LockHolder>
    return typeof holder.pid === 'number' && typeof holder.host === 'string' ? { pid: holder.pid, host: holder.host } : null
  } catch {
    return null
  }
}

/**
 * Takes DATA_DIR for this process: the embedded database serves one process only (API.md
 * §1.1). A lock left by a process that has ended is taken over. Returns the release function.
 */
export function lockDataDir (dataDir: string): () => void {
  const dir = resolve(dataDir)
  const file = join(dataDir, LOCK_FILE)
  ensureDataDir(dataDir)
  const me: LockHolder = { pid: process.pid, host: hostname() }
  for (let attempt = 0; attempt < 2; attempt++) {
    if (createExclusive(file, JSON.stringify(me) + '\n')) {
      lockedHere.add(dir)
      return () => {
        lockedHere.delete(dir)
        const holder = readHolder(file)
        if (holder?.pid === me.pid && holder.host === me.host) unlinkSync(file)
      }
    }
    const holder = readHolder(file)
    if (holder !== null) {
      if (holder.host !== me.host) {
        throw new DataDirError(`${file} is held by process ${holder.pid} on host ${holder.host}: the embedded database serves one process. ` +
          'If that process has ended, delete the lock file.')
      }
      const stale = holder.pid === me.pid ? !lockedHere.has(dir) : !isRunning(holder.pid)
      if (!stale) {
        throw new DataDirError(`${file} is held by process ${holder.pid}: the embedded database in ${dataDir} serves one process. ` +
          'Stop that process, or give this one another DATA_DIR (or a DATABASE_URL).')
      }
    }
    // Left by a process that has ended (or unreadable): take it over.
    try {
      unlinkSync(file)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    }
  }
  throw new DataDirError(`${file} could not be taken: another process is starting on the same DATA_DIR`)
}
