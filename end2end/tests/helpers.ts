// Shared helpers for the browser tests: test users, the account flows through
// the UI (labels and button names are the product spec's), and a tiny PNG.
import { expect, type APIRequestContext, type BrowserContext, type Page } from '@playwright/test';
import { deflateSync } from 'node:zlib';
import { gotoHydrated } from './server';

export const PASSWORD = 'correct horse 1';

export interface TestUser {
  email: string;
  password: string;
  fullName: string;
}

/** A user with an email no other test (or earlier run) uses. */
export function newUser(fullName = 'Ada Lovelace'): TestUser {
  const email = `user-${Date.now()}-${Math.random().toString(36).slice(2, 10)}@example.com`;
  return { email, password: PASSWORD, fullName };
}

/** Form fields by their visible label. Exact, so "Password" never matches "Confirm password". */
export function field(page: Page, label: string) {
  return page.getByLabel(label, { exact: true });
}

export function button(page: Page, name: string) {
  return page.getByRole('button', { name, exact: true });
}

/** Visible text anywhere on the page (navbar, profile card, …). */
export function visibleText(page: Page, text: string) {
  return page.getByText(text).filter({ visible: true }).first();
}

export const CHAT_URL = /\/chat\/?(\?.*)?$/;
export const LOGIN_URL = /\/login\/?(\?.*)?$/;

/** Signs up through /signup and waits for the app home (/chat). */
export async function signupViaUi(page: Page, user: TestUser): Promise<void> {
  await gotoHydrated(page, '/signup');
  await field(page, 'Full name').fill(user.fullName);
  await field(page, 'Email').fill(user.email);
  await field(page, 'Password').fill(user.password);
  await button(page, 'Sign up').click();
  await expect(page).toHaveURL(CHAT_URL);
}

/** Logs in through /login and waits for the app home (/chat). */
export async function loginViaUi(page: Page, user: Pick<TestUser, 'email' | 'password'>): Promise<void> {
  await gotoHydrated(page, '/login');
  await field(page, 'Email').fill(user.email);
  await field(page, 'Password').fill(user.password);
  await button(page, 'Log in').click();
  await expect(page).toHaveURL(CHAT_URL);
}

/**
 * Creates an account through the REST API (POST /api/auth/signup). With
 * `page.request` or `context.request` the session cookie lands in that
 * browser context; with the standalone `request` fixture it does not.
 */
export async function signupViaApi(request: APIRequestContext, user: TestUser): Promise<void> {
  const res = await request.post('/api/auth/signup', {
    data: { email: user.email, password: user.password, full_name: user.fullName },
  });
  expect(res.ok(), `POST /api/auth/signup answered ${res.status()}: ${await res.text()}`).toBe(true);
}

/** The session cookie's value in a browser context, if any. */
export async function sessionCookie(context: BrowserContext): Promise<string | undefined> {
  return (await context.cookies()).find((c) => c.name === 'token' && c.value !== '')?.value;
}

/**
 * Clicks "Log out" and waits until the session cookie is gone. On narrow
 * screens the navbar folds its links into a "Menu" button (or a dropdown);
 * then that is opened first.
 */
export async function logOut(page: Page): Promise<void> {
  const logOutControl = page
    .getByRole('button', { name: 'Log out', exact: true })
    .or(page.getByRole('menuitem', { name: 'Log out', exact: true }))
    .filter({ visible: true });
  if ((await logOutControl.count()) === 0) {
    await page
      .getByRole('button', { name: 'Menu', exact: true })
      .or(page.locator('details > summary, .dropdown > [tabindex], .dropdown > [role="button"]'))
      .filter({ visible: true })
      .first()
      .click();
  }
  await logOutControl.first().click();
  await expect.poll(() => sessionCookie(page.context()), { message: 'session cookie cleared after Log out' }).toBeUndefined();
}

// ---------------------------------------------------------------------------
// A valid PNG, made here so the tests need no fixture files.
// ---------------------------------------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Buffer): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A solid-colour RGB PNG of width × height pixels. */
export function pngBuffer(width = 16, height = 16, rgb: [number, number, number] = [220, 60, 40]): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // colour type: RGB
  // compression, filter, interlace: 0
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: width }, () => rgb).flat())]);
  const pixels = Buffer.concat(Array.from({ length: height }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(pixels)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
