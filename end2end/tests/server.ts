// Test harness: starts the real Charcha server binary on a free loopback port
// with a fresh data directory, and a Playwright `test` whose worker-scoped
// `server` fixture shares one such server between the tests of a worker.
//
//   import { test, expect, startServer } from './server';
//   test('…', async ({ page, server }) => { await page.goto('/login'); … });
//
// `baseURL` points at the worker's server, so page.goto('/x') and
// request.get('/x') reach it. Specs that stop or restart a server start their
// own with startServer() and stop it themselves; startServer({ env }) adds
// or overrides the server's environment (e.g. a small limit to test).
//
// Environment: CHARCHA_BIN (server binary, default target/debug/charcha),
// CHARCHA_SITE_ROOT (built site, default target/site), E2E_SERVER_LOG=1
// (echo the server's output), E2E_KEEP_DATA=1 (keep data dirs).
import { test as base, expect, type Page } from '@playwright/test';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export { expect };

const REPO_ROOT = path.resolve(__dirname, '..', '..');

export interface CharchaServer {
  url: string;
  port: number;
  dataDir: string;
  /** Output of the current and previous runs, for failure messages. */
  logs(): string;
  /** SIGTERM, then SIGKILL after 5 s. Keeps the data dir. */
  stop(): Promise<void>;
  /** stop(), then start again on the same port, data dir and secret. */
  restart(): Promise<void>;
  /** stop() and delete the data dir (unless E2E_KEEP_DATA is set). */
  dispose(): Promise<void>;
}

const HEALTH_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;
const LOG_LINES = 300;

function binaryPath(): string {
  return path.resolve(REPO_ROOT, process.env.CHARCHA_BIN || 'target/debug/charcha');
}

function siteRoot(): string {
  return path.resolve(REPO_ROOT, process.env.CHARCHA_SITE_ROOT || 'target/site');
}

// Ports handed out by this process, so two servers of one worker never collide.
const usedPorts = new Set<number>();

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen({ port, host: '127.0.0.1', exclusive: true }, () => probe.close(() => resolve(true)));
  });
}

