// Rich text in messages, in real browsers: the markdown subset renders as
// elements, HTML and unsafe links stay literal text (and no script ever
// runs), and an @mention of the reader is highlighted and badges the
// conversation until it is read.
import type { Locator, Page } from '@playwright/test';
import { test, expect } from './server';
import { type Chatter, openChat, openPage, send, withPair } from './chatters';

/** The message row in `page` whose text contains `text`. */
function rowWith(page: Page, text: string): Locator {
  return page.getByTestId('message-log').locator('[data-message-id]').filter({ hasText: text });
}

/** `page`'s sidebar row for `peer`. */
function contactRow(page: Page, peer: Chatter): Locator {
  return page.getByTestId('conversation-list').getByTestId('contact').filter({ hasText: peer.name });
}

/** Records every dialog (alert, confirm, prompt) `page` opens, dismissing it. */
function dialogsOf(page: Page): string[] {
  const seen: string[] = [];
  page.on('dialog', (dialog) => {
    seen.push(`${dialog.type()}: ${dialog.message()}`);
    void dialog.dismiss();
  });
  return seen;
}

const HOSTILE = '**bold** `code` https://example.com/x <img src=x onerror=alert(1)> [bad](javascript:alert(1)) [worse](JaVaScRiPt:alert(2))';
const BLOCKS = 'todo:\n- one\n- *two*\n```\n<b>raw</b> **not bold**\n```';

test.describe('rich text', () => {
  test('markdown renders as elements; HTML and javascript: links stay text; nothing runs', async ({
    browser,
    server,
  }) => {
    await withPair(browser, server.url, async (a, b) => {
      const dialogs = [a, b].map((c) => dialogsOf(c.page));
      await openChat(a, b);
      await openChat(b, a);
      await send(a.page, HOSTILE);
      await send(a.page, BLOCKS);

      // Both sides render the same way: the receiver live, the sender its own copy.
      for (const page of [b.page, a.page]) {
        const row = rowWith(page, 'onerror');
        await expect(row).toHaveCount(1);
        const text = row.getByTestId('message-text');
        await expect(text.locator('strong')).toHaveText('bold');
        await expect(text.locator('code')).toHaveText('code');
        const link = text.locator('a[href="https://example.com/x"]');
        await expect(link).toHaveText('https://example.com/x');
        await expect(link).toHaveAttribute('target', '_blank');
        const rel = (await link.getAttribute('rel')) ?? '';
        for (const word of ['noopener', 'noreferrer', 'nofollow']) expect(rel.split(/\s+/)).toContain(word);
        // The only link is that one; the javascript: ones are literal text.
        await expect(text.locator('a')).toHaveCount(1);
        await expect(text).toContainText('[bad](javascript:alert(1))');
        await expect(text).toContainText('[worse](JaVaScRiPt:alert(2))');
        // The HTML is text, not an element.
        await expect(text).toContainText('<img src=x onerror=alert(1)>');
        await expect(row.locator('img')).toHaveCount(0);

        const blocks = rowWith(page, 'todo:').getByTestId('message-text');
        await expect(blocks.locator('ul > li')).toHaveText(['one', 'two']);
        await expect(blocks.locator('li em')).toHaveText('two');
        await expect(blocks.locator('pre > code')).toHaveText('<b>raw</b> **not bold**');
        await expect(blocks.locator('b, pre strong')).toHaveCount(0);
      }

      // The same after a reload, from history this time.
      await openPage(b.page, `/chat/${a.id}`);
      await expect(rowWith(b.page, 'onerror').locator('strong')).toHaveText('bold');
      await expect(rowWith(b.page, 'onerror').locator('img')).toHaveCount(0);
      expect(dialogs.flat()).toEqual([]);
    });
  });

  test('a mention badges the conversation until it is read, and is highlighted for the one mentioned', async ({
    browser,
    server,
  }) => {
    await withPair(browser, server.url, async (a, b) => {
      // Bob has no conversation open.
      await openPage(b.page, '/chat');
      await openChat(a, b);
      await send(a.page, 'just saying hi');
      await expect(contactRow(b.page, a).getByTestId('unread-badge')).toHaveText('1');
      // A message without a mention gives no mention badge.
      await expect(contactRow(b.page, a).getByTestId('mention-badge')).toHaveCount(0);

      await send(a.page, '@Bob look');
      const badge = contactRow(b.page, a).getByTestId('mention-badge');
      await expect(badge).toHaveText('@');
      await expect(badge).toHaveAttribute('aria-label', 'You were mentioned');
      await expect(contactRow(b.page, a).getByTestId('unread-badge')).toHaveText('2');

      // It is back after a reload: the server's list says so too.
      await openPage(b.page, '/chat');
      await expect(contactRow(b.page, a).getByTestId('unread-badge')).toHaveText('2');
      await expect(contactRow(b.page, a).getByTestId('mention-badge')).toHaveText('@');

      // Reading the conversation clears it with the unread count.
      await contactRow(b.page, a).click();
      await expect(b.page).toHaveURL(new RegExp(`/chat/${a.id}$`));
      const row = rowWith(b.page, 'look');
      await expect(row.getByTestId('mention-me')).toHaveText('@Bob');
      await expect(contactRow(b.page, a).getByTestId('mention-badge')).toHaveCount(0);
      await expect(contactRow(b.page, a).getByTestId('unread-badge')).toHaveCount(0);

      // For Alice it is someone else's name: only the subtle highlight.
      const own = rowWith(a.page, 'look');
      await expect(own.getByTestId('mention')).toHaveText('@Bob');
      await expect(own.getByTestId('mention-me')).toHaveCount(0);

      // A mention while Bob looks at the conversation badges nothing.
      await send(a.page, 'again @bob');
      await expect(rowWith(b.page, 'again').getByTestId('mention-me')).toHaveText('@bob');
      await expect(contactRow(b.page, a).getByTestId('mention-badge')).toHaveCount(0);
    });
  });
});
