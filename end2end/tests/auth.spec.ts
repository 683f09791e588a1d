// Account flows in a real browser against the real server binary:
// sign-up, session, profile + avatar, log-out, errors, theme, SSR/hydration,
// and durability across a restart.
import { test, expect, startServer, gotoHydrated, waitForHydration, hydrationProbe } from './server';
import {
  CHAT_URL,
  LOGIN_URL,
  button,
  field,
  loginViaUi,
  logOut,
  newUser,
  pngBuffer,
  sessionCookie,
  signupViaApi,
  signupViaUi,
  visibleText,
} from './helpers';

test('sign up, keep the session across a reload, edit the profile with an avatar, log out', async ({ page }) => {
  const user = newUser('Ada Lovelace');
  await signupViaUi(page, user);
  await expect(visibleText(page, user.fullName)).toBeVisible();

  // The session is a cookie: a full reload stays signed in.
  await page.reload();
  await waitForHydration(page);
  await expect(page).toHaveURL(CHAT_URL);
  await expect(visibleText(page, user.fullName)).toBeVisible();

  // Profile: new name, bio and avatar.
  const newName = `Augusta Ada King ${Date.now()}`;
  const newBio = 'Wrote the first program, for an engine that was never built.';
  await gotoHydrated(page, '/profile');
  await field(page, 'Full name').fill(newName);
  await field(page, 'Bio').fill(newBio);
  await field(page, 'Avatar').setInputFiles({ name: 'avatar.png', mimeType: 'image/png', buffer: pngBuffer() });
  await button(page, 'Save').click();

  await expect(visibleText(page, newName)).toBeVisible();
  const avatar = page.locator('img[src^="/api/media/"]').filter({ visible: true }).first();
  await expect(avatar).toBeVisible();
  await expect
    .poll(() => avatar.evaluate((el) => (el as HTMLImageElement).complete && (el as HTMLImageElement).naturalWidth), {
      message: 'the avatar image loads',
    })
    .toBeGreaterThan(0);

  // Saved on the server, not just in the page.
  await page.reload();
  await waitForHydration(page);
  await expect(field(page, 'Full name')).toHaveValue(newName);
  await expect(field(page, 'Bio')).toHaveValue(newBio);
  await expect(page.locator('img[src^="/api/media/"]').first()).toBeAttached();

  await logOut(page);
  await page.goto('/profile');
  await expect(page).toHaveURL(LOGIN_URL);
});

test('signing up with an email that is taken shows an error', async ({ page, request }) => {
  const user = newUser('First Owner');
  await signupViaApi(request, user);

  await gotoHydrated(page, '/signup');
  await field(page, 'Full name').fill('Second Comer');
  await field(page, 'Email').fill(user.email);
  await field(page, 'Password').fill(user.password);
  await button(page, 'Sign up').click();

  await expect(visibleText(page, 'already')).toBeVisible();
  await expect(page).not.toHaveURL(CHAT_URL);
  expect(await sessionCookie(page.context())).toBeUndefined();
});

test('logging in with a wrong password shows "Invalid email or password"', async ({ page, request }) => {
  const user = newUser();
  await signupViaApi(request, user);

  await gotoHydrated(page, '/login');
  await field(page, 'Email').fill(user.email);
  await field(page, 'Password').fill('wrong horse 1');
  await button(page, 'Log in').click();

  await expect(visibleText(page, 'Invalid email or password')).toBeVisible();
  await expect(page).toHaveURL(LOGIN_URL);
  expect(await sessionCookie(page.context())).toBeUndefined();
});

test('the theme picked in settings persists and is server-rendered', async ({ page }) => {
  await signupViaUi(page, newUser());
  await gotoHydrated(page, '/settings');
  const html = page.locator('html');
  await expect(html).not.toHaveAttribute('data-theme', 'dark');

  await page
    .getByRole('radio', { name: 'dark', exact: true })
    .or(page.getByRole('button', { name: 'dark', exact: true }))
    .first()
    .click();
  await expect(html).toHaveAttribute('data-theme', 'dark');
  await expect
    .poll(async () => (await page.context().cookies()).find((c) => c.name === 'theme')?.value, {
      message: 'the theme cookie is set',
    })
    .toBe('dark');

  await page.reload();
  await expect(html).toHaveAttribute('data-theme', 'dark');

  // First paint already has it: the server renders the cookie's theme (no flash).
  const res = await page.request.get('/settings'); // shares the page's cookies
  expect(new URL(res.url()).pathname).toBe('/settings');
  expect(await res.text()).toMatch(/<html\b[^>]*\bdata-theme="dark"/);
});

