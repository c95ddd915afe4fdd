// A test-only OpenID provider that behaves like NHS login where Keyhold's
// relying-party code can tell the difference. Built on oidc-provider 8.x.
// NEVER deploy this: any non-empty password signs in, and the /__test/ control
// endpoints let anyone change clients and forge tokens.
//
//   node tests/idp/server.mjs --config FILE
//
// FILE is JSON:
//   { "client": { "client_id": "keyhold-test",
//                 "jwks": { "keys": [ <the client's public RSA JWK> ] },
//                 "redirect_uris": [] },
//     "users": "<optional path to a users JSON (or the users object itself);
//               default tests/idp/users.json>" }
//
// It listens on 127.0.0.1 on a port the OS picks and prints exactly one line to
// stdout when ready:  idp listening on http://127.0.0.1:PORT
// The issuer is that URL (no trailing slash). Everything else (request log,
// errors) goes to stderr. SIGTERM/SIGINT close it and exit 0.
//
// Like NHS login: ID tokens signed RS512 only; client authentication
// private_key_jwt only, assertion signed RS512, `aud` = the token endpoint URL;
// authorization code flow with PKCE S256 required; `vtr` request parameter;
// `vot`, `vtm`, `identity_proofing_level`, `nhs_number`, `birthdate` and the
// profile claims in the ID token. Endpoint paths copy NHS login's
// (/authorize, /token, /userinfo, /.well-known/jwks.json).
//
// Test control endpoints (no authentication; loopback only):
//   POST /__test/redirect_uris  {"redirect_uris": ["http://127.0.0.1:N/auth/nhs/callback"]}
//   POST /__test/mode           {"mode": "none"|"wrong-nonce"|"other-key"|"expired"|"weak-vot"}
//   GET  /__test/last-request   the last authorization request's and token request's details
// See README.md beside this file.

import http from 'node:http';
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, format } from 'node:util';

import Provider, { errors } from 'oidc-provider';
import * as jose from 'jose';

const here = path.dirname(fileURLToPath(import.meta.url));

const MODES = new Set(['none', 'wrong-nonce', 'other-key', 'expired', 'weak-vot']);
// NHS login's vectors of trust: P0/P5/P9 identity proofing, with either
// "Cp.Cd"/"Cp.Ck" (password + OTP / password + key) or "Cm" (NHS App biometrics).
const VECTOR_RE = /^P(0|5|9)\.(Cp\.C[dk]|Cm)$/;
const BODY_LIMIT = 64 * 1024;

// stdout carries exactly one line, the "listening" one: oidc-provider's own
// notices (console.info) and anything else printed go to stderr.
console.log = console.info = console.debug = (...args) => process.stderr.write(`${format(...args)}\n`);

function log(...args) {
  process.stderr.write(`[idp] ${args.join(' ')}\n`);
}

function fail(message) {
  process.stderr.write(`[idp] FATAL: ${message}\n`);
  process.exit(2);
}

// --- configuration --------------------------------------------------------

const { values: argv } = parseArgs({ options: { config: { type: 'string' } }, strict: true });
if (!argv.config) fail('usage: node server.mjs --config FILE');

let config;
try {
  config = JSON.parse(readFileSync(argv.config, 'utf8'));
} catch (err) {
  fail(`cannot read config ${argv.config}: ${err.message}`);
}
const clientConfig = config.client ?? {};
if (typeof clientConfig.client_id !== 'string' || !clientConfig.client_id) fail('config.client.client_id is required');
if (!Array.isArray(clientConfig.jwks?.keys) || clientConfig.jwks.keys.length === 0) {
  fail('config.client.jwks.keys must hold the client public key(s)');
}
for (const k of clientConfig.jwks.keys) {
  if (k.d || k.p || k.q) fail('config.client.jwks must hold PUBLIC keys only (found a private key member)');
}

/**
 * NHS number check digit (modulus 11), as the NHS Data Dictionary defines it:
 * multiply the first nine digits by the weights 10, 9, 8, ..., 2 and add them up;
 * take the remainder of that sum divided by 11 and subtract it from 11. A result
 * of 11 means a check digit of 0; a result of 10 means the number is invalid;
 * otherwise the result must equal the tenth digit.
 * e.g. 999000001: 9*10 + 9*9 + 9*8 + 1*2 = 245; 245 % 11 = 3; 11 - 3 = 8 -> 9990000018.
 * The synthetic test numbers live in the 999 range, which is never issued to a patient.
 */
