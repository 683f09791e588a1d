// The client's files: precompressed (brotli/gzip by Accept-Encoding) and
// cached by name (hashed files immutable, pages no-cache), on whatever build
// the suite runs against. How fast the release client hydrates on a slow
// link is a benchmark, not a test: end2end/bench/hydration.spec.ts, run by
// ./dev test-release.
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { test, expect, waitForHydration } from './server';
import { pageAssets, rawGet } from './asset_http';

const IMMUTABLE = 'public, max-age=31536000, immutable';
/** cargo-leptos' content hash in a file name: name.<22 base64url chars>.ext */
const HASHED = /\/pkg\/[^/]+\.[A-Za-z0-9_-]{22}\.(wasm|js|css)$/;

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