/** A free loopback port from 3100 + a random offset (workers start apart). */
async function freePort(): Promise<number> {
  const start = 3100 + Math.floor(Math.random() * 800);
  for (let port = start; port < start + 2000; port++) {
    if (usedPorts.has(port)) continue;
    if (await portIsFree(port)) {
      usedPorts.add(port);
      return port;
    }
  }
  throw new Error(`no free port in ${start}..${start + 2000}`);
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

// Servers still running when the worker process exits are killed with it.
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Which backends a test server uses, always set explicitly (an empty value
 * means the embedded driver), so neither the shell (say, after exporting
 * `./dev services env`) nor a contributor's .env can point it elsewhere.
 * With CHARCHA_E2E_SCALED=1 (the second browser pass of `./dev test`), the
 * server runs on the real Redis, Kafka and MongoDB-compatible server that
 * scripts/services.sh started, with its own Kafka topic, database and Redis
 * key prefix so servers never see each other's data. Kept across restarts.
 */
function backendEnv(): Record<string, string> {
  if (process.env.CHARCHA_E2E_SCALED !== '1') {
    return { REDIS_URL: '', CHARCHA_REDIS_PREFIX: '', KAFKA_BROKERS: '', KAFKA_TOPIC: '', KAFKA_PARTITIONS: '', MONGODB_URI: '' };
  }
  const tag = randomBytes(6).toString('hex');
  // The server part of the URI, without any database name.
  const mongo = (process.env.CHARCHA_TEST_MONGODB_URI || 'mongodb://127.0.0.1:27018').replace(/^(mongodb:\/\/[^/]+).*$/, '$1');
  return {
    REDIS_URL: process.env.CHARCHA_TEST_REDIS_URL || 'redis://127.0.0.1:16379',
    CHARCHA_REDIS_PREFIX: `e2e${tag}`,
    KAFKA_BROKERS: process.env.CHARCHA_TEST_KAFKA_BROKERS || '127.0.0.1:19092',
    KAFKA_TOPIC: `charcha-e2e-${tag}`,
    KAFKA_PARTITIONS: '3',
    MONGODB_URI: `${mongo}/charcha_e2e_${tag}`,
  };
}

export interface ServerOptions {
  /** Extra environment for the server, applied last (e.g. `{ CHARCHA_WS_PER_USER: '2' }`). */
  env?: Record<string, string>;
}

export async function startServer(options: ServerOptions = {}): Promise<CharchaServer> {
  const bin = binaryPath();
  const site = siteRoot();
  if (!existsSync(bin)) {
    throw new Error(`server binary not found: ${bin}\nBuild it first: cargo leptos build (or run ./dev test)`);
  }
  if (!existsSync(path.join(site, 'pkg'))) {
    throw new Error(`built site not found: ${site}/pkg\nBuild it first: cargo leptos build (or run ./dev test)`);
  }

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'charcha-e2e-'));
  // Same secret across restarts, so sessions (JWT cookies) stay valid.
  const jwtSecret = randomBytes(36).toString('base64url'); // 48 characters
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...backendEnv(),
    LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
    LEPTOS_SITE_ROOT: site,
    LEPTOS_OUTPUT_NAME: 'charcha',
    LEPTOS_ENV: 'PROD', // no live-reload websocket
    CHARCHA_ENV: 'development',
    CHARCHA_DATA_DIR: dataDir,
    JWT_SECRET: jwtSecret,
    RUST_LOG: 'info',
    // Every test signs up from 127.0.0.1; the per-IP auth limit (20/min by
    // default) would throttle the suite. A spec testing the limit sets its own.
    CHARCHA_AUTH_RATE_PER_MINUTE: '10000',
    ...options.env,
  };
  const logLines: string[] = [];
  const echo = !!process.env.E2E_SERVER_LOG;
  let child: ChildProcess | undefined;

  const record = (stream: string) => (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) {
      if (!line) continue;
      logLines.push(`[${stream}] ${line}`);
      if (echo) process.stdout.write(`[charcha:${port}] ${line}\n`);
    }
    if (logLines.length > LOG_LINES) logLines.splice(0, logLines.length - LOG_LINES);
  };
  const logs = () => logLines.join('\n');

  async function launch(): Promise<void> {
    logLines.push(`--- starting ${bin} on ${url} (data: ${dataDir})`);
    const proc = spawn(bin, [], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    running.add(proc);
    proc.stdout!.on('data', record('out'));
    proc.stderr!.on('data', record('err'));
    proc.once('exit', (code, signal) => {
      running.delete(proc);
      logLines.push(`--- server exited (code ${code}, signal ${signal})`);
    });
    let spawnError: Error | undefined;
    proc.once('error', (e) => (spawnError = e));

    const deadline = Date.now() + HEALTH_TIMEOUT_MS;
    let lastProblem = 'no answer yet';
    while (Date.now() < deadline) {
      if (spawnError) throw new Error(`cannot start ${bin}: ${spawnError.message}`);
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`server exited before it was healthy (code ${proc.exitCode}, signal ${proc.signalCode})\n${logs()}`);
      }
      let healthy = false;
      try {
        const res = await fetch(`${url}/api/health`, { signal: AbortSignal.timeout(2_000) });
        healthy = res.status === 200;
        if (!healthy) lastProblem = `GET /api/health answered ${res.status}`;
      } catch (e) {
        lastProblem = String((e as Error).message || e);
      }
      if (healthy) {
        try {
          await checkAssets();
          return;
        } catch (e) {
          proc.kill('SIGKILL');
          await exited(proc);
          throw e;
        }
      }
      await sleep(150);
    }
    proc.kill('SIGKILL');
    await exited(proc);
    throw new Error(`server not healthy after ${HEALTH_TIMEOUT_MS / 1000}s (${lastProblem})\n${logs()}`);
  }

  // The page must reference assets that exist. A binary compiled without
  // cargo-leptos' environment (plain `cargo build`/`cargo test` overwrite
  // target/debug/charcha) asks for pkg/<name>_bg.wasm, which the site lacks,
  // and every page would silently never hydrate.
  async function checkAssets(): Promise<void> {
    const html = await (await fetch(`${url}/login`)).text();
    const assets = [...html.matchAll(/<link\b[^>]*\bhref="(\/pkg\/[^"]+)"/g)].map((m) => m[1]);
    for (const asset of assets) {
      const res = await fetch(`${url}${asset}`, { method: 'HEAD' });
      if (res.status !== 200) {
        throw new Error(
          `the server's pages reference ${asset}, which answers ${res.status}: ${bin} does not match the site in ${site}.\n` +
            'Rebuild both with `cargo leptos build` (or ./dev test); a plain cargo build/test of the binary breaks this.',
        );
      }
    }
  }

  async function stop(): Promise<void> {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_GRACE_MS);
    await exited(proc);
    clearTimeout(timer);
  }

  async function restart(): Promise<void> {
    await stop();
    // The port was ours a moment ago; wait until the OS lets it go.
    const deadline = Date.now() + 10_000;
    while (!(await portIsFree(port)) && Date.now() < deadline) await sleep(100);
    await launch();
  }

  async function dispose(): Promise<void> {
    await stop();
    usedPorts.delete(port);
    if (!process.env.E2E_KEEP_DATA) {
      await rm(dataDir, { recursive: true, force: true });
    }
  }

  try {
    await launch();
  } catch (e) {
    usedPorts.delete(port);
    await rm(dataDir, { recursive: true, force: true });
    throw e;
  }
  return { url, port, dataDir, logs, stop, restart, dispose };
}

