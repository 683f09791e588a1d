// The chat page in real browsers: two users (two browser contexts) talking
// through the real server binary — live delivery, presence, images, history,
// a server restart mid-chat, and sending while the server is down.
import type { Locator, Page } from '@playwright/test';
import { test, expect, startServer, gotoHydrated, type CharchaServer } from './server';
import { pngBuffer } from './helpers';
import { type Chatter, openChat, rows, send, withPair } from './chatters';

/** `text` shows exactly once in `page`, as its own (right) or the peer's (left) message. */
async function expectOnce(page: Page, text: string, side: 'own' | 'peer'): Promise<Locator> {
  const row = rows(page, text);
  await expect(row).toHaveCount(1);
  await expect(row).toHaveClass(side === 'own' ? /chat-end/ : /chat-start/);
  if (side === 'own') await expect(row).toHaveAttribute('data-status', 'sent');
  return row;
}

/** Texts of the conversation in display order. */
async function transcript(page: Page): Promise<string[]> {
  return page.getByTestId('message-log').locator('[data-message-id] .chat-bubble p').allInnerTexts();
}

/** Both sides open their conversation with each other. */
async function openBoth(a: Chatter, b: Chatter): Promise<void> {
  await openChat(a, b);
  await openChat(b, a);
}

/** Sends through the REST API (fast setup; live delivery is the same pipeline). */
async function sendViaApi(from: Chatter, to: Chatter, text: string): Promise<void> {
  const res = await from.context.request.post(`/api/messages/send/${to.id}`, { data: { text } });
  expect(res.ok(), `send answered ${res.status()}: ${await res.text()}`).toBe(true);
}

