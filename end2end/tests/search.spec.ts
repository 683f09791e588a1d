// Message search in real browsers: the sidebar's "Search messages" box finds
// a word from an early message (older than the conversation's first page),
// and picking the result opens the conversation scrolled to that message,
// highlighted. Another pair's conversation is never found.
import type { Chatter } from './chatters';
import { test, expect } from './server';
import { chatter, openChat, openPage, send, withPair } from './chatters';

/** Sends `text` from `from` to `to` through the REST API (fast, for filler). */
async function post(from: Chatter, to: Chatter, text: string): Promise<string> {
  const res = await from.context.request.post(`/api/messages/send/${to.id}`, { data: { text } });
  expect(res.status(), await res.text()).toBe(201);
  return (await res.json())._id;
}

test.describe('message search', () => {
  test('a result opens its conversation at the message; others’ conversations are not found', async ({
    browser,
    server,
  }) => {
    const tag = Math.random().toString(36).slice(2, 8);
    const early = `the zephyr${tag} left at dawn`;
    await withPair(browser, server.url, async (alice, bob) => {
      await openChat(alice, bob);
      await send(alice.page, early);
      // More than a history page (50) after it, so the conversation opens
      // without it and must page back to it.
      for (let i = 0; i < 60; i++) await post(i % 2 ? bob : alice, i % 2 ? alice : bob, `filler ${i}`);
      const carol = await chatter(browser, server.url, 'Carol');
      try {
        await post(carol, alice, `only for alice quokka${tag}`);

        await openPage(bob.page, '/chat');
        const box = bob.page.getByLabel('Search messages');
        await box.fill(`Zephyr${tag}`);
        const results = bob.page.getByTestId('message-result');
        await expect(results).toHaveCount(1, { timeout: 15_000 });
        await expect(results.first()).toContainText(alice.name);
        await expect(results.first().getByTestId('message-snippet')).toContainText(early);
        await expect(results.first().locator('mark')).toHaveText(`zephyr${tag}`);
        const id = (await results.first().getAttribute('data-message-id')) ?? '';
        expect(id).not.toBe('');

        await results.first().click();
        await expect(bob.page).toHaveURL(new RegExp(`/chat/${alice.id}$`));
        await expect(bob.page.getByTestId('peer-name')).toHaveText(alice.name);
        const row = bob.page.getByTestId('message-log').locator(`[data-message-id="${id}"]`);
        await expect(row).toHaveAttribute('data-search-hit', 'true', { timeout: 15_000 });
        await expect(row).toContainText(early);
        await expect(row).toBeInViewport();

        // Carol and Alice's conversation: Bob finds nothing; Alice does.
        await box.fill(`quokka${tag}`);
        await expect(bob.page.getByTestId('no-message-results')).toHaveText('No messages match.');
        await expect(results).toHaveCount(0);
        await openPage(alice.page, '/chat');
        await alice.page.getByLabel('Search messages').fill(`quokka${tag}`);
        await expect(alice.page.getByTestId('message-result')).toHaveCount(1);
        await expect(alice.page.getByTestId('message-result')).toContainText(carol.name);
      } finally {
        await carol.context.close();
        expect(carol.bugs, 'client errors in Carol’s browser').toEqual([]);
      }
    });
  });
});
