// The address a rate limit counts (API.md §8): Fastify's `request.ip` (which honours
// TRUST_PROXY), with an IPv6 client counted by its /64 prefix: one subscriber or host usually
// holds a whole /64, so counting single addresses would let it rotate through 2^64 of them.
import { isIPv6 } from 'node:net'

export function clientAddress (ip: string): string {
  const address = ip.replace(/%.*$/, '').toLowerCase()
  if (!isIPv6(address)) return address
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(address)
  if (mapped?.[1]) return mapped[1]
  const [head = '', tail] = address.split('::')
  const headGroups = head === '' ? [] : head.split(':')
  const groups = tail === undefined
    ? headGroups
    : [...headGroups, ...Array<string>(8).fill('0')].slice(0, 4)
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`
}
