// Per-user limits as a user meets them in the browser: a tab over the
// WebSocket cap (CHARCHA_WS_PER_USER) says so and stops reconnecting while
// the user's other tabs keep working; `watch` frames are paced, and one the
// server rate limits (CHARCHA_WATCH_RATE_PER_MINUTE) is retried quietly; a
// throttled log-in (429 + Retry-After) says how long to wait.
// Each test starts a server of its own with a small limit.
import type { APIRequestContext, Browser, BrowserContext, Page } from '@playwright/test';
import { test, expect, startServer, gotoHydrated, hydrationProbe, type CharchaServer } from './server';
import { button, field, newUser, signupViaApi, type TestUser } from './helpers';

// Never expected, whatever the limits: a bug in the client.
const CLIENT_BUG = /panicked|RuntimeError|unreachable|hydrat/i;

interface Account {
  user: TestUser;
  id: string;
  context: BrowserContext;
  bugs: string[];
}

/** A new user signed up in a browser context of its own. */
async function account(browser: Browser, baseURL: string, fullName: string): Promise<Account> {
  const context = await browser.newContext({ baseURL });
  await context.addInitScript(hydrationProbe);
  const user = newUser(fullName);
  await signupViaApi(context.request, user);
  const id = await userId(context.request);
  const bugs: string[] = [];
  context.on('console', (msg) => {
    if (msg.type() === 'error' && CLIENT_BUG.test(msg.text())) bugs.push(msg.text());
  });
  context.on('weberror', (err) => bugs.push(String(err.error())));
  return { user, id, context, bugs };
}

async function userId(request: APIRequestContext): Promise<string> {
  const res = await request.get('/api/auth/get-user');
  expect(res.ok(), `GET /api/auth/get-user answered ${res.status()}`).toBe(true);
  const id: string = (await res.json()).user._id;
  expect(id).toBeTruthy();
  return id;
}

function chatPage(page: Page) {
  return page.getByTestId('chat-page');
}

/** Error toasts (the app's toasts are DaisyUI alerts in a `.toast` host). */
function errorToasts(page: Page) {
  return page.locator('.toast .alert-error');
}

test.describe('connection cap', () => {
  let srv: CharchaServer;
  test.beforeEach(async () => {
    srv = await startServer({ env: { CHARCHA_WS_PER_USER: '2' } });
  });
  test.afterEach(async () => {
    await srv?.dispose();
  });

  test('a tab over the cap says so and stops reconnecting; the other tabs keep working; Retry reconnects', async ({
    browser,
  }) => {
    test.setTimeout(120_000);
    const me = await account(browser, srv.url, 'Tabby Many');
    const peer = await account(browser, srv.url, 'Pat Peer');
    try {
      const open = async (): Promise<Page> => {
        const page = await me.context.newPage();
        await gotoHydrated(page, `/chat/${peer.id}`);
        return page;
      };
      const tab1 = await open();
      await expect(chatPage(tab1)).toHaveAttribute('data-socket', 'open', { timeout: 15_000 });
      const tab2 = await open();
      await expect(chatPage(tab2)).toHaveAttribute('data-socket', 'open', { timeout: 15_000 });

      // The third tab: count its connection attempts from the start.
      const tab3 = await me.context.newPage();
      let attempts = 0;
      tab3.on('websocket', (ws) => {
        if (new URL(ws.url()).pathname === '/ws') attempts++;
      });
      await gotoHydrated(tab3, `/chat/${peer.id}`);
      const banner = tab3.getByTestId('too-many-tabs-banner');
      await expect(banner).toBeVisible({ timeout: 15_000 });
      await expect(banner).toContainText('too many tabs or windows');
      await expect(banner).toHaveAttribute('role', 'alert');
      await expect(chatPage(tab3)).toHaveAttribute('data-socket', 'refused');
      await expect(tab3.getByTestId('reconnecting-banner')).toBeHidden();
      expect(attempts).toBe(1);
      // A reconnect loop (backoff from 0.5 s, doubling) would have tried
      // several times by now; the refused tab waits for the user instead.
      await tab3.waitForTimeout(6_000);
      expect(attempts, 'no reconnect after the refusal').toBe(1);
      await expect(banner).toBeVisible();
      await expect(chatPage(tab3)).toHaveAttribute('data-socket', 'refused');
      await expect(errorToasts(tab3), 'the banner says it; no error toast').toHaveCount(0);

      // The first two tabs were not knocked off and still work live.
      for (const tab of [tab1, tab2]) await expect(chatPage(tab)).toHaveAttribute('data-socket', 'open');
      const box = tab1.getByLabel('Message', { exact: true });
      await box.fill('still connected');
      await box.press('Enter');
      await expect(tab2.getByTestId('message-log').getByText('still connected', { exact: true })).toHaveCount(1);
      await expect(tab1.getByTestId('message-log').getByText('still connected', { exact: true })).toHaveCount(1);

      // Closing a tab frees a slot: Retry in the refused tab connects (the
      // server may take a moment to see the closed tab go).
      await tab1.close();
      await expect(async () => {
        if (await banner.isVisible()) await tab3.getByRole('button', { name: 'Retry', exact: true }).click();
        await expect(chatPage(tab3)).toHaveAttribute('data-socket', 'open', { timeout: 2_000 });
      }).toPass({ timeout: 20_000 });
      await expect(banner).toBeHidden();
      // Live again: the message history and new messages show.
      await expect(tab3.getByTestId('message-log').getByText('still connected', { exact: true })).toHaveCount(1);
      const box2 = tab2.getByLabel('Message', { exact: true });
      await box2.fill('after the retry');
      await box2.press('Enter');
      await expect(tab3.getByTestId('message-log').getByText('after the retry', { exact: true })).toHaveCount(1);

      expect(me.bugs).toEqual([]);
    } finally {
      await me.context.close();
      await peer.context.close();
    }
  });
});

