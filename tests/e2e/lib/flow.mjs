// What the browser flow tests share: assertions about where the page is and
// what it shows, and the step harness that runs a flow's steps in order.
//
//   const harness = stepHarness({ context: () => ({ server, browsers: [{ page, visits }] }) });
//   const { step } = harness;
//   before(async () => { try { ... } catch (err) { harness.setupFailed(err); } });
//   step('the landing page loads', async (t) => { ... });
//
// Every assertion fails with a message that says where the browser was.

import { it } from 'node:test';
import assert from 'node:assert/strict';

import { checkA11y, describePage, saveArtifacts } from './browser.mjs';

// ------------------------------------------------------------- assertions --

export function pathOf(page) {
  return new URL(page.url()).pathname;
}

export async function assertPath(page, expected, what) {
  const actual = pathOf(page);
  const ok = expected instanceof RegExp ? expected.test(actual) : actual === expected;
  if (!ok) {
    assert.fail(`${what}: expected the browser at path ${expected}, but it is at ${actual}\n${await describePage(page)}`);
  }
}

export async function expectVisible(locator, what, timeout = 10_000) {
  try {
    await locator.first().waitFor({ state: 'visible', timeout });
  } catch {
    assert.fail(`expected ${what} to be visible\n${await describePage(locator.page())}`);
  }
}

export async function expectAbsent(locator, what) {
  const n = await locator.count();
  if (n !== 0) assert.fail(`expected no ${what}, found ${n}\n${await describePage(locator.page())}`);
}

export async function h1Text(page) {
  return ((await page.locator('h1').first().textContent({ timeout: 5_000 })) ?? '').replace(/\s+/g, ' ').trim();
}

export async function mainText(page) {
  return (await page.getByRole('main').innerText()).replace(/\s+/g, ' ');
}

export async function assertMainContains(page, text, what) {
  const body = await mainText(page);
  if (!body.includes(text)) {
    assert.fail(`${what}: expected the main content to contain ${JSON.stringify(text)}\n${await describePage(page)}\n  main text: ${body.slice(0, 1500)}`);
  }
}

export async function assertMainLacks(page, text, what) {
  const body = await mainText(page);
  if (body.includes(text)) {
    assert.fail(`${what}: expected the main content NOT to contain ${JSON.stringify(text)}\n${await describePage(page)}`);
  }
}

/** A link or a button (e.g. an <a role="button">, or a <button> in a form) with this exact name. */
export function linkOrButton(scope, name) {
  return scope
    .getByRole('link', { name, exact: true })
    .or(scope.getByRole('button', { name, exact: true }))
    .first();
}

export function assertStatus(res, predicate, expectedText, what) {
  const s = res.status();
  if (!predicate(s)) assert.fail(`${what}: expected HTTP status ${expectedText}, got ${s} (${res.url()})`);
}

export const is4xx = (s) => s >= 400 && s < 500;
export const isOk = (s) => s >= 200 && s < 300;

// ----------------------------------------------------------- step harness --

/**
 * The steps of one flow, run in order with node:test's `it`. Call `step` inside
 * a `describe`.
 *
 * - A setup failure (server not built, not listening, browser not starting)
 *   passed to `setupFailed(err)` in `before` is reported by the first step, and
 *   the rest skip, rather than every step being cancelled.
 * - Once a critical step fails, the later steps skip, naming the step that
 *   failed, so the first real failure is the one to read. An error with
 *   `keepGoing: true` fails its step without skipping the rest (e.g. the
 *   step's own checks passed, but a page it loaded has axe violations).
 * - A failure's message says where each browser was (URL, title, h1, error
 *   summary), the paths of a saved screenshot and HTML of each page, the
 *   browsers' console errors and failed assets, and the end of the server's
 *   output.
 *
 * `context()` is called when a step fails and returns
 * `{ server, browsers: [{ label?, page, visits }] }` (any may be missing);
 * `label` names whose browser it is when there are several.
 */
