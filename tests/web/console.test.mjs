// The web console in a real browser: Debian's chromium driven by playwright-core, against the
// real binary on a free loopback port with a fresh data directory. One browser for every test.
// Each page is checked with axe (no serious or critical violation); any JavaScript error or
// Content-Security-Policy violation fails the test it happens in; the composer is worked with
// the keyboard alone. Screenshots of each page at desktop and phone widths go to
// build/screenshots/. Ends with "N passed, N failed"; the exit status is 1 on any failure.
//
// usage: node tests/web/console.test.mjs [BINARY]   (default build/asan/candor)
// CANDOR_WEB_ONLY=TEXT runs only the tests whose name contains TEXT.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import AxeBuilder from '@axe-core/playwright';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.resolve(ROOT, process.argv[2] || 'build/asan/candor');
const SHOTS = path.join(ROOT, 'build/screenshots');
const CHROMIUM = process.env.CANDOR_CHROMIUM || '/usr/bin/chromium';
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const PASSWORD = 'correct horse battery staple';
const EMAIL = 'ana.silva@example.com';
const CARD_DRAFT = 'Your card 4242 4242 4242 4242 is on file. Buy now or lose this deal forever!';

let passed = 0;
let failed = 0;
const figures = {};

function check(cond, what) {
  if (!cond) throw new Error(what);
}

// ---- the server ----

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function run(args, input) {
  const r = spawnSync(BIN, args, { input, encoding: 'utf8', env: { ...process.env } });
  if (r.status !== 0) throw new Error(`candor ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function startServer() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'candor-web-'));
  const data = path.join(tmp, 'data');
  fs.mkdirSync(data, { mode: 0o700 });
  run(['init', '--data', data]);
  for (const [user, role, name] of [['ana', 'agent', 'Ana Agent'], ['sam', 'supervisor', 'Sam Supervisor'],
    ['ada', 'admin', 'Ada Admin'], ['cora', 'compliance', 'Cora Compliance']]) {
    run(['staff', 'add', user, '--role', role, '--name', name, '--data', data], `${PASSWORD}\n`);
  }
  const port = await freePort();
  const log = fs.openSync(path.join(tmp, 'server.log'), 'w');
  const proc = spawn(BIN, ['serve', '--data', data, '--listen', `127.0.0.1:${port}`], {
    stdio: ['ignore', log, log],
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  const token = fs.readFileSync(path.join(data, 'admin.token'), 'utf8').trim();
  return { tmp, data, proc, base, token };
}

async function stopServer(srv) {
  const done = new Promise((resolve) => srv.proc.on('exit', (code, sig) => resolve({ code, sig })));
  srv.proc.kill('SIGTERM');
  const { code } = await done;
  const log = fs.readFileSync(path.join(srv.tmp, 'server.log'), 'utf8');
  fs.rmSync(srv.tmp, { recursive: true, force: true });
  if (code !== 0) throw new Error(`the server exited with ${code}:\n${log.slice(-3000)}`);
}

async function apiAs(srv, method, p, body, headers = {}) {
  const res = await fetch(srv.base + p, {
    method,
    headers: {
      Authorization: `Bearer ${srv.token}`, 'Content-Type': 'application/json', ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

// A customer with 36 inbound messages over three channels, so the timeline needs a second page.
async function seed(srv) {
  let customer = null;
  const channels = ['email', 'sms', 'chat'];
  for (let i = 0; i < 36; i++) {
    const r = await apiAs(srv, 'POST', '/v1/interactions', {
      identity: { type: 'email', value: EMAIL }, channel: channels[i % 3], direction: 'inbound',
      occurred_at: new Date(Date.UTC(2026, 10, 1, 9, i)).toISOString(),
      body: `Message ${i + 1} about order ${1000 + i}`,
    });
    check(r.status === 201, `seeding: ${r.status} ${JSON.stringify(r.body)}`);
    customer = r.body.customer_id;
  }
  // Marketing: agreed in general, withdrawn for SMS.
  for (const [channel, state] of [['*', 'given'], ['sms', 'withdrawn']]) {
    const r = await apiAs(srv, 'POST', '/v1/consents', {
      customer_id: customer, purpose: 'marketing', channel, state, method: 'web_form',
    });
    check(r.status === 201, `seeding consent: ${r.status} ${JSON.stringify(r.body)}`);
  }
  return customer;
}

// ---- pages ----

// A page whose JavaScript errors and CSP violations are collected; expected refusals (4xx
// answers the page explains) are network events, not errors of the page.
async function newPage(ctx) {
  const page = await ctx.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`JavaScript error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const t = m.text();
    if (/^Failed to load resource: the server responded with a status of 4\d\d/.test(t)) return;
    page.problems.push(`console error: ${t}`);
  });
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  return page;
}

