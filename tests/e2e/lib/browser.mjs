// Headless Debian Chromium driven by playwright-core, plus axe-core checks.
//
//   const b = await launchBrowser();        // { browser, context, page, visits, close() }
//   await b.page.goto(url);
//   await checkA11y(b.page, 'landing page');
//   ...
//   b.visits.assertAllChecked();            // every page loaded was axe-checked
//   await b.close();

import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

const require = createRequire(import.meta.url);
export const AXE_PATH = require.resolve('axe-core/axe.min.js');
export const CHROMIUM_PATH = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--headless',
  '--disable-background-networking',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

// WCAG 2.0/2.1 A and AA, and WCAG 2.2 AA rules.
export const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'];

export const ARTIFACTS_DIR = process.env.KEYHOLD_E2E_ARTIFACTS || path.join(tmpdir(), 'keyhold-e2e-artifacts');

/**
 * Launches Chromium (a fresh, empty profile each time) and opens one page in a
 * context that accepts downloads and bypasses the page's CSP (needed to inject
 * axe-core into pages served with `script-src 'self'`).
 */
export async function launchBrowser({ contextOptions = {} } = {}) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  let context;
  try {
    context = await browser.newContext({
      acceptDownloads: true,
      bypassCSP: true,
      locale: 'en-GB',
      viewport: { width: 1280, height: 900 },
      ...contextOptions,
    });
  } catch (err) {
    await browser.close().catch(() => {});
    throw err;
  }
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.setDefaultNavigationTimeout(30_000);
  const visits = trackVisits(page);
  return {
    browser,
    context,
    page,
    visits,
    async close() {
      await context.close().catch(() => {});
      await browser.close().catch(() => {});
    },
  };
}

/**
 * Records every document the page loads (each 'load' of the main frame: plain
 * navigations, form posts, redirects' final pages and error pages alike, but
 * not downloads or same-document hash changes). checkA11y marks the current
 * document as checked; assertAllChecked() fails listing any page loaded but
 * never checked. Console errors and uncaught page errors are kept for reports.
 */
export function trackVisits(page) {
  const loads = []; // { seq, url, checked }
  const consoleErrors = []; // console.error messages and uncaught page errors
  const assetFailures = []; // sub-resources (CSS, JS, images...) that failed or answered >= 400
  let seq = 0;
  page.on('load', () => {
    loads.push({ seq: ++seq, url: page.url(), checked: false });
  });
  page.on('console', (msg) => {
    // "Failed to load resource" duplicates what the response/requestfailed
    // handlers record (and also fires for pages answered 4xx on purpose).
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) {
      consoleErrors.push(`${page.url()}: ${msg.text()}`);
    }
  });
  page.on('pageerror', (err) => consoleErrors.push(`${page.url()}: uncaught ${err.message}`));
  const isAsset = (req) => !req.isNavigationRequest() && new URL(req.url()).pathname !== '/favicon.ico';
  page.on('response', (r) => {
    if (isAsset(r.request()) && r.status() >= 400) {
      assetFailures.push(`${r.status()} for ${r.request().resourceType()} ${r.url()} (on ${page.url()})`);
    }
  });
  page.on('requestfailed', (req) => {
    if (isAsset(req)) assetFailures.push(`${req.failure()?.errorText} for ${req.resourceType()} ${req.url()} (on ${page.url()})`);
  });
  const tracker = {
    loads,
    consoleErrors,
    assetFailures,
    markChecked(url) {
      // Mark the most recent load of this URL (the document being checked).
      for (let i = loads.length - 1; i >= 0; i--) {
        if (loads[i].url === url) {
          loads[i].checked = true;
          return;
        }
      }
    },
    unchecked() {
      return loads.filter((l) => !l.checked);
    },
    assertAllChecked() {
      const missing = tracker.unchecked();
      if (missing.length) {
        throw new Error(
          `${missing.length} page load(s) were never checked with axe:\n` +
            missing.map((l) => `  #${l.seq} ${l.url}`).join('\n'),
        );
      }
    },
  };
  page.__keyholdVisits = tracker;
  return tracker;
}

async function injectAxe(page) {
  const present = await page.evaluate(() => typeof window.axe !== 'undefined' && typeof window.axe.run === 'function');
  if (!present) {
    await page.addScriptTag({ path: AXE_PATH });
    const ok = await page.evaluate(() => typeof window.axe !== 'undefined');
    if (!ok) throw new Error(`axe-core did not load into ${page.url()} (is the context created with bypassCSP: true?)`);
  }
}

/** Runs axe on the page and returns the raw violations array. */
export async function runAxe(page) {
  await page.waitForLoadState('load');
  await injectAxe(page);
  return page.evaluate(
    (tags) =>
      window.axe
        .run(document, {
          runOnly: { type: 'tag', values: tags },
          resultTypes: ['violations'],
        })
        .then((r) =>
          r.violations.map((v) => ({
            id: v.id,
            impact: v.impact,
            help: v.help,
            helpUrl: v.helpUrl,
            nodes: v.nodes.map((n) => ({
              target: n.target,
              html: n.html,
              failureSummary: n.failureSummary,
            })),
          })),
        ),
    AXE_TAGS,
  );
}

