// The ceiling of login and signup: how many argon2id hashes or verifications per second this
// machine does with the library and parameters of plugins/auth.ts (m = 19 MiB, t = 2, p = 1),
// CONCURRENCY operations in flight on the default libuv thread pool (4 threads), for
// DURATION_MS after WARMUP_MS. MODE is `hash` or `verify`. Prints one JSON line.
import argon2 from 'argon2'

const ARGON2_OPTIONS = { type: argon2.argon2id, memoryCost: 19 * 1024, timeCost: 2, parallelism: 1 }
const mode = process.env.MODE === 'hash' ? 'hash' : 'verify'
const concurrency = Number(process.env.CONCURRENCY ?? 8)
const durationMs = Number(process.env.DURATION_MS ?? 10_000)
const warmupMs = Number(process.env.WARMUP_MS ?? 0)
const password = (process.env.PASSWORD ?? 'Tq8#vLm2-Zp4!wXr-9kDs').normalize('NFKC')

const stored = await argon2.hash(password, ARGON2_OPTIONS)
const once = mode === 'hash'
  ? () => argon2.hash(password, ARGON2_OPTIONS)
  : async () => { if (!await argon2.verify(stored, password)) throw new Error('verify failed') }

async function measure (ms) {
  const latencies = []
  const start = performance.now()
  const end = start + ms
  const worker = async () => {
    while (performance.now() < end) {
      const t = performance.now()
      await once()
      latencies.push(performance.now() - t)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return { seconds: (performance.now() - start) / 1000, latencies }
}

if (warmupMs > 0) await measure(warmupMs)
const { seconds, latencies } = await measure(durationMs)
process.stdout.write(JSON.stringify({ mode, concurrency, ops: latencies.length, seconds, latencies }) + '\n')
