// An in-process SMTP sink for the browser tests: the keyhold server under test
// sends its mail here (pass `env: { KEYHOLD_SMTP_URL: sink.url }` to startServer).
//
//   const sink = await startMailSink();            // { port, url, messages, waitFor, close }
//   const server = await startServer({ env: { KEYHOLD_SMTP_URL: sink.url } });
//   ...
//   const mail = await sink.waitFor((m) => m.to === email);
//   await page.goto(linkIn(mail, '/account/verify/'));
//   ...
//   await sink.close();
//
// Plain SMTP on 127.0.0.1 only: no TLS, no AUTH (any client may send; nothing
// else can reach a loopback port). Each message is parsed with mailparser.

import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';

const POLL_MS = 50;

/**
 * A received message. `to` and `from` are bare addresses from the headers (falling
 * back to the SMTP envelope), `text` is the decoded text/plain body.
 * @typedef {{ to: string, from: string, subject: string, text: string,
 *   envelope: { from: string, to: string[] }, messageId: string, date: Date | undefined,
 *   headers: Map<string, unknown>, raw: string }} SinkMessage
 */

/**
 * Starts an SMTP server on 127.0.0.1 on a free port.
 * @returns {Promise<{ port: number, url: string, messages: SinkMessage[],
 *   waitFor: (predicate?: (m: SinkMessage) => boolean, timeoutMs?: number) => Promise<SinkMessage>,
 *   close: () => Promise<void> }>}
 */
export async function startMailSink() {
  /** @type {SinkMessage[]} */
  const messages = [];
  const errors = [];

  const server = new SMTPServer({
    secure: false,
    disabledCommands: ['AUTH', 'STARTTLS'],
    authOptional: true,
    disableReverseLookup: true,
    banner: 'keyhold e2e mail sink',
    logger: false,
    // close() should not wait long for a client that keeps its connection.
    closeTimeout: 1000,
    onData(stream, session, callback) {
      const chunks = [];
      stream.on('data', (c) => chunks.push(c));
      stream.on('error', callback);
      stream.on('end', () => {
        const raw = Buffer.concat(chunks);
        simpleParser(raw).then(
          (parsed) => {
            const envelope = {
              from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
              to: session.envelope.rcptTo.map((r) => r.address),
            };
            messages.push({
              to: parsed.to?.value?.[0]?.address ?? envelope.to[0] ?? '',
              from: parsed.from?.value?.[0]?.address ?? envelope.from,
              subject: parsed.subject ?? '',
              text: parsed.text ?? '',
              envelope,
              messageId: parsed.messageId ?? '',
              date: parsed.date,
              headers: parsed.headers,
              raw: raw.toString('utf8'),
            });
            callback();
          },
          (err) => {
            errors.push(err);
            callback(err);
          },
        );
      });
    },
  });
  server.on('error', (err) => errors.push(err));

  await new Promise((resolve, reject) => {
    const onError = (err) => reject(err);
    server.server.once('error', onError);
    server.listen(0, '127.0.0.1', () => {
      server.server.off('error', onError);
      resolve();
    });
  });
  const { port } = server.server.address();

  const describe = () =>
    messages.length === 0
      ? '(none)'
      : messages.map((m, i) => `  #${i} to=${m.to} subject=${JSON.stringify(m.subject)}`).join('\n');

  /**
   * Resolves with the first message (in arrival order) matching `predicate`,
   * polling until `timeoutMs`; rejects then, listing what did arrive.
   */
  const waitFor = (predicate = () => true, timeoutMs = 10_000) =>
    new Promise((resolve, reject) => {
      const deadline = Date.now() + timeoutMs;
      const check = () => {
        const found = messages.find(predicate);
        if (found) return resolve(found);
        if (Date.now() >= deadline) {
          return reject(
            new Error(
              `mail sink: no matching message within ${timeoutMs} ms. Received:\n${describe()}` +
                (errors.length ? `\nSink errors:\n${errors.map((e) => `  ${e.message}`).join('\n')}` : ''),
            ),
          );
        }
        setTimeout(check, POLL_MS);
      };
      check();
    });

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await new Promise((resolve) => server.close(() => resolve()));
  };

  return { port, url: `smtp://127.0.0.1:${port}`, messages, waitFor, close };
}

/**
 * The first http(s) URL in the message's text body whose path starts with
 * `pathPrefix` (e.g. '/account/verify/'), as a string. Throws, quoting the body,
 * when there is none.
 * @param {{ text: string }} message
 * @param {string} pathPrefix
 */
export function linkIn(message, pathPrefix) {
  const text = message?.text ?? '';
  for (const match of text.matchAll(/https?:\/\/[^\s<>"'`]+/g)) {
    // A sentence's closing punctuation is not part of the link.
    const candidate = match[0].replace(/[.,;:!?)\]}]+$/, '');
    let url;
    try {
      url = new URL(candidate);
    } catch {
      continue;
    }
    if (url.pathname.startsWith(pathPrefix)) return url.href;
  }
  throw new Error(`no link with a path starting ${JSON.stringify(pathPrefix)} in the message:\n${text}`);
}
