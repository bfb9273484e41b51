// A static file server for this folder, on node:http alone (no dependencies):
//
//   node examples/browser/serve.mjs            # http://localhost:3000/
//   PORT=3001 node examples/browser/serve.mjs  # another port
//
// HOST (default 127.0.0.1) is the address it listens on. test/browser.test.ts imports
// createStaticServer() to serve the same files.
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import { extname, join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('.', import.meta.url))

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.md': 'text/plain; charset=utf-8'
}

/**
 * An http.Server (not listening yet) answering GET and HEAD with the files under `root`;
 * `/` and every path ending in `/` serve that folder's index.html.
 * @param {string} [root]
 */
export function createStaticServer (root = ROOT) {
  return createServer((request, response) => {
    const answer = (status, headers, body) => {
      response.writeHead(status, { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers })
      response.end(request.method === 'HEAD' ? undefined : body)
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') return answer(405, { allow: 'GET, HEAD' }, 'method not allowed\n')
    let path
    try {
      path = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname)
    } catch {
      return answer(400, {}, 'bad request\n')
    }
    if (path.endsWith('/')) path += 'index.html'
    // normalize() of an absolute path resolves every `..`, so the file stays under root.
    const file = join(root, normalize(path))
    readFile(file).then(
      (body) => answer(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }, body),
      () => answer(404, { 'content-type': 'text/plain; charset=utf-8' }, 'not found\n')
    )
  })
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const port = Number(process.env.PORT ?? 3000)
  const host = process.env.HOST ?? '127.0.0.1'
  createStaticServer().listen(port, host, () => {
    console.log(`Serving ${ROOT} on http://localhost:${port}/ (listening on ${host}:${port})`)
  })
}
