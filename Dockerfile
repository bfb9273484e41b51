# syntax=docker/dockerfile:1
# Production image of the auth API.
#   docker build -t auth-api .        (or: docker compose up -d --build, see docker-compose.yml)
# Settings come from the environment at run time (API.md §1.2); nothing secret is baked in,
# and APP_ENV is left to the deployment (docker-compose.yml defaults it to prod).
# Debian slim, not Alpine: argon2 loads a glibc prebuilt addon, so no compiler is needed.

# ---- build: compile the TypeScript sources to dist/ -------------------------------------------
FROM node:24-bookworm-slim AS build
WORKDIR /app
# Dependencies first, so this layer is reused until the lock file changes.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build

# ---- runtime: production dependencies and the compiled output only ----------------------------
FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Migrations are read at run time from db/migrations next to package.json (lib/project-root.ts).
COPY db/migrations ./db/migrations
# For `npm start` and `npm run db:migrate` in the container: with dist/ present and no compiler
# installed, the prestart check starts without building.
COPY scripts/build-if-stale.mjs ./scripts/
# The files stay owned by root: the service only reads them.
USER node
EXPOSE 8000
# Liveness (GET /) with node itself: slim images have no curl. PORT as the service reads it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8000) + '/', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node itself is PID 1 (not npm), so SIGTERM reaches the service directly; it shuts down
# gracefully within 10 s, so give it more than that (compose: stop_grace_period: 15s).
STOPSIGNAL SIGTERM
CMD ["node", "dist/server.js"]
