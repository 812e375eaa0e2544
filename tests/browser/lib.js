// Debian's chromium driven by playwright-core: no browser download, no
// network beyond the loopback nornd under test. playwright starts chromium
// with a new empty profile (--user-data-dir) of its own each time.
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.NORN_CHROMIUM || '/usr/bin/chromium';

export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export async function signIn(page, url, token) {
  await page.goto(url);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Apps', level: 1 }).waitFor();
}