test.describe('watch rate', () => {
  let srv: CharchaServer;
  test.beforeEach(async () => {
    srv = await startServer({ env: { CHARCHA_WATCH_RATE_PER_MINUTE: '3' } });
  });
  test.afterEach(async () => {
    await srv?.dispose();
  });

  test('watch frames are paced; a rate-limited one is retried later, quietly, with the latest set', async ({
    browser,
  }) => {
    test.setTimeout(150_000);
    const me = await account(browser, srv.url, 'Wanda Watcher');
    // People to find: each search shows a different set, so each changes
    // what the page watches.
    const tag = Math.random().toString(36).slice(2, 7);
    const names = ['Aaa', 'Bbb', 'Ccc'].map((n) => `${n}${tag} Person`);
    const people: Account[] = [];
    for (const name of names) people.push(await account(browser, srv.url, name));
    try {
      // Watch frames as the page sends them, timed in the page (Playwright's
      // `framesent` events arrive with varying delays).
      await me.context.addInitScript(() => {
        const w = window as unknown as { __watches: { at: number; ids: string[] }[] };
        w.__watches = [];
        const send = WebSocket.prototype.send;
        WebSocket.prototype.send = function (data) {
          if (typeof data === 'string' && data.includes('"type":"watch"')) {
            w.__watches.push({ at: Date.now(), ids: JSON.parse(data).user_ids });
          }
          return send.call(this, data);
        };
      });
      const page = await me.context.newPage();
      const sentWatches = () =>
        page.evaluate(() => (window as unknown as { __watches: { at: number; ids: string[] }[] }).__watches);
      const limited: { at: number; retryAfter: number }[] = [];
      page.on('websocket', (ws) => {
        ws.on('framereceived', ({ payload }) => {
          const frame = JSON.parse(String(payload));
          if (frame.type === 'error' && frame.code === 'rate_limited' && !frame.client_msg_id) {
            limited.push({ at: Date.now(), retryAfter: frame.retry_after });
          }
        });
      });
      await gotoHydrated(page, '/chat');
      await expect(chatPage(page)).toHaveAttribute('data-socket', 'open', { timeout: 15_000 });

      const search = page.getByPlaceholder('Search users by name or email');
      const queries = [`Aaa${tag}`, `Bbb${tag}`, `Ccc${tag}`, tag, `Aaa${tag}`, `Ccc${tag}`];
      for (const q of queries) {
        await search.fill(q);
        await page.waitForTimeout(300);
      }
      // The last search shows only "Ccc…": that is the set to watch.
      await expect(page.getByText(names[2]).first()).toBeVisible();
      const finalSet = [people[2].id];

      // The server allows 3 a minute: some were refused.
      await expect.poll(() => limited.length, { timeout: 15_000 }).toBeGreaterThan(0);
      const firstLimit = limited[0];
      expect(firstLimit.retryAfter).toBeGreaterThanOrEqual(1);
      // Paced: never two watch frames within 500 ms (a little slack for clocks).
      let watches = await sentWatches();
      expect(watches.length).toBeGreaterThanOrEqual(4);
      for (let i = 1; i < watches.length; i++) {
        expect(watches[i].at - watches[i - 1].at, `gap before watch #${i}`).toBeGreaterThanOrEqual(480);
      }
      // Quiet: no error toast for a watch.
      await expect(errorToasts(page)).toHaveCount(0);

      // Nothing more is sent until the server's wait is over; then the
      // latest set goes out once more.
      const beforeRetry = watches.length;
      await expect
        .poll(async () => (watches = await sentWatches()).length, {
          timeout: (firstLimit.retryAfter + 10) * 1000,
          intervals: [500],
        })
        .toBeGreaterThan(beforeRetry);
      const retried = watches[beforeRetry];
      expect(retried.at - firstLimit.at).toBeGreaterThanOrEqual(firstLimit.retryAfter * 1000 - 1000);
      expect(watches[watches.length - 1].ids).toEqual(finalSet);
      await expect(errorToasts(page)).toHaveCount(0);
      expect(me.bugs).toEqual([]);
    } finally {
      await me.context.close();
      for (const p of people) await p.context.close();
    }
  });
});

test.describe('log-in throttling', () => {
  let srv: CharchaServer;
  test.beforeEach(async () => {
    srv = await startServer({ env: { CHARCHA_AUTH_RATE_PER_MINUTE: '2' } });
  });
  test.afterEach(async () => {
    await srv?.dispose();
  });

  test('too many log-in attempts: the form says how long to wait', async ({ browser }) => {
    const context = await browser.newContext({ baseURL: srv.url });
    await context.addInitScript(hydrationProbe);
    try {
      const page = await context.newPage();
      await gotoHydrated(page, '/login');
      const alert = page.getByRole('alert').filter({ hasText: /./ });
      for (let i = 0; i < 3; i++) {
        await field(page, 'Email').fill(`nobody-${i}@example.com`);
        await field(page, 'Password').fill('wrong password 1');
        await button(page, 'Log in').click();
        await expect(alert.first()).toBeVisible();
      }
      await expect(page.getByRole('alert').filter({ hasText: /try again in \d+ seconds?/ })).toBeVisible();
    } finally {
      await context.close();
    }
  });
});
