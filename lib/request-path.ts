/**
 * The path a request is routed by: without its query, percent-decoded as the router decodes
 * it (so `/api/v1/%61uth/me` is `/api/v1/auth/me`). Header rules keyed on paths use this, never
 * the raw URL. A path that does not decode is returned as it came (the router refuses it).
 */
export function requestPath (url: string): string {
  const path = url.split('?', 1)[0] ?? ''
  try {
    return decodeURIComponent(path)
  } catch {
    return path
  }
}