function nhsNumberValid(value) {
  if (typeof value !== 'string' || !/^\d{10}$/.test(value)) return false;
  const sum = [...value.slice(0, 9)].reduce((acc, d, i) => acc + Number(d) * (10 - i), 0);
  const check = 11 - (sum % 11);
  if (check === 10) return false;
  return (check === 11 ? 0 : check) === Number(value[9]);
}

function loadUsers(spec) {
  let users;
  let where;
  if (spec && typeof spec === 'object') {
    users = spec;
    where = 'config.users';
  } else {
    where = spec ? path.resolve(spec) : path.join(here, 'users.json');
    try {
      users = JSON.parse(readFileSync(where, 'utf8'));
    } catch (err) {
      fail(`cannot read users ${where}: ${err.message}`);
    }
  }
  const bySub = new Map();
  for (const [login, user] of Object.entries(users)) {
    if (typeof user?.sub !== 'string' || !user.sub) fail(`${where}: user ${login} has no "sub"`);
    if (bySub.has(user.sub)) fail(`${where}: users ${bySub.get(user.sub).login} and ${login} share sub ${user.sub}`);
    // Deliberately odd data is allowed (tests may want to send it), but say so.
    if (user.nhs_number !== undefined && !nhsNumberValid(user.nhs_number)) {
      log(`warning: user ${login} has an nhs_number that fails the modulus 11 check: ${JSON.stringify(user.nhs_number)}`);
    }
    if (user.vot !== undefined && !VECTOR_RE.test(user.vot)) log(`warning: user ${login} has an unusual vot ${JSON.stringify(user.vot)}`);
    bySub.set(user.sub, { login, ...user });
  }
  return { byLogin: new Map(Object.entries(users)), bySub };
}

const users = loadUsers(config.users);
const clientId = clientConfig.client_id;
let redirectUris = Array.isArray(clientConfig.redirect_uris) ? [...clientConfig.redirect_uris] : [];
let mode = 'none';
const lastRequest = { authorization: null, token: null };

// --- keys -----------------------------------------------------------------

async function rsaJwk() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const kid = await jose.calculateJwkThumbprint({ kty: jwk.kty, n: jwk.n, e: jwk.e });
  return { privateKey, jwk: { ...jwk, kid, alg: 'RS512', use: 'sig' } };
}

const signing = await rsaJwk();
let otherKey = null; // made on first use by the "other-key" mode

// --- storage --------------------------------------------------------------

// In-memory storage for oidc-provider's models. The "Client" model is answered
// from the live client metadata (so /__test/redirect_uris takes effect at once:
// oidc-provider caches adapter clients by a fingerprint of their metadata, so a
// changed list gives a new Client object, whereas static clients are cached for
// good).
const stores = new Map();
const grantIndex = new Map(); // grantId -> Set of [model, id]
const sessionUids = new Map(); // session uid -> session id
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

function clientMetadata() {
  return {
    client_id: clientId,
    client_name: 'Keyhold (test)',
    redirect_uris: [...redirectUris],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS512',
    id_token_signed_response_alg: 'RS512',
    jwks: clientConfig.jwks,
  };
}

class TestAdapter {
  constructor(model) {
    this.model = model;
    if (!stores.has(model)) stores.set(model, new Map());
    this.store = stores.get(model);
  }

  async upsert(id, payload, expiresIn) {
    if (this.model === 'Client') return;
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    this.store.set(id, { payload, expiresAt });
    if (this.model === 'Session' && payload.uid) sessionUids.set(payload.uid, id);
    if (GRANTABLE.has(this.model) && payload.grantId) {
      if (!grantIndex.has(payload.grantId)) grantIndex.set(payload.grantId, new Set());
      grantIndex.get(payload.grantId).add(`${this.model}\0${id}`);
    }
  }

