// Benchmark (issue 8): the chat page, release build, hydrated within 3 s on a
// throttled Fast-3G-like link with a cold cache. Not part of ./dev test (a
// debug build's client is tens of MB, and timings are benchmarks here, never
// tests); ./dev test-release builds the release site and runs this with
// end2end/bench.config.ts. It prints the time and fails above the target.
import { test, expect, waitForHydration } from '../tests/server';
import { newUser, signupViaApi } from '../tests/helpers';
import { RELEASE_WASM_MAX_BYTES, pageAssets, rawGet } from '../tests/asset_http';

test('the chat page hydrates within 3 s on a throttled Fast-3G-like link (release build)', async ({ page, server }) => {
  test.setTimeout(120_000);
  const html = (await rawGet(`${server.url}/login`)).body.toString();
  const { wasm } = pageAssets(html);
  const plain = await rawGet(`${server.url}${wasm}`);
  expect(
    plain.body.length,
    `the served wasm is ${(plain.body.length / 1048576).toFixed(1)} MB, a debug build: this timing only means ` +
      'something for the release client. Run ./dev test-release (cargo leptos build --release, then this).',
  ).toBeLessThanOrEqual(RELEASE_WASM_MAX_BYTES);
  // Siblings written (as in production, where the image ships them).
  await expect
    .poll(async () => (await rawGet(`${server.url}${wasm}`, { 'accept-encoding': 'br' })).headers['content-encoding'], {
      timeout: 60_000,
    })
    .toBe('br');

  const user = newUser('Throttled Tester');
  await signupViaApi(page.request, user);

  // ~Fast 3G: 1.6 Mbps down, 750 Kbps up, 150 ms round trip; cold cache.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 150,
    downloadThroughput: (1.6 * 1000 * 1000) / 8,
    uploadThroughput: (750 * 1000) / 8,
  });

  const started = Date.now();
  await page.goto('/chat');
  await waitForHydration(page, 30_000);
  const elapsed = Date.now() - started;
  console.log(`chat page hydrated ${elapsed} ms after navigation (throttled, cold cache)`);
  expect(elapsed, 'hydrated within 3 s').toBeLessThanOrEqual(3000);
  await expect(page).toHaveURL(/\/chat/);
});
