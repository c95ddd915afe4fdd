// Self-test of the test OpenID provider (tests/idp/server.mjs) and lib/idp.mjs,
// with no keyhold server: this file plays a tiny relying party itself. It builds
// authorization URLs by hand (PKCE S256, state, nonce, vtr), signs in through
// authorizeWithFetch, exchanges the code with an RS512 client assertion signed
// with the key from makeClientKey, and verifies the ID token with jose against
// the provider's JWKS. Then it flips each tamper mode and checks the ID token
// is broken in exactly the intended way. The login page is axe-checked in
// headless Chromium.
//
//   cd tests/e2e && node --test idp.test.mjs

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { readFile, stat, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { makeClientKey, startIdp, authorizeWithFetch, fetchWithJar, createCookieJar, loadJose, idpDir } from './lib/idp.mjs';
import { launchBrowser, checkA11y } from './lib/browser.mjs';

const CLIENT_ID = 'keyhold-test';
// Nothing listens here: authorizeWithFetch stops before requesting the callback
// (the browser test runs a stand-in callback server of its own).
const REDIRECT_URI = 'http://127.0.0.1:59999/auth/nhs/callback';
const VTR = '["P9.Cp.Cd","P9.Cp.Ck","P9.Cm"]';
const SCOPE = 'openid profile email phone';

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const random = () => b64url(crypto.randomBytes(24));
const now = () => Math.floor(Date.now() / 1000);

/** Independent NHS number check (modulus 11, weights 10..2 on the first nine digits). */
function nhsNumberValid(n) {
  if (!/^\d{10}$/.test(n)) return false;
  let sum = 0;
  for (let i = 0; i < 9; i++) sum += Number(n[i]) * (10 - i);
  const check = (11 - (sum % 11)) % 11;
  return check !== 10 && check === Number(n[9]);
}

describe('test OpenID provider (tests/idp)', () => {
  let tmp;
  let key;
  let idp;
  let jose;
  let discovery;
  let jwks;
  let clientPrivateKey;

  before(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'keyhold-idp-test-'));
    jose = await loadJose();
    key = await makeClientKey(path.join(tmp, 'keys'));
    clientPrivateKey = await jose.importPKCS8(await readFile(key.pemPath, 'utf8'), 'RS512');
    idp = await startIdp({ clientId: CLIENT_ID, publicJwk: key.publicJwk });
    discovery = await (await fetch(idp.discoveryUrl)).json();
    jwks = await (await fetch(discovery.jwks_uri)).json();
  });

  after(async () => {
    await idp?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  const withLogs = async (fn) => {
    try {
      return await fn();
    } catch (err) {
      err.message += `\n${idp.logs(8192)}`;
      throw err;
    }
  };

  /** A fresh authorization request: the URL plus the secrets the RP keeps. */
  function authRequest({ redirectUri = REDIRECT_URI, scope = SCOPE, vtr = VTR, pkce = true, extra = {} } = {}) {
    const state = random();
    const nonce = random();
    const verifier = random() + random();
    const url = new URL(discovery.authorization_endpoint);
    const params = { response_type: 'code', client_id: CLIENT_ID, redirect_uri: redirectUri, scope, state, nonce, ...extra };
    if (vtr !== undefined) params.vtr = vtr;
    if (pkce) {
      params.code_challenge = b64url(crypto.createHash('sha256').update(verifier).digest());
      params.code_challenge_method = 'S256';
    }
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    return { url: url.href, state, nonce, verifier, redirectUri };
  }

  async function clientAssertion({ alg = 'RS512', aud = discovery.token_endpoint, jti = random(), signingKey = clientPrivateKey } = {}) {
    const iat = now();
    return new jose.SignJWT({})
      .setProtectedHeader({ alg, kid: key.kid, typ: 'JWT' })
      .setIssuer(CLIENT_ID)
      .setSubject(CLIENT_ID)
      .setAudience(aud)
      .setJti(jti)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 60)
      .sign(signingKey);
  }

  async function exchange(code, req, { assertion, verifier = req.verifier } = {}) {
    const body = new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: req.redirectUri,
      code_verifier: verifier,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion ?? (await clientAssertion()),
    });
    const res = await fetch(discovery.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    return { status: res.status, json: await res.json() };
  }

  /** Signs in as `login` and returns the callback's code (checking state and iss). */
  async function signIn(login, opts = {}, { cookieJar } = {}) {
    const req = authRequest(opts);
    const { callbackUrl, loginShown } = await authorizeWithFetch(req.url, { login, cookieJar });
    const cb = new URL(callbackUrl);
    assert.equal(cb.origin + cb.pathname, req.redirectUri);
    assert.equal(cb.searchParams.get('error'), null, `authorization error: ${callbackUrl}`);
    assert.equal(cb.searchParams.get('state'), req.state);
    assert.equal(cb.searchParams.get('iss'), idp.issuer);
    return { req, code: cb.searchParams.get('code'), loginShown };
  }

  /** A full code flow; returns the raw ID token and the request's secrets. */
  async function fullFlow(login = 'p9') {
    const { req, code } = await signIn(login);
    const { status, json } = await exchange(code, req);
    assert.equal(status, 200, `token endpoint: ${JSON.stringify(json)}`);
    assert.equal(typeof json.id_token, 'string');
    return { req, idToken: json.id_token, tokenResponse: json };
  }

  /** What a careful relying party checks: signature (RS512, JWKS), iss, aud, exp, nonce. */
  async function verifyIdToken(idToken, expectedNonce, options = {}) {
    const { payload, protectedHeader } = await jose.jwtVerify(idToken, jose.createLocalJWKSet(jwks), {
      issuer: idp.issuer,
      audience: CLIENT_ID,
      algorithms: ['RS512'],
      ...options,
    });
    if (payload.nonce !== expectedNonce) throw new Error('nonce mismatch');
    return { payload, protectedHeader };
  }

  it('publishes an NHS-login-like discovery document and an RS512 JWKS', () => {
    assert.equal(discovery.issuer, idp.issuer);
    assert.match(idp.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(idp.discoveryUrl, `${idp.issuer}/.well-known/openid-configuration`);
    assert.equal(discovery.authorization_endpoint, `${idp.issuer}/authorize`);
    assert.equal(discovery.token_endpoint, `${idp.issuer}/token`);
    assert.equal(discovery.token_endpoint, idp.tokenEndpoint);
    assert.equal(discovery.userinfo_endpoint, `${idp.issuer}/userinfo`);
    assert.equal(discovery.jwks_uri, `${idp.issuer}/.well-known/jwks.json`);
    assert.deepEqual(discovery.id_token_signing_alg_values_supported, ['RS512']);
    assert.deepEqual(discovery.token_endpoint_auth_methods_supported, ['private_key_jwt']);
    assert.deepEqual(discovery.token_endpoint_auth_signing_alg_values_supported, ['RS512']);
    assert.deepEqual(discovery.response_types_supported, ['code']);
    assert.deepEqual(discovery.grant_types_supported, ['authorization_code']);
    assert.deepEqual(discovery.code_challenge_methods_supported, ['S256']);
    for (const s of ['openid', 'profile', 'email', 'phone']) assert.ok(discovery.scopes_supported.includes(s), s);
    for (const c of ['vot', 'identity_proofing_level', 'nhs_number', 'birthdate']) assert.ok(discovery.claims_supported.includes(c), c);

    assert.equal(jwks.keys.length, 1);
    const [k] = jwks.keys;
    assert.equal(k.kty, 'RSA');
    assert.equal(k.alg, 'RS512');
    assert.equal(k.use, 'sig');
    assert.ok(k.kid);
    assert.ok(Buffer.from(k.n, 'base64url').length >= 256, 'RSA 2048 or more');
    for (const priv of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(k[priv], undefined, `JWKS leaks ${priv}`);
  });

  it('makeClientKey writes a 0600 PKCS#8 PEM and an RS512 public JWK', async () => {
    const pem = await readFile(key.pemPath, 'utf8');
    assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.equal((await stat(key.pemPath)).mode & 0o777, 0o600);
    assert.equal(path.basename(key.pemPath), 'oidc-client.pem');
    assert.equal(key.publicJwk.alg, 'RS512');
    assert.equal(key.publicJwk.use, 'sig');
    assert.equal(key.publicJwk.kid, await jose.calculateJwkThumbprint(key.publicJwk));
    assert.equal(key.publicJwk.d, undefined);
  });

  it('ships synthetic users with valid 999-range NHS numbers', async () => {
    const users = JSON.parse(await readFile(path.join(idpDir, 'users.json'), 'utf8'));
    assert.deepEqual(Object.keys(users).sort(), ['p0', 'p5', 'p9']);
    const subs = new Set(Object.values(users).map((u) => u.sub));
    assert.equal(subs.size, 3);
    for (const [login, u] of Object.entries(users)) {
      assert.match(u.sub, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, login);
      assert.equal(u.email, `${login}@idp.keyhold.test`);
      assert.equal(u.identity_proofing_level, login.toUpperCase());
      assert.equal(u.vot, `${login.toUpperCase()}.Cp.Cd`);
      if (login === 'p0') {
        assert.equal(u.nhs_number, undefined);
        assert.equal(u.birthdate, undefined);
      } else {
        assert.ok(nhsNumberValid(u.nhs_number), `${login} ${u.nhs_number}`);
        assert.match(u.nhs_number, /^999\d{7}$/);
        assert.match(u.birthdate, /^\d{4}-\d{2}-\d{2}$/);
      }
    }
    assert.equal(users.p9.phone_number, '+447700900001');
    assert.ok(!nhsNumberValid('9990000019'), 'the check itself rejects a wrong check digit');
  });

  it('enforces the registered redirect URIs, and /__test/redirect_uris changes them', async () => {
    await withLogs(async () => {
      // None registered yet: the client is unknown.
      let res = await fetch(authRequest().url, { redirect: 'manual' });
      assert.equal(res.status, 400);
      assert.equal(res.headers.get('location'), null);
      await res.text();

      await idp.setRedirectUris(['http://127.0.0.1:8/auth/nhs/callback']);
      res = await fetch(authRequest().url, { redirect: 'manual' });
      assert.equal(res.status, 400, 'a redirect_uri not registered is refused');
      assert.equal(res.headers.get('location'), null, 'and nothing redirects to it');
      assert.match(await res.text(), /redirect_uri/);

      await idp.setRedirectUris([REDIRECT_URI]);
      res = await fetch(authRequest().url, { redirect: 'manual' });
      assert.equal(res.status, 303);
      assert.match(res.headers.get('location'), /^\/interaction\/[\w-]+$/);
      await res.text();

      // Exact match: another port or path is refused.
      res = await fetch(authRequest({ redirectUri: 'http://127.0.0.1:10/auth/nhs/callback' }).url, { redirect: 'manual' });
      assert.equal(res.status, 400);
      await res.text();
      res = await fetch(authRequest({ redirectUri: `${REDIRECT_URI}/x` }).url, { redirect: 'manual' });
      assert.equal(res.status, 400);
      await res.text();
      assert.deepEqual((await idp.lastRequest()).redirect_uris, [REDIRECT_URI]);
    });
  });

  it('signs p9 in through a full code flow: RS512 ID token with the NHS login claims', async () => {
    await withLogs(async () => {
      await idp.setRedirectUris([REDIRECT_URI]);
      const { req, idToken, tokenResponse } = await fullFlow('p9');
      const { payload, protectedHeader } = await verifyIdToken(idToken, req.nonce);
      assert.equal(protectedHeader.alg, 'RS512');
      assert.equal(protectedHeader.kid, jwks.keys[0].kid);
      assert.equal(payload.iss, idp.issuer);
      assert.equal(payload.aud, CLIENT_ID);
      assert.equal(payload.sub, '4f9b8c2e-1a7d-4e3b-9c11-000000000009');
      assert.equal(payload.vot, 'P9.Cp.Cd');
      assert.equal(payload.identity_proofing_level, 'P9');
      assert.equal(payload.nhs_number, '9990000018');
      assert.equal(payload.birthdate, '1980-04-15');
      assert.equal(payload.family_name, 'Example-Nine');
      assert.equal(payload.given_name, 'Nina');
      assert.equal(payload.email, 'p9@idp.keyhold.test');
      assert.equal(payload.email_verified, true);
      assert.equal(payload.phone_number, '+447700900001');
      assert.equal(typeof payload.vtm, 'string');
      assert.ok(payload.exp > now() && payload.iat <= now() + 5);
      assert.equal(typeof tokenResponse.access_token, 'string');
      assert.equal(tokenResponse.token_type, 'Bearer');
      const userinfo = await fetch(discovery.userinfo_endpoint, {
        headers: { authorization: `Bearer ${tokenResponse.access_token}` },
      });
      assert.equal(userinfo.status, 200);
      const info = await userinfo.json();
      assert.equal(info.sub, payload.sub);
      assert.equal(info.nhs_number, '9990000018');

      // What the relying party (this test) sent, as the provider recorded it.
      const last = await idp.lastRequest();
      assert.equal(last.authorization.vtr, VTR);
      assert.equal(last.authorization.scope, SCOPE);
      assert.equal(last.authorization.code_challenge_method, 'S256');
      assert.equal(last.authorization.nonce_present, true);
      assert.equal(last.authorization.state_present, true);
      assert.equal(last.authorization.redirect_uri, REDIRECT_URI);
      assert.equal(last.token.status, 200);
      assert.equal(last.token.grant_type, 'authorization_code');
      assert.equal(last.token.code_verifier_present, true);
      const ca = last.token.client_assertion;
      assert.equal(ca.header.alg, 'RS512');
      assert.equal(ca.header.kid, key.kid);
      assert.equal(ca.claims.iss, CLIENT_ID);
      assert.equal(ca.claims.sub, CLIENT_ID);
      assert.equal(ca.claims.aud, discovery.token_endpoint);
      assert.equal(ca.claims.exp - ca.claims.iat, 60);
      assert.equal(typeof ca.claims.jti, 'string');
    });
  });

  it('releases only the claims a user has (p0: no NHS number, no birthdate)', async () => {
    await withLogs(async () => {
      await idp.setRedirectUris([REDIRECT_URI]);
      const { req, idToken } = await fullFlow('p0');
      const { payload } = await verifyIdToken(idToken, req.nonce);
      assert.equal(payload.vot, 'P0.Cp.Cd');
      assert.equal(payload.identity_proofing_level, 'P0');
      assert.equal(payload.email, 'p0@idp.keyhold.test');
      assert.equal(payload.given_name, 'Zoe');
      assert.equal(payload.family_name, 'Example-Zero');
      for (const absent of ['nhs_number', 'birthdate', 'phone_number']) assert.ok(!(absent in payload), absent);

      const p5 = await fullFlow('p5');
      const { payload: p5claims } = await verifyIdToken(p5.idToken, p5.req.nonce);
      assert.equal(p5claims.vot, 'P5.Cp.Cd');
      assert.equal(p5claims.nhs_number, '9990000018');

      // Without the profile scope there are no profile claims.
      // (Unknown and NHS-login-only scope names are accepted and release nothing.)
      const { req: r2, code } = await signIn('p9', { scope: 'openid email gp_registration_details no_such_scope' });
      const { json } = await exchange(code, r2);
      const { payload: slim } = await verifyIdToken(json.id_token, r2.nonce);
      assert.equal(slim.vot, 'P9.Cp.Cd');
      assert.equal(slim.email, 'p9@idp.keyhold.test');
      assert.ok(!('nhs_number' in slim));
    });
  });

  it('refuses replays: codes are single use, client assertion jti is single use', async () => {
    await withLogs(async () => {
      await idp.setRedirectUris([REDIRECT_URI]);
      const jar = createCookieJar();
      const first = await signIn('p9', {}, { cookieJar: jar });
      assert.equal(first.loginShown, true);
      const assertion = await clientAssertion();
      let r = await exchange(first.code, first.req, { assertion });
      assert.equal(r.status, 200);
      r = await exchange(first.code, first.req);
      assert.equal(r.status, 400);
      assert.equal(r.json.error, 'invalid_grant');

      // The provider keeps its session: no login form the second time.
      const second = await signIn('p9', {}, { cookieJar: jar });
      assert.equal(second.loginShown, false);
      r = await exchange(second.code, second.req, { assertion });
      assert.equal(r.status, 401);
      assert.equal(r.json.error, 'invalid_client');
      assert.match(r.json.error_description ?? '', /./);
    });
  });

  it('keeps its session: a second sign-in skips the login form, new scopes need no consent screen', async () => {
    await withLogs(async () => {
      await idp.setRedirectUris([REDIRECT_URI]);
      const jar = createCookieJar();
      const first = await signIn('p5', { scope: 'openid email' }, { cookieJar: jar });
      assert.equal(first.loginShown, true);
      // More scopes than granted so far: the consent prompt is answered by itself.
      const second = await signIn('p5', { scope: SCOPE }, { cookieJar: jar });
      assert.equal(second.loginShown, false);
      const { status, json } = await exchange(second.code, second.req);
      assert.equal(status, 200);
      const { payload } = await verifyIdToken(json.id_token, second.req.nonce);
      assert.equal(payload.nhs_number, '9990000018');
      assert.equal(payload.phone_number, '+447700900002');
      // prompt=login shows the form again even with a session.
      const third = await signIn('p9', { extra: { prompt: 'login' } }, { cookieJar: jar });
      assert.equal(third.loginShown, true);
      const t = await exchange(third.code, third.req);
      assert.equal((await verifyIdToken(t.json.id_token, third.req.nonce)).payload.vot, 'P9.Cp.Cd');
    });
  });

  it('requires PKCE S256, the right verifier, an RS512 assertion and aud = token endpoint', async () => {
    await withLogs(async () => {
      await idp.setRedirectUris([REDIRECT_URI]);
      // No code_challenge: the error comes back to the redirect URI.
      const noPkce = authRequest({ pkce: false });
      const { callbackUrl } = await authorizeWithFetch(noPkce.url, { login: 'p9' });
      const cb = new URL(callbackUrl);
      assert.equal(cb.searchParams.get('error'), 'invalid_request');
      assert.match(cb.searchParams.get('error_description'), /PKCE/);

      // A malformed vtr is refused like NHS login does.
      const badVtr = authRequest({ vtr: 'P9' });
      const r0 = await authorizeWithFetch(badVtr.url, { login: 'p9' });
      assert.equal(new URL(r0.callbackUrl).searchParams.get('error'), 'invalid_request');

      let s = await signIn('p9');
      let r = await exchange(s.code, s.req, { verifier: random() + random() });
      assert.equal(r.status, 400);
      assert.equal(r.json.error, 'invalid_grant');

      const rs256 = await jose.importPKCS8(await readFile(key.pemPath, 'utf8'), 'RS256');
      s = await signIn('p9');
      r = await exchange(s.code, s.req, { assertion: await clientAssertion({ alg: 'RS256', signingKey: rs256 }) });
      assert.equal(r.status, 401);
      assert.equal(r.json.error, 'invalid_client');

      s = await signIn('p9');
      r = await exchange(s.code, s.req, { assertion: await clientAssertion({ aud: idp.issuer }) });
      assert.equal(r.status, 401);
      assert.equal(r.json.error, 'invalid_client');

      // A key the client did not register.
      const { privateKey: stranger } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
      s = await signIn('p9');
      r = await exchange(s.code, s.req, { assertion: await clientAssertion({ signingKey: stranger }) });
      assert.equal(r.status, 401);
      assert.equal(r.json.error, 'invalid_client');
    });
  });

  it('shows its own login page and re-shows it with an error for an unknown user', async () => {
    await withLogs(async () => {
      await idp.setRedirectUris([REDIRECT_URI]);
      const jar = createCookieJar();
      let res = await fetchWithJar(authRequest().url, jar);
      assert.equal(res.status, 303);
      const interactionUrl = new URL(res.headers.get('location'), idp.issuer).href;
      res = await fetchWithJar(interactionUrl, jar);
      assert.equal(res.status, 200);
      const html = await res.text();
      assert.match(html, /<html lang="en">/);
      assert.match(html, /<title>Sign in to Test NHS login<\/title>/);
      assert.match(html, /<h1>Sign in to Test NHS login<\/h1>/);
      assert.match(html, /<label for="login">Test user<\/label>\s*<input id="login" name="login"/);
      assert.match(html, /<label for="password">Password<\/label>\s*<input id="password" name="password" type="password"/);
      assert.match(html, /<button type="submit">Continue<\/button>/);
      const action = html.match(/action="([^"]+)"/)[1];

      const post = (login, password) =>
        fetchWithJar(new URL(action, idp.issuer).href, jar, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ login, password }),
        });
      res = await post('nobody', 'x');
      assert.equal(res.status, 200);
      let again = await res.text();
      assert.match(again, /<title>Error: Sign in to Test NHS login<\/title>/);
      assert.match(again, /role="alert"/);
      assert.match(again, /There is no test user called &quot;nobody&quot;/);
      res = await post('p9', '');
      again = await res.text();
      assert.match(again, /Enter a password/);
      res = await post('p9', 'anything');
      assert.equal(res.status, 303);
      assert.match(res.headers.get('location'), /\/authorize\//);

      await assert.rejects(authorizeWithFetch(authRequest().url, { login: 'nobody' }), /no test user called "nobody"/);
    });
  });

  describe('tamper modes', () => {
    before(async () => {
      await idp.setRedirectUris([REDIRECT_URI]);
    });
    after(async () => {
      await idp.setMode('none');
    });

    it('none: a good token (baseline)', async () => {
      await idp.setMode('none');
      const { req, idToken } = await fullFlow('p9');
      await verifyIdToken(idToken, req.nonce);
    });

    it('wrong-nonce: valid signature with the real key, different nonce', async () => {
      await idp.setMode('wrong-nonce');
      const { req, idToken } = await fullFlow('p9');
      await assert.rejects(verifyIdToken(idToken, req.nonce), /nonce mismatch/);
      // Everything but the nonce still checks out.
      const { payload, protectedHeader } = await jose.jwtVerify(idToken, jose.createLocalJWKSet(jwks), {
        issuer: idp.issuer,
        audience: CLIENT_ID,
        algorithms: ['RS512'],
      });
      assert.equal(protectedHeader.kid, jwks.keys[0].kid);
      assert.equal(typeof payload.nonce, 'string');
      assert.notEqual(payload.nonce, req.nonce);
      assert.equal(payload.vot, 'P9.Cp.Cd');
      assert.equal((await idp.lastRequest()).mode, 'wrong-nonce');
    });

    it('other-key: same kid, signature by a different key', async () => {
      await idp.setMode('other-key');
      const { req, idToken } = await fullFlow('p9');
      const header = jose.decodeProtectedHeader(idToken);
      assert.equal(header.kid, jwks.keys[0].kid);
      assert.equal(header.alg, 'RS512');
      await assert.rejects(verifyIdToken(idToken, req.nonce), (err) => err.code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED');
      const claims = jose.decodeJwt(idToken);
      assert.equal(claims.nonce, req.nonce, 'claims are unchanged');
      assert.equal(claims.vot, 'P9.Cp.Cd');
      assert.ok(claims.exp > now());
    });

    it('expired: exp in the past, otherwise valid', async () => {
      await idp.setMode('expired');
      const { req, idToken } = await fullFlow('p9');
      await assert.rejects(verifyIdToken(idToken, req.nonce), (err) => err.code === 'ERR_JWT_EXPIRED');
      const claims = jose.decodeJwt(idToken);
      const t = now();
      assert.ok(Math.abs(claims.exp - (t - 300)) <= 5, `exp ${claims.exp} vs now ${t}`);
      assert.ok(Math.abs(claims.iat - (t - 3900)) <= 5, `iat ${claims.iat} vs now ${t}`);
      // Signed with the real key: it verifies at a time when it was still valid.
      const { payload } = await verifyIdToken(idToken, req.nonce, { currentDate: new Date((claims.exp - 60) * 1000) });
      assert.equal(payload.vot, 'P9.Cp.Cd');
    });

    it('weak-vot: vot P0.Cp.Cd and level P0, validly signed', async () => {
      await idp.setMode('weak-vot');
      const { req, idToken } = await fullFlow('p9');
      const { payload } = await verifyIdToken(idToken, req.nonce);
      assert.equal(payload.vot, 'P0.Cp.Cd');
      assert.equal(payload.identity_proofing_level, 'P0');
      assert.equal(payload.nhs_number, '9990000018', 'the rest is p9 as before');
    });

    it('modes stay until changed, and none restores good tokens', async () => {
      const again = await fullFlow('p9');
      assert.equal(jose.decodeJwt(again.idToken).vot, 'P0.Cp.Cd', 'weak-vot still on');
      await idp.setMode('none');
      const { req, idToken } = await fullFlow('p9');
      const { payload } = await verifyIdToken(idToken, req.nonce);
      assert.equal(payload.vot, 'P9.Cp.Cd');
      await assert.rejects(idp.setMode('bogus'), /400/);
    });
  });

  it('the login page (and its error state) has no axe violations', async () => {
    // A stand-in for the relying party's callback, so the browser lands somewhere real.
    const callbacks = [];
    const rp = http.createServer((request, response) => {
      // Only the redirect back counts (the browser also asks for /favicon.ico).
      if (request.url.startsWith('/auth/nhs/callback')) callbacks.push(request.url);
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      response.end('<!doctype html><html lang="en"><head><title>callback</title></head><body><main><h1>callback</h1></main></body></html>');
    });
    await new Promise((resolve) => rp.listen(0, '127.0.0.1', resolve));
    const callback = `http://127.0.0.1:${rp.address().port}/auth/nhs/callback`;
    await idp.setRedirectUris([REDIRECT_URI, callback]);
    const b = await launchBrowser();
    try {
      const { page } = b;
      const req = authRequest({ redirectUri: callback });
      await page.goto(req.url);
      await checkA11y(page, 'test idp login page');
      await page.fill('#login', 'nobody');
      await page.fill('#password', 'x');
      await Promise.all([page.waitForURL(/\/interaction\/[\w-]+\/login$/), page.click('button[type=submit]')]);
      await page.waitForSelector('#login-error');
      await checkA11y(page, 'test idp login page with an error');
      await page.fill('#login', 'p9');
      await page.fill('#password', 'test-password');
      await Promise.all([page.waitForURL((u) => u.href.startsWith(callback)), page.click('button[type=submit]')]);
      assert.equal(callbacks.length, 1, 'the browser went back to the redirect URI once');
      const cb = new URL(callbacks[0], callback);
      assert.equal(cb.searchParams.get('state'), req.state);
      assert.ok(cb.searchParams.get('code'));
    } finally {
      await b.close();
      await new Promise((resolve) => rp.close(resolve));
    }
  });

  it('exits cleanly on SIGTERM', async () => {
    await idp.stop();
    assert.deepEqual(idp.exited, { code: 0, signal: null });
    assert.equal(idp.stdout, `idp listening on ${idp.issuer}\n`, 'stdout holds exactly the one line');
  });
});
