// Group conversations in real browsers, three people in contexts of their
// own: a group made with "New group" chatting live (sender names, unread
// badges, "Seen by N", typing, edit and delete live and after a reload,
// message search into the group), then its management (rename and
// "Add member" seen live, a removed member stops receiving, "Leave group").
// In the scaled pass (CHARCHA_E2E_SCALED=1) the three are on three server
// instances sharing Redis, Kafka and the database.
import type { Locator, Page } from '@playwright/test';
import type { Chatter } from './chatters';
import { composer, openGroup, openPage, rows, send, withChatters } from './chatters';
import { button } from './helpers';
import { type CharchaServer, expect, startServers, test } from './server';

const NAMES = ['Alice', 'Bob', 'Carol'];

/** The sidebar row of the conversation `id` (a group or a person). */
function listRow(page: Page, id: string): Locator {
  return page.locator(`[data-testid="contact"][data-contact-id="${id}"]`);
}

function byId(page: Page, id: string): Locator {
  return page.getByTestId('message-log').locator(`[data-message-id="${id}"]`);
}

/** The open conversation's header line under its name. */
function headerCount(page: Page): Locator {
  return page.getByTestId('conversation').getByTestId('member-count');
}

function first(c: Chatter): string {
  return c.name.split(' ')[0];
}

/** Picks `who` with the people search labelled `label` (New group's "Members", or "Add member"). */
async function pick(page: Page, label: string, who: Chatter): Promise<void> {
  await page.getByLabel(label, { exact: true }).fill(who.name);
  await page.getByTestId('pick-person').filter({ hasText: who.name }).click();
}

let cluster: { servers: CharchaServer[]; dispose(): Promise<void> };
let urls: string[];