function noProblems(page) {
  check(page.problems.length === 0, page.problems.join('\n'));
}

async function axe(page, name) {
  const r = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']).analyze();
  const bad = r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  check(bad.length === 0, `${name}: accessibility violations:\n${bad.map((v) =>
    `  ${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`).join('\n')}`);
}

// Nothing wider than the viewport: the page reflows (phone width, 200% zoom).
async function reflows(page, name) {
  const over = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  check(over <= 0, `${name}: ${over}px wider than a ${page.viewportSize().width}px viewport`);
}

async function shots(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.setViewportSize(DESKTOP);
  await page.screenshot({ path: path.join(SHOTS, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await reflows(page, `${name} at phone width`);
  await page.screenshot({ path: path.join(SHOTS, `${name}-phone.png`), fullPage: true });
  // 200% zoom of a 1280px window lays out like a 640px one.
  await page.setViewportSize({ width: 640, height: 450 });
  await reflows(page, `${name} at 200% zoom`);
  await page.setViewportSize(DESKTOP);
}

// Waits until fn(arg), run in the page, is true. (Playwright's waitForFunction evaluates a
// string, which the console's Content-Security-Policy rightly refuses.)
async function until(page, fn, arg, what = 'a condition') {
  const end = Date.now() + 20000;
  while (Date.now() < end) {
    if (await page.evaluate(fn, arg)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

// Presses Tab until the element matching selector has the focus (at most 80 presses).
async function tabTo(page, selector, shift = false) {
  for (let i = 0; i < 80; i++) {
    if (await page.evaluate((s) => document.activeElement && document.activeElement.matches(s), selector)) return;
    await page.keyboard.press(shift ? 'Shift+Tab' : 'Tab');
  }
  throw new Error(`the keyboard never reached ${selector}`);
}

async function signIn(ctx, srv, user) {
  const page = await newPage(ctx);
  await page.goto(`${srv.base}/console/`);
  await page.fill('#username', user);
  await page.fill('#password', PASSWORD);
  await page.click('button[type="submit"]');
  await page.waitForURL('**/console/workspace');
  await page.waitForSelector('body[data-ready="true"]');
  return page;
}

async function choosePurpose(page, purpose) {
  await page.selectOption('#purpose-select', purpose);
  await page.click('#purpose-form button[type="submit"]');
  await until(page, (p) => document.getElementById('purpose-now').textContent !== 'none chosen'
    && document.getElementById('purpose-select').value === p, purpose);
}

async function openCustomer(page) {
  await page.fill('#find-value', EMAIL);
  await page.click('#find-form button[type="submit"]');
  await page.waitForSelector('#timeline li');
}

async function typeDraft(page, text) {
  await page.focus('#draft');
  await page.keyboard.type(text);
  await until(page, (t) => document.getElementById('guard-summary').textContent.startsWith('The guard found')
    && document.getElementById('draft').value === t, text);
}

// ---- the tests ----

const tests = [];
function test(name, fn) {
  tests.push({ name, fn });
}

test('sign-in page: accessible, wrong password explained, no session without one', async ({ browser, srv }) => {
  const ctx = await browser.newContext({ viewport: DESKTOP });
  const page = await newPage(ctx);
  const res = await page.goto(`${srv.base}/console/`);
  const h = res.headers();
  check(h['content-security-policy'].includes("frame-ancestors 'none'"), 'CSP with frame-ancestors');
  check(!h['content-security-policy'].includes('unsafe-inline'), 'no unsafe-inline');
  await axe(page, 'sign-in');
  await shots(page, 'signin');
  await page.fill('#username', 'ana');
  await page.fill('#password', 'not the password at all');
  await page.click('button[type="submit"]');
  await page.waitForSelector('#signin-error:not([hidden])');
  check((await page.textContent('#signin-error')).includes('the username or the password is wrong'),
    'the error names what went wrong');
  check((await ctx.cookies()).length === 0, 'no cookie after a failed sign-in');
  noProblems(page);
  // A page of the console without a session sends the person to the sign-in page.
  await page.goto(`${srv.base}/console/workspace`);
  await page.waitForURL(`${srv.base}/console/`);
  await ctx.close();
});

test('agent: keyboard only through sign-in, purpose, search, timeline and the composer; card and pressure underlined, rewrite applied, sent and stored', async ({ browser, srv, customer }) => {
  const ctx = await browser.newContext({ viewport: DESKTOP, locale: 'de-DE' });
  const page = await newPage(ctx);
  await page.goto(`${srv.base}/console/`);
  await tabTo(page, '#username');
  await page.keyboard.type('ana');
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.waitForURL('**/console/workspace');
  await page.waitForSelector('body[data-ready="true"]');
  const cookie = (await ctx.cookies()).find((c) => c.name === 'candor_session');
  check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', 'an HttpOnly, SameSite=Strict session cookie');
  check(await page.evaluate(() => document.cookie === ''), 'the script cannot read the cookie');
  check(await page.isVisible('#purpose-needed'), 'the page asks for a purpose first');
  await axe(page, 'workspace before a purpose');

  // The purpose, switched deliberately: the select, then the button.
  await tabTo(page, '#purpose-select');
  check(await page.evaluate(() => document.getElementById('purpose-select').value) === 'service', 'service offered first');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  await until(page, () => document.getElementById('purpose-now').textContent === 'Customer service');
  await page.waitForSelector('#customers li');

  // Search by email, with the keyboard.
  await tabTo(page, '#find-value');
  await page.keyboard.type(EMAIL);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#timeline li');
  check(await page.locator('#timeline li').count() === 25, 'the first page of the timeline');
  // Dates in the reader's locale (de-DE writes "01.11.2026, 09:35").
  const firstDate = await page.textContent('#timeline li time');
  check(/^\d\d\.\d\d\.2026, \d\d:\d\d$/.test(firstDate), `a German date, got "${firstDate}"`);
  // Infinite scroll: the end of the list comes into view and the next page loads.
  await page.evaluate(() => { const s = document.getElementById('timeline-scroll'); s.scrollTop = s.scrollHeight; });
  await until(page, () => document.querySelectorAll('#timeline li').length === 36);
  check(await page.isHidden('#timeline-more'), 'no more pages after the last');
  // The channel filter, with arrow keys in the radio group.
  await tabTo(page, 'input[name="channel-filter"]');
  await page.keyboard.press('ArrowRight'); // All -> Email
  await page.keyboard.press('ArrowRight'); // Email -> SMS
  await until(page, () => document.querySelectorAll('#timeline li').length === 12);
  const chans = await page.$$eval('#timeline li .meta span:first-child', (s) => [...new Set(s.map((x) => x.textContent))]);
  check(chans.length === 1 && chans[0] === 'SMS', `only SMS shown, got ${chans}`);
  await axe(page, 'workspace with a customer');

  // The composer: the guard checks as the agent types.
  await tabTo(page, '#draft');
  const t0 = Date.now();
  await page.keyboard.type(CARD_DRAFT, { delay: 5 });
  const typed = Date.now();
  await page.waitForSelector('#mirror mark.block');
  figures.guard_keystroke_to_underline_ms = Date.now() - typed;
  figures.typing_ms = typed - t0;
  const marks = await page.$$eval('#mirror mark', (ms) => ms.map((m) => [m.className, m.textContent]));
  check(marks.some(([c, t]) => c === 'block' && t === '4242 4242 4242 4242'), `card underlined: ${JSON.stringify(marks)}`);
  check(marks.some(([c, t]) => c === 'warn' && t.includes('Buy now')), `pressure underlined: ${JSON.stringify(marks)}`);
  const findings = await page.$$eval('#findings > li', (ls) => ls.map((l) => l.textContent));
  check(findings.some((f) => f.includes('payment card') && f.includes('PCI DSS')), 'the card finding with its references');
  check(findings.some((f) => /pressure|urgency/i.test(f)), 'the pressure finding');
  check((await page.textContent('#consent')).startsWith('You may contact this customer by Email for Customer service'),
    `the consent decision before sending: ${await page.textContent('#consent')}`);
  await axe(page, 'composer with findings');
  await shots(page, 'workspace');

  // One key press applies the rewrite.
  await tabTo(page, '#findings button[id^="apply-"]');
  check((await page.evaluate(() => document.activeElement.textContent)).includes('•••• 4242'), 'the rewrite is the masked card');
  await page.keyboard.press('Enter');
  await until(page, () => document.getElementById('draft').value.includes('•••• 4242')
    && !document.querySelector('#mirror mark.block') && document.querySelector('#mirror mark.warn'));
  // Send, with the keyboard.
  await tabTo(page, '#send');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#sent:not([hidden])');
  check((await page.textContent('#sent')).startsWith('Sent and stored'), 'the page says it was stored');
  noProblems(page);

  // Stored: the newest outbound message, masked, with the guard's warning kept.
  const tl = await apiAs(srv, 'GET', `/v1/customers/${customer}/timeline?direction=outbound`, undefined, { 'Candor-Purpose': 'service' });
  check(tl.status === 200 && tl.body.items.length === 1, `one outbound message stored: ${JSON.stringify(tl.body)}`);
  const it = tl.body.items[0];
  check(it.body === 'Your card •••• 4242 is on file. Buy now or lose this deal forever!', `stored as sent: ${it.body}`);
  check(it.guard && it.guard.verdict === 'warn', 'the warning is kept with the message');
  // The ledger names the person and the purpose.
  const audit = await apiAs(srv, 'GET', '/v1/audit?limit=200');
  const mine = audit.body.items.filter((e) => e.actor_name === 'Ana Agent');
  check(mine.some((e) => e.action === 'staff.purpose' && e.purpose === 'service'), 'the purpose switch is in the ledger');
  check(mine.some((e) => e.action === 'interaction.ingest' || e.action === 'interaction.create'), `the send is in the ledger: ${JSON.stringify(mine.map((e) => e.action))}`);
  await ctx.close();
});

test('refusals explained in plain words; an agent cannot override, a supervisor can with a reason', async ({ browser, srv, customer }) => {
  const ctx = await browser.newContext({ viewport: DESKTOP });
  const page = await signIn(ctx, srv, 'ana');
  await choosePurpose(page, 'service');
  await openCustomer(page);
  await typeDraft(page, CARD_DRAFT);
  await page.click('#send');
  await page.waitForSelector('#refusal:not([hidden])');
  const why = await page.textContent('#refusal-text');
  check(why.startsWith('Not sent: the communication guard found something'), `plain words: ${why}`);
  check(why.includes('Only a supervisor may override'), 'the agent is told who may override');
  check(await page.isHidden('#override'), 'no override for an agent');
  check(await page.evaluate(() => document.activeElement.id) === 'refusal', 'the refusal takes the focus');
  await axe(page, 'refusal');
  noProblems(page);
  await ctx.close();

  const sctx = await browser.newContext({ viewport: DESKTOP });
  const sup = await signIn(sctx, srv, 'sam');
  await choosePurpose(sup, 'service');
  await openCustomer(sup);
  await typeDraft(sup, CARD_DRAFT);
  await sup.click('#send');
  await sup.waitForSelector('#override:not([hidden])');
  await sup.fill('#override-reason', 'The customer asked to confirm the full number on file.');
  await sup.click('#override-send');
  await sup.waitForSelector('#sent:not([hidden])');
  noProblems(sup);
  await sctx.close();
  const tl = await apiAs(srv, 'GET', `/v1/customers/${customer}/timeline?direction=outbound`, undefined, { 'Candor-Purpose': 'service' });
  check(tl.body.items.some((i) => i.guard && i.guard.verdict === 'block'), 'the overridden message is stored with its verdict');
});

test('consent refusal (403) explained; a purpose outside the role is not offered', async ({ browser, srv }) => {
  const ctx = await browser.newContext({ viewport: DESKTOP });
  const page = await signIn(ctx, srv, 'ana');
  const offered = await page.$$eval('#purpose-select option', (os) => os.map((o) => o.value));
  check(!offered.includes('marketing'), `an agent is not offered marketing: ${offered}`);
  await ctx.close();
  const actx = await browser.newContext({ viewport: DESKTOP });
  const adm = await signIn(actx, srv, 'ada');
  await choosePurpose(adm, 'marketing');
  await openCustomer(adm);
  await until(adm, () => document.getElementById('consent').classList.contains('allow'), null, 'email allowed');
  await adm.selectOption('#channel', 'sms');
  await until(adm, () => document.getElementById('consent').classList.contains('deny'), null, 'sms refused');
  check((await adm.textContent('#consent')).includes('the customer withdrew their consent'), 'the decision says why');
  await typeDraft(adm, 'Our autumn catalogue is out.');
  await adm.click('#send');
  await adm.waitForSelector('#refusal:not([hidden])');
  const why = await adm.textContent('#refusal-text');
  check(why.startsWith('Not sent: the customer withdrew their consent'), `plain words: ${why}`);
  noProblems(adm);
  await actx.close();
});

test('customer privacy: access log, receipts verified in the page, one-click withdrawal refuses the next marketing send', async ({ browser, srv, customer }) => {
  const ctx = await browser.newContext({ viewport: DESKTOP });
  const page = await signIn(ctx, srv, 'cora');
  await page.goto(`${srv.base}/console/privacy`);
  await page.waitForSelector('body[data-ready="true"]');
  await choosePurpose(page, 'legal_obligation');
  await page.fill('#find-value', EMAIL);
  await page.click('#find-form button[type="submit"]');
  await page.waitForSelector('#log-rows tr');
  // The access log names the people who read the data, and why.
  const log = await page.$$eval('#log-rows tr', (rs) => rs.map((r) => r.textContent));
  check(log.some((r) => r.includes('Ana Agent (agent)') && r.includes('Customer service')), `Ana's reads listed: ${log.slice(0, 5)}`);
  // The receipt of the marketing consent verifies with the server's published key.
  await page.click('button[aria-label="Verify the signed receipt of Marketing by every channel"]');
  await page.waitForSelector('#receipt:not([hidden])');
  check((await page.textContent('#receipt')).startsWith('The receipt’s signature is valid.'), await page.textContent('#receipt'));
  await axe(page, 'customer privacy');
  await shots(page, 'privacy');
  // A receipt altered on the way does not verify.
  await page.route('**/receipt', async (route) => {
    const res = await route.fetch();
    const body = await res.json();
    body.signature = (body.signature[0] === '0' ? '1' : '0') + body.signature.slice(1);
    await route.fulfill({ response: res, json: body });
  });
  await page.click('button[aria-label="Verify the signed receipt of Marketing by every channel"]');
  await until(page, () => document.getElementById('receipt').textContent.startsWith('The receipt does not verify'), null, 'a failed verification');
  await page.unroute('**/receipt');
  // One click withdraws; the next marketing message is refused.
  check(await sendAs(srv, customer, 'marketing', 'email') === 201, 'marketing by email is allowed before');
  await page.click('button[aria-label="Withdraw consent to Marketing by every channel"]');
  await page.waitForSelector('#consent-status:not(:empty)');
  check((await page.textContent('#consent-status')).includes('is withdrawn'), await page.textContent('#consent-status'));
  check(await sendAs(srv, customer, 'marketing', 'email') === 403, 'marketing by email is refused after');
  noProblems(page);
  await ctx.close();
});

// Sends an outbound message with the admin token; the status says whether it was allowed.
async function sendAs(srv, customer, purpose, channel) {
  const r = await apiAs(srv, 'POST', '/v1/interactions', {
    customer_id: customer, channel, direction: 'outbound', purpose, body: 'Our autumn catalogue is out.',
  });
  return r.status;
}

test('compliance: the latest signed head, the ledger verified on demand, charts with their CSV', async ({ browser, srv }) => {
  const ctx = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
  const page = await signIn(ctx, srv, 'cora');
  await page.goto(`${srv.base}/console/compliance`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForSelector('#events-by-kind tbody tr');
  await page.click('#verify');
  await until(page, () => document.getElementById('verify-result').textContent.startsWith('The ledger verifies'), null, 'the verification');
  check((await page.textContent('#head')).includes('Entries'), 'the signed head is shown');
  const kinds = await page.$$eval('#events-by-kind tbody th', (ts) => ts.map((t) => t.textContent));
  check(kinds.includes('staff.sign_in') && kinds.includes('staff.purpose'), `the console's events are charted: ${kinds}`);
  const refusals = await page.$$eval('#refusals-by-reason tbody th', (ts) => ts.map((t) => t.textContent));
  check(refusals.some((r) => r.startsWith('staff.sign_in')), `refusals charted: ${refusals}`);
  const [dl] = await Promise.all([page.waitForEvent('download'),
    page.click('button[aria-label="Download the data of “Events by kind” as CSV"]')]);
  const text = fs.readFileSync(await dl.path(), 'utf8');
  check(dl.suggestedFilename() === 'events-by-kind.csv' && text.startsWith('Kind,count\n') && /\nstaff\.sign_in,\d+\n/.test(text), `the CSV: ${text.slice(0, 200)}`);
  await axe(page, 'compliance');
  await shots(page, 'compliance');
  noProblems(page);
  await ctx.close();
});

test('session: changes need the anti-forgery token; purpose fixed by the session; sign-out ends it', async ({ browser, srv }) => {
  const ctx = await browser.newContext({ viewport: DESKTOP });
  const page = await signIn(ctx, srv, 'ana');
  await choosePurpose(page, 'service');
  const r = await page.evaluate(async () => {
    const noToken = await fetch('/v1/guard/check', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"text":"hi"}' });
    const other = await fetch('/v1/customers', { headers: { 'Candor-Purpose': 'billing' } });
    return [noToken.status, other.status];
  });
  check(r[0] === 403, `a change without the token is refused: ${r[0]}`);
  check(r[1] === 403, `a purpose other than the session's is refused: ${r[1]}`);
  await tabTo(page, '#sign-out');
  await page.keyboard.press('Enter');
  await page.waitForURL(`${srv.base}/console/`);
  const after = await page.evaluate(async () => (await fetch('/console/session')).status);
  check(after === 401, `no session after sign-out: ${after}`);
  noProblems(page);
  await ctx.close();
});

test('staff page: administrators add and disable accounts; others are told it is not for them', async ({ browser, srv }) => {
  const ctx = await browser.newContext({ viewport: DESKTOP });
  const page = await signIn(ctx, srv, 'ada');
  await page.goto(`${srv.base}/console/staff`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForSelector('#staff-rows tr');
  await page.fill('#add-name', 'Nia New');
  await page.fill('#add-username', 'nia');
  await page.selectOption('#add-role', 'agent');
  await page.fill('#add-password', 'a long first password');
  await page.click('#add-form button[type="submit"]');
  await page.waitForSelector('#add-result:not([hidden])');
  check((await page.textContent('#add-result')).startsWith('Added Nia New'), await page.textContent('#add-result'));
  await axe(page, 'staff');
  await shots(page, 'staff');
  await page.click('button[aria-label="Disable Nia New"]');
  await until(page, () => [...document.querySelectorAll('#staff-rows tr')].some((tr) => tr.textContent.includes('nia') && tr.textContent.includes('disabled')));
  noProblems(page);
  await ctx.close();
  const actx = await browser.newContext({ viewport: DESKTOP });
  const agent = await signIn(actx, srv, 'ana');
  check(await agent.isHidden('a[href="/console/staff"]'), 'no staff link for an agent');
  check(await agent.isHidden('a[href="/console/compliance"]'), 'no compliance link for an agent');
  await agent.goto(`${srv.base}/console/staff`);
  await agent.waitForSelector('body[data-ready="true"]');
  check(await agent.isVisible('#not-admin'), 'an agent is told the page is for administrators');
  noProblems(agent);
  await actx.close();
});

test('passwords: a person changes their own; an administrator sets a temporary one that must be replaced at sign-in', async ({ browser, srv }) => {
  const ctx = await browser.newContext({ viewport: DESKTOP });
  const r = await apiAs(srv, 'POST', '/v1/staff', {
    username: 'pat', name: 'Pat Person', role: 'agent', password: PASSWORD,
  });
  check(r.status === 201, `adding pat: ${r.status}`);
  const page = await signIn(ctx, srv, 'pat');
  await page.click('#who');
  await page.waitForURL('**/console/account');
  await page.waitForSelector('body[data-ready="true"]');
  check((await page.textContent('#me-username')) === 'pat', 'the account page names the person');
  // Mismatched entries are caught in the page; a wrong current password by the server.
  await page.fill('#pw-current', PASSWORD);
  await page.fill('#pw-new', 'pat chose this one');
  await page.fill('#pw-again', 'pat chose another');
  await page.click('#password-form button[type="submit"]');
  await until(page, () => document.getElementById('pw-result').textContent.includes('not the same'));
  await page.fill('#pw-current', 'not my password at all');
  await page.fill('#pw-new', 'pat chose this one');
  await page.fill('#pw-again', 'pat chose this one');
  await page.click('#password-form button[type="submit"]');
  await until(page, () => document.getElementById('pw-result').textContent.includes('current password is wrong'));
  await page.fill('#pw-current', PASSWORD);
  await page.fill('#pw-new', 'pat chose this one');
  await page.fill('#pw-again', 'pat chose this one');
  await page.click('#password-form button[type="submit"]');
  await until(page, () => document.getElementById('pw-result').textContent.startsWith('Your password is changed'));
  check(await page.inputValue('#pw-current') === '', 'the fields are emptied');
  await axe(page, 'account');
  await shots(page, 'account');
  noProblems(page);
  await ctx.close();

  // The administrator sets a temporary password from the staff page.
  const actx = await browser.newContext({ viewport: DESKTOP });
  const admin = await signIn(actx, srv, 'ada');
  await admin.goto(`${srv.base}/console/staff`);
  await admin.waitForSelector('body[data-ready="true"]');
  await admin.waitForSelector('#reset-who option', { state: 'attached' });
  await admin.selectOption('#reset-who', { label: 'Pat Person (pat)' });
  await admin.fill('#reset-password', 'temporary for pat');
  await admin.click('#reset-form button[type="submit"]');
  await until(admin, () => document.getElementById('reset-result').textContent.includes('temporary password'));
  await until(admin, () => [...document.querySelectorAll('#staff-rows tr')].some((tr) => tr.textContent.includes('pat') && tr.textContent.includes('must choose a new password')));
  noProblems(admin);
  await actx.close();

  // Pat signs in with it and must choose their own before anything else.
  const pctx = await browser.newContext({ viewport: DESKTOP });
  const p2 = await newPage(pctx);
  await p2.goto(`${srv.base}/console/`);
  await p2.fill('#username', 'pat');
  await p2.fill('#password', 'temporary for pat');
  await p2.click('#signin-form button[type="submit"]');
  await p2.waitForSelector('#change:not([hidden])');
  check(await p2.evaluate(() => document.activeElement.id) === 'change-h', 'focus moves to the new form');
  await axe(p2, 'signin-change');
  await p2.fill('#new-password', 'pat\'s own passphrase');
  await p2.fill('#new-again', 'pat\'s own passphrase');
  await p2.keyboard.press('Enter');
  await p2.waitForURL('**/console/workspace');
  await p2.waitForSelector('body[data-ready="true"]');
  noProblems(p2);
  await pctx.close();
});

// A receiver for the sign-in codes the server sends, as the integration that mails customers
// would be: a real HTTP server on a loopback port, subscribed to customer.sign_in_code.
async function codeReceiver(srv) {
  const got = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      try { got.push(JSON.parse(body)); } catch { /* not ours */ }
      res.writeHead(204);
      res.end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const sub = await apiAs(srv, 'POST', '/v1/webhooks', {
    url: `http://127.0.0.1:${server.address().port}/hook`, events: ['customer.sign_in_code'],
    purpose: 'service',
  });
  check(sub.status === 201, `subscribing: ${JSON.stringify(sub.body)}`);
  return {
    async code(challenge) {
      for (let i = 0; i < 400; i++) {
        const e = got.find((x) => x.data && x.data.challenge_id === challenge);
        if (e) return e.data.code;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error('no sign-in code was delivered');
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

test('customer privacy centre: the customer signs in with a code, sees what is held and who looked, withdraws marketing (the next send is refused), files a request, signs out', async ({ browser, srv, customer }) => {
  const recv = await codeReceiver(srv);
  const ctx = await browser.newContext({ viewport: DESKTOP, locale: 'de-DE' });
  try {
    // Marketing by email is allowed for the customer before they change their mind.
    const given = await apiAs(srv, 'POST', '/v1/consents', {
      customer_id: customer, purpose: 'marketing', channel: 'email', state: 'given', method: 'web_form',
    });
    check(given.status === 201, `consent: ${JSON.stringify(given.body)}`);
    // Someone at the help desk reads the record, for a reason the customer will see.
    const agent = await apiAs(srv, 'POST', '/v1/tokens', { role: 'agent', name: 'Agnes (help desk)' });
    const read = await fetch(`${srv.base}/v1/customers/${customer}`, {
      headers: { Authorization: `Bearer ${agent.body.token}`, 'Candor-Purpose': 'service' },
    });
    check(read.status === 200, `the agent's read: ${read.status}`);
    const page = await newPage(ctx);
    let challenge = null;
    page.on('response', async (res) => {
      if (res.url().endsWith('/v1/me/sign-in-codes') && res.status() === 202) challenge = (await res.json()).challenge_id;
    });
    await page.goto(`${srv.base}/console/me`);
    await page.waitForSelector('body[data-ready="true"]');
    await axe(page, 'privacy centre sign-in');
    // The keyboard alone: the identity, the code, sign in.
    await tabTo(page, '#id-value');
    await page.keyboard.type(EMAIL);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#signin-form:not([hidden])');
    await until(page, () => document.activeElement && document.activeElement.id === 'code', null, 'focus on the code');
    // A wrong code is explained and counted.
    for (let i = 0; i < 200 && !challenge; i++) await new Promise((r) => setTimeout(r, 25));
    const code = await recv.code(challenge);
    const wrong = String((Number(code) + 1) % 1e8).padStart(8, '0');
    await page.keyboard.type(wrong);
    await page.keyboard.press('Enter');
    await until(page, () => document.getElementById('signin-status').textContent.includes('4 tries left'), null, 'a wrong code explained');
    await page.keyboard.type(code);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#centre:not([hidden]) #consent-rows tr');
    const cookie = (await ctx.cookies()).find((c) => c.name === 'candor_me');
    check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict' && cookie.path === '/v1/me', `cookie: ${JSON.stringify(cookie)}`);
    check(!(await page.evaluate(() => document.cookie)).includes('candor_me'), 'the script cannot read the cookie');
    check((await page.textContent('#held')).includes(EMAIL), 'what is held shows the address');
    await page.waitForSelector('#log-rows tr');
    const log = await page.$$eval('#log-rows tr', (rs) => rs.map((r) => r.textContent));
    check(log.some((r) => r.includes('Agnes (help desk) (agent)') && r.includes('Customer service')), `staff reads listed: ${log.slice(0, 5)}`);
    check(log.some((r) => r.includes('You') && r.includes('Legal obligation')), 'the customer’s own reads are listed');
    await axe(page, 'privacy centre');
    await shots(page, 'privacy-centre');
    // One click withdraws; the next marketing email is refused.
    check(await sendAs(srv, customer, 'marketing', 'email') === 201, 'marketing by email is allowed before');
    await page.click('button[aria-label="Withdraw my consent to Marketing by email"]');
    await until(page, () => document.getElementById('consent-status').textContent.includes('You withdrew'), null, 'the withdrawal confirmed');
    check(await sendAs(srv, customer, 'marketing', 'email') === 403, 'marketing by email is refused after');
    check(await page.isVisible('button[aria-label="Agree to Marketing by email"]'), 'agreeing again is one click too');
    // A request, verified by the session, with its deadline.
    await page.selectOption('#request-type', 'access');
    await page.click('#request-form button[type="submit"]');
    await until(page, () => document.getElementById('request-status').textContent.startsWith('We received your request'), null, 'the request confirmed');
    check((await page.textContent('#request-rows')).includes('A copy of my data'), 'the request is listed');
    const mine = await apiAs(srv, 'GET', `/v1/dsar?customer_id=${customer}&type=access`);
    check(mine.body.items.some((r) => r.intake === 'self_service' && r.state === 'in_progress'), `verified by the session: ${JSON.stringify(mine.body)}`);
    // Signing out ends the session; the page asks for a new code.
    await page.click('#sign-out');
    await page.waitForSelector('#signin:not([hidden])');
    const after = await page.evaluate(async () => (await fetch('/v1/me', { credentials: 'same-origin' })).status);
    check(after === 401, `after sign-out /v1/me answers ${after}`);
    noProblems(page);
  } finally {
    await ctx.close();
    await recv.close();
  }
});

test('first load of the workspace: bytes transferred and time to interactive', async ({ browser, srv }) => {
  const ctx = await browser.newContext({ viewport: DESKTOP });
  const page = await signIn(ctx, srv, 'ana');
  await page.close();
  const fresh = await newPage(ctx);
  let bytes = 0;
  fresh.on('response', async (res) => {
    const len = Number(res.headers()['content-length'] || 0);
    bytes += len;
  });
  const t0 = Date.now();
  await fresh.goto(`${srv.base}/console/workspace`);
  await fresh.waitForSelector('body[data-ready="true"]');
  figures.workspace_first_load_ms = Date.now() - t0;
  figures.workspace_first_load_bytes = bytes;
  check(bytes < 200 * 1024, `first load under 200 KB: ${bytes}`);
  noProblems(fresh);
  await ctx.close();
});

async function main() {
  const srv = await startServer();
  let browser = null;
  try {
    const customer = await seed(srv);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    for (const t of tests.filter((x) => !process.env.CANDOR_WEB_ONLY || x.name.includes(process.env.CANDOR_WEB_ONLY))) {
      const t0 = Date.now();
      try {
        await t.fn({ browser, srv, customer });
        passed++;
        console.log(`ok   ${t.name} (${Date.now() - t0} ms)`);
      } catch (e) {
        failed++;
        console.log(`FAIL ${t.name}\n     ${String(e.stack || e).split('\n').join('\n     ')}`);
      }
    }
  } finally {
    if (browser) await browser.close();
    try {
      await stopServer(srv);
    } catch (e) {
      failed++;
      console.log(`FAIL server: ${e.message}`);
    }
  }
  console.log(`figures: ${JSON.stringify(figures)}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
