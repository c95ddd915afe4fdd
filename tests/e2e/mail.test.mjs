// Self-test of lib/mail.mjs (no browser, no keyhold server): a raw SMTP
// conversation over `net` delivers one message to the sink; waitFor finds it
// and linkIn picks the right link out of its body.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import { startMailSink, linkIn } from './lib/mail.mjs';

/** Speaks SMTP line by line; `expect(code)` reads one (possibly multi-line) reply. */
async function smtpConversation(port, steps) {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.setEncoding('utf8');
  let buffer = '';
  const waiters = [];
  const replies = [];
  socket.on('data', (d) => {
    buffer += d;
    let nl;
    let lines = [];
    while ((nl = buffer.indexOf('\r\n')) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 2);
      lines.push(line);
      // The last line of a reply has a space after the code: "250 OK".
      if (/^\d{3} /.test(line) || /^\d{3}$/.test(line)) {
        replies.push(lines.join('\n'));
        lines = [];
      }
    }
    if (lines.length) buffer = `${lines.join('\r\n')}\r\n${buffer}`;
    while (waiters.length && replies.length) waiters.shift()(replies.shift());
  });
  const failed = new Promise((_, reject) => socket.once('error', reject));
  const next = () =>
    Promise.race([
      failed,
      new Promise((resolve) => {
        if (replies.length) resolve(replies.shift());
        else waiters.push(resolve);
      }),
    ]);
  const expect = async (code) => {
    const reply = await next();
    assert.ok(reply.startsWith(String(code)), `expected ${code}, got ${JSON.stringify(reply)}`);
    return reply;
  };
  const send = (line) => socket.write(`${line}\r\n`);
  try {
    await steps({ expect, send });
  } finally {
    socket.destroy();
  }
}

describe('mail sink', { timeout: 30_000 }, () => {
  let sink;

  before(async () => {
    sink = await startMailSink();
  });

  after(async () => {
    await sink?.close();
  });

  it('listens on 127.0.0.1 and names its URL', () => {
    assert.ok(sink.port > 0);
    assert.equal(sink.url, `smtp://127.0.0.1:${sink.port}`);
    assert.deepEqual(sink.messages, []);
  });

  it('receives a message sent over raw SMTP; waitFor and linkIn find it', async () => {
    const to = `bob-${Date.now()}@example.test`;
    const body = [
      'Hello,',
      '',
      'Read our help: http://127.0.0.1:9/help/verify',
      'Verify your email address: http://127.0.0.1:9/account/verify/Tok3n_abc?next=%2Frecord.',
      '..a line that starts with a dot',
      '',
      'Keyhold',
    ];
    await smtpConversation(sink.port, async ({ expect, send }) => {
      await expect(220);
      send('EHLO selftest.test');
      const ehlo = await expect(250);
      assert.ok(!/STARTTLS|AUTH/.test(ehlo), `no STARTTLS or AUTH offered: ${ehlo}`);
      send('MAIL FROM:<no-reply@keyhold.invalid>');
      await expect(250);
      send(`RCPT TO:<${to}>`);
      await expect(250);
      send('DATA');
      await expect(354);
      send(
        [
          'From: Keyhold <no-reply@keyhold.invalid>',
          `To: ${to}`,
          'Subject: Verify your email address',
          'Message-ID: <selftest@keyhold.invalid>',
          'MIME-Version: 1.0',
          'Content-Type: text/plain; charset=utf-8',
          'Content-Transfer-Encoding: 7bit',
          '',
          ...body,
          '.',
        ].join('\r\n'),
      );
      await expect(250);
      send('QUIT');
      await expect(221);
    });

    const mail = await sink.waitFor((m) => m.to === to, 5_000);
    assert.equal(mail.from, 'no-reply@keyhold.invalid');
    assert.equal(mail.subject, 'Verify your email address');
    assert.deepEqual(mail.envelope, { from: 'no-reply@keyhold.invalid', to: [to] });
    assert.match(mail.text, /^Hello,\n/);
    // Dot-stuffing undone: the line starts with one dot.
    assert.match(mail.text, /\n\.a line that starts with a dot\n/);
    assert.equal(sink.messages.length, 1);

    assert.equal(linkIn(mail, '/account/verify/'), 'http://127.0.0.1:9/account/verify/Tok3n_abc?next=%2Frecord');
    assert.equal(linkIn(mail, '/help/'), 'http://127.0.0.1:9/help/verify');
    assert.throws(() => linkIn(mail, '/account/reset/'), /no link with a path starting "\/account\/reset\/"/);
  });

  it('waitFor gives up after its timeout and lists what arrived', async () => {
    const started = Date.now();
    await assert.rejects(
      sink.waitFor((m) => m.to === 'nobody@example.test', 200),
      /no matching message within 200 ms[\s\S]*subject="Verify your email address"/,
    );
    assert.ok(Date.now() - started < 2_000);
  });
});
