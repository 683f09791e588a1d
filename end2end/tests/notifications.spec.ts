// Browser notifications: turned on in Settings (the browser's permission is
// asked), raised for a message in a conversation not on screen, never for the
// conversation the user is looking at, and not after turning them off. The
// Notification API is replaced by a recording stub: headless Chromium shows
// no real notifications.
import type { Page } from '@playwright/test';
import { test, expect } from './server';
import { openChat, openPage, rows, send, withPair } from './chatters';

const NOTIFICATION_STUB = `(() => {
  window.__notifications = [];
  // The browser remembers a permission across page loads; so does this.
  class RecordingNotification {
    static get permission() {
      return localStorage.getItem('__notification_permission') || 'default';
    }
    static requestPermission() {
      localStorage.setItem('__notification_permission', 'granted');
      return Promise.resolve('granted');
    }
    constructor(title, options) {
      window.__notifications.push({ title, body: options && options.body, tag: options && options.tag });
    }
    set onclick(_handler) {}
  }
  window.Notification = RecordingNotification;
})();`;

async function notifications(page: Page): Promise<{ title: string; body: string; tag: string }[]> {
  return page.evaluate(() => (window as unknown as { __notifications: { title: string; body: string; tag: string }[] }).__notifications);
}

test.describe('notifications', () => {
  test('a message out of sight raises one; the open conversation and "off" do not', async ({ browser, server }) => {
    await withPair(
      browser,
      server.url,
      async (a, b) => {
        await b.page.goto('/settings');
        const status = b.page.getByTestId('notifications-status');
        await expect(status).toHaveText('Off');
        await b.page.getByRole('button', { name: 'Enable browser notifications' }).click();
        await expect(status).toHaveText('On');

        // Bob has no conversation open.
        await openPage(b.page, '/chat');
        await openChat(a, b);
        await send(a.page, 'ping from alice');
        await expect.poll(async () => (await notifications(b.page)).length).toBe(1);
        const [first] = await notifications(b.page);
        expect(first.title).toBe(a.name);
        expect(first.body).toBe('ping from alice');

        // Looking at the conversation: no notification.
        await openChat(b, a);
        await send(a.page, 'are you there?');
        await expect(rows(b.page, 'are you there?')).toHaveCount(1);
        expect(await notifications(b.page)).toEqual([]);

        // Turned off: none either.
        await b.page.goto('/settings');
        await b.page.getByRole('button', { name: 'Turn off notifications' }).click();
        await expect(status).toHaveText('Off');
        await openPage(b.page, '/chat');
        await send(a.page, 'still there?');
        await expect(b.page.getByTestId('unread-badge')).toBeVisible();
        expect(await notifications(b.page)).toEqual([]);
      },
      [NOTIFICATION_STUB],
    );
  });
});
