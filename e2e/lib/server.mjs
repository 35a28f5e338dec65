// Starts a real confab server on free ports with a fresh data directory.

import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const START_TIMEOUT_MS = 20_000;
// Log lines may carry colour codes; they must not stick to the address.
const ANSI_ESCAPE = /\x1b\[[0-9;]*m/g;

function binary() {
  const fromEnv = process.env.CONFAB_BIN;
  return fromEnv ? path.resolve(fromEnv) : path.resolve(E2E_DIR, '../target/debug/confab');
}

/**
 * Resolves to `{ url, stop() }` once the server logs the address it bound.
 * `extraArgs` are passed to `confab serve` (for example `['--grace', '2s']`).
 */
export async function startServer(extraArgs = []) {
  const data = await mkdtemp(path.join(tmpdir(), 'confab-e2e-'));
  const args = ['serve', '--http', '127.0.0.1:0', '--tcp', '127.0.0.1:0', '--data', data, ...extraArgs];
  const child = spawn(binary(), args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info', NO_COLOR: '1' },
  });
  let log = '';

  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(`no "http listening on" line within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    function fail(why) {
      clearTimeout(timer);
      child.kill();
      reject(new Error(`confab serve did not start: ${why}\n${log}`));
    }
    const onData = (chunk) => {
      log += chunk.replace(ANSI_ESCAPE, '');
      const match = /http listening on (\S+)/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    child.on('error', (error) => fail(error.message));
    child.on('exit', (code, signal) => fail(`exited with ${signal ?? code}`));
  });

  return {
    url: `http://${address}`,
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill();
        await exited;
      }
      await rm(data, { recursive: true, force: true });
    },
  };
}
