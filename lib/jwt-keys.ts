// Ed25519 keys as JWKs (RFC 8037), named by their RFC 7638 thumbprint: the `kid` of the tokens
// they sign and of their entry in /.well-known/jwks.json (API.md §5.3).
import { createHash, createPublicKey, type KeyObject } from 'node:crypto'

export interface PublicJwk {
  kty: 'OKP'
  crv: 'Ed25519'
  x: string
  kid: string
  alg: 'EdDSA'
  use: 'sig'
}

// A private key yields its public half; a public key is itself (createPublicKey refuses those).
const publicHalf = (key: KeyObject) => key.type === 'public' ? key : createPublicKey(key)

export function publicJwk (key: KeyObject): PublicJwk {
  const { crv, x } = publicHalf(key).export({ format: 'jwk' }) as { crv: 'Ed25519', x: string }
  // RFC 7638 §3.2: the required members only, in lexicographic order, without whitespace.
  const kid = createHash('sha256').update(JSON.stringify({ crv, kty: 'OKP', x })).digest('base64url')
  return { kty: 'OKP', crv, x, kid, alg: 'EdDSA', use: 'sig' }
}

export function publicPem (key: KeyObject): string {
  return publicHalf(key).export({ type: 'spki', format: 'pem' }).toString()
}
