// Runs the test OpenID provider (tests/idp/server.mjs, an NHS-login-like
// oidc-provider) for a test file, and drives sign-ins through it without a browser.
//
//   const { pemPath, publicJwk } = await makeClientKey(keysDir);  // keys/oidc-client.pem (0600)
//   const idp = await startIdp({ publicJwk });   // { issuer, setRedirectUris, setMode, lastRequest, stop, logs }
//   const server = await startServer({ ... issuer, client id 'keyhold-test', pemPath ... });
//   await idp.setRedirectUris([`${server.url}/auth/nhs/callback`]);
//   const { callbackUrl, jar } = await authorizeWithFetch(`${server.url}/auth/nhs/start?next=/`, { login: 'p9' });
//   const res = await fetchWithJar(callbackUrl, jar);         // keyhold finishes the sign-in
//   ...
//   await idp.setMode('wrong-nonce');                         // the next ID token is tampered with
//   const sent = await idp.lastRequest();                     // what the relying party sent
//   await idp.stop();
//
// The provider's issuer is http://127.0.0.1:PORT; its discovery document is at
// `${issuer}/.well-known/openid-configuration` and its token endpoint (the
// client assertion's `aud`) is `${issuer}/token`. See tests/idp/README.md.
//
// Needs `npm ci` in tests/idp (bash tests/e2e/setup.sh does it). Providers still
// running when the test process exits are killed (see the exit hooks at the bottom).

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { mkdtemp, rm, writeFile, chmod, mkdir, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const idpDir = path.resolve(here, '..', '..', 'idp');
export const idpServer = path.join(idpDir, 'server.mjs');

const START_TIMEOUT_MS = 30_000;
const KILL_GRACE_MS = 5_000;
const LOG_LIMIT = 256 * 1024;
const MAX_REDIRECTS = 20;
export const MODES = ['none', 'wrong-nonce', 'other-key', 'expired', 'weak-vot'];

const running = new Set();

function tail(s, limit = LOG_LIMIT) {
  return s.length > limit ? `[...${s.length - limit} chars cut...]\n${s.slice(-limit)}` : s;
}

/** The RFC 7638 thumbprint (SHA-256, base64url) of an RSA public JWK: used as `kid`. */
export function rsaThumbprint(jwk) {
  const canonical = JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n });
  return crypto.createHash('sha256').update(canonical).digest('base64url');
}

/**
 * Makes the relying party's client key: an RSA 2048 key pair. The private key
 * is written as PKCS#8 PEM to `<keysDir>/oidc-client.pem` (mode 0600); the
 * public half comes back as a JWK with `kid` (its thumbprint), `alg: "RS512"`
 * and `use: "sig"`, ready for startIdp.
 * @returns {Promise<{ pemPath: string, publicJwk: object, kid: string }>}
 */