test.describe('groups', () => {
  test.beforeAll(async () => {
    cluster = await startServers(3);
    urls = cluster.servers.map((s) => s.url);
  });
  test.afterAll(async () => {
    await cluster?.dispose();
  });

  test('a group made with "New group" chats live: names, unread, seen, typing, edits, search', async ({ browser }) => {
    test.setTimeout(150_000);
    await withChatters(browser, urls, NAMES, async ([alice, bob, carol]) => {
      const tag = Math.random().toString(36).slice(2, 8);
      const name = `Team ${tag}`;
      for (const c of [alice, bob, carol]) await openPage(c.page, '/chat');

      // Alice makes the group from the UI; it opens.
      await button(alice.page, 'New group').click();
      await alice.page.getByLabel('Group name', { exact: true }).fill(name);
      await pick(alice.page, 'Members', bob);
      await pick(alice.page, 'Members', carol);
      await expect(alice.page.getByTestId('chosen-member')).toHaveCount(2);
      await button(alice.page, 'Create').click();
      await expect(alice.page).toHaveURL(/\/chat\/grp:[0-9A-Z]+$/);
      const gid = decodeURIComponent(new URL(alice.page.url()).pathname.split('/').pop() ?? '');
      await expect(alice.page.getByTestId('peer-name')).toHaveText(name);
      await expect(headerCount(alice.page)).toHaveText('3 members');

      // The others see it listed at once, before any message, and still
      // after a reload (the server's list names groups nobody wrote in yet).
      for (const c of [bob, carol]) await expect(listRow(c.page, gid)).toContainText(name, { timeout: 15_000 });
      await openPage(bob.page, '/chat');
      await expect(listRow(bob.page, gid)).toContainText(name);
      await listRow(carol.page, gid).click();
      await expect(carol.page.getByTestId('peer-name')).toHaveText(name);

      // A message reaches both, with the sender's name; Bob, not looking,
      // gets a badge and the title count.
      const hello = `hello${tag} team`;
      await send(alice.page, hello);
      await expect(rows(carol.page, hello)).toBeVisible();
      await expect(rows(carol.page, hello).getByTestId('sender-name')).toHaveText(alice.name);
      await expect(listRow(bob.page, gid).getByTestId('unread-badge')).toHaveText('1');
      await expect(bob.page).toHaveTitle(/^\(1\) Chat/);
      await expect(listRow(bob.page, gid).getByTestId('conversation-preview')).toHaveText(`${first(alice)}: ${hello}`);
      await expect(rows(alice.page, hello).getByTestId('sender-name')).toHaveCount(0);

      // Opening it clears the badge; both readers count in "Seen by 2".
      await listRow(bob.page, gid).click();
      await expect(rows(bob.page, hello).getByTestId('sender-name')).toHaveText(alice.name);
      await expect(listRow(bob.page, gid).getByTestId('unread-badge')).toHaveCount(0);
      await expect(bob.page).toHaveTitle(/^Chat/);
      await expect(rows(alice.page, hello).getByTestId('seen-marker')).toHaveText('Seen by 2');

      const reply = `hi from bob ${tag}`;
      await send(bob.page, reply);
      for (const c of [alice, carol]) {
        await expect(rows(c.page, reply).getByTestId('sender-name')).toHaveText(bob.name);
      }

      // Typing: one, then two, then gone by itself.
      await composer(carol.page).pressSequentially('typ');
      await expect(alice.page.getByTestId('typing-indicator')).toHaveText(`${first(carol)} is typing…`);
      await composer(bob.page).pressSequentially('typ');
      await expect(alice.page.getByTestId('typing-indicator')).toHaveText(`${first(carol)} and ${first(bob)} are typing…`);
      await expect(bob.page.getByTestId('typing-indicator')).toHaveText(`${first(carol)} is typing…`);
      await expect(alice.page.getByTestId('typing-indicator')).toBeHidden({ timeout: 10_000 });

      // Alice edits her message and Bob deletes his: live, then after a reload.
      const helloId = (await rows(alice.page, hello).getAttribute('data-message-id')) ?? '';
      const replyId = (await rows(bob.page, reply).getAttribute('data-message-id')) ?? '';
      expect(helloId && replyId).toBeTruthy();
      const edited = `${hello}, edited`;
      await byId(alice.page, helloId).getByRole('button', { name: 'Edit', exact: true }).click();
      await alice.page.getByLabel('Edit message').fill(edited);
      await alice.page.getByLabel('Edit message').press('Enter');
      await byId(bob.page, replyId).getByRole('button', { name: 'Delete', exact: true }).click();
      await bob.page.getByRole('group', { name: 'Confirm delete' }).getByRole('button', { name: 'Delete' }).click();
      for (const c of [alice, bob, carol]) {
        await expect(byId(c.page, helloId).getByTestId('message-text')).toHaveText(edited);
        await expect(byId(c.page, helloId).getByTestId('edited-mark')).toBeVisible();
        await expect(byId(c.page, replyId).getByTestId('deleted-message')).toHaveText('This message was deleted');
      }
      await openGroup(carol, gid, name);
      await expect(byId(carol.page, helloId).getByTestId('message-text')).toHaveText(edited, { timeout: 15_000 });
      await expect(byId(carol.page, helloId).getByTestId('sender-name')).toHaveText(alice.name);
      await expect(byId(carol.page, replyId).getByTestId('deleted-message')).toBeVisible();

      // Search finds the group message and opens the group at it.
      await openPage(carol.page, '/chat');
      const results = carol.page.getByTestId('message-result');
      await expect(async () => {
        const box = carol.page.getByLabel('Search messages');
        await box.fill('');
        await box.fill(`hello${tag}`);
        await expect(results).toHaveCount(1, { timeout: 3_000 });
      }).toPass({ timeout: 30_000 });
      await expect(results.first()).toContainText(`in ${name}`);
      await expect(results.first()).toContainText(alice.name);
      await results.first().click();
      await expect(carol.page).toHaveURL(new RegExp(`/chat/${gid}$`));
      await expect(byId(carol.page, helloId)).toHaveAttribute('data-search-hit', 'true', { timeout: 15_000 });
    });
  });

  test('rename and "Add member" show live; a removed member stops receiving; "Leave group"', async ({ browser }) => {
    test.setTimeout(150_000);
    await withChatters(browser, urls, NAMES, async ([alice, bob, carol]) => {
      const tag = Math.random().toString(36).slice(2, 8);
      const res = await alice.context.request.post('/api/groups', { data: { name: `Crew ${tag}`, member_ids: [bob.id] } });
      expect(res.status(), await res.text()).toBe(201);
      const gid: string = (await res.json())._id;
      await openGroup(alice, gid, `Crew ${tag}`);
      await openGroup(bob, gid, `Crew ${tag}`);
      await openPage(carol.page, '/chat');
      await expect(headerCount(bob.page)).toHaveText('2 members');
      await send(alice.page, `welcome ${tag}`);
      await expect(rows(bob.page, `welcome ${tag}`)).toBeVisible();

      // The details panel: members with roles; Alice (admin) renames.
      await button(alice.page, 'Group details').click();
      const panel = alice.page.getByTestId('group-details');
      await expect(panel.getByTestId('group-member')).toHaveCount(2);
      await expect(panel.locator(`[data-user-id="${alice.id}"]`)).toContainText('Admin');
      const renamed = `Renamed ${tag}`;
      await panel.getByLabel('Group name', { exact: true }).fill(renamed);
      await button(alice.page, 'Rename').click();
      await expect(bob.page.getByTestId('peer-name')).toHaveText(renamed);
      await expect(listRow(bob.page, gid)).toContainText(renamed);

      // "Add member": Carol sees the group at once; Bob sees three members.
      await button(alice.page, 'Add member').click();
      await pick(alice.page, 'Add member', carol);
      await expect(panel.getByTestId('group-member')).toHaveCount(3);
      await expect(listRow(carol.page, gid)).toContainText(renamed, { timeout: 15_000 });
      await expect(headerCount(bob.page)).toHaveText('3 members');

      // Bob is removed: told so, the group leaves his list, no composer, and
      // new messages do not reach him (live or by reloading).
      await panel.getByRole('button', { name: `Remove ${bob.name}` }).click();
      await expect(bob.page.getByTestId('not-a-member')).toBeVisible();
      await expect(bob.page.getByText(`You are no longer a member of “${renamed}”.`)).toBeVisible();
      await expect(listRow(bob.page, gid)).toHaveCount(0);
      await expect(composer(bob.page)).toHaveCount(0);
      await expect(panel.getByTestId('group-member')).toHaveCount(2);
      await listRow(carol.page, gid).click();
      const after = `after removal ${tag}`;
      await send(alice.page, after);
      await expect(rows(carol.page, after)).toBeVisible();
      await expect(rows(bob.page, after)).toHaveCount(0);
      await openPage(bob.page, `/chat/${gid}`);
      await expect(bob.page.getByTestId('not-a-member')).toBeVisible();
      await expect(rows(bob.page, after)).toHaveCount(0);
      await expect(listRow(bob.page, gid)).toHaveCount(0);

      // Carol leaves (after confirming): back to the list, without it.
      await button(carol.page, 'Group details').click();
      await button(carol.page, 'Leave group').click();
      await button(carol.page, 'Leave').click();
      await expect(carol.page).toHaveURL(/\/chat\/?$/);
      await expect(listRow(carol.page, gid)).toHaveCount(0);
      await expect(alice.page.getByTestId('group-details').getByTestId('group-member')).toHaveCount(1);
      await expect(headerCount(alice.page)).toHaveText('1 member');
    });
  });
});
