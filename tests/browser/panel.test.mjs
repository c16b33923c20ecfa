// The admin panel in headless Chromium against a freshly started Switchboard:
// first login, forced password change, dashboard, creating / editing / deleting an
// extension, the server's error messages, the hot-desking, webhooks and security pages;
// then two-factor authentication on the My account page and at login. See README.md.

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

/**
 * A headless Chromium on one page, with the test's helpers: `step(name, fn)` times a
 * step and saves a screenshot when it fails (named `<label>-step-NN-…`), and `problems`
 * collects script errors and CSP violations (inline styles or scripts), which fail the
 * test; failed requests the test provokes on purpose (401, 409) are expected.
 */
async function openPanel(t, label) {
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
      const file = path.join(RESULTS, `${label}-step-${String(stepNo).padStart(2, '0')}-${name.replace(/\W+/g, '-')}.png`);
      await page.screenshot({ path: file, fullPage: true }).catch(() => {});
      // What the page told the user is often the reason.
      const shown = (await page.locator('[role="alert"]:visible').allTextContents().catch(() => [])).filter(Boolean);
      const alerts = shown.length ? ` (alerts on the page: ${shown.join(' | ')})` : '';
      err.message = `step "${name}" failed (screenshot: ${file}, page: ${page.url()}${alerts}): ${err.message}`;
      throw err;
    }
    t.diagnostic(`${name}: ${Date.now() - started} ms`);
  }

  const main = page.locator('#page');
  return {
    context,
    page,
    problems,
    step,
    main,
    alert: main.getByRole('alert'),
    flash: page.locator('#flash'),
    heading: (name) => page.getByRole('heading', { level: 1, name, exact: true }),
    atRoute: (route) => page.waitForURL((url) => url.hash === `#${route}` || url.hash.startsWith(`#${route}?`)),
    expectText: async (locator, pattern) => {
      await locator.filter({ hasText: pattern }).first().waitFor();
    },
  };
}

