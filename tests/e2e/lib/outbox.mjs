// Mail that a server without an SMTP sink wrote to its outbox folder
// (<data>/outbox/*.eml, one message per file): for tests that follow a
// mailed link (confirming an address, resetting a password).
//
//   const url = await outboxLink(server, email, '/account/confirm/');

import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

import { linkIn } from './mail.mjs';

const POLL_MS = 50;

/**
 * The newest link starting with `pathPrefix` in a message to `to`, waiting up
 * to `timeoutMs` for it to be written.
 */
export async function outboxLink(server, to, pathPrefix, timeoutMs = 10_000) {
  const dir = path.join(server.dir, 'data', 'outbox');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let names = [];
    try {
      names = (await readdir(dir)).filter((n) => n.endsWith('.eml'));
    } catch {
      // not created yet
    }
    const files = await Promise.all(
      names.map(async (n) => ({ p: path.join(dir, n), t: (await stat(path.join(dir, n))).mtimeMs })),
    );
    files.sort((a, b) => b.t - a.t);
    for (const f of files) {
      const text = await readFile(f.p, 'utf8');
      if (text.includes(to) && text.includes(pathPrefix)) return linkIn({ text }, pathPrefix);
    }
    if (Date.now() > deadline) {
      throw new Error(`no mail to ${to} with a ${pathPrefix} link in ${dir} after ${timeoutMs} ms (${names.length} messages there)`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