  async find(id) {
    if (this.model === 'Client') {
      // Before the test has set a redirect URI the client cannot be valid
      // metadata; it is then simply unknown (invalid_client).
      return id === clientId && redirectUris.length ? clientMetadata() : undefined;
    }
    const entry = this.store.get(id);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.store.delete(id);
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    const id = sessionUids.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode() {
    return undefined;
  }

  async consume(id) {
    const entry = this.store.get(id);
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    this.store.delete(id);
  }

  async revokeByGrantId(grantId) {
    for (const key of grantIndex.get(grantId) ?? []) {
      const [model, id] = key.split('\0');
      stores.get(model)?.delete(id);
    }
    grantIndex.delete(grantId);
  }
}

// --- pages ----------------------------------------------------------------

const escapeHtml = (s) =>
  String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

const STYLE = `
  body { font-family: Arial, Helvetica, sans-serif; font-size: 1.1rem; line-height: 1.5; color: #212b32; background: #fff; margin: 0; }
  main { max-width: 36rem; margin: 2rem auto; padding: 0 1rem; }
  label { display: block; font-weight: bold; margin-top: 1rem; }
  input { font-size: 1.1rem; padding: 0.4rem; border: 2px solid #4c6272; width: 100%; max-width: 20rem; box-sizing: border-box; }
  input:focus, button:focus { outline: 3px solid #ffeb3b; outline-offset: 0; box-shadow: 0 0 0 5px #212b32; }
  button { margin-top: 1.5rem; font-size: 1.1rem; padding: 0.5rem 1.2rem; color: #fff; background: #007f3b; border: 0; cursor: pointer; }
  .error { border: 4px solid #d5281b; padding: 0.5rem 1rem; margin: 1rem 0; }
  .error h2 { margin: 0; font-size: 1.2rem; }
  .hint { color: #4c6272; }
`;

function page({ title, body }) {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

function loginPage({ uid, login = '', error = null }) {
  const known = [...users.byLogin.keys()].join(', ');
  const errorBlock = error
    ? `<div class="error" role="alert">
<h2>There is a problem</h2>
<p id="login-error">${escapeHtml(error)}</p>
</div>
`
    : '';
  const invalid = error ? ' aria-invalid="true" aria-describedby="login-error"' : '';
  return page({
    title: `${error ? 'Error: ' : ''}Sign in to Test NHS login`,
    body: `<h1>Sign in to Test NHS login</h1>
<p class="hint">A test identity provider for Keyhold. It is not NHS login. Test users: ${escapeHtml(known)}. Any password works.</p>
${errorBlock}<form method="post" action="/interaction/${escapeHtml(uid)}/login" novalidate>
<label for="login">Test user</label>
<input id="login" name="login" type="text" autocomplete="username" autocapitalize="none" spellcheck="false" value="${escapeHtml(login)}"${invalid}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password">
<button type="submit">Continue</button>
</form>`,
  });
}

function errorPage(heading, message) {
  return page({
    title: `${heading} - Test NHS login`,
    body: `<h1>${escapeHtml(heading)}</h1>
<p>${escapeHtml(message)}</p>`,
  });
}

// --- the provider ---------------------------------------------------------

// The port is only known after listen(), and the issuer must contain it, so the
// HTTP server starts first and hands requests to the provider once it exists.
let handler = (req, res) => {
  res.statusCode = 503;
  res.end('starting');
};
const server = http.createServer((req, res) => handler(req, res));
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;
const TOKEN_PATH = '/token';
const AUTHORIZE_PATH = '/authorize';
const tokenEndpoint = `${issuer}${TOKEN_PATH}`;

function validateVtr(ctx, value) {
  if (value === undefined) return;
  let parsed;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new errors.InvalidRequest('vtr must be a JSON array of vectors of trust, e.g. ["P9.Cp.Cd","P9.Cp.Ck","P9.Cm"]');
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((v) => typeof v === 'string' && VECTOR_RE.test(v))) {
    throw new errors.InvalidRequest('vtr must be a non-empty JSON array of vectors of trust such as "P9.Cp.Cd"');
  }
}

const provider = new Provider(issuer, {
  adapter: TestAdapter,
  clients: [],
  jwks: { keys: [signing.jwk] },
  cookies: {
    keys: [crypto.randomBytes(32).toString('base64url')],
    // Browsers scope cookies by host, not port: keyhold (127.0.0.1:K) and this
    // provider (127.0.0.1:I) share a cookie jar there, so use names keyhold won't.
    names: { session: 'test_idp_session', interaction: 'test_idp_interaction', resume: 'test_idp_resume' },
    // SameSite=None needs Secure, which plain http cannot have; Lax is enough
    // for top-level redirects back from the client.
    long: { httpOnly: true, sameSite: 'lax' },
    short: { httpOnly: true, sameSite: 'lax' },
  },

  async findAccount(ctx, sub) {
    const user = users.bySub.get(sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        const { login, ...claims } = user; // eslint-disable-line no-unused-vars
        return { vtm: `${issuer}/trustmark/127.0.0.1`, ...claims };
      },
    };
  },

  // Which claims each scope releases. vot, vtm and identity_proofing_level come
  // with "openid" so they are always in the ID token, as with NHS login.
  claims: {
    openid: ['sub', 'vot', 'vtm', 'identity_proofing_level'],
    profile: ['nhs_number', 'birthdate', 'family_name', 'given_name'],
    email: ['email', 'email_verified'],
    phone: ['phone_number', 'phone_number_verified'],
  },
  // NHS login's other scope names are accepted (they release nothing here).
  scopes: [
    'openid', 'profile', 'email', 'phone',
    'profile_extended', 'basic_demographics', 'gp_registration_details',
    'gp_integration_credentials', 'client_metadata', 'nhs_app_credentials',
  ],
  // Put the scope-requested claims into the ID token (NHS login does).
  conformIdTokenClaims: false,

  // Lifetimes in seconds (all set, so oidc-provider prints no notices).
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 3600,
    Session: 8 * 3600,
    Grant: 8 * 3600,
    RefreshToken: 3600,
    ClientCredentials: 600,
    DeviceCode: 600,
    BackchannelAuthenticationRequest: 600,
  },