/**
 * `n` servers sharing one set of backends, for specs whose users must be on
 * different instances. In the scaled mode (CHARCHA_E2E_SCALED=1) these are
 * `n` instances on the same Redis prefix, Kafka topic and database, with one
 * JWT secret, as a deployment runs them (only the first runs the history
 * worker, like one dedicated worker). In the embedded mode instances cannot
 * share a store, so it is one server, listed `n` times. Started one after
 * another, so only the first creates the Kafka topic; `dispose` stops each
 * server once.
 */
export async function startServers(
  n: number,
  options: ServerOptions = {},
): Promise<{ servers: CharchaServer[]; dispose(): Promise<void> }> {
  const scaled = process.env.CHARCHA_E2E_SCALED === '1';
  const shared = { ...backendEnv(), JWT_SECRET: randomBytes(36).toString('base64url'), ...options.env };
  const started: CharchaServer[] = [];
  const dispose = async () => {
    for (const s of started) await s.dispose();
  };
  try {
    for (let i = 0; i < (scaled ? n : 1); i++) {
      started.push(await startServer({ env: { ...shared, CHARCHA_WORKER: i === 0 ? 'on' : 'off', ...options.env } }));
    }
  } catch (e) {
    await dispose();
    throw e;
  }
  return { servers: Array.from({ length: n }, (_, i) => started[i % started.length]), dispose };
}

// ---------------------------------------------------------------------------
// Hydration
// ---------------------------------------------------------------------------

// Marks when the page's wasm has been instantiated and the code chained on it
// has run. wasm-bindgen's init and Leptos' `hydrate()` call run as promise
// continuations right after instantiation, so a timer queued at that moment
// fires only once they are done. No app cooperation needed.
const HYDRATION_PROBE = `(() => {
  window.__charchaHydrated = false;
  const mark = () => setTimeout(() => { window.__charchaHydrated = true; }, 0);
  for (const name of ['instantiateStreaming', 'instantiate']) {
    const original = WebAssembly[name];
    if (typeof original !== 'function') continue;
    WebAssembly[name] = function (...args) {
      const result = original.apply(this, args);
      result.then(mark, () => {});
      return result;
    };
  }
})();`;

/** Waits until the current document's wasm client has hydrated. */
export async function waitForHydration(page: Page, timeout = 30_000): Promise<void> {
  await page.waitForFunction(() => (window as unknown as { __charchaHydrated?: boolean }).__charchaHydrated === true, null, {
    timeout,
  });
}

/** page.goto(path), then wait for hydration. */
export async function gotoHydrated(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await waitForHydration(page);
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

type WorkerFixtures = { server: CharchaServer };
type TestFixtures = { serverLogsOnFailure: void };

export const test = base.extend<TestFixtures, WorkerFixtures>({
  server: [
    async ({}, use) => {
      const server = await startServer();
      try {
        await use(server);
      } finally {
        await server.dispose();
      }
    },
    { scope: 'worker', timeout: 60_000 },
  ],
  baseURL: async ({ server }, use) => {
    await use(server.url);
  },
  context: async ({ context }, use) => {
    await context.addInitScript(HYDRATION_PROBE);
    await use(context);
  },
  // When a test fails, its report ends with the shared server's recent output.
  serverLogsOnFailure: [
    async ({ server }, use, testInfo) => {
      await use();
      if (testInfo.status !== testInfo.expectedStatus) {
        const tail = server.logs().split('\n').slice(-80).join('\n');
        await testInfo.attach('server.log', { body: server.logs(), contentType: 'text/plain' });
        console.error(`--- last lines of the server log (${server.url}) ---\n${tail}`);
      }
    },
    { auto: true },
  ],
});

/** The init script, for contexts a spec creates itself (browser.newContext()). */
export const hydrationProbe = HYDRATION_PROBE;
