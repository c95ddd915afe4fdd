// Two-factor sign-in (TOTP and recovery codes) in a real (headless Chromium)
// browser, against one `keyhold serve` whose mail goes to the SMTP sink in
// lib/mail.mjs:
//
// - "Two-factor sign-in" on /account shows a QR code (an SVG data URI) and the
//   key as text; a wrong code is refused (422), the right one turns it on and
//   shows 10 recovery codes;
// - the password then leads to /signin/code and starts no session; a wrong
//   code says how many tries are left; a code from the app signs in;
// - a recovery code (typed in upper case) signs in once, and only once;
// - five wrong codes end the sign-in ("Sign in again", 400): a right code is
//   refused after that, even with the old pending cookie put back, until the
//   password is given again;
// - "Turn off two-factor sign-in": the password alone signs in again.
//
// The test plays the authenticator app: it computes RFC 6238 codes (HMAC-SHA1,
// 30 s, 6 digits) from the key on the page with node:crypto. The server takes
// a code for the step before, the current one or the next, and each step only
// once, so each code the test uses is for a step after the last one used and
// no later than the next step (waiting for the clock when it must). That
// leaves at least 30 s for the code to reach the server.
//
// Not here: "Confirm it is you" (asked when a session has not given its
// password or a code for 15 minutes; the Rust tests cover it). Every sign-in
// here is fresh, so it is never asked.
//
// Every page the browser loads is checked with axe-core (WCAG 2.x A/AA). The
// steps run in order; once one fails, the later ones are skipped, except after
// axe violations, which fail their step and let the flow go on.

import { describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { startServer } from './lib/server.mjs';
import { startMailSink, linkIn } from './lib/mail.mjs';
import { launchBrowser, navigateBy, visit, describePage } from './lib/browser.mjs';
import { randomToken, randomPassphrase } from './lib/files.mjs';
import {
  pathOf,
  assertPath,
  expectVisible,
  expectAbsent,
  h1Text,
  mainText,
  assertMainContains,
  assertStatus,
  isOk,
  stepHarness,
  axeSteps,
} from './lib/flow.mjs';

const STEP_TIMEOUT_MS = 120_000;
const MAIL_TIMEOUT_MS = 15_000;

const SESSION_COOKIE = 'keyhold_session';
const PENDING_COOKIE = 'keyhold_pending';

const CODE_H1 = 'Enter your security code';
const OVER_H1 = 'Sign in again';
const RECOVERY_CODES = 10;
const CODE_ATTEMPTS = 5;

// ------------------------------------------------------------------ TOTP --

const TOTP_STEP_S = 30;

/** RFC 4648 base32 (upper case, padding optional) to bytes. */
function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const clean = text.replace(/=+$/, '');
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of clean) {
    const v = alphabet.indexOf(ch);
    if (v < 0) throw new Error(`not base32: ${JSON.stringify(ch)} in ${JSON.stringify(text)}`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** RFC 4226 HOTP (RFC 6238 TOTP at counter = unix time / 30): HMAC-SHA1, 6 digits. */
function hotp(key, counter) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const h = createHmac('sha1', key).update(msg).digest();
  const o = h[h.length - 1] & 0x0f;
  const bin = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(bin % 1_000_000).padStart(6, '0');
}

const stepNow = () => Math.floor(Date.now() / 1000 / TOTP_STEP_S);

// RFC 6238 appendix B, SHA-1 (8 digits there; the last 6 are the 6-digit code).
{
  const key = Buffer.from('12345678901234567890', 'ascii');
  assert.equal(hotp(key, Math.floor(59 / 30)), '287082', 'RFC 6238 test vector (T=59)');
  assert.equal(hotp(key, Math.floor(1111111109 / 30)), '081804', 'RFC 6238 test vector (T=1111111109)');
  assert.equal(base32Decode('GEZDGNBVGY3TQOJQ').toString('ascii'), '1234567890', 'base32 decoding');
}

// ------------------------------------------------------------------ flow --

describe('Keyhold two-factor sign-in in a real browser: TOTP, recovery codes, too many wrong codes, turning it off', () => {
  let server;
  let sink;
  let b; // the holder's browser
  let page;

  const token = randomToken(8);
  const holder = {
    name: `Tess Twofactor-${token}`,
    email: `e2e-2fa-${token}@example.test`,
    password: randomPassphrase(20),
  };

  // The authenticator app: the key, and the last step whose code was accepted.
  const app = { key: null, secret: '', lastUsedStep: -1 };
  let recoveryCodes = [];
  // The ended sign-in's last pending cookie value (step 4 puts it back).
  const shared = { lastPending: '' };

  /**
   * A code the server accepts now and has not seen used: for the step after
   * the last one used, but never earlier than the current step (so it stays
   * valid for at least 30 s) and never later than the next one (the server
   * takes one step of drift). Waits for the clock if it must.
   */
  async function freshCode(t, what) {
    for (;;) {
      const now = stepNow();
      const s = Math.max(now, app.lastUsedStep + 1);
      if (s <= now + 1) return { code: hotp(app.key, s), step: s };
      const wait = (now + 1) * TOTP_STEP_S * 1000 - Date.now() + 250;
      t.diagnostic(`${what}: waiting ${(wait / 1000).toFixed(1)} s for the next 30 s step (the steps up to ${app.lastUsedStep} are used)`);
      await sleep(wait);
    }
  }
  const usedCode = ({ step }) => {
    app.lastUsedStep = Math.max(app.lastUsedStep, step);
  };

  /** Six digits the server cannot take: no code for any step near now. */
  function wrongCode() {
    const now = stepNow();
    const near = new Set();
    for (let s = now - 3; s <= now + 4; s++) near.add(hotp(app.key, s));
    for (;;) {
      const c = String(randomInt(0, 1_000_000)).padStart(6, '0');
      if (!near.has(c)) return c;
    }
  }

  const harness = stepHarness({
    timeoutMs: STEP_TIMEOUT_MS,
    context: () => ({ server, browsers: b ? [{ label: "the holder's browser", page, visits: b.visits }] : [] }),
  });

  // An axe violation fails its step after the step's own checks have run,
  // without skipping the later steps.
  const { step, checkPage } = axeSteps(harness);

  before(
    async () => {
      try {
        sink = await startMailSink();
        server = await startServer({ env: { KEYHOLD_SMTP_URL: sink.url } });
        b = await launchBrowser();
        page = b.page;
      } catch (err) {
        harness.setupFailed(err);
      }
    },
    { timeout: 90_000 },
  );

  after(async () => {
    await b?.close();
    await server?.stop();
    await sink?.close();
  });

  // ----------------------------------------------------------- helpers --

  /** A mailed link, opened on the server under test (mail names the default public address). */
  function onServer(link) {
    const u = new URL(link);
    return new URL(`${u.pathname}${u.search}`, server.url).href;
  }

  function signOutButton(p) {
    return p.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true });
  }

  async function cookieNamed(name) {
    return (await page.context().cookies(server.url)).find((c) => c.name === name);
  }

  /** GET /record by fetch with every cookie the browser holds for the server. */
  async function recordWithBrowserCookies() {
    const jar = await page.context().cookies(server.url);
    const res = await fetch(`${server.url}/record`, {
      headers: { cookie: jar.map((c) => `${c.name}=${c.value}`).join('; ') },
      redirect: 'manual',
    });
    await res.body?.cancel();
    return { status: res.status, location: res.headers.get('location'), cookies: jar.map((c) => c.name) };
  }

  /** Not signed in: no session cookie, no "Sign out", and the browser's cookies do not open /record. */
  async function assertNoSession(what) {
    assert.equal(await cookieNamed(SESSION_COOKIE), undefined, `${what}: no ${SESSION_COOKIE} cookie`);
    await expectAbsent(signOutButton(page), `"Sign out" button (${what})`);
    const direct = await recordWithBrowserCookies();
    assert.deepEqual(
      { status: direct.status, location: direct.location },
      { status: 303, location: '/signin' },
      `${what}: GET /record with the browser's cookies (${direct.cookies.join(', ') || 'none'}) is sent to sign in`,
    );
  }

  async function signOut(what) {
    await expectVisible(signOutButton(page), `a "Sign out" button (${what})`);
    await navigateBy(page, () => signOutButton(page).click());
    await checkPage(page, `after "Sign out" (${what}, ${pathOf(page)})`);
    assert.equal(await cookieNamed(SESSION_COOKIE), undefined, `signing out drops the session cookie (${what})`);
  }

  /**
   * Signs in with the right password. Returns the POST /signin response (its
   * Location says where it sent the browser) and the final page's response.
   */
  async function submitPassword(what, { keep = false } = {}) {
    assertStatus(await visit(page, `${server.url}/signin`), isOk, '2xx', `GET /signin (${what})`);
    await checkPage(page, `sign-in page (${what})`);
    await page.locator('#email').fill(holder.email);
    await page.locator('#password').fill(holder.password);
    if (keep) await page.locator('#keep').check();
    else await page.locator('#keep').uncheck();
    const posted = page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/signin', { timeout: 30_000 });
    const res = await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Sign in', exact: true }).click());
    return { res, post: await posted };
  }

  /** The password is right and two-factor is on: /signin/code, with no session yet. */
  async function passwordLeadsToCode(t, what, options) {
    const { res, post } = await submitPassword(what, options);
    t.diagnostic(`POST /signin (${what}): ${post.status()} Location ${post.headers()['location']}`);
    assertStatus(res, (s) => s === 200, '200', `the page after the password (${what})`);
    await assertPath(page, '/signin/code', `after the right password with two-factor on (${what})`);
    assert.equal(await h1Text(page), CODE_H1, `h1 of /signin/code (${what})`);
    await expectVisible(page.locator('#code'), `the code field (${what})`);
    await checkPage(page, `enter your security code (${what})`);
    return { res, post };
  }

  /** Types `code` on /signin/code and presses "Continue". Returns the final response and the POST's. */
  async function submitCode(code) {
    await page.locator('#code').fill(code);
    const posted = page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/signin/code', { timeout: 30_000 });
    const res = await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Continue', exact: true }).click());
    return { res, post: await posted };
  }

  /** A wrong code: 422, the error says how many tries are left, still no session. */
  async function assertCodeRefused(code, left, what) {
    const { res } = await submitCode(code);
    assertStatus(res, (s) => s === 422, '422', `POST /signin/code with ${what}`);
    await assertPath(page, '/signin/code', `after ${what}`);
    assert.equal(await h1Text(page), CODE_H1, `h1 after ${what}`);
    const summary = page.locator('.nhsuk-error-summary');
    await expectVisible(summary, `an error summary (${what})`);
    const tries = `You can try ${left} more time${left === 1 ? '' : 's'}`;
    const text = (await summary.innerText()).replace(/\s+/g, ' ');
    assert.ok(text.includes(tries), `${what}: the error summary says "${tries}": ${JSON.stringify(text)}`);
    await assertMainContains(page, tries, `${what}: the field's error message`);
    assert.ok(await cookieNamed(PENDING_COOKIE), `${what}: the sign-in is still pending (${PENDING_COOKIE} cookie)`);
    await checkPage(page, `security code refused (${what}, ${left} left)`);
    await assertNoSession(what);
  }

  /** The code ended the sign-in: 400 "Sign in again", no pending sign-in, no session. */
  async function assertSignInOver(res, what) {
    assertStatus(res, (s) => s === 400, '400', `POST /signin/code (${what})`);
    assert.equal(await h1Text(page), OVER_H1, `h1 (${what})`);
    await assertMainContains(page, `a wrong security code was entered ${CODE_ATTEMPTS} times`, `the page says why (${what})`);
    await expectVisible(page.getByRole('main').getByRole('button', { name: 'Sign in again', exact: true }), `the "Sign in again" button-link (${what})`);
    await expectAbsent(page.locator('#code'), `a code field (${what})`);
    assert.equal(await cookieNamed(PENDING_COOKIE), undefined, `${what}: the ${PENDING_COOKIE} cookie is cleared`);
    await checkPage(page, `sign in again (${what})`);
    await assertNoSession(what);
  }

  /** Signed in: on /record with "Sign out" in the header. */
  async function assertOnRecord(res, what) {
    assertStatus(res, isOk, '2xx', what);
    await assertPath(page, '/record', what);
    assert.equal(await h1Text(page), 'Your health record', `h1 (${what})`);
    await expectVisible(signOutButton(page), `a "Sign out" button (${what})`);
    assert.ok(await cookieNamed(SESSION_COOKIE), `${what}: a ${SESSION_COOKIE} cookie`);
    assert.equal(await cookieNamed(PENDING_COOKIE), undefined, `${what}: the ${PENDING_COOKIE} cookie is cleared`);
    await checkPage(page, `the record (${what})`);
  }

  /** /account through the email address in the header. */
  async function openAccount(what) {
    const link = page.getByRole('banner').getByRole('link', { name: new RegExp(holder.email.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) });
    await expectVisible(link, `the holder's email address in the header (${what})`);
    await navigateBy(page, () => link.first().click());
    await assertPath(page, '/account', `after the header's email address (${what})`);
    assert.equal(await h1Text(page), 'Your account', `h1 of /account (${what})`);
    await checkPage(page, `your account (${what})`);
  }

  /** /account, then its "Two-factor sign-in" link. */
  async function openTwoFactor(what) {
    await openAccount(what);
    const res = await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: 'Two-factor sign-in', exact: true }).click());
    assertStatus(res, (s) => s === 200, '200', `GET /account/two-factor (${what})`);
    await assertPath(page, '/account/two-factor', `after "Two-factor sign-in" (${what}); a fresh session is not asked to confirm it is them`);
    assert.equal(await h1Text(page), 'Two-factor sign-in', `h1 of /account/two-factor (${what})`);
    await checkPage(page, `two-factor sign-in (${what})`);
    return res;
  }

  // ------------------------------------------------------------------ 1 --

  step('sign-up mails a link; "Confirm and sign in" opens /record', async (t) => {
    assertStatus(await visit(page, `${server.url}/signup`), isOk, '2xx', 'GET /signup');
    await checkPage(page, 'sign-up page');
    await page.locator('#name').fill(holder.name);
    await page.locator('#email').fill(holder.email);
    await page.locator('#password').fill(holder.password);
    let res = await navigateBy(page, () => page.getByRole('button', { name: 'Create account', exact: true }).click());
    assertStatus(res, (s) => s === 200, '200', 'POST /signup');
    assert.equal(await h1Text(page), 'Check your email', 'h1 after signing up');
    await checkPage(page, 'check your email (sign-up)');

    const mail = await sink.waitFor((m) => m.to === holder.email && m.text.includes('/account/confirm/'), MAIL_TIMEOUT_MS);
    t.diagnostic(`mail to ${mail.to}: ${JSON.stringify(mail.subject)}`);
    res = await visit(page, onServer(linkIn(mail, '/account/confirm/')));
    assertStatus(res, (s) => s === 200, '200', 'GET the confirmation link');
    await checkPage(page, 'confirm your email address');
    res = await navigateBy(page, () => page.getByRole('button', { name: 'Confirm and sign in', exact: true }).click());
    assertStatus(res, isOk, '2xx', 'POST "Confirm and sign in"');
    await assertPath(page, '/record', 'after "Confirm and sign in"');
    await expectVisible(signOutButton(page), 'a "Sign out" button after confirming');
    await checkPage(page, 'the record after confirming the address');
  });

  step('"Two-factor sign-in" on /account shows a QR code (an SVG image) and the key as text', async (t) => {
    await openAccount('two-factor still off');
    await assertMainContains(page, 'Two-factor sign-in: off', '/account before two-factor is turned on');
    const res = await openTwoFactor('setting it up');

    // The QR code is a data: image; the CSP must allow that (the tests bypass the CSP, so check the header).
    const csp = res.headers()['content-security-policy'] ?? '';
    t.diagnostic(`CSP: ${csp}`);
    assert.match(csp, /(^|;)\s*img-src [^;]*\bdata:/, `the CSP allows data: images, or real browsers would not show the QR code: ${JSON.stringify(csp)}`);

    const img = page.getByRole('main').getByRole('img', { name: /QR code/ });
    await expectVisible(img, 'the QR code image (named "QR code…")');
    const alt = await img.getAttribute('alt');
    t.diagnostic(`alt: ${alt}`);
    assert.ok(alt && alt.length > 20, `the QR code has a useful alt text: ${JSON.stringify(alt)}`);
    const src = (await img.getAttribute('src')) ?? '';
    const m = src.match(/^data:image\/svg\+xml;base64,([A-Za-z0-9+/=]+)$/);
    assert.ok(m, `the QR code is a base64 SVG data URI: ${JSON.stringify(src.slice(0, 80))}…`);
    const svg = Buffer.from(m[1], 'base64').toString('utf8');
    t.diagnostic(`SVG: ${svg.length} characters, starts ${JSON.stringify(svg.slice(0, 60))}`);
    assert.match(svg, /^\s*(<\?xml[^>]*>\s*)?<svg\b[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/, 'the data is an SVG document');
    assert.match(svg, /<\/svg>\s*$/, 'the SVG is complete');
    assert.match(svg, /<(path|rect)\b/, 'the SVG draws something (path or rect)');
    const drawn = await img.evaluate((el) => ({ complete: el.complete, w: el.naturalWidth, h: el.naturalHeight, shownW: el.width }));
    t.diagnostic(`image: ${JSON.stringify(drawn)}`);
    assert.ok(drawn.complete && drawn.w > 0 && drawn.h > 0, `the browser decoded the QR image: ${JSON.stringify(drawn)}`);
    assert.ok(drawn.shownW >= 200, `the QR code is shown at least 200 px wide: ${JSON.stringify(drawn)}`);

    const secret = ((await page.locator('code#secret').textContent()) ?? '').trim();
    assert.match(secret, /^[A-Z2-7]+$/, `the key is RFC 4648 base32 without padding: ${JSON.stringify(secret)}`);
    app.secret = secret;
    app.key = base32Decode(secret);
    t.diagnostic(`key: ${secret.length} base32 characters, ${app.key.length} bytes`);
    assert.ok(app.key.length >= 16, `the key has at least 128 bits: ${app.key.length} bytes`);
    await expectVisible(page.locator('#code'), 'the code field');
  });

  step('a wrong code is refused: 422 with an error summary, and the same key is still shown', async (t) => {
    await page.locator('#code').fill(wrongCode());
    const res = await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Turn on two-factor sign-in', exact: true }).click());
    assertStatus(res, (s) => s === 422, '422', 'POST /account/two-factor with a wrong code');
    await assertPath(page, '/account/two-factor', 'after a wrong code');
    const summary = page.locator('.nhsuk-error-summary');
    await expectVisible(summary, 'an error summary for a wrong code');
    const text = (await summary.innerText()).replace(/\s+/g, ' ').trim();
    t.diagnostic(`error summary: ${text}`);
    assert.ok(text.includes('Enter the 6-digit code your authenticator app shows now'), `the error asks for the code the app shows: ${JSON.stringify(text)}`);
    await expectVisible(summary.locator('a[href="#code"]'), 'an error summary link to #code');
    await checkPage(page, 'two-factor sign-in, wrong code');
    assert.equal(((await page.locator('code#secret').textContent()) ?? '').trim(), app.secret, 'the enrolment under way keeps its key');
    await expectVisible(page.getByRole('main').getByRole('img', { name: /QR code/ }), 'the QR code again');
    await expectAbsent(page.locator('#recovery-codes'), 'recovery codes after a wrong code');
  });

  step('the right code turns it on: "Two-factor sign-in is on" and 10 recovery codes', async (t) => {
    const c = await freshCode(t, 'turning it on');
    await page.locator('#code').fill(c.code);
    const res = await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Turn on two-factor sign-in', exact: true }).click());
    assertStatus(res, (s) => s === 200, '200', 'POST /account/two-factor with the right code');
    usedCode(c);
    assert.equal(await h1Text(page), 'Two-factor sign-in is on', 'h1 after the right code');
    await checkPage(page, 'two-factor sign-in is on: recovery codes');
    recoveryCodes = (await page.locator('ul#recovery-codes > li').allInnerTexts()).map((s) => s.trim());
    t.diagnostic(`recovery codes: ${recoveryCodes.length}, e.g. ${recoveryCodes[0]}`);
    assert.equal(recoveryCodes.length, RECOVERY_CODES, `${RECOVERY_CODES} recovery codes: ${JSON.stringify(recoveryCodes)}`);
    for (const code of recoveryCodes) assert.match(code, /^[a-z0-9]{5}-[a-z0-9]{5}$/, 'a recovery code looks like xxxxx-xxxxx');
    assert.equal(new Set(recoveryCodes).size, RECOVERY_CODES, 'the recovery codes are all different');

    await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: 'Back to your account', exact: true }).click());
    await assertPath(page, '/account', 'after "Back to your account"');
    await checkPage(page, 'your account, two-factor on');
    await assertMainContains(page, 'Two-factor sign-in: on', '/account once two-factor is on');
  });

  // ------------------------------------------------------------------ 2 --

  step('signing in with the password asks for a security code (/signin/code) and starts no session', async (t) => {
    await signOut('before signing in with two-factor');
    const { post } = await passwordLeadsToCode(t, 'first sign-in with two-factor');
    assert.equal(post.status(), 303, 'POST /signin answers 303');
    assert.match(post.headers()['location'] ?? '', /^\/signin\/code(\?|$)/, 'POST /signin sends the browser to /signin/code');
    const setCookies = await post.headerValues('set-cookie');
    assert.ok(!setCookies.some((c) => c.startsWith(`${SESSION_COOKIE}=`) && !/Max-Age=0(;|$)/i.test(c)), `the password alone starts no session: ${JSON.stringify(setCookies.map((c) => c.replace(/=[^;]+/, '=…')))}`);
    const pending = await cookieNamed(PENDING_COOKIE);
    assert.ok(pending, `a ${PENDING_COOKIE} cookie holds the sign-in until the code comes`);
    t.diagnostic(`${PENDING_COOKIE}: httpOnly=${pending.httpOnly} sameSite=${pending.sameSite}`);
    assert.ok(pending.httpOnly, `${PENDING_COOKIE} is HttpOnly`);
    await assertNoSession('on /signin/code after the password');

    // Opening /record now goes to sign in (the browser's own navigation, too).
    const res = await visit(page, `${server.url}/record`);
    assertStatus(res, isOk, '2xx', 'GET /record while the code is pending');
    await assertPath(page, '/signin', 'GET /record while the code is pending');
    await checkPage(page, 'sign-in page (GET /record while the code is pending)');
  });

  step('a wrong code: 422 "You can try 4 more times"; a code from the app then opens /record', async (t) => {
    await passwordLeadsToCode(t, 'sign-in with a code from the app');
    await assertCodeRefused(wrongCode(), CODE_ATTEMPTS - 1, 'a wrong code');
    const c = await freshCode(t, 'signing in');
    t.diagnostic(`code for step ${c.step} (now ${stepNow()})`);
    const { res } = await submitCode(c.code);
    usedCode(c);
    await assertOnRecord(res, 'a code from the app after a wrong one');
  });

  // ------------------------------------------------------------------ 3 --

  step('a recovery code typed in upper case signs in; the same code a second time is refused', async (t) => {
    const code = recoveryCodes[0];
    await signOut('before using a recovery code');
    await passwordLeadsToCode(t, 'sign-in with a recovery code');
    const { res } = await submitCode(code.toUpperCase());
    await assertOnRecord(res, `the recovery code in upper case (${code.toUpperCase()})`);

    // One fewer left.
    await openTwoFactor('after using a recovery code');
    await assertMainContains(page, 'Two-factor sign-in is on', '/account/two-factor once it is on');
    await assertMainContains(page, `You have ${RECOVERY_CODES - 1} unused recovery codes`, '/account/two-factor counts the recovery codes left');
    await expectAbsent(page.locator('code#secret'), 'a key on /account/two-factor once it is on');

    await signOut('before using the recovery code again');
    await passwordLeadsToCode(t, 'sign-in with the used recovery code');
    await assertCodeRefused(code, CODE_ATTEMPTS - 1, 'the recovery code already used');
  });

  // ------------------------------------------------------------------ 4 --

  step('five wrong codes end the sign-in: 400 "Sign in again"', async (t) => {
    // A new sign-in, so five wrong codes are left (the previous one is abandoned).
    await passwordLeadsToCode(t, 'sign-in with five wrong codes');
    for (let left = CODE_ATTEMPTS - 1; left >= 1; left--) {
      await assertCodeRefused(wrongCode(), left, `wrong code #${CODE_ATTEMPTS - left}`);
    }
    shared.lastPending = (await cookieNamed(PENDING_COOKIE))?.value;
    assert.ok(shared.lastPending, 'the sign-in is pending before the fifth wrong code');
    const { res, post } = await submitCode(wrongCode());
    t.diagnostic(`fifth wrong code: ${post.status()}`);
    await assertSignInOver(res, `wrong code #${CODE_ATTEMPTS}`);
  });

  step('after that a right code is refused, even with the old pending cookie put back; the password again, then the code, signs in', async (t) => {
    const c = await freshCode(t, 'the right code after the sign-in ended');
    t.diagnostic(`a right code: step ${c.step} (now ${stepNow()})`);

    // No pending sign-in at all.
    assertStatus(await visit(page, `${server.url}/signin/code`), (s) => s === 200, '200', 'GET /signin/code');
    await checkPage(page, 'enter your security code (no sign-in pending)');
    let { res } = await submitCode(c.code);
    await assertSignInOver(res, 'a right code with no sign-in pending');

    // The last pending value of the ended sign-in, put back by hand.
    await page.context().addCookies([{ name: PENDING_COOKIE, value: shared.lastPending, url: server.url, httpOnly: true, sameSite: 'Strict' }]);
    assertStatus(await visit(page, `${server.url}/signin/code`), (s) => s === 200, '200', 'GET /signin/code (old pending cookie)');
    await checkPage(page, 'enter your security code (old pending cookie)');
    ({ res } = await submitCode(c.code));
    await assertSignInOver(res, 'a right code with the ended sign-in\'s pending cookie');

    // "Sign in again": the password, then a code, with "Keep me signed in" carried through.
    await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Sign in again', exact: true }).click());
    await assertPath(page, '/signin', 'after "Sign in again"');
    await checkPage(page, 'sign-in page (after "Sign in again")');
    await passwordLeadsToCode(t, 'signing in again, kept', { keep: true });
    assert.equal(new URL(page.url()).searchParams.get('keep'), 'yes', '"Keep me signed in" is carried to /signin/code');
    const again = await freshCode(t, 'signing in again');
    t.diagnostic(`code for step ${again.step}${again.step === c.step ? ' (the same code that was refused above)' : ''}`);
    const { res: final, post } = await submitCode(again.code);
    usedCode(again);
    await assertOnRecord(final, 'the password again, then a code from the app');
    const header = (await post.headerValues('set-cookie')).find((v) => v.startsWith(`${SESSION_COOKIE}=`)) ?? '';
    assert.match(header, /;\s*Max-Age=43200(;|$)/i, `with "Keep me signed in", the session set after the code lasts 12 hours: ${JSON.stringify(header.replace(/=[^;]+/, '=…'))}`);
  });

  // ------------------------------------------------------------------ 5 --

  step('"Turn off two-factor sign-in" on /account/two-factor: then the password alone signs in', async (t) => {
    // Signed in just now, so /account/two-factor does not ask to confirm it is you.
    await openTwoFactor('turning it off');
    await assertMainContains(page, `You have ${RECOVERY_CODES - 1} unused recovery codes`, 'the used recovery code is gone; wrong codes used none');
    const res = await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Turn off two-factor sign-in', exact: true }).click());
    assertStatus(res, (s) => s === 200, '200', 'POST "Turn off two-factor sign-in"');
    await assertPath(page, '/account', 'after "Turn off two-factor sign-in"');
    await assertMainContains(page, 'Two-factor sign-in: off', '/account once two-factor is off');
    await checkPage(page, 'your account, two-factor turned off');

    await signOut('after turning two-factor off');
    const { res: signedIn, post } = await submitPassword('password only, two-factor off');
    t.diagnostic(`POST /signin: ${post.status()} Location ${post.headers()['location']}`);
    assert.equal(post.headers()['location'], '/', 'POST /signin sends the browser straight on, not to /signin/code');
    await assertOnRecord(signedIn, 'the password alone, two-factor off');
  });

  // ---------------------------------------------------------------- end --

  step(
    'every page the browser loaded was checked with axe',
    async (t) => {
      t.diagnostic(`${b.visits.loads.length} page loads`);
      const missing = b.visits.unchecked().map((l) => `#${l.seq} ${l.url}`);
      assert.ok(missing.length === 0, `${missing.length} page load(s) were never checked with axe:\n  ${missing.join('\n  ')}`);
    },
    { critical: false },
  );

  step(
    'every page loaded its assets and ran its scripts without errors',
    async () => {
      const problems = [...b.visits.assetFailures.map((f) => `asset: ${f}`), ...b.visits.consoleErrors.map((e) => `console: ${e}`)];
      assert.ok(problems.length === 0, `${problems.length} problem(s) while loading pages:\n  ${problems.join('\n  ')}`);
    },
    { critical: false },
  );
});