export async function makeClientKey(keysDir) {
  await mkdir(keysDir, { recursive: true });
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pemPath = path.join(keysDir, 'oidc-client.pem');
  await writeFile(pemPath, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  await chmod(pemPath, 0o600); // in case the file was already there with another mode
  const { kty, n, e } = publicKey.export({ format: 'jwk' });
  const kid = rsaThumbprint({ kty, n, e });
  return { pemPath, kid, publicJwk: { kty, n, e, kid, alg: 'RS512', use: 'sig' } };
}

/**
 * The `jose` package installed in tests/idp (tests/e2e does not depend on it),
 * for tests that sign or verify JWTs themselves.
 */
export async function loadJose() {
  const require = createRequire(path.join(idpDir, 'package.json'));
  let resolved;
  try {
    resolved = require.resolve('jose');
  } catch {
    throw new Error(`jose is not installed in ${idpDir}: run bash tests/e2e/setup.sh (or npm ci in tests/idp)`);
  }
  return import(pathToFileURL(resolved).href);
}

async function ensureInstalled() {
  try {
    await access(path.join(idpDir, 'node_modules', 'oidc-provider', 'package.json'));
  } catch {
    throw new Error(`oidc-provider is not installed in ${idpDir}: run bash tests/e2e/setup.sh (or npm ci in tests/idp)`);
  }
}

/**
 * Starts tests/idp/server.mjs and resolves once it prints
 * "idp listening on http://127.0.0.1:PORT".
 * @param {{ clientId?: string, publicJwk: object, users?: string | object, redirectUris?: string[] }} options
 *   `users` is a path to a users JSON or the users object itself (default: tests/idp/users.json).
 */
export async function startIdp({ clientId = 'keyhold-test', publicJwk, users, redirectUris = [] } = {}) {
  if (!publicJwk?.n) throw new Error('startIdp needs the client publicJwk (see makeClientKey)');
  await ensureInstalled();
  const dir = await mkdtemp(path.join(tmpdir(), 'keyhold-idp-'));
  const configPath = path.join(dir, 'idp-config.json');
  const config = { client: { client_id: clientId, jwks: { keys: [publicJwk] }, redirect_uris: redirectUris } };
  if (users !== undefined) config.users = typeof users === 'string' ? path.resolve(users) : users;
  await writeFile(configPath, JSON.stringify(config, null, 2));

  let stdout = '';
  let stderr = '';
  let child;
  let exited = null;
  let exitPromise;

  const logs = (limit = LOG_LIMIT) =>
    (exited ? `test idp has EXITED (code ${exited.code}, signal ${exited.signal})\n` : '') +
    `--- test idp stdout ---\n${tail(stdout, limit) || '(empty)'}\n` +
    `--- test idp stderr ---\n${tail(stderr, limit) || '(empty)'}`;

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    running.delete(handle);
    if (child && !exited) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => {
        if (!exited) child.kill('SIGKILL');
      }, KILL_GRACE_MS);
      await exitPromise;
      clearTimeout(killer);
    }
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  };

  const control = async (method, pathname, body) => {
    if (!handle.issuer) throw new Error('test idp is not running');
    let res;
    try {
      res = await fetch(`${handle.issuer}${pathname}`, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new Error(`test idp ${method} ${pathname} failed: ${err.message}\n${logs(8192)}`);
    }
    const text = await res.text();
    if (!res.ok) throw new Error(`test idp ${method} ${pathname} answered ${res.status}: ${text}\n${logs(8192)}`);
    return JSON.parse(text);
  };

  const handle = {
    issuer: null,
    dir,
    configPath,
    clientId,
    logs,
    stop,
    get exited() {
      return exited;
    },
    /** Everything the provider printed to stdout (just the "listening" line). */
    get stdout() {
      return stdout;
    },
    get discoveryUrl() {
      return `${handle.issuer}/.well-known/openid-configuration`;
    },
    get tokenEndpoint() {
      return `${handle.issuer}/token`;
    },
    get authorizationEndpoint() {
      return `${handle.issuer}/authorize`;
    },
    get jwksUri() {
      return `${handle.issuer}/.well-known/jwks.json`;
    },
    /** Replaces the client's registered redirect URIs (exact match is enforced). */
    setRedirectUris: (uris) => control('POST', '/__test/redirect_uris', { redirect_uris: uris }),
    /** Sets the tamper mode for the ID tokens the token endpoint issues from now on. */
    setMode: (mode) => control('POST', '/__test/mode', { mode }),
    /** `{ authorization, token, mode, redirect_uris }`: what the relying party last sent. */
    lastRequest: () => control('GET', '/__test/last-request'),
  };
  running.add(handle);

  try {
    child = spawn(process.execPath, [idpServer, '--config', configPath], {
      cwd: idpDir,
      env: { ...process.env, NODE_ENV: 'test' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    handle.pid = child.pid;
    exitPromise = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        exited = { code, signal };
        resolve(exited);
      });
    });
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      stderr += d;
      if (process.env.KEYHOLD_E2E_VERBOSE) process.stderr.write(`[idp stderr] ${d}`);
    });
    handle.issuer = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`test idp did not print "idp listening on http://127.0.0.1:PORT" within ${START_TIMEOUT_MS / 1000} s\n${logs()}`));
      }, START_TIMEOUT_MS);
      child.stdout.on('data', (d) => {
        stdout += d;
        if (process.env.KEYHOLD_E2E_VERBOSE) process.stderr.write(`[idp stdout] ${d}`);
        const m = stdout.match(/^idp listening on (http:\/\/127\.0\.0\.1:\d+)$/m);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`could not spawn ${process.execPath} ${idpServer}: ${err.message}`));
      });
      exitPromise.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`test idp exited before listening (code ${code}, signal ${signal})\n${logs()}`));
      });
    });
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
  return handle;
}