test.describe('chat', () => {
  test('messages arrive live both ways; own messages on the right; ack confirms', async ({ browser, server }) => {
    await withPair(browser, server.url, async (a, b) => {
      await openBoth(a, b);
      // Focus lands in the composer when a conversation opens.
      await expect(a.page.getByLabel('Message', { exact: true })).toBeFocused();

      // Send is disabled until there is something to send.
      await expect(a.page.getByRole('button', { name: 'Send', exact: true })).toBeDisabled();

      await send(a.page, 'hello B');
      await expectOnce(a.page, 'hello B', 'own');
      await expectOnce(b.page, 'hello B', 'peer');

      await send(b.page, 'hi A');
      await expectOnce(b.page, 'hi A', 'own');
      await expectOnce(a.page, 'hi A', 'peer');

      // Shift+Enter is a new line, not a send.
      const box = a.page.getByLabel('Message', { exact: true });
      await box.fill('line 1');
      await box.press('Shift+Enter');
      await box.pressSequentially('line 2');
      await expect(box).toHaveValue('line 1\nline 2');
      await box.press('Enter');
      const all = ['hello B', 'hi A', 'line 1\nline 2'];
      await expect.poll(() => transcript(b.page)).toEqual(all);
      await expect.poll(() => transcript(a.page)).toEqual(all);
      await expect(a.page.getByTestId('message-log').locator('[data-status="sent"]')).toHaveCount(2);

      // The sidebar: contact row with presence, search filters by name.
      const contactB = a.page.getByTestId('contact').filter({ hasText: b.name });
      await expect(contactB).toHaveAttribute('aria-current', 'page');
      await expect(contactB).toContainText('online');
      await a.page.getByLabel('Search users').fill(b.name.toUpperCase());
      await expect(a.page.getByTestId('contact')).toHaveCount(1);
      await a.page.getByLabel('Search users').fill('');
    });
  });

  test('search starts a conversation; the list shows it live, newest first, with previews', async ({ browser, server }) => {
    await withPair(browser, server.url, async (a, b) => {
      // A has nobody yet: an empty list says how to start.
      await gotoHydrated(a.page, '/chat');
      await expect(a.page.getByTestId('chat-page')).toHaveAttribute('data-socket', 'open', { timeout: 15_000 });
      await expect(a.page.getByTestId('no-conversations')).toBeVisible();

      // B is found by the first word of the name and by the email prefix.
      const search = a.page.getByLabel('Search users');
      await search.fill(b.name.split(' ')[1]);
      const found = a.page.getByTestId('search-results').getByTestId('contact');
      await expect(found).toHaveCount(1);
      await expect(found).toContainText(b.name);
      await search.fill('nobody-matches-this');
      await expect(a.page.getByTestId('no-results')).toBeVisible();
      await search.fill(b.name.toLowerCase());
      await found.filter({ hasText: b.name }).click();
      await expect(a.page).toHaveURL(new RegExp(`/chat/${b.id}$`));
      await expect(a.page.getByTestId('peer-name')).toHaveText(b.name);
      await search.fill('');

      // B sits on /chat; A's first message puts A at the top of B's list, live.
      await gotoHydrated(b.page, '/chat');
      await expect(b.page.getByTestId('chat-page')).toHaveAttribute('data-socket', 'open', { timeout: 15_000 });
      await send(a.page, 'first words');
      await expectOnce(a.page, 'first words', 'own');
      const rowA = b.page.getByTestId('conversation-list').getByTestId('contact').filter({ hasText: a.name });
      await expect(rowA).toHaveCount(1);
      await expect(rowA.getByTestId('conversation-preview')).toHaveText('first words');
      await expect(rowA).toContainText('online');
      const rowB = a.page.getByTestId('conversation-list').getByTestId('contact').filter({ hasText: b.name });
      await expect(rowB.getByTestId('conversation-preview')).toHaveText('You: first words');

      // A reload lists the same conversation from history (once the worker
      // stored it: poll the API first), with presence.
      await expect
        .poll(async () => (await (await b.context.request.get('/api/conversations')).json()).conversations.length)
        .toBe(1);
      await b.page.reload();
      await expect(b.page.getByTestId('chat-page')).toHaveAttribute('data-socket', 'open', { timeout: 15_000 });
      await expect(rowA.getByTestId('conversation-preview')).toHaveText('first words');
      await expect(rowA).toContainText('online');
      await a.page.close();
      await expect(rowA).toContainText('offline', { timeout: 10_000 });
    });
  });

  test('presence follows the peer closing and reopening the page', async ({ browser, server }) => {
    await withPair(browser, server.url, async (a, b) => {
      await openBoth(a, b);
      const status = a.page.getByTestId('peer-status');
      await expect(status).toHaveText('Online');

      await b.page.close();
      await expect(status).toHaveText('Offline', { timeout: 10_000 });
      await expect(a.page.getByTestId('contact').filter({ hasText: b.name })).toContainText('offline');

      b.page = await b.context.newPage();
      await openChat(b, a);
      await expect(status).toHaveText('Online', { timeout: 10_000 });
    });
  });

  test('an attached image reaches both sides and loads', async ({ browser, server }) => {
    await withPair(browser, server.url, async (a, b) => {
      await openBoth(a, b);

      // A type the server would refuse is stopped at the picker, with a reason.
      const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>');
      await a.page.getByTestId('attach-input').setInputFiles({ name: 'x.svg', mimeType: 'image/svg+xml', buffer: svg });
      await expect(a.page.getByText('Choose a PNG, JPEG, WebP or GIF image')).toBeVisible();
      await expect(a.page.getByTestId('attachment-preview')).toHaveCount(0);

      await a.page.getByTestId('attach-input').setInputFiles({ name: 'dot.png', mimeType: 'image/png', buffer: pngBuffer(24, 24) });
      await expect(a.page.getByTestId('attachment-preview')).toBeVisible();
      // Removing and re-attaching works.
      await a.page.getByRole('button', { name: 'Remove image' }).click();
      await expect(a.page.getByTestId('attachment-preview')).toHaveCount(0);
      await expect(a.page.getByRole('button', { name: 'Send', exact: true })).toBeDisabled();
      await a.page.getByTestId('attach-input').setInputFiles({ name: 'dot.png', mimeType: 'image/png', buffer: pngBuffer(24, 24) });
      await a.page.getByLabel('Message', { exact: true }).fill('a picture');
      await a.page.getByRole('button', { name: 'Send', exact: true }).click();

      await expectOnce(a.page, 'a picture', 'own');
      await expectOnce(b.page, 'a picture', 'peer');
      for (const page of [a.page, b.page]) {
        const img = rows(page, 'a picture').locator('img');
        await expect(img).toHaveAttribute('src', /^\/api\/media\//);
        await expect(img).toHaveAttribute('alt', /.+/);
        await expect
          .poll(() => img.evaluate((el) => (el as HTMLImageElement).complete && (el as HTMLImageElement).naturalWidth), {
            message: 'the message image loads',
          })
          .toBeGreaterThan(0);
      }
    });
  });

  test('a reload shows the same history, in order, without duplicates', async ({ browser, server }) => {
    await withPair(browser, server.url, async (a, b) => {
      await openBoth(a, b);
      const texts = ['one', 'two', 'three', 'four'];
      for (const [i, text] of texts.entries()) {
        const from = i % 2 === 0 ? a : b;
        await send(from.page, text);
        await expectOnce(from.page, text, 'own');
      }
      for (const text of texts) await expect(rows(a.page, text)).toHaveCount(1);
      expect(await transcript(a.page)).toEqual(texts);

      for (const c of [a, b]) {
        await c.page.reload();
        await expect(c.page.getByTestId('chat-page')).toHaveAttribute('data-socket', 'open', { timeout: 15_000 });
        await expect(c.page.getByTestId('message-log').locator('[data-message-id]')).toHaveCount(texts.length);
        expect(await transcript(c.page)).toEqual(texts);
      }
    });
  });

  test('long history pages in on scroll; "New messages" pill; unread badge; length limit', async ({ browser, server }) => {
    await withPair(browser, server.url, async (a, b) => {
      const texts = Array.from({ length: 70 }, (_, i) => `m${String(i + 1).padStart(2, '0')}`);
      for (const text of texts) await sendViaApi(a, b, text);

      await openChat(b, a);
      const log = b.page.getByTestId('message-log');
      // The newest page (50), scrolled to the bottom.
      await expect(log.locator('[data-message-id]')).toHaveCount(50);
      await expect(rows(b.page, 'm70')).toBeInViewport();
      expect(await transcript(b.page)).toEqual(texts.slice(20));

      // Scrolling to the top loads the older page and keeps m21 in view.
      await log.evaluate((el) => (el.scrollTop = 0));
      await expect(log.locator('[data-message-id]')).toHaveCount(70);
      await expect(rows(b.page, 'm21')).toBeInViewport();
      await expect(log.getByText('Beginning of the conversation')).toBeAttached();
      expect(await transcript(b.page)).toEqual(texts);

      // Scrolled up: a new message does not yank the view; a pill offers it.
      await sendViaApi(a, b, 'fresh');
      await expect(rows(b.page, 'fresh')).toHaveCount(1);
      const pill = b.page.getByRole('button', { name: /New messages/ });
      await expect(pill).toBeVisible();
      await expect(rows(b.page, 'fresh')).not.toBeInViewport();
      await pill.click();
      await expect(rows(b.page, 'fresh')).toBeInViewport();
      await expect(pill).toBeHidden();

      // A message for a conversation that is not open: unread badge.
      // (the navbar's Chat link: a client-side navigation, the page stays mounted)
      await b.page.locator('a[href="/chat"]').filter({ visible: true }).first().click();
      await expect(b.page).toHaveURL(/\/chat\/?$/);
      await expect(b.page.getByText('No chat selected')).toBeVisible();
      await sendViaApi(a, b, 'ping');
      const rowA = b.page.getByTestId('contact').filter({ hasText: a.name });
      await expect(rowA.getByTestId('unread-badge')).toHaveText(/^1/);
      await rowA.click();
      await expect(b.page).toHaveURL(new RegExp(`/chat/${a.id}$`));
      await expect(rowA.getByTestId('unread-badge')).toHaveCount(0);
      await expect(rows(b.page, 'ping')).toBeInViewport();

      // Over the length limit: counter shows, Send is disabled.
      const box = b.page.getByLabel('Message', { exact: true });
      await box.fill('x'.repeat(4001));
      await expect(b.page.getByTestId('char-counter')).toContainText('4001 / 4000');
      await expect(b.page.getByRole('button', { name: 'Send', exact: true })).toBeDisabled();
      await box.fill('ok');
      await expect(b.page.getByTestId('char-counter')).toHaveCount(0);
      await expect(b.page.getByRole('button', { name: 'Send', exact: true })).toBeEnabled();
    });
  });

  test.describe('with a server of its own', () => {
    let srv: CharchaServer;
    test.beforeEach(async () => {
      srv = await startServer();
    });
    test.afterEach(async () => {
      await srv?.dispose();
    });

    test('a server restart mid-chat: reconnects, loses and duplicates nothing', async ({ browser }) => {
      test.setTimeout(120_000);
      await withPair(browser, srv.url, async (a, b) => {
        await openBoth(a, b);
        await send(a.page, 'before restart');
        await expectOnce(b.page, 'before restart', 'peer');
        await send(b.page, 'reply before restart');
        await expectOnce(a.page, 'reply before restart', 'peer');

        // Stop first and check the banner while the server is down: asserting
        // on it during restart() raced a fast restart that hid it again.
        const banner = a.page.getByTestId('reconnecting-banner');
        await srv.stop();
        await expect(banner).toBeVisible({ timeout: 15_000 });
        await expect(banner).toContainText('Reconnecting…');
        await srv.restart();
        await expect(banner).toBeHidden({ timeout: 30_000 });
        await expect(b.page.getByTestId('reconnecting-banner')).toBeHidden({ timeout: 30_000 });
        await expect(a.page.getByTestId('chat-page')).toHaveAttribute('data-socket', 'open');

        await send(a.page, 'after restart');
        await expectOnce(a.page, 'after restart', 'own');
        await expectOnce(b.page, 'after restart', 'peer');
        await send(b.page, 'reply after restart');
        await expectOnce(a.page, 'reply after restart', 'peer');

        const all = ['before restart', 'reply before restart', 'after restart', 'reply after restart'];
        for (const page of [a.page, b.page]) {
          for (const text of all) await expect(rows(page, text)).toHaveCount(1);
          expect(await transcript(page)).toEqual(all);
        }
      });
    });

    test('sending while the server is down: pending, then failed; Retry delivers it once', async ({ browser }) => {
      test.setTimeout(120_000);
      await withPair(browser, srv.url, async (a, b) => {
        await openBoth(a, b);
        await send(a.page, 'while up');
        await expectOnce(b.page, 'while up', 'peer');

        await srv.stop();
        await expect(a.page.getByTestId('reconnecting-banner')).toBeVisible({ timeout: 15_000 });

        await send(a.page, 'while down');
        const row = rows(a.page, 'while down');
        await expect(row).toHaveCount(1);
        await expect(row).toHaveAttribute('data-status', 'pending');
        await expect(row).toHaveClass(/chat-end/);
        await expect(row).toHaveAttribute('data-status', 'failed', { timeout: 15_000 });
        await expect(row).toContainText('failed —');
        const retry = row.getByRole('button', { name: 'Retry' });
        await expect(retry).toBeVisible();

        await srv.restart();
        await expect(a.page.getByTestId('reconnecting-banner')).toBeHidden({ timeout: 30_000 });
        // Failed messages wait for the user: nothing was resent on reconnect.
        await expect(row).toHaveAttribute('data-status', 'failed');
        await expect(rows(b.page, 'while down')).toHaveCount(0);

        await retry.click();
        await expect(rows(a.page, 'while down')).toHaveAttribute('data-status', 'sent');
        await expectOnce(a.page, 'while down', 'own');
        await expectOnce(b.page, 'while down', 'peer');
        for (const page of [a.page, b.page]) {
          expect(await transcript(page)).toEqual(['while up', 'while down']);
        }
      });
    });
  });
});