test('admin panel: login, password change, extensions', { timeout: 90_000 }, async (t) => {
  assert.ok(BASE, 'SWITCHBOARD_URL is not set: start a fresh server and set it to http://127.0.0.1:PORT');
  assert.ok(BANNER_PASSWORD, 'SWITCHBOARD_PASSWORD is not set: set it to the first-start banner password of extension 1001');
  const { page, problems, step, main, alert, flash, heading, atRoute, expectText } = await openPanel(t, 'panel');

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

  await step('devices page: create a token, a device enrols with it and shows online, unregister it', async () => {
    await page.getByRole('link', { name: 'Devices' }).click();
    await atRoute('/devices');
    await heading('Devices').waitFor();
    await page.getByLabel('Note').fill('Lobby door phone');
    await page.getByRole('button', { name: 'Create token' }).click();
    const shown = page.getByRole('dialog', { name: 'Enrolment token' });
    const code = await shown.getByRole('textbox', { name: 'Token' }).inputValue();
    assert.match(code, /^[A-Z2-9]{6}$/);
    await shown.getByRole('button', { name: 'Done' }).click();
    const tokens = main.getByRole('table', { name: 'Enrolment tokens' });
    await expectText(tokens.getByRole('row').filter({ hasText: code }), /Lobby door phone/);
    // The device (here an API call) enrols and sends a heartbeat.
    const device = await request.newContext({ baseURL: BASE });
    try {
      const enrolled = await device.post('/api/devices/device-b0b0cafe/register', { data: { token_code: code, device_info: { mac: '00:15:65:aa:bb:cc', hostname: 'lobby' } } });
      assert.equal(enrolled.status(), 200, await enrolled.text());
      const { device_secret: secret } = await enrolled.json();
      const beat = await device.post('/api/devices/device-b0b0cafe/online', { headers: { Authorization: `Bearer ${secret}` }, data: {} });
      assert.equal(beat.status(), 200, await beat.text());
    } finally {
      await device.dispose();
    }
    // The page reads itself again: the token is gone, the device is online.
    const devices = main.getByRole('table', { name: 'Enrolled devices' });
    const row = devices.getByRole('row').filter({ hasText: 'device-b0b0cafe' });
    await expectText(row, /Online/);
    await expectText(row, /00:15:65:aa:bb:cc/);
    await expectText(tokens, /No unused tokens\./);
    await row.getByRole('button', { name: 'Unregister device-b0b0cafe' }).click();
    await page.getByRole('dialog', { name: 'Unregister device-b0b0cafe?' }).getByRole('button', { name: 'Unregister', exact: true }).click();
    await expectText(devices, /No device has enrolled yet\./);
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

// Two-factor authentication (spec 07) for a user the test creates: the server runs with
// `security.mfa.required_for: [user]`, so the user is made to enrol at the first login.

const MFA_USER = '3001';
const MFA_PASSWORD = 'Mfa-User-Passw0rd-7';

/** RFC 4648 base32 (the key authenticator apps are given), spaces ignored. */
function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const out = [];
  let bits = 0;
  let value = 0;
  for (const c of text.replace(/\s+/g, '')) {
    const v = alphabet.indexOf(c);
    assert.ok(v >= 0, `${c} is not a base32 digit`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >> bits) & 0xff);
      value &= (1 << bits) - 1;
    }
  }
  return Buffer.from(out);
}

/** The RFC 6238 code (SHA-1, 6 digits) of 30 s time step `step`. */
function totpCode(key, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

const totpStepNow = () => Math.floor(Date.now() / 30_000);

/**
 * An API client logged in as the admin 1001 (dispose of it when done). The panel test
 * above changes 1001's password; run alone, this test makes that change itself.
 */
async function adminApi() {
  const anon = await request.newContext({ baseURL: BASE });
  try {
    let res = await anon.post('/api/auth/login', { data: { extension: '1001', password: NEW_PASSWORD } });
    if (res.status() === 401) {
      res = await anon.post('/api/auth/login', { data: { extension: '1001', password: BANNER_PASSWORD } });
      assert.equal(res.status(), 200, await res.text());
      res = await anon.post('/api/auth/password', {
        headers: { Authorization: `Bearer ${(await res.json()).token}` },
        data: { current_password: BANNER_PASSWORD, new_password: NEW_PASSWORD },
      });
    }
    assert.equal(res.status(), 200, await res.text());
    const { token } = await res.json();
    return await request.newContext({ baseURL: BASE, extraHTTPHeaders: { Authorization: `Bearer ${token}` } });
  } finally {
    await anon.dispose();
  }
}

test('my account: two-factor authentication with an authenticator app, a security key and backup codes', { timeout: 120_000 }, async (t) => {
  assert.ok(BASE, 'SWITCHBOARD_URL is not set: start a fresh server and set it to http://127.0.0.1:PORT');
  assert.ok(BANNER_PASSWORD, 'SWITCHBOARD_PASSWORD is not set: set it to the first-start banner password of extension 1001');
  assert.equal(totpCode(Buffer.from('12345678901234567890'), 1), '287082', 'RFC 6238 test vector');

  const admin = await adminApi();
  t.after(async () => {
    await admin.delete(`/api/extensions/${MFA_USER}`);
    await admin.dispose();
  });
  const created = await admin.post('/api/extensions', {
    data: { number: MFA_USER, name: 'Mia Factor', password: MFA_PASSWORD, must_change_password: false },
  });
  assert.equal(created.status(), 201, await created.text());

  const { context, page, problems, step, main, alert, flash, heading, atRoute, expectText } = await openPanel(t, 'mfa');
  // Security keys need a secure context and a domain as relying party id: localhost is
  // both (the server's default relying party), 127.0.0.1 is neither.
  const origin = new URL(BASE);
  origin.hostname = 'localhost';
  const nav = page.getByRole('navigation', { name: 'Main' });
  const status = main.getByRole('region', { name: 'Two-factor authentication' });

  async function logIn() {
    await page.getByLabel('Extension', { exact: true }).fill(MFA_USER);
    await page.getByLabel('Password', { exact: true }).fill(MFA_PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
  }
  async function logOutAndIn() {
    await page.getByRole('button', { name: 'Log out' }).click();
    await atRoute('/login');
    await logIn();
  }
  const secondStep = async () => {
    await heading('Two-factor authentication').waitFor();
    return page.getByLabel('Authenticator code, backup code or YubiKey');
  };
  const openAccount = async () => {
    await nav.getByRole('link', { name: 'My account' }).click();
    await atRoute('/account');
    await heading('My account').waitFor();
  };

  await step('a user who must enrol is kept on My account', async () => {
    await page.goto(`${origin.origin}/admin/`);
    await atRoute('/login');
    await logIn();
    await atRoute('/account');
    await heading('My account').waitFor();
    await expectText(main, /administrator requires two-factor authentication/);
    await expectText(status, /StatusOff/);
    assert.equal(await nav.isVisible(), false);
    await page.goto(`${origin.origin}/admin/#/dashboard`);
    await atRoute('/account');
    await heading('My account').waitFor();
  });

  let key;
  let backupCodes;
  let enrolStep;
  await step('set up an authenticator app: QR code, key, code, backup codes', async () => {
    await page.getByRole('button', { name: 'Set up an authenticator app' }).click();
    const qr = main.getByRole('img', { name: 'QR code to scan with your authenticator app' });
    // The SVG decodes as an image under the panel's CSP.
    assert.ok(await qr.evaluate(async (img) => { await img.decode(); return img.naturalWidth; }) > 0);
    const shown = await page.getByLabel('Key to type in instead').inputValue();
    assert.match(shown, /^[A-Z2-7]{4}( [A-Z2-7]{4})*$/);
    key = base32Decode(shown);
    assert.equal(key.length, 20, '160-bit secret');
    enrolStep = totpStepNow();
    await page.getByLabel('Code from the app').fill(totpCode(key, enrolStep));
    await page.getByRole('button', { name: 'Verify and turn on' }).click();
    const dialog = page.getByRole('dialog', { name: 'Your backup codes' });
    await dialog.waitFor();
    backupCodes = await dialog.getByRole('list', { name: 'Backup codes' }).getByRole('listitem').allTextContents();
    assert.equal(backupCodes.length, 10);
    for (const c of backupCodes) assert.match(c, /^[A-Z0-9]{4}-[A-Z0-9]{4}$/);
    await dialog.getByRole('button', { name: 'Done' }).click();
    await expectText(flash, /authenticator app is set up/);
    await expectText(status, /StatusOn/);
    await expectText(status, /Backup codes left10/);
    await nav.waitFor();
  });

  await step('log in: a wrong code is refused; after five the login is over', async () => {
    await logOutAndIn();
    const code = await secondStep();
    // Codes that are right for no step the server accepts now.
    const valid = new Set([-1, 0, 1, 2].map((d) => totpCode(key, enrolStep + d)));
    const wrong = [];
    for (let c = 100000; wrong.length < 6; c += 1) if (!valid.has(String(c))) wrong.push(String(c));
    const answered = () => page.waitForResponse((res) => res.url().endsWith('/api/auth/mfa'));
    for (const [i, c] of wrong.entries()) {
      await code.fill(c);
      await Promise.all([answered(), page.getByRole('button', { name: 'Verify', exact: true }).click()]);
      if (i === 0) {
        await expectText(alert, /second factor is wrong/);
        assert.equal(await code.getAttribute('aria-invalid'), 'true');
        await heading('Two-factor authentication').waitFor();
      }
    }
    // Five wrong answers kill the mfa_token: the sixth is sent back to the password.
    await heading('Log in').waitFor();
    await expectText(alert, /log in again/);
  });

  await step('log in: password, then the authenticator code', async () => {
    await logIn();
    // The step used at enrolment is spent: the next one is within the server's window.
    await (await secondStep()).fill(totpCode(key, enrolStep + 1));
    await page.getByRole('button', { name: 'Verify', exact: true }).click();
    await atRoute('/dashboard');
    await heading('Dashboard').waitFor();
  });

  await step('add a security key (a virtual authenticator)', async () => {
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'usb', hasResidentKey: false, hasUserVerification: true, isUserVerified: true },
    });
    await openAccount();
    await page.getByLabel('Security key name').fill('Blue key');
    await page.getByRole('button', { name: 'Add security key' }).click();
    await expectText(flash, /The security key Blue key was added/);
    const keys = main.getByRole('table', { name: 'Security keys' });
    await keys.getByRole('row').filter({ hasText: 'Blue key' }).waitFor();
    await expectText(status, /Security keys1/);
  });

  await step('log in with the security key', async () => {
    await logOutAndIn();
    await secondStep();
    await page.getByRole('button', { name: 'Use security key' }).click();
    await atRoute('/dashboard');
    await heading('Dashboard').waitFor();
  });

  await step('a backup code logs in once', async () => {
    await logOutAndIn();
    await (await secondStep()).fill(backupCodes[0]);
    await page.getByRole('button', { name: 'Verify', exact: true }).click();
    await atRoute('/dashboard');
    await logOutAndIn();
    const code = await secondStep();
    await code.fill(backupCodes[0]);
    await page.getByRole('button', { name: 'Verify', exact: true }).click();
    await expectText(alert, /second factor is wrong, expired or already used/);
    await code.fill(backupCodes[1]);
    await page.getByRole('button', { name: 'Verify', exact: true }).click();
    await atRoute('/dashboard');
    await openAccount();
    await expectText(status, /Backup codes left8/);
  });

  await step('remove the security key', async () => {
    const keys = main.getByRole('table', { name: 'Security keys' });
    await keys.getByRole('button', { name: 'Remove security key Blue key' }).click();
    await page.getByRole('dialog', { name: 'Remove the security key Blue key?' }).getByRole('button', { name: 'Remove', exact: true }).click();
    await expectText(flash, /The security key Blue key was removed/);
    await expectText(keys, /No security keys\./);
    await expectText(status, /StatusOn/);
  });

  await step('turn two-factor authentication off with a backup code: enrolment is due again', async () => {
    await page.getByLabel('Current code').fill(backupCodes[2]);
    await page.getByRole('button', { name: 'Turn off', exact: true }).click();
    await page.getByRole('dialog', { name: 'Turn off two-factor authentication?' }).getByRole('button', { name: 'Turn off', exact: true }).click();
    await expectText(flash, /Two-factor authentication is off/);
    await expectText(status, /StatusOff/);
    await expectText(main, /administrator requires two-factor authentication/);
    // The password alone logs in again, straight to the enrolment.
    await logOutAndIn();
    await atRoute('/account');
    await heading('My account').waitFor();
  });

  assert.deepEqual(problems, [], 'the page logged errors');
});