test('pages are server-rendered, then hydrate', async ({ page, request }) => {
  // Raw HTML, no JavaScript: the login form is there.
  const login = await request.get('/login');
  expect(login.status()).toBe(200);
  const loginHtml = await login.text();
  expect(loginHtml).toMatch(/<label\b[^>]*>(?:(?!<\/label>)[\s\S])*\bEmail\b/);
  expect(loginHtml).toMatch(/<button\b[^>]*>(?:(?!<\/button>)[\s\S])*\bLog in\b/);

  // The landing page's headline is in the raw HTML, and the hydrated page shows the same.
  const landing = await request.get('/');
  expect(landing.status()).toBe(200);
  const h1 = /<h1\b[^>]*>([\s\S]*?)<\/h1>/.exec(await landing.text());
  expect(h1, 'the landing page has an <h1> headline in its HTML').not.toBeNull();
  const headline = decodeEntities(h1![1].replace(/<[^>]*>/g, ' ')).replace(/\s+/g, ' ').trim();
  expect(headline.length).toBeGreaterThan(0);

  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /panick|hydrat|unreachable/i.test(m.text())) problems.push(`console: ${m.text()}`);
  });

  await gotoHydrated(page, '/');
  await expect(page.locator('h1').first()).toHaveText(headline);
  await expect(page.getByRole('link', { name: 'Sign up', exact: true }).first()).toBeVisible();
  await expect(page.getByRole('link', { name: 'Log in', exact: true }).first()).toBeVisible();

  // The hydrated login form: typing works, validation runs in the browser
  // (nothing is sent), and a valid submit goes out as fetch, not a page load.
  const user = newUser();
  await signupViaApi(request, user);
  await gotoHydrated(page, '/login');
  // The login request: REST /api/auth/login or the `login` server function.
  const posts: { url: string; type: string }[] = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && /login/i.test(new URL(r.url()).pathname)) posts.push({ url: r.url(), type: r.resourceType() });
  });

  await field(page, 'Email').fill('not-an-email');
  await expect(field(page, 'Email')).toHaveValue('not-an-email');
  await button(page, 'Log in').click();
  await expect(page).toHaveURL(LOGIN_URL);
  // The client marks the bad field (aria-invalid) or shows an alert; only the
  // hydrated app can do that, since the form itself has no browser validation.
  await expect(page.locator('[aria-invalid="true"], [role="alert"]').filter({ visible: true }).first()).toBeVisible();
  expect(posts, 'an invalid form is not submitted').toEqual([]);

  await field(page, 'Email').fill(user.email);
  await field(page, 'Password').fill(user.password);
  await button(page, 'Log in').click();
  await expect(page).toHaveURL(CHAT_URL);
  expect(posts.length, 'the login was sent').toBeGreaterThan(0);
  expect(posts[0].type, `the login POST ${posts[0].url} is sent by the client code`).not.toBe('document');
  expect(problems).toEqual([]);
});

test('accounts survive a server restart', async ({ browser }) => {
  const server = await startServer();
  try {
    const user = newUser('Durable Dora');
    const first = await browser.newContext({ baseURL: server.url });
    await first.addInitScript(hydrationProbe);
    await signupViaUi(await first.newPage(), user);
    await first.close();

    await server.restart();

    const second = await browser.newContext({ baseURL: server.url });
    await second.addInitScript(hydrationProbe);
    const page = await second.newPage();
    await loginViaUi(page, user);
    await expect(visibleText(page, user.fullName)).toBeVisible();
    await second.close();
  } catch (e) {
    console.error(`--- server log ---\n${server.logs()}`);
    throw e;
  } finally {
    await server.dispose();
  }
});

function decodeEntities(text: string): string {
  return text
    .replace(/&#x([0-9a-f]+);/gi, (_, hex) => String.fromCodePoint(parseInt(hex, 16)))
    .replace(/&#(\d+);/g, (_, dec) => String.fromCodePoint(Number(dec)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&nbsp;/g, ' ')
    .replace(/&amp;/g, '&');
}