/** A readable multi-line report of axe violations. */
export function formatViolations(violations, { label, url } = {}) {
  const lines = [
    `Accessibility check failed for ${label ? `"${label}" ` : ''}${url ? `(${url}) ` : ''}` +
      `with ${violations.length} axe violation(s) [tags: ${AXE_TAGS.join(', ')}]:`,
  ];
  violations.forEach((v, i) => {
    lines.push('');
    lines.push(`${i + 1}. ${v.id} [impact: ${v.impact ?? 'n/a'}] ${v.help}`);
    lines.push(`   help: ${v.helpUrl}`);
    for (const n of v.nodes) {
      const target = n.target.map((t) => (Array.isArray(t) ? t.join(' >>> ') : t)).join(' | ');
      lines.push(`   - target: ${target}`);
      if (n.html) lines.push(`     html:   ${n.html.replace(/\s+/g, ' ').slice(0, 300)}`);
      if (n.failureSummary) {
        lines.push(
          ...n.failureSummary
            .split('\n')
            .filter(Boolean)
            .map((s) => `     ${s.trim()}`),
        );
      }
    }
  });
  return lines.join('\n');
}

/**
 * Runs axe (WCAG 2.x A/AA) on the current page; throws with a readable report
 * if there is any violation. Marks the page as checked for trackVisits.
 */
export async function checkA11y(page, label) {
  const url = page.url();
  if (url.startsWith('chrome-error://')) {
    throw new Error(`"${label}": the browser shows its own error page (the request failed), not a page from the server`);
  }
  const violations = await runAxe(page);
  page.__keyholdVisits?.markChecked(url);
  if (violations.length) {
    const err = new Error(formatViolations(violations, { label, url }));
    err.violations = violations;
    throw err;
  }
}

/**
 * Clicks (or otherwise triggers) something that navigates the main frame and
 * waits until the final document (after any redirects) has loaded. Returns the
 * final navigation Response (so its status can be checked). Throws a clear
 * error if the navigation request fails at the network level (e.g. the server
 * resets the connection).
 */
export async function navigateBy(page, action, { timeout = 30_000 } = {}) {
  const main = page.mainFrame();
  let cleanup = () => {};
  const outcome = new Promise((resolve, reject) => {
    let response = null;
    let loaded = false;
    const done = () => {
      if (response && loaded) {
        cleanup();
        resolve(response);
      }
    };
    const onResponse = (r) => {
      const req = r.request();
      if (!req.isNavigationRequest() || req.frame() !== main) return;
      const s = r.status();
      if (s >= 300 && s < 400 && r.headers()['location']) return; // a redirect hop
      response = r;
      done();
    };
    const onLoad = () => {
      loaded = true;
      done();
    };
    const onFailed = (req) => {
      if (!req.isNavigationRequest() || req.frame() !== main) return;
      cleanup();
      reject(new Error(`navigation request ${req.method()} ${req.url()} failed: ${req.failure()?.errorText ?? 'unknown error'}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new Error(
          `no page loaded within ${timeout / 1000} s after the action ` +
            `(response ${response ? `${response.status()} ${response.url()}` : 'none'}; current URL ${page.url()})`,
        ),
      );
    }, timeout);
    page.on('response', onResponse);
    page.on('load', onLoad);
    page.on('requestfailed', onFailed);
    cleanup = () => {
      clearTimeout(timer);
      page.off('response', onResponse);
      page.off('load', onLoad);
      page.off('requestfailed', onFailed);
    };
  });
  // The outcome may settle while the action is still running: mark it handled
  // now so that an early rejection is not reported as an unhandled one.
  outcome.catch(() => {});
  try {
    await action();
  } catch (err) {
    cleanup();
    throw err;
  }
  return outcome;
}

/** page.goto that also returns the final response and waits for load. */
export async function visit(page, url) {
  const res = await page.goto(url, { waitUntil: 'load' });
  if (!res) throw new Error(`no response navigating to ${url}`);
  return res;
}

/** Describes where the page is, for failure messages. */
export async function describePage(page) {
  try {
    const h1 = await page
      .locator('h1')
      .first()
      .textContent({ timeout: 1_000 })
      .catch(() => null);
    const summary = await page
      .locator('.nhsuk-error-summary')
      .first()
      .innerText({ timeout: 1_000 })
      .catch(() => null);
    return (
      `  url: ${page.url()}\n  title: ${await page.title().catch(() => '?')}\n  h1: ${h1?.trim() ?? '(none)'}` +
      (summary ? `\n  error summary: ${summary.replace(/\s+/g, ' ').trim()}` : '')
    );
  } catch {
    return `  url: ${page.url()}`;
  }
}

/** Saves a screenshot and the HTML of the page; returns the file paths. */
export async function saveArtifacts(page, name) {
  const safe = name.replace(/[^a-z0-9._-]+/gi, '_').slice(0, 80);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  const png = path.join(ARTIFACTS_DIR, `${stamp}-${safe}.png`);
  const html = path.join(ARTIFACTS_DIR, `${stamp}-${safe}.html`);
  const saved = [];
  try {
    await page.screenshot({ path: png, fullPage: true, timeout: 10_000 });
    saved.push(png);
  } catch {
    // page may be gone
  }
  try {
    await writeFile(html, await page.content());
    saved.push(html);
  } catch {
    // page may be gone
  }
  return saved;
}
