// Replies and reactions in real browsers: a reply shows the message it
// answers, quoted, on both sides; reactions are added, counted and taken back
// live, and are still there after a reload.
import type { Locator, Page } from '@playwright/test';
import { test, expect } from './server';
import { composer, openChat, rows, send, withPair } from './chatters';

/** The reaction chip for `emoji` under `row`. */
function chip(row: Locator, emoji: string): Locator {
  return row.getByTestId('reaction').filter({ hasText: emoji });
}

async function reactWith(page: Page, row: Locator, emoji: string): Promise<void> {
  await row.getByRole('button', { name: 'React', exact: true }).click();
  await page.getByRole('group', { name: 'Reactions' }).getByRole('button', { name: `React with ${emoji}` }).click();
}

test.describe('replies and reactions', () => {
  test('a reply quotes the message it answers', async ({ browser, server }) => {
    await withPair(browser, server.url, async (a, b) => {
      await openChat(a, b);
      await openChat(b, a);
      await send(a.page, 'lunch at noon?');
      const question = rows(b.page, 'lunch at noon?');
      await expect(question).toHaveCount(1);
      await question.getByRole('button', { name: 'Reply', exact: true }).click();
      await expect(b.page.getByTestId('replying-to')).toContainText('lunch at noon?');
      await expect(composer(b.page)).toBeFocused();
      await send(b.page, 'yes, see you there');
      await expect(b.page.getByTestId('replying-to')).toHaveCount(0);
      for (const page of [a.page, b.page]) {
        const answer = page.getByTestId('message-log').locator('[data-message-id]').filter({ hasText: 'yes, see you there' });
        await expect(answer.getByTestId('reply-quote')).toContainText('lunch at noon?');
      }
      // After a reload the quote comes from history.
      await a.page.reload();
      const answer = a.page.getByTestId('message-log').locator('[data-message-id]').filter({ hasText: 'yes, see you there' });
      await expect(answer.getByTestId('reply-quote')).toContainText('lunch at noon?', { timeout: 15_000 });
    });
  });

  test('reactions are added, counted and taken back live', async ({ browser, server }) => {
    await withPair(browser, server.url, async (a, b) => {
      await openChat(a, b);
      await openChat(b, a);
      await send(a.page, 'we shipped it');
      const onA = rows(a.page, 'we shipped it');
      const onB = rows(b.page, 'we shipped it');
      await expect(onA).toHaveAttribute('data-status', 'sent');
      await expect(onB).toHaveCount(1);

      await reactWith(b.page, onB, '🎉');
      await expect(chip(onB, '🎉')).toHaveAttribute('aria-pressed', 'true');
      await expect(chip(onA, '🎉')).toContainText('1');
      await expect(chip(onA, '🎉')).toHaveAttribute('aria-pressed', 'false');
      // A adds the same emoji by clicking the chip.
      await chip(onA, '🎉').click();
      for (const row of [onA, onB]) await expect(chip(row, '🎉')).toContainText('2');

      await a.page.reload();
      const reloaded = rows(a.page, 'we shipped it');
      await expect(chip(reloaded, '🎉')).toContainText('2', { timeout: 15_000 });
      await expect(chip(reloaded, '🎉')).toHaveAttribute('aria-pressed', 'true');

      // B takes theirs back.
      await chip(onB, '🎉').click();
      await expect(chip(reloaded, '🎉')).toContainText('1');
      await expect(chip(onB, '🎉')).toHaveAttribute('aria-pressed', 'false');
    });
  });
});
