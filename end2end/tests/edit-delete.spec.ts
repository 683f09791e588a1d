// Editing and deleting one's own messages in real browsers: the other side
// sees the new text with "(edited)", or a tombstone, live and after a reload;
// only one's own messages offer the actions.
import type { Page } from '@playwright/test';
import { test, expect } from './server';
import { openChat, rows, send, withPair } from './chatters';

/** The row of message `id` in `page`. */
function byId(page: Page, id: string) {
  return page.getByTestId('message-log').locator(`[data-message-id="${id}"]`);
}

test.describe('edit and delete', () => {
  test('an edit and a delete reach the other side live and stay after a reload', async ({ browser, server }) => {
    await withPair(browser, server.url, async (a, b) => {
      await openChat(a, b);
      await openChat(b, a);
      await send(a.page, 'helo there');
      const own = rows(a.page, 'helo there');
      await expect(own).toHaveAttribute('data-status', 'sent');
      const id = (await own.getAttribute('data-message-id')) ?? '';
      expect(id).not.toBe('');
      await expect(rows(b.page, 'helo there')).toHaveCount(1);
      // The peer's message offers no actions.
      await expect(byId(b.page, id).getByRole('button', { name: 'Edit' })).toHaveCount(0);

      await byId(a.page, id).getByRole('button', { name: 'Edit', exact: true }).click();
      const box = a.page.getByLabel('Edit message');
      await expect(box).toHaveValue('helo there');
      await box.fill('hello there');
      await box.press('Enter');
      for (const page of [a.page, b.page]) {
        await expect(byId(page, id).locator('.chat-bubble')).toHaveText('hello there');
        await expect(byId(page, id).getByTestId('edited-mark')).toBeVisible();
      }
      await b.page.reload();
      await expect(byId(b.page, id).locator('.chat-bubble')).toHaveText('hello there', { timeout: 15_000 });
      await expect(byId(b.page, id).getByTestId('edited-mark')).toBeVisible();

      await byId(a.page, id).getByRole('button', { name: 'Delete', exact: true }).click();
      await a.page.getByRole('group', { name: 'Confirm delete' }).getByRole('button', { name: 'Delete' }).click();
      for (const page of [a.page, b.page]) {
        await expect(byId(page, id).getByTestId('deleted-message')).toHaveText('This message was deleted');
        await expect(byId(page, id)).not.toContainText('hello there');
      }
      // A tombstone offers nothing more.
      await expect(byId(a.page, id).getByRole('button', { name: 'Edit' })).toHaveCount(0);
      await a.page.reload();
      await expect(byId(a.page, id).getByTestId('deleted-message')).toBeVisible({ timeout: 15_000 });
      await expect(a.page.getByTestId('conversation-list')).toContainText('Message deleted');
    });
  });
});
