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

/** Spawns `confab serve` and resolves to `{ child, address, log }` once it logs the address it bound. */
function spawnServer(args) {
  const child = spawn(binary(), args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info', NO_COLOR: '1' },
  });
  const state = { child, log: '' };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(`no "http listening on" line within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    function fail(why) {
      clearTimeout(timer);
      child.kill();
      reject(new Error(`confab serve did not start: ${why}\n${state.log}`));
    }
    const onData = (chunk) => {
      state.log += chunk.replace(ANSI_ESCAPE, '');
      const match = /http listening on (\S+)/.exec(state.log);
      if (match && !state.address) {
        clearTimeout(timer);
        state.address = match[1];
        child.off('exit', onEarlyExit);
        resolve(state);
      }
    };
    const onEarlyExit = (code, signal) => fail(`exited with ${signal ?? code}`);
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    child.on('error', (error) => fail(error.message));
    child.on('exit', onEarlyExit);
  });
}

async function halt(child) {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill();
    await exited;
  }
}

/**
 * Resolves to `{ url, log(), halt(), restart(), stop() }` once the server
 * logs the address it bound. `extraArgs` are passed to `confab serve` (for
 * example `['--grace', '2s']`). `halt` stops the process (SIGTERM) and
 * keeps its data; `restart` starts it again on the same address and data;
 * `stop` ends it and removes the data.
 */
export async function startServer(extraArgs = []) {
  const data = await mkdtemp(path.join(tmpdir(), 'confab-e2e-'));
  // A short drain: a halted server's pages are told and closed within a
  // second, not spread over the default five.
  const args = (http) => ['serve', '--http', http, '--tcp', '127.0.0.1:0', '--data', data, '--drain', '1s', ...extraArgs];
  let running = await spawnServer(args('127.0.0.1:0'));
  const address = running.address;
  let earlier = '';

  return {
    url: `http://${address}`,
    log: () => earlier + running.log,
    async halt() {
      await halt(running.child);
    },
    async restart() {
      await halt(running.child);
      earlier += running.log;
      running = await spawnServer(args(address));
    },
    async stop() {
      await halt(running.child);
      await rm(data, { recursive: true, force: true });
    },
  };
}
