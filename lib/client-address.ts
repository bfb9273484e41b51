// The address a rate limit counts (API.md §8): Fastify's `request.ip` (which honours
// TRUST_PROXY), with an IPv6 client counted by its /64 prefix: one subscriber or host usually
// holds a whole /64, so counting single addresses would let it rotate through 2^64 of them.
import { isIPv6 } from 'node:net'

export function clientAddress (ip: string): string {
  const address = ip.replace(/%.*$/, '').toLowerCase()
  if (!isIPv6(address)) return address
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(address)
  if (mapped?.[1]) return mapped[1]
  // Expand `::` to the zero groups it stands for (an embedded IPv4 tail counts as two groups),
  // then keep the first four groups: the /64 prefix.
  const [head = '', tail] = address.split('::')
  const groupsOf = (part: string) => part === '' ? [] : part.split(':').flatMap((g) => g.includes('.') ? ['0', '0'] : [g])
  const headGroups = groupsOf(head)
  const tailGroups = tail === undefined ? [] : groupsOf(tail)
  const zeros = Array<string>(Math.max(0, 8 - headGroups.length - tailGroups.length)).fill('0')
  const groups = tail === undefined ? headGroups : [...headGroups, ...zeros, ...tailGroups]
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`
}
