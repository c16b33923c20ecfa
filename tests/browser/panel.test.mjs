// The admin panel in headless Chromium against a freshly started Switchboard:
// first login, forced password change, dashboard, creating / editing / deleting an
// extension, the server's error messages, the hot-desking and webhooks pages. See README.md.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createHmac } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { chromium, request } from 'playwright-core';

const BASE = process.env.SWITCHBOARD_URL?.replace(/\/+$/, '');
const BANNER_PASSWORD = process.env.SWITCHBOARD_PASSWORD;
const BANNER_PIN = process.env.SWITCHBOARD_PIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const NEW_PASSWORD = 'Str0ng-Passw0rd-Test';
const RESULTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'test-results');

test('admin panel: login, password change, extensions', { timeout: 90_000 }, async (t) => {
  assert.ok(BASE, 'SWITCHBOARD_URL is not set: start a fresh server and set it to http://127.0.0.1:PORT');
  assert.ok(BANNER_PASSWORD, 'SWITCHBOARD_PASSWORD is not set: set it to the first-start banner password of extension 1001');

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  t.after(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.setDefaultNavigationTimeout(15_000);

  // Script errors and CSP violations (inline styles or scripts) fail the test; failed
  // requests the test provokes on purpose (401, 409) are expected.
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) {
      problems.push(`console error: ${msg.text()}`);
    }
  });

  let stepNo = 0;
  async function step(name, fn) {
    stepNo += 1;
    const started = Date.now();
    try {
      await fn();
    } catch (err) {
      await mkdir(RESULTS, { recursive: true });
      const file = path.join(RESULTS, `step-${String(stepNo).padStart(2, '0')}-${name.replace(/\W+/g, '-')}.png`);
      await page.screenshot({ path: file, fullPage: true }).catch(() => {});
      err.message = `step "${name}" failed (screenshot: ${file}, page: ${page.url()}): ${err.message}`;
      throw err;
    }
    t.diagnostic(`${name}: ${Date.now() - started} ms`);
  }

  const main = page.locator('#page');
  const alert = main.getByRole('alert');
  const flash = page.locator('#flash');
  const heading = (name) => page.getByRole('heading', { level: 1, name, exact: true });
  const atRoute = (route) => page.waitForURL((url) => url.hash === `#${route}` || url.hash.startsWith(`#${route}?`));
  const expectText = async (locator, pattern) => {
    await locator.filter({ hasText: pattern }).first().waitFor();
  };

  await step('open the panel: redirected to login', async () => {
    const res = await page.goto(`${BASE}/admin/`);
    assert.equal(res.status(), 200);
    await atRoute('/login');
    await heading('Log in').waitFor();
  });

  await step('wrong password shows the server message', async () => {
    await page.getByLabel('Extension', { exact: true }).fill('1001');
    await page.getByLabel('Password', { exact: true }).fill('not-the-password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await expectText(alert, /wrong extension or password/);
  });

  await step('log in with the banner password: forced password change', async () => {
    await page.getByLabel('Password', { exact: true }).fill(BANNER_PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await atRoute('/password');
    await heading('Choose a new password').waitFor();
    await expectText(main, /must choose a new password/);
    // The rest of the panel is out of reach until the password is changed.
    assert.equal(await page.locator('#nav').isVisible(), false);
  });

  await step('a weak new password is refused with the field marked', async () => {
    await page.getByLabel('Current password', { exact: true }).fill(BANNER_PASSWORD);
    await page.getByLabel('New password', { exact: true }).fill('short');
    await page.getByLabel('Confirm new password', { exact: true }).fill('short');
    await page.getByRole('button', { name: 'Change password' }).click();
    await expectText(alert, /needs 10 to 128 characters/);
    assert.equal(await page.getByLabel('New password', { exact: true }).getAttribute('aria-invalid'), 'true');
  });

  await step('change the password: dashboard', async () => {
    await page.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
    await page.getByLabel('Confirm new password', { exact: true }).fill(NEW_PASSWORD);
    await page.getByRole('button', { name: 'Change password' }).click();
    await atRoute('/dashboard');
    await heading('Dashboard').waitFor();
    await expectText(flash, /password has been changed/);
    const system = main.getByRole('region', { name: 'System' });
    await expectText(system, /Version/);
    await expectText(system, /sqlite/);
    await expectText(page.locator('#whoami'), /1001/);
  });

  await step('extension list shows the seeded extensions', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Extensions' }).click();
    await atRoute('/extensions');
    await heading('Extensions').waitFor();
    await main.getByRole('row').filter({ hasText: 'Operator' }).waitFor();
    await expectText(main, /Showing 1–2 of 2/);
  });

  const credentials = {};
  await step('create 2001: generated credentials shown once', async () => {
    await main.getByRole('link', { name: 'New extension' }).click();
    await atRoute('/extensions/new');
    await page.getByLabel('Number', { exact: true }).fill('2001');
    await page.getByLabel('Name', { exact: true }).fill('Ada Lovelace');
    await page.getByLabel('E-mail', { exact: true }).fill('ada@example.com');
    await page.getByRole('button', { name: 'Create extension' }).click();
    const dialog = page.getByRole('dialog', { name: 'Extension 2001 created' });
    await dialog.waitFor();
    await expectText(dialog, /shown only this once/);
    for (const label of ['Web password', 'SIP secret', 'Voicemail PIN']) {
      credentials[label] = await dialog.getByLabel(label, { exact: true }).inputValue();
      assert.ok(credentials[label].length >= 4, `${label} is shown: ${credentials[label]}`);
    }
    assert.match(credentials['Voicemail PIN'], /^\d{4,12}$/);
    await dialog.getByRole('button', { name: 'Done' }).click();
    await dialog.waitFor({ state: 'detached' });
    await atRoute('/extensions');
    await expectText(flash, /Extension 2001 \(Ada Lovelace\) was created/);
    const row = main.getByRole('row').filter({ has: page.getByRole('link', { name: '2001', exact: true }) });
    await expectText(row, /Ada Lovelace/);
    await expectText(row, /ada@example\.com/);
    // Shown once: no secret is left anywhere on the page.
    const html = await page.content();
    for (const value of Object.values(credentials)) assert.ok(!html.includes(value), 'a generated secret is still in the page');
  });

  await step('search narrows the list', async () => {
    await main.getByLabel('Search', { exact: true }).fill('lovelace');
    await expectText(main.locator('.pager-summary'), /Showing 1–1 of 1/);
    await main.getByRole('link', { name: '2001', exact: true }).waitFor();
    assert.equal(await main.getByRole('link', { name: '1001', exact: true }).count(), 0);
  });

  await step('bad input shows the server errors', async () => {
    await main.getByRole('link', { name: 'New extension' }).click();
    await atRoute('/extensions/new');
    await page.getByLabel('Number', { exact: true }).fill('2001');
    await page.getByLabel('Name', { exact: true }).fill('Ada Again');
    await page.getByRole('button', { name: 'Create extension' }).click();
    await expectText(alert, /extension 2001 already exists/);
    assert.equal(await page.getByLabel('Number', { exact: true }).getAttribute('aria-invalid'), 'true');

    await page.getByLabel('Number', { exact: true }).fill('Not A Number');
    await page.getByRole('button', { name: 'Create extension' }).click();
    await expectText(alert, /`Not A Number` is not an extension number/);
    assert.equal(await page.getByLabel('Number', { exact: true }).getAttribute('aria-invalid'), 'true');
  });

  await step('edit 2001: change the name', async () => {
    await page.getByRole('link', { name: 'Cancel' }).click();
    await atRoute('/extensions');
    await main.getByRole('link', { name: '2001', exact: true }).click();
    await atRoute('/extensions/2001');
    await heading('Extension 2001').waitFor();
    const name = page.getByLabel('Name', { exact: true });
    assert.equal(await name.inputValue(), 'Ada Lovelace');
    await name.fill('Ada King');
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await expectText(main.getByRole('status'), /^Saved\.$/);
    await page.getByRole('link', { name: '← All extensions' }).click();
    await atRoute('/extensions');
    const row = main.getByRole('row').filter({ has: page.getByRole('link', { name: '2001', exact: true }) });
    await expectText(row, /Ada King/);
  });

  await step('delete 2001 after confirming', async () => {
    await main.getByRole('link', { name: '2001', exact: true }).click();
    await atRoute('/extensions/2001');
    await page.getByRole('button', { name: 'Delete extension' }).click();
    const dialog = page.getByRole('dialog', { name: 'Delete extension 2001?' });
    await dialog.waitFor();
    // Cancelling keeps it.
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'detached' });
    await page.getByRole('button', { name: 'Delete extension' }).click();
    await dialog.getByRole('button', { name: 'Delete', exact: true }).click();
    await atRoute('/extensions');
    await expectText(flash, /Extension 2001 \(Ada King\) was deleted/);
    await main.getByRole('link', { name: '1001', exact: true }).waitFor();
    assert.equal(await main.getByRole('link', { name: '2001', exact: true }).count(), 0);
    await expectText(main.locator('.pager-summary'), /of 2$/);
  });

  await step('deleting the last admin is refused with the server message', async () => {
    await main.getByRole('link', { name: '1001', exact: true }).click();
    await atRoute('/extensions/1001');
    await page.getByRole('button', { name: 'Delete extension' }).click();
    await page.getByRole('dialog', { name: 'Delete extension 1001?' }).getByRole('button', { name: 'Delete', exact: true }).click();
    await expectText(alert, /last active admin/);
    assert.equal(page.url().endsWith('#/extensions/1001'), true);
  });

  await step('hot-desking page: a desk phone login shows live, is logged out, and is in the history and charts', async () => {
    assert.ok(BANNER_PIN, 'SWITCHBOARD_PIN is not set: set it to the first-start banner voicemail PIN of 1001');
    // A phone logs in by itself (no panel session): 1001 at a desk.
    const phone = await request.newContext();
    t.after(() => phone.dispose());
    const res = await phone.post(`${BASE}/api/hot-desk/login`, {
      data: { extension: '1001', device_id: '00:15:65:12:34:56', ip_address: '192.168.1.100', pin: BANNER_PIN },
    });
    assert.equal(res.status(), 200, await res.text());
    await page.getByRole('link', { name: 'Hot-desking' }).click();
    await atRoute('/hot-desk');
    await heading('Hot-desking').waitFor();
    const live = main.getByRole('table', { name: 'Sessions' });
    const row = live.getByRole('row').filter({ hasText: '00:15:65:12:34:56' });
    await expectText(row, /1001/);
    await expectText(row, /192\.168\.1\.100/);
    await expectText(main, /1 device in use\./);
    // The charts have a bar for today's login.
    const perDay = main.getByRole('img', { name: 'Logins per day' });
    await perDay.waitFor();
    assert.equal(await perDay.locator('rect[data-value="1"]').count(), 1);
    assert.equal(await main.getByRole('img', { name: 'Logins by hour of the day' }).locator('rect').count(), 24);

    await row.getByRole('button', { name: 'Log out 1001 from 00:15:65:12:34:56' }).click();
    const dialog = page.getByRole('dialog', { name: 'Log out 1001?' });
    await dialog.getByRole('button', { name: 'Log out', exact: true }).click();
    await expectText(main, /No one is logged in at a desk\./);
    const history = main.getByRole('table', { name: 'Login history' });
    await expectText(history.getByRole('row').filter({ hasText: '00:15:65:12:34:56' }), /By an admin/);
  });

  await step('webhooks page: add a subscription, see it fail and recover, with signed requests', async () => {
    // A receiver that refuses until told otherwise.
    const got = [];
    let answer = 503;
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => {
        got.push({ headers: req.headers, body });
        res.writeHead(answer).end();
      });
    });
    await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    t.after(() => receiver.close());
    const url = `http://127.0.0.1:${receiver.address().port}/hook`;

    await page.getByRole('link', { name: 'Webhooks' }).click();
    await atRoute('/webhooks');
    await heading('Webhooks').waitFor();
    await page.getByLabel('Receiver URL').fill(url);
    await page.getByLabel('Events').fill('webhook.*');
    await page.getByRole('button', { name: 'Add subscription' }).click();
    const dialog = page.getByRole('dialog', { name: 'Subscription added' });
    const secret = await dialog.getByRole('textbox', { name: 'Signing secret' }).inputValue();
    assert.match(secret, /^whsec_/);
    await dialog.getByRole('button', { name: 'Done' }).click();
    const subscriptions = main.getByRole('table', { name: 'Subscriptions' });
    const row = subscriptions.getByRole('row').filter({ hasText: url });
    await expectText(row, /Healthy/);

    await row.getByRole('button', { name: `Send a test event to ${url}` }).click();
    await row.filter({ hasText: 'Failing' }).waitFor({ timeout: 20_000 });
    await expectText(row, /HTTP 503/);
    answer = 200;
    await row.filter({ hasText: 'Healthy' }).waitFor({ timeout: 20_000 });
    await row.getByRole('button', { name: `Deliveries to ${url}` }).click();
    const log = main.getByRole('table', { name: 'Deliveries' });
    await expectText(log.getByRole('row').filter({ hasText: 'webhook.test' }), /Delivered/);

    // Every request the receiver got was signed with that secret.
    assert.ok(got.length >= 4, `${got.length} requests`);
    const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
    for (const r of got) {
      const signed = `${r.headers['webhook-id']}.${r.headers['webhook-timestamp']}.${r.body}`;
      const expected = `v1,${createHmac('sha256', key).update(signed).digest('base64')}`;
      assert.equal(r.headers['webhook-signature'], expected);
      assert.equal(r.headers['x-webhook-event'], 'webhook.test');
    }
  });

  await step('security page: block a range, see it, check an address in it, unblock it', async () => {
    await page.getByRole('link', { name: 'Security' }).click();
    await atRoute('/security');
    await heading('Security').waitFor();
    await page.getByLabel('Address or range').fill('198.51.100.0/24');
    await page.getByLabel('Reason').fill('test range');
    await page.getByRole('button', { name: 'Block', exact: true }).click();
    const blocks = main.getByRole('table', { name: 'Blocked addresses' });
    const row = blocks.getByRole('row').filter({ hasText: '198.51.100.0/24' });
    await expectText(row, /test range/);
    await expectText(row, /Until unblocked/);
    await page.getByLabel('Check an address').fill('198.51.100.77');
    await page.getByRole('button', { name: 'Check' }).click();
    await expectText(main, /198\.51\.100\.77 is blocked until unblocked \(test range\)/);
    // The machine itself cannot be blocked: the server's message shows.
    await page.getByLabel('Address or range').fill('127.0.0.1');
    await page.getByLabel('Reason').fill('oops');
    await page.getByRole('button', { name: 'Block', exact: true }).click();
    await expectText(alert, /trusted network/);
    await row.getByRole('button', { name: 'Unblock 198.51.100.0/24' }).click();
    await page.getByRole('dialog', { name: 'Unblock 198.51.100.0/24?' }).getByRole('button', { name: 'Unblock', exact: true }).click();
    await expectText(blocks, /No address is blocked\./);
  });

  await step('log out, log in again with the new password', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await atRoute('/login');
    await expectText(flash, /logged out/);
    await page.getByLabel('Extension', { exact: true }).fill('1001');
    await page.getByLabel('Password', { exact: true }).fill(NEW_PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await atRoute('/dashboard');
    await heading('Dashboard').waitFor();
  });

  assert.deepEqual(problems, [], 'the page logged errors');
});