  clientAuthMethods: ['private_key_jwt'],
  enabledJWA: {
    idTokenSigningAlgValues: ['RS512'],
    clientAuthSigningAlgValues: ['RS512'],
    userinfoSigningAlgValues: ['RS512'],
    requestObjectSigningAlgValues: ['RS512'],
  },
  async assertJwtClientAuthClaimsAndHeader(ctx, claims) {
    // oidc-provider also accepts the issuer; NHS login wants the token endpoint.
    if (claims.aud !== tokenEndpoint) {
      throw new errors.InvalidClientAuth(`client assertion aud must be the token endpoint URL ${tokenEndpoint}`);
    }
    if (claims.sub !== claims.iss) {
      throw new errors.InvalidClientAuth('client assertion sub must equal iss (the client_id)');
    }
  },

  responseTypes: ['code'],
  pkce: { methods: ['S256'], required: () => true },
  extraParams: { vtr: validateVtr },
  allowOmittingSingleRegisteredRedirectUri: false,
  clientBasedCORS: () => false,

  routes: {
    authorization: AUTHORIZE_PATH,
    token: TOKEN_PATH,
    userinfo: '/userinfo',
    jwks: '/.well-known/jwks.json',
  },
  features: {
    devInteractions: { enabled: false },
    userinfo: { enabled: true },
    revocation: { enabled: false },
    introspection: { enabled: false },
    registration: { enabled: false },
    claimsParameter: { enabled: false },
    pushedAuthorizationRequests: { enabled: false },
  },
  interactions: {
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = errorPage('Sign-in problem', `${out.error}: ${out.error_description ?? ''}`);
  },
});

provider.on('server_error', (ctx, err) => log('server_error', err?.stack ?? err));
for (const ev of ['authorization.error', 'grant.error', 'userinfo.error', 'jwks.error', 'discovery.error']) {
  provider.on(ev, (ctx, err) => log(ev, `${err?.error ?? err?.name}: ${err?.error_description ?? err?.message}`));
}