// --- cookies and fetch -------------------------------------------------------

/**
 * A small cookie jar kept per origin (`host:port`). Browsers scope cookies by
 * host, not port, but keyhold and the provider both run on 127.0.0.1, and for
 * these tests keeping them apart per port is what matters. Path, Max-Age and
 * Expires are honoured; Domain, Secure and SameSite are ignored (all loopback http).
 */
export class CookieJar {
  constructor() {
    /** @type {Map<string, Map<string, { name: string, value: string, path: string, expires: number }>>} */
    this.origins = new Map();
  }

  static key(url) {
    return new URL(url).host; // host:port
  }

  /** Stores the Set-Cookie headers of a response to `url`. */
  store(url, setCookies) {
    const u = new URL(url);
    const key = CookieJar.key(u);
    if (!this.origins.has(key)) this.origins.set(key, new Map());
    const cookies = this.origins.get(key);
    for (const line of setCookies) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      // RFC 6265 default-path: the request path up to its last "/".
      let cookiePath = u.pathname.lastIndexOf('/') > 0 ? u.pathname.slice(0, u.pathname.lastIndexOf('/')) : '/';
      let expires = Infinity;
      for (const attr of attrs) {
        const i = attr.indexOf('=');
        const k = (i < 0 ? attr : attr.slice(0, i)).trim().toLowerCase();
        const v = i < 0 ? '' : attr.slice(i + 1).trim();
        if (k === 'path' && v.startsWith('/')) cookiePath = v;
        else if (k === 'max-age' && /^-?\d+$/.test(v)) expires = Date.now() + Number(v) * 1000;
        else if (k === 'expires' && expires === Infinity) {
          const t = Date.parse(v);
          if (!Number.isNaN(t)) expires = t;
        }
      }
      const id = `${name}\0${cookiePath}`;
      if (expires <= Date.now()) cookies.delete(id);
      else cookies.set(id, { name, value, path: cookiePath, expires });
    }
  }

  /** The cookies that apply to `url`, as { name: value } (longest path first on clashes). */
  cookiesFor(url) {
    const u = new URL(url);
    const cookies = this.origins.get(CookieJar.key(u));
    const out = {};
    if (!cookies) return out;
    const now = Date.now();
    const matching = [...cookies.values()]
      .filter((c) => c.expires > now)
      .filter((c) => u.pathname === c.path || u.pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`))
      .sort((a, b) => b.path.length - a.path.length);
    for (const c of matching) if (!(c.name in out)) out[c.name] = c.value;
    return out;
  }

  /** The Cookie header value for `url` ('' if none). */
  header(url) {
    return Object.entries(this.cookiesFor(url))
      .map(([k, v]) => `${k}=${v}`)
      .join('; ');
  }

  /** One cookie's value for `url`, or undefined. */
  get(url, name) {
    return this.cookiesFor(url)[name];
  }

  /** Forgets the cookies of `url`'s origin (or of every origin when no URL is given). */
  clear(url) {
    if (url === undefined) this.origins.clear();
    else this.origins.delete(CookieJar.key(url));
  }
}

export const createCookieJar = () => new CookieJar();

/**
 * fetch() with the jar's cookies for `url` sent and the response's Set-Cookie
 * headers stored. Redirects are NOT followed unless `init.redirect` says so.
 */
export async function fetchWithJar(url, jar, init = {}) {
  const headers = new Headers(init.headers ?? {});
  const cookie = jar.header(url);
  if (cookie && !headers.has('cookie')) headers.set('cookie', cookie);
  const res = await fetch(url, { redirect: 'manual', ...init, headers });
  jar.store(url, res.headers.getSetCookie());
  return res;
}

const decodeEntities = (s) =>
  s.replace(/&(amp|lt|gt|quot|#39);/g, (_, e) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[e]);

/**
 * Drives a whole sign-in without a browser: GET `startUrl` (the relying party's
 * start URL, e.g. `${keyhold}/auth/nhs/start?next=/`, or an authorization URL),
 * follow redirects by hand through the provider, fill in its login form as
 * `login`, and stop at the first redirect whose Location path is `callbackPath`.
 * The callback is NOT requested: the caller decides what to do with it (call it
 * with fetchWithJar, change its state, replay it...).
 *
 * The provider keeps a session cookie like NHS login does: a second sign-in with
 * the same jar goes straight back without the login form (`loginShown: false`).
 * Use a fresh jar (the default) to sign in as someone else.
 *
 * @returns {Promise<{ callbackUrl: string, jar: CookieJar, loginShown: boolean, trail: string[] }>}
 */
export async function authorizeWithFetch(
  startUrl,
  { login, password = 'test-password', cookieJar, callbackPath = '/auth/nhs/callback' } = {},
) {
  const jar = cookieJar ?? new CookieJar();
  const trail = [];
  let loginShown = false;
  let posted = false;
  let url = startUrl;
  let init = { method: 'GET' };
  const explain = (msg, body = '') =>
    new Error(`authorizeWithFetch: ${msg}\nsteps:\n  ${trail.join('\n  ')}${body ? `\nlast body:\n${body.slice(0, 2000)}` : ''}`);

  for (let step = 0; step < MAX_REDIRECTS; step++) {
    let res;
    try {
      res = await fetchWithJar(url, jar, init);
    } catch (err) {
      trail.push(`${init.method} ${url} -> network error ${err.message}`);
      throw explain(`request failed: ${err.message}`);
    }
    const location = res.headers.get('location');
    trail.push(`${init.method} ${url} -> ${res.status}${location ? ` ${location}` : ''}`);

    if (res.status >= 300 && res.status < 400 && location) {
      await res.body?.cancel();
      const next = new URL(location, url);
      if (next.pathname === callbackPath) {
        return { callbackUrl: next.href, jar, loginShown, trail };
      }
      url = next.href;
      init = { method: 'GET' };
      continue;
    }

    const body = await res.text();
    const form = body.match(/<form[^>]*\baction="([^"]*\/interaction\/[^"]*\/login)"/);
    if (res.status === 200 && form) {
      if (posted) {
        const err = body.match(/<p id="login-error">([\s\S]*?)<\/p>/);
        throw explain(`the login form came back${err ? `: ${decodeEntities(err[1])}` : ''}`);
      }
      if (!login) throw explain('the provider shows its login form but no `login` was given');
      loginShown = true;
      posted = true;
      url = new URL(decodeEntities(form[1]), url).href;
      init = {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ login, password }).toString(),
      };
      continue;
    }
    throw explain(`unexpected ${res.status} response (no redirect, no login form)`, body);
  }
  throw explain(`more than ${MAX_REDIRECTS} steps without reaching ${callbackPath}`);
}

// Last-resort cleanup: kill providers if the test process ends without stop().
function killAllSync() {
  for (const h of running) {
    try {
      if (h.pid && !h.exited) process.kill(h.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  running.clear();
}
process.once('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    killAllSync();
    process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
  });
}