export function stepHarness({ context, timeoutMs = 120_000 }) {
  let setupError = null;
  let brokenAt = null;

  async function whereThingsWere(name) {
    const { server, browsers = [] } = context() ?? {};
    let out = '';
    for (const { label, page, visits } of browsers) {
      if (!page) continue;
      out += `\n\nWhere the browser${label ? ` of ${label}` : ''} was:\n${await describePage(page)}`;
      const saved = await saveArtifacts(page, label ? `${name} (${label})` : name);
      if (saved.length) out += `\n  saved: ${saved.join(', ')}`;
      const problems = [...(visits?.consoleErrors ?? []), ...(visits?.assetFailures ?? [])];
      if (problems.length) out += `\n  browser console errors / failed assets:\n    ${problems.slice(-10).join('\n    ')}`;
    }
    if (server) out += `\n\n${server.logs(6_000)}`;
    return out;
  }

  /**
   * One step of the flow. A failure adds where the browser was, a screenshot
   * and the server's output to the message; a failed critical step makes the
   * later steps skip.
   */
  function step(name, fn, { critical = true } = {}) {
    it(name, { timeout: timeoutMs }, async (t) => {
      if (setupError && !brokenAt) {
        brokenAt = 'setup (server or browser start)';
        throw new Error(`setup failed, so no step can run: ${setupError.message}`);
      }
      if (brokenAt) {
        t.skip(`an earlier step failed: "${brokenAt}"`);
        return;
      }
      try {
        await fn(t);
      } catch (err) {
        if (critical && !err?.keepGoing) brokenAt = name;
        const where = await whereThingsWere(name);
        let detail = '';
        if (err?.code === 'ERR_ASSERTION' && err.generatedMessage === false && err.operator !== 'fail' && typeof err.actual !== 'boolean') {
          // A custom assert message hides the values: show them.
          detail = `\n  actual:   ${JSON.stringify(err.actual)}\n  expected: ${JSON.stringify(err.expected)} (${err.operator})`;
        }
        const message = `${err?.message ?? err}${detail}${where}`;
        const wrapped = new Error(message);
        const frames = String(err?.stack ?? '')
          .split('\n')
          .filter((l) => /^\s+at /.test(l));
        wrapped.stack = `${err?.name ?? 'Error'}: ${message}\n${frames.join('\n')}`;
        throw wrapped;
      }
    });
  }

  return {
    step,
    /** Records a failure in `before`; the first step reports it. */
    setupFailed(err) {
      setupError = err;
    },
    /** The name of the critical step that failed, or null. */
    get brokenAt() {
      return brokenAt;
    },
  };
}

/**
 * Steps over `harness` in which an axe violation does not stop the flow: the
 * step still runs to its end (so its own checks are made), then fails listing
 * every page it loaded that has violations, and the next steps run.
 *
 *   const { step, checkPage } = axeSteps(harness);
 */
export function axeSteps(harness) {
  let violations = null; // the current step's pages with axe violations
  async function checkPage(page, label) {
    try {
      await checkA11y(page, label);
    } catch (err) {
      if (!err.violations || !violations) throw err;
      violations.push(err.message);
    }
  }
  function step(name, fn, options) {
    harness.step(
      name,
      async (t) => {
        violations = [];
        const reported = () => {
          const found = violations;
          violations = null;
          return found.length ? `${found.length} page(s) it loaded have axe violations:\n\n${found.join('\n\n')}` : '';
        };
        try {
          await fn(t);
        } catch (err) {
          const also = reported();
          if (also && err instanceof Error) err.message += `\n\nAlso, ${also}`;
          throw err;
        }
        const found = reported();
        if (found) {
          const err = new Error(`the step's own checks passed, but ${found}`);
          err.keepGoing = true;
          throw err;
        }
      },
      options,
    );
  }
  return { step, checkPage };
}
