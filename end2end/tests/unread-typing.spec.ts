// Read receipts and typing in real browsers: unread badges and the tab title,
// "Seen" under one's own last message (live and after a reload), a second tab
// of the reader clearing its badge, a hidden tab counting messages in the open
// conversation, and "… is typing…" that goes away by itself.
import type { Locator, Page } from '@playwright/test';
import { test, expect } from './server';
import { type Chatter, composer, openChat, openPage, rows, send, socketOpen, withPair } from './chatters';

/**
 * Lets a test hide and show a tab: `document.hidden` and
 * `document.visibilityState` answer from `window.__testHidden` (on the
 * prototype, where the wasm bindings read them), and `visibilitychange` is
 * dispatched by `setHidden`. Headless pages are otherwise always visible.
 */
const VISIBILITY_SWITCH = `(() => {
  window.__testHidden = false;
  Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get() { return !!window.__testHidden; } });
  Object.defineProperty(Document.prototype, 'visibilityState', {
    configurable: true,
    get() { return window.__testHidden ? 'hidden' : 'visible'; },
  });
})();`;

async function setHidden(page: Page, hidden: boolean): Promise<void> {
  await page.evaluate((h) => {
    (window as unknown as { __testHidden: boolean }).__testHidden = h;
    document.dispatchEvent(new Event('visibilitychange', { bubbles: true }));
  }, hidden);
}

/** The message row in `page` whose text is exactly `text`. */
const row = rows;

/** `page`'s sidebar row for `peer`. */
function contactRow(page: Page, peer: Chatter): Locator {
  return page.getByTestId('conversation-list').getByTestId('contact').filter({ hasText: peer.name });
}

test.describe('unread, seen and typing', () => {
  test('unread badges and title count messages; reading clears them everywhere; the sender sees "Seen"', async ({
    browser,
    server,
  }) => {
    await withPair(browser, server.url, async (a, b) => {
      // B sits on /chat with nothing open, in two tabs.
      await openPage(b.page, '/chat');
      const second = await b.context.newPage();
      await openPage(second, '/chat');
      await expect(b.page).toHaveTitle(/^Chat\b/);

      await openChat(a, b);
      await send(a.page, 'first unread');
      await send(a.page, 'second unread');
      await expect(row(a.page, 'second unread')).toHaveAttribute('data-status', 'sent');
      await expect(a.page.getByTestId('seen-marker')).toHaveCount(0);

      for (const page of [b.page, second]) {
        const badge = contactRow(page, a).getByTestId('unread-badge');
        await expect(badge).toHaveText('2');
        await expect(badge).toHaveAttribute('aria-label', '2 unread messages');
        await expect(page).toHaveTitle(/^\(2\) /);
      }
      // The count is the server's too: a fresh page (as after a reconnect,
      // which reloads the list) starts from it.
      await second.reload();
      await socketOpen(second);
      await expect(contactRow(second, a).getByTestId('unread-badge')).toHaveText('2');
      await expect(second).toHaveTitle(/^\(2\) /);

      // B reads in the first tab: its badge and the count in the title go…
      await contactRow(b.page, a).click();
      await expect(b.page).toHaveURL(new RegExp(`/chat/${a.id}$`));
      await expect(row(b.page, 'second unread')).toBeVisible();
      await expect(contactRow(b.page, a).getByTestId('unread-badge')).toHaveCount(0);
      await expect(b.page).toHaveTitle(/^Chat\b/);
      // …in the other tab too, which hears the marker from the server…
      await expect(contactRow(second, a).getByTestId('unread-badge')).toHaveCount(0);
      await expect(second).toHaveTitle(/^Chat\b/);

      // …and A sees "Seen" under its last message, and only there.
      const seen = a.page.getByTestId('seen-marker');
      await expect(seen).toHaveCount(1);
      await expect(row(a.page, 'second unread').getByTestId('seen-marker')).toHaveText('Seen');

      // The marker is stored: after a reload A still sees it, from history,
      // and B's list (reloaded) has nothing unread.
      await a.page.reload();
      await socketOpen(a.page);
      await expect(row(a.page, 'second unread').getByTestId('seen-marker')).toHaveText('Seen');
      await second.reload();
      await socketOpen(second);
      await expect(contactRow(second, a)).toHaveCount(1);
      await expect(contactRow(second, a).getByTestId('unread-badge')).toHaveCount(0);

      // A new message moves "Seen" off the old one until B reads again
      // (B still has the conversation open, so at once).
      await send(a.page, 'third');
      await expect(row(b.page, 'third')).toBeVisible();
      await expect(row(a.page, 'third').getByTestId('seen-marker')).toHaveText('Seen');
      await expect(seen).toHaveCount(1);
      await expect(contactRow(b.page, a).getByTestId('unread-badge')).toHaveCount(0);
    }, [VISIBILITY_SWITCH]);
  });

  test('a hidden tab counts messages in the open conversation and reads them when shown', async ({ browser, server }) => {
    await withPair(browser, server.url, async (a, b) => {
      await openChat(a, b);
      await openChat(b, a);
      await send(a.page, 'while you look');
      await expect(row(a.page, 'while you look').getByTestId('seen-marker')).toHaveText('Seen');

      await setHidden(b.page, true);
      await send(a.page, 'while hidden');
      await expect(row(b.page, 'while hidden')).toHaveCount(1);
      await expect(contactRow(b.page, a).getByTestId('unread-badge')).toHaveText('1');
      await expect(b.page).toHaveTitle(/^\(1\) /);
      // Not read while B does not look.
      await expect(row(a.page, 'while hidden').getByTestId('seen-marker')).toHaveCount(0);

      await setHidden(b.page, false);
      await expect(contactRow(b.page, a).getByTestId('unread-badge')).toHaveCount(0);
      await expect(b.page).toHaveTitle(/^Chat\b/);
      await expect(row(a.page, 'while hidden').getByTestId('seen-marker')).toHaveText('Seen');
    }, [VISIBILITY_SWITCH]);
  });

  test('typing shows to the peer and goes away by itself, or with the message', async ({ browser, server }) => {
    await withPair(browser, server.url, async (a, b) => {
      await openChat(a, b);
      await openChat(b, a);
      const indicator = b.page.getByTestId('typing-indicator');
      await expect(indicator).toHaveAttribute('aria-live', 'polite');
      await expect(indicator).toBeHidden();

      const firstName = a.name.split(' ')[0];
      await composer(a.page).pressSequentially('hel');
      await expect(indicator).toHaveText(`${firstName} is typing…`);
      await expect(indicator).toBeVisible();
      // The typist does not see their own indicator.
      await expect(a.page.getByTestId('typing-indicator')).toBeHidden();
      // A stops typing: shown for 6 s after the last frame, then gone.
      await expect(indicator).toBeHidden({ timeout: 9_000 });

      // A message from the typist ends it at once.
      await composer(a.page).pressSequentially('lo there');
      await expect(indicator).toHaveText(`${firstName} is typing…`);
      await composer(a.page).press('Enter');
      await expect(row(b.page, 'hello there')).toBeVisible();
      await expect(indicator).toBeHidden({ timeout: 2_000 });
    }, [VISIBILITY_SWITCH]);
  });
});