// --- helpers for the middleware -------------------------------------------

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > BODY_LIMIT) throw Object.assign(new Error('body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function json(ctx, status, body) {
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.body = JSON.stringify(body);
}

function seeOther(ctx, location) {
  ctx.redirect(location);
  ctx.status = 303;
}

// Grants what is asked for: NHS login shows no consent screen for Keyhold.
async function grantAll(details, accountId) {
  const { prompt, params } = details;
  let grant;
  if (details.grantId) grant = await provider.Grant.find(details.grantId);
  if (!grant || grant.accountId !== accountId) {
    grant = new provider.Grant({ accountId, clientId: params.client_id });
  }
  const d = prompt.details ?? {};
  grant.addOIDCScope(params.scope ?? 'openid');
  if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
  if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return grant.save();
}

async function interaction(ctx, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    log('interaction lookup failed:', err.message);
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = errorPage('Sign-in problem', 'This sign-in has expired or is not valid. Go back to the service and start again.');
    return;
  }
  if (details.uid !== uid) {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = errorPage('Sign-in problem', 'This sign-in page does not match your sign-in. Go back to the service and start again.');
    return;
  }

  if (action === 'login') {
    if (ctx.method !== 'POST') {
      ctx.status = 405;
      return;
    }
    if (details.prompt.name !== 'login') {
      seeOther(ctx, `/interaction/${uid}`);
      return;
    }
    const form = new URLSearchParams(await readBody(ctx.req));
    const login = (form.get('login') ?? '').trim();
    const password = form.get('password') ?? '';
    let error = null;
    if (!login) error = 'Enter a test user.';
    else if (!users.byLogin.has(login)) error = `There is no test user called "${login}". Use one of: ${[...users.byLogin.keys()].join(', ')}.`;
    else if (!password) error = 'Enter a password (any password works).';
    if (error) {
      ctx.status = 200;
      ctx.type = 'html';
      ctx.body = loginPage({ uid, login, error });
      return;
    }
    const accountId = users.byLogin.get(login).sub;
    // Signing in as someone else in a browser that already has a session:
    // oidc-provider would answer with a self-submitting logout form. Forget
    // the old sign-in instead, so the flow goes straight back to the client.
    if (details.session?.accountId && details.session.accountId !== accountId) {
      const session = await provider.Session.findByUid(details.session.uid);
      if (session) {
        for (const k of ['accountId', 'loginTs', 'amr', 'acr', 'transient']) session[k] = undefined;
        session.authorizations = {};
        await session.persist();
      }
      // The interaction remembers whom the session belonged to; keep it in step.
      details.session.accountId = undefined;
      await details.save(details.exp - Math.floor(Date.now() / 1000));
    }
    const grantId = await grantAll(details, accountId);
    log(`login ${login} (sub ${accountId}) for ${details.params.client_id}`);
    const to = await provider.interactionResult(
      ctx.req,
      ctx.res,
      { login: { accountId }, consent: { grantId } },
      { mergeWithLastSubmission: false },
    );
    seeOther(ctx, to);
    return;
  }

  if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
    ctx.status = 405;
    return;
  }
  if (details.prompt.name === 'login') {
    ctx.type = 'html';
    ctx.body = loginPage({ uid });
    return;
  }
  if (details.prompt.name === 'consent') {
    const grantId = await grantAll(details, details.session.accountId);
    const to = await provider.interactionResult(ctx.req, ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    seeOther(ctx, to);
    return;
  }
  ctx.status = 400;
  ctx.type = 'html';
  ctx.body = errorPage('Sign-in problem', `Unsupported prompt ${details.prompt.name}.`);
}

async function control(ctx) {
  if (ctx.path === '/__test/last-request' && ctx.method === 'GET') {
    json(ctx, 200, { ...lastRequest, mode, redirect_uris: redirectUris });
    return;
  }
  if (ctx.method !== 'POST') {
    json(ctx, 404, { error: 'not found' });
    return;
  }
  let body;
  try {
    body = JSON.parse(await readBody(ctx.req));
  } catch (err) {
    json(ctx, 400, { error: `body must be JSON: ${err.message}` });
    return;
  }
  if (ctx.path === '/__test/redirect_uris') {
    const list = body?.redirect_uris;
    const ok =
      Array.isArray(list) &&
      list.every((u) => {
        try {
          const url = new URL(u);
          return (url.protocol === 'http:' || url.protocol === 'https:') && !url.hash;
        } catch {
          return false;
        }
      });
    if (!ok) {
      json(ctx, 400, { error: 'redirect_uris must be an array of absolute http(s) URLs without a fragment' });
      return;
    }
    redirectUris = [...list];
    log('redirect_uris =', JSON.stringify(redirectUris));
    json(ctx, 200, { redirect_uris: redirectUris });
    return;
  }
  if (ctx.path === '/__test/mode') {
    if (!MODES.has(body?.mode)) {
      json(ctx, 400, { error: `mode must be one of ${[...MODES].join(', ')}` });
      return;
    }
    mode = body.mode;
    log('mode =', mode);
    json(ctx, 200, { mode });
    return;
  }
  json(ctx, 404, { error: 'not found' });
}

