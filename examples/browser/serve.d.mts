// Types of serve.mjs, for test/browser.test.ts (the project's TypeScript does not read .mjs).
import type { Server } from 'node:http'

/** An http.Server (not listening yet) answering GET and HEAD with the files under `root` (default: this folder). */
export function createStaticServer (root?: string): Server
