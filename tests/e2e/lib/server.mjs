// Starts the real keyhold server for a test file.
//
//   const server = await startServer();   // { url, stop(), logs(), dir }
//   ...
//   await server.stop();
//
// Options: `extraArgs` (appended to `keyhold serve ...`) and `env` (merged over
// the server's environment, e.g. `{ KEYHOLD_SMTP_URL: sink.url }` with
// lib/mail.mjs's startMailSink; `keyhold init` does not get it).
//
// The binary comes from KEYHOLD_BIN (default <repo>/target/debug/keyhold).
// Each server gets a fresh temp dir holding its keys and data, removed on stop.
// Servers still running when the process exits are killed (see the exit hooks
// at the bottom), so a failing or aborted test does not leave one behind.

import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm, access } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..', '..');
export const keyholdBin = process.env.KEYHOLD_BIN || path.join(repoRoot, 'target', 'debug', 'keyhold');

const START_TIMEOUT_MS = 30_000;
const INIT_TIMEOUT_MS = 60_000;
const KILL_GRACE_MS = 5_000;
// Keep at most this much of each output stream (the tail) for failure reports.
const LOG_LIMIT = 256 * 1024;

const running = new Set();

function serverEnv() {
  return {
    ...process.env,
    // Test-only: makes argon2 cheap so sign-up/sign-in are fast.
    KEYHOLD_DANGER_FAST_HASH: '1',
    RUST_BACKTRACE: process.env.RUST_BACKTRACE ?? '1',
    NO_COLOR: '1',
  };
}

function tail(s, limit = LOG_LIMIT) {
  return s.length > limit ? `[...${s.length - limit} chars cut...]\n${s.slice(-limit)}` : s;
}

async function ensureBinary() {
  try {
    await access(keyholdBin, fsConstants.X_OK);
  } catch {
    throw new Error(
      `keyhold binary not found or not executable at ${keyholdBin}.\n` +
        `Build it first (cargo build -p keyhold) or set KEYHOLD_BIN.`,
    );
  }
}

function runInit(keysDir) {
  return new Promise((resolve, reject) => {
    execFile(
      keyholdBin,
      ['init', '--keys', keysDir],
      { env: serverEnv(), timeout: INIT_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          reject(
            new Error(
              `\`keyhold init --keys ${keysDir}\` failed ` +
                `(${err.code != null ? `exit code ${err.code}` : `signal ${err.signal}`}${err.killed ? ', timed out' : ''})\n` +
                `--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`,
            ),
          );
        } else {
          resolve({ stdout, stderr });
        }
      },
    );
  });
}

/**
 * Starts `keyhold serve` on an ephemeral port and resolves once it prints
 * "listening on http://127.0.0.1:PORT".
 */
export async function startServer({ extraArgs = [], env = {} } = {}) {
  await ensureBinary();
  const dir = await mkdtemp(path.join(tmpdir(), 'keyhold-e2e-'));
  const keysDir = path.join(dir, 'keys');
  const dataDir = path.join(dir, 'data');

  let stdout = '';
  let stderr = '';
  let child;
  let exited = null; // { code, signal } once the process has exited
  let exitPromise;

  // The server's output so far (the last `limit` chars of each stream).
  const logs = (limit = LOG_LIMIT) =>
    (exited ? `keyhold serve has EXITED (code ${exited.code}, signal ${exited.signal})\n` : '') +
    `--- keyhold serve stdout ---\n${tail(stdout, limit) || '(empty)'}\n` +
    `--- keyhold serve stderr ---\n${tail(stderr, limit) || '(empty)'}`;

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

  const handle = { url: null, dir, stop, logs, get exited() { return exited; } };
  running.add(handle);

  try {
    await runInit(keysDir);

    const args = ['serve', '--data', dataDir, '--keys', keysDir, '--bind', '127.0.0.1:0', ...extraArgs];
    child = spawn(keyholdBin, args, {
      env: { ...serverEnv(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    handle.pid = child.pid;
    exitPromise = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        exited = { code, signal };
        resolve(exited);
      });
    });
    child.stderr.setEncoding('utf8');
    child.stdout.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      stderr += d;
      if (process.env.KEYHOLD_E2E_VERBOSE) process.stderr.write(`[keyhold stderr] ${d}`);
    });

    handle.url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const hint = /listening on/.test(stderr)
          ? '\n(note: "listening on" appeared on stderr; the contract is that it is printed to stdout)'
          : '';
        reject(
          new Error(
            `keyhold serve did not print "listening on http://127.0.0.1:PORT" on stdout within ${START_TIMEOUT_MS / 1000} s${hint}\n${logs()}`,
          ),
        );
      }, START_TIMEOUT_MS);
      const check = () => {
        // Accept 127.0.0.1 or localhost; the port is whatever the OS chose.
        // eslint-disable-next-line no-control-regex
        const m = stdout.replace(/\x1b\[[0-9;]*m/g, '').match(/listening on (http:\/\/(?:127\.0\.0\.1|localhost|\[::1\]):\d+)/);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      };
      child.stdout.on('data', (d) => {
        stdout += d;
        if (process.env.KEYHOLD_E2E_VERBOSE) process.stderr.write(`[keyhold stdout] ${d}`);
        check();
      });
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`could not spawn ${keyholdBin}: ${err.message}`));
      });
      exitPromise.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`keyhold serve exited before listening (code ${code}, signal ${signal})\n${logs()}`));
      });
    });
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
  return handle;
}

// Last-resort cleanup: kill servers if the test process ends without stop().
// (Temp dirs cannot be removed asynchronously here; they are removed by stop().)
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