function recordAuthorization(params) {
  const p = { ...params };
  lastRequest.authorization = {
    at: new Date().toISOString(),
    params: p,
    client_id: p.client_id,
    response_type: p.response_type,
    redirect_uri: p.redirect_uri,
    scope: p.scope,
    vtr: p.vtr,
    state_present: typeof p.state === 'string' && p.state.length > 0,
    nonce_present: typeof p.nonce === 'string' && p.nonce.length > 0,
    code_challenge_present: typeof p.code_challenge === 'string' && p.code_challenge.length > 0,
    code_challenge_method: p.code_challenge_method,
    prompt: p.prompt,
  };
}

function recordToken(ctx, params) {
  const p = params ?? {};
  let assertion = null;
  if (typeof p.client_assertion === 'string') {
    try {
      assertion = { header: jose.decodeProtectedHeader(p.client_assertion), claims: jose.decodeJwt(p.client_assertion) };
    } catch (err) {
      assertion = { error: `undecodable client_assertion: ${err.message}` };
    }
  }
  const body = typeof ctx.body === 'object' && ctx.body ? ctx.body : {};
  lastRequest.token = {
    at: new Date().toISOString(),
    status: ctx.status,
    error: body.error,
    error_description: body.error_description,
    grant_type: p.grant_type,
    redirect_uri: p.redirect_uri,
    code_present: typeof p.code === 'string' && p.code.length > 0,
    code_verifier_present: typeof p.code_verifier === 'string' && p.code_verifier.length > 0,
    client_id: p.client_id,
    client_assertion_type: p.client_assertion_type,
    client_assertion: assertion,
    tamper_mode: mode,
  };
}

async function tamper(idToken) {
  const header = jose.decodeProtectedHeader(idToken);
  const claims = jose.decodeJwt(idToken);
  let key = signing.privateKey;
  const now = Math.floor(Date.now() / 1000);
  switch (mode) {
    case 'wrong-nonce':
      claims.nonce = crypto.randomBytes(16).toString('base64url');
      break;
    case 'other-key':
      otherKey ??= await rsaJwk();
      key = otherKey.privateKey; // same kid in the header: only the signature gives it away
      break;
    case 'expired':
      claims.iat = now - 3900;
      claims.exp = now - 300;
      break;
    case 'weak-vot':
      claims.vot = 'P0.Cp.Cd';
      claims.identity_proofing_level = 'P0';
      break;
    default:
      return idToken;
  }
  return new jose.CompactSign(new TextEncoder().encode(JSON.stringify(claims))).setProtectedHeader(header).sign(key);
}

provider.use(async (ctx, next) => {
  const started = Date.now();
  try {
    if (ctx.path.startsWith('/__test/')) {
      await control(ctx);
      return;
    }
    const m = ctx.path.match(/^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login))?$/);
    if (m) {
      await interaction(ctx, m[1], m[2]);
      return;
    }
    if (ctx.path === AUTHORIZE_PATH) {
      const raw = ctx.method === 'GET' ? { ...ctx.query } : null;
      try {
        await next();
      } finally {
        recordAuthorization(raw ?? ctx.oidc?.params ?? {});
      }
      return;
    }
    if (ctx.path === TOKEN_PATH && ctx.method === 'POST') {
      try {
        await next();
      } finally {
        recordToken(ctx, ctx.oidc?.params);
      }
      if (ctx.status === 200 && ctx.body && typeof ctx.body === 'object' && typeof ctx.body.id_token === 'string' && mode !== 'none') {
        ctx.body = { ...ctx.body, id_token: await tamper(ctx.body.id_token) };
        log(`token response id_token tampered (mode ${mode})`);
      }
      return;
    }
    await next();
  } catch (err) {
    log(`${ctx.method} ${ctx.path} failed: ${err?.stack ?? err}`);
    throw err;
  } finally {
    log(`${ctx.method} ${ctx.path} -> ${ctx.status} (${Date.now() - started} ms)`);
  }
});

handler = provider.callback();

// --- lifecycle ------------------------------------------------------------

let closing = false;
function shutdown(sig) {
  if (closing) return;
  closing = true;
  log(`${sig}: closing`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

process.stdout.write(`idp listening on ${issuer}\n`);
