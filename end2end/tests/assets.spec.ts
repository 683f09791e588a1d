// The client's files: precompressed (brotli/gzip by Accept-Encoding), cached
// by name (hashed files immutable, pages no-cache), and small enough that the
// chat page hydrates within 3 s on a throttled Fast-3G-like link.
//
// The throttled test measures the release client only: it skips on a debug
// build. Run it against a release build with
//   ./dev test-release            (cargo leptos build --release, then this spec)
import http from 'node:http';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { test, expect, waitForHydration } from './server';
import { newUser, signupViaApi } from './helpers';

const IMMUTABLE = 'public, max-age=31536000, immutable';
/** cargo-leptos' content hash in a file name: name.<22 base64url chars>.ext */
const HASHED = /\/pkg\/[^/]+\.[A-Za-z0-9_-]{22}\.(wasm|js|css)$/;
/** Above this the served wasm is a debug build (release: ~1 MB, debug: tens of MB). */
const RELEASE_WASM_MAX_BYTES = 4 * 1024 * 1024;

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** GET with exactly these headers; the body as sent (never decompressed). */
function rawGet(url: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/** The /pkg/ files a page names: the wasm, its JS glue and the stylesheet. */
function pageAssets(html: string) {
  const hrefs = [...html.matchAll(/<link\b[^>]*\bhref="(\/pkg\/[^"]+)"/g)].map((m) => m[1]);
  const pick = (ext: string) => {
    const href = hrefs.find((h) => h.endsWith(ext));
    expect(href, `the page names a ${ext} file (links: ${hrefs.join(', ')})`).toBeTruthy();
    return href as string;
  };
  return { wasm: pick('.wasm'), js: pick('.js'), css: pick('.css') };
}

test('site files are served precompressed with cache headers by name, pages with no-cache', async ({ server }) => {
  test.setTimeout(120_000);
  const page = await rawGet(`${server.url}/login`, { 'accept-encoding': 'br' });
  expect(page.status).toBe(200);
  expect(page.headers['cache-control']).toBe('no-cache');
  const assets = pageAssets(page.body.toString());

  for (const href of [assets.wasm, assets.js, assets.css]) {
    expect(href, `${href} carries the build's content hash`).toMatch(HASHED);
    const plain = await rawGet(`${server.url}${href}`);
    expect(plain.status).toBe(200);
    expect(plain.headers['content-encoding'], `${href} without Accept-Encoding`).toBeUndefined();
    expect(plain.headers['cache-control']).toBe(IMMUTABLE);
    expect(plain.headers['vary']).toMatch(/accept-encoding/i);

    // The server writes the .br/.gz siblings in the background when it
    // starts (seconds for a debug build's wasm); until then it sends the file
    // itself, so poll.
    let br: RawResponse | undefined;
    await expect
      .poll(
        async () => {
          br = await rawGet(`${server.url}${href}`, { 'accept-encoding': 'gzip, deflate, br' });
          return br.headers['content-encoding'];
        },
        { message: `${href} served with Content-Encoding: br`, timeout: 90_000, intervals: [250, 500, 1000] },
      )
      .toBe('br');
    expect(br!.headers['cache-control']).toBe(IMMUTABLE);
    expect(br!.headers['vary']).toMatch(/accept-encoding/i);
    expect(Number(br!.headers['content-length'])).toBe(br!.body.length);
    expect(brotliDecompressSync(br!.body).equals(plain.body), `${href}: the .br sibling is the file`).toBe(true);
    expect(br!.body.length).toBeLessThan(plain.body.length);

    const gz = await rawGet(`${server.url}${href}`, { 'accept-encoding': 'gzip' });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gz.body).equals(plain.body), `${href}: the .gz sibling is the file`).toBe(true);
  }

  const favicon = await rawGet(`${server.url}/favicon.svg`, { 'accept-encoding': 'br' });
  expect(favicon.status).toBe(200);
  expect(favicon.headers['cache-control']).toBe('public, max-age=86400');
  expect(favicon.headers['vary']).toMatch(/accept-encoding/i);

  const missing = await rawGet(`${server.url}/pkg/nothing-here.wasm`, { 'accept-encoding': 'br' });
  expect(missing.status).toBe(404);
  expect(missing.headers['cache-control']).not.toBe(IMMUTABLE);
});

test('a browser asking for br gets the wasm brotli-compressed and immutable', async ({ page, server }) => {
  test.setTimeout(120_000);
  // Wait until the siblings exist (see the test above), so this checks what
  // every later visitor gets.
  const html = (await rawGet(`${server.url}/login`)).body.toString();
  const { wasm } = pageAssets(html);
  await expect
    .poll(async () => (await rawGet(`${server.url}${wasm}`, { 'accept-encoding': 'br' })).headers['content-encoding'], {
      timeout: 90_000,
    })
    .toBe('br');

  const wasmResponse = page.waitForResponse((r) => r.url().endsWith('.wasm'));
  const navigation = await page.goto('/login');
  expect(navigation?.headers()['cache-control']).toBe('no-cache');
  const response = await wasmResponse;
  const asked = (await response.request().allHeaders())['accept-encoding'] ?? '';
  expect(asked, 'Chromium asks for brotli').toMatch(/\bbr\b/);
  const headers = await response.allHeaders();
  expect(headers['content-encoding']).toBe('br');
  expect(headers['cache-control']).toBe(IMMUTABLE);
  expect(headers['vary']).toMatch(/accept-encoding/i);
  await waitForHydration(page);
});

test('the chat page hydrates within 3 s on a throttled Fast-3G-like link (release build)', async ({ page, server }) => {
  test.setTimeout(120_000);
  const html = (await rawGet(`${server.url}/login`)).body.toString();
  const { wasm } = pageAssets(html);
  const plain = await rawGet(`${server.url}${wasm}`);
  test.skip(
    plain.body.length > RELEASE_WASM_MAX_BYTES,
    `the served wasm is ${(plain.body.length / 1048576).toFixed(1)} MB, a debug build: this timing only means ` +
      'something for the release client. Run ./dev test-release (cargo leptos build --release, then this spec).',
  );
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
