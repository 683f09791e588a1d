// Playwright configuration for Charcha's browser tests.
//
// Run from the repository root (package.json lives there):
//   ./dev test                                   # builds first, then runs everything
//   npx playwright test -c end2end               # after `cargo leptos build`
//   npx playwright test -c end2end auth -g theme # one spec file / one test
//
// The tests start the built server binary themselves (see tests/server.ts):
// CHARCHA_BIN and CHARCHA_SITE_ROOT point at it; `./dev test` sets both, and
// they default to target/debug/charcha and target/site.
import { defineConfig } from '@playwright/test';

// A 2-core machine: one worker keeps the server, Chromium and the tests from
// starving each other. E2E_WORKERS=2 is there for bigger machines.
const workers = Number(process.env.E2E_WORKERS || 1);

export default defineConfig({
  testDir: './tests',
  outputDir: './test-results',
  workers,
  fullyParallel: false,
  retries: 0,
  forbidOnly: !!process.env.CI,
  timeout: 60_000,
  expect: { timeout: 10_000 },
  reporter: [['list']],
  use: {
    browserName: 'chromium',
    headless: true,
    viewport: { width: 1280, height: 800 },
    actionTimeout: 15_000,
    navigationTimeout: 30_000,
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
    launchOptions: {
      // Debian's Chromium from apt; Playwright never downloads a browser here.
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      // No sandbox as root; the rest keeps Chromium from reaching for the
      // (closed) network at start-up, which would otherwise slow every launch.
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    },
  },
  projects: [{ name: 'chromium' }],
});
