// Two people chatting in browsers of their own: what the chat specs share
// (a fresh user per browser context, opening a conversation, sending, finding
// message rows, and a check that no client bug reached the console).
import type { Browser, BrowserContext, Locator, Page } from '@playwright/test';
import { expect, gotoHydrated, hydrationProbe } from './server';
import { PASSWORD } from './helpers';

export interface Chatter {
  id: string;
  name: string;
  context: BrowserContext;
  page: Page;
  /** Console errors that mean a bug in the client (wasm panics, hydration errors). */
  bugs: string[];
}

// Network errors while a server is down are expected; these never are.
const CLIENT_BUG = /panicked|RuntimeError|unreachable|hydrat/i;

/**
 * Signs a fresh user up through the REST API; the cookie lands in its own
 * context. `initScripts` run in every page of that context before the app.
 */
export async function chatter(browser: Browser, baseURL: string, first: string, initScripts: string[] = []): Promise<Chatter> {
  const context = await browser.newContext({ baseURL });
  await context.addInitScript(hydrationProbe);
  for (const script of initScripts) await context.addInitScript(script);
  const tag = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const name = `${first} ${tag}`;
  const res = await context.request.post('/api/auth/signup', {
    data: { email: `${first.toLowerCase()}-${tag}@example.com`, password: PASSWORD, full_name: name },
  });
  expect(res.ok(), `signup answered ${res.status()}: ${await res.text()}`).toBe(true);
  const id: string = (await res.json()).user._id;
  expect(id).toBeTruthy();
  const bugs: string[] = [];
  context.on('console', (msg) => {
    if (msg.type() === 'error' && CLIENT_BUG.test(msg.text())) bugs.push(msg.text());
  });
  context.on('weberror', (err) => bugs.push(String(err.error())));
  return { id, name, context, page: await context.newPage(), bugs };
}

/**
 * Runs `body` with fresh users named `firsts` in browser contexts of their
 * own, the i-th on `baseURLs[i]` (one URL: all on it); afterwards closes
 * them all and checks that no browser logged a client bug.
 */
export async function withChatters(
  browser: Browser,
  baseURLs: string | string[],
  firsts: string[],
  body: (chatters: Chatter[]) => Promise<void>,
  initScripts: string[] = [],
): Promise<void> {
  const urls = typeof baseURLs === 'string' ? firsts.map(() => baseURLs) : baseURLs;
  const all: Chatter[] = [];
  try {
    for (const [i, first] of firsts.entries()) all.push(await chatter(browser, urls[i], first, initScripts));
    await body(all);
  } finally {
    for (const c of all) await c.context.close();
    for (const c of all) expect(c.bugs, `client errors in ${c.name}'s browser`).toEqual([]);
  }
}

/** {@link withChatters} with Alice and Bob on one server. */
export async function withPair(
  browser: Browser,
  baseURL: string,
  body: (a: Chatter, b: Chatter) => Promise<void>,
  initScripts: string[] = [],
): Promise<void> {
  await withChatters(browser, baseURL, ['Alice', 'Bob'], ([a, b]) => body(a, b), initScripts);
}

/** Waits until the chat page's socket is greeted. */
export async function socketOpen(page: Page): Promise<void> {
  await expect(page.getByTestId('chat-page')).toHaveAttribute('data-socket', 'open', { timeout: 15_000 });
}

/** Opens `path` (/chat or /chat/<id>) in `page` and waits for the socket. */
export async function openPage(page: Page, path: string): Promise<void> {
  await gotoHydrated(page, path);
  await socketOpen(page);
}

/** Opens the conversation with `peer` (in `page`, `me`'s first tab by default). */
export async function openChat(me: Chatter, peer: Chatter, page: Page = me.page): Promise<void> {
  await openPage(page, `/chat/${peer.id}`);
  await expect(page.getByTestId('peer-name')).toHaveText(peer.name);
}

/** Opens the group `id` named `name` (in `me`'s first tab by default). */
export async function openGroup(me: Chatter, id: string, name: string, page: Page = me.page): Promise<void> {
  await openPage(page, `/chat/${id}`);
  await expect(page.getByTestId('peer-name')).toHaveText(name);
}

export function composer(page: Page): Locator {
  return page.getByLabel('Message', { exact: true });
}

export async function send(page: Page, text: string): Promise<void> {
  const box = composer(page);
  await box.fill(text);
  await box.press('Enter');
  await expect(box).toHaveValue('');
}

/** Message rows in the open conversation whose text is exactly `text`. */
export function rows(page: Page, text: string): Locator {
  return page
    .getByTestId('message-log')
    .locator('[data-message-id]')
    .filter({ has: page.locator('.chat-bubble p', { hasText: new RegExp(`^${escapeRegExp(text)}$`) }) });
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
