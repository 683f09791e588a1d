// Raw HTTP for the asset checks: bodies exactly as sent (never decompressed)
// and the /pkg/ files a page names. Shared by tests/assets.spec.ts and the
// hydration benchmark (bench/hydration.spec.ts).
import http from 'node:http';
import { expect } from '@playwright/test';

/** Above this the served wasm is a debug build (release: ~1 MB, debug: tens of MB). */
export const RELEASE_WASM_MAX_BYTES = 4 * 1024 * 1024;

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** GET with exactly these headers; the body as sent (never decompressed). */
export function rawGet(url: string, headers: Record<string, string> = {}): Promise<RawResponse> {
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
export function pageAssets(html: string) {
  const hrefs = [...html.matchAll(/<link\b[^>]*\bhref="(\/pkg\/[^"]+)"/g)].map((m) => m[1]);
  const pick = (ext: string) => {
    const href = hrefs.find((h) => h.endsWith(ext));
    expect(href, `the page names a ${ext} file (links: ${hrefs.join(', ')})`).toBeTruthy();
    return href as string;
  };
  return { wasm: pick('.wasm'), js: pick('.js'), css: pick('.css') };
}