test('an admin turns off the two-factor authentication of a user who lost their phone', { timeout: 60_000 }, async (t) => {
  assert.ok(BASE, 'SWITCHBOARD_URL is not set');
  const admin = await adminApi();
  const user = '3002';
  t.after(async () => {
    await admin.delete(`/api/extensions/${user}`);
    await admin.dispose();
  });
  const created = await admin.post('/api/extensions', {
    data: { number: user, name: 'Lou Stphone', password: MFA_PASSWORD, must_change_password: false },
  });
  assert.equal(created.status(), 201, await created.text());
  // The user sets up an authenticator app through the API (the page for that is tested above).
  const api = await request.newContext({ baseURL: BASE });
  t.after(() => api.dispose());
  const login = await (await api.post('/api/auth/login', { data: { extension: user, password: MFA_PASSWORD } })).json();
  const headers = { Authorization: `Bearer ${login.token}` };
  const enrol = await (await api.post('/api/mfa/enroll', { headers, data: { extension: user } })).json();
  const verified = await api.post('/api/mfa/verify-enrollment', {
    headers, data: { extension: user, code: totpCode(base32Decode(enrol.secret), totpStepNow()) },
  });
  assert.equal(verified.status(), 200, await verified.text());

  const { page, problems, step, main, heading, atRoute, expectText } = await openPanel(t, 'mfa-admin');
  const section = main.getByRole('region', { name: 'Two-factor authentication' });

  await step('the admin sees the user has two-factor authentication', async () => {
    await page.goto(`${BASE}/admin/#/extensions/${user}`);
    await atRoute('/login');
    await page.getByLabel('Extension', { exact: true }).fill('1001');
    await page.getByLabel('Password', { exact: true }).fill(NEW_PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await atRoute(`/extensions/${user}`);
    await heading(`Extension ${user}`).waitFor();
    await expectText(section, /On: totp, backup code/);
  });

  await step('and turns it off: the user must set it up again', async () => {
    await section.getByRole('button', { name: 'Turn off two-factor authentication' }).click();
    await page.getByRole('dialog', { name: `Turn off two-factor authentication for ${user}?` })
      .getByRole('button', { name: 'Turn off', exact: true }).click();
    await expectText(section, /Off: this extension must set it up at its next login/);
    const st = await (await admin.get(`/api/mfa/status/${user}`)).json();
    assert.equal(st.enabled, false);
    // The password alone logs in again (to the enrolment).
    const again = await (await api.post('/api/auth/login', { data: { extension: user, password: MFA_PASSWORD } })).json();
    assert.ok(again.token && again.mfa_enrollment_required, JSON.stringify(again));
  });

  assert.deepEqual(problems, [], 'the page logged errors');
});
