// The protocol client: says hello, matches replies to requests by id, and
// reconnects with backoff when the connection drops. Pages listen for
// 'ready' (after every successful hello, so they can rejoin), 'state'
// (for the connection indicator) and the server's events by name.
//
// The transport is chosen here, and only here: a WebSocket first; long-
// polling when WebSocket attempts carry nothing (a network or proxy that
// blocks them); and back to a WebSocket as soon as one gets through.

import { connect as openLongPoll } from './longpoll.js';
import { connect as openSocket } from './transport.js';
import { solve } from './pow.js';
import { store } from './store.js';

const REQUEST_TIMEOUT_MS = 15_000;
const PING_EVERY_MS = 20_000;
const PING_TIMEOUT_MS = 8_000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15_000;
/** WebSocket attempts in a row that carry no frame before long-polling takes over. */
const SOCKET_ATTEMPTS = 2;
/** On long-polling, a WebSocket is tried after this long, then twice as long, up to the maximum. */
const PROBE_MIN_MS = 2_000;
const PROBE_MAX_MS = 30_000;

/** An error reply from the server, or a request cut short by a disconnect. */
export class ProtocolError extends Error {
  constructor(code, message, retryAfterMs, challenge) {
    super(message || code);
    this.code = code;
    this.retryAfterMs = retryAfterMs;
    // A puzzle the server asks a new visitor to solve (its defensive mode).
    this.challenge = challenge;
  }
}

/** Error codes for which trying the same hello again cannot help. */
const FATAL_HELLO = new Set(['bad_request', 'too_large']);

export class Client {
  constructor(name) {
    this.name = name;
    this.user = null;
    this.state = 'connecting';
    this.retryAt = 0;
    this.listeners = new Map();
    this.pending = new Map();
    this.nextId = 1;
    this.transport = null;
    this.ready = false;
    this.stopped = false;
    this.attempt = 0;
    this.timer = 0;
    this.pingTimer = 0;
    // 'websocket' or 'longpoll': what the next connection uses.
    this.via = 'websocket';
    this.socketFailures = 0;
    // A WebSocket being tried while on long-polling.
    this.probe = null;
    this.probeTimer = 0;
    this.probeDelay = PROBE_MIN_MS;

    window.addEventListener('online', () => this.reconnectNow());
    window.addEventListener('offline', () => this.drop());
  }

  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }

  emit(type, value) {
    for (const fn of this.listeners.get(type) ?? []) fn(value);
  }

  setState(state) {
    this.state = state;
    this.emit('state', state);
  }

  start() {
    this.stopped = false;
    if (navigator.onLine === false) this.setState('offline');
    else this.open();
  }

  /** Closes for good: no reconnect. */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.stopProbing();
    this.transport?.close();
    this.setState('stopped');
  }

  /**
   * Uses a new display name from the next hello on. Resolves once a hello
   * with that name has succeeded; rejects with the server's error if not,
   * or with a timeout while the server cannot be reached.
   */
  setName(name) {
    if (name === this.name && this.ready) return Promise.resolve(this.user);
    const changed = name !== this.name;
    this.name = name;
    this.stopped = false;
    const result = this.nextHello();
    if (changed) this.drop();
    this.reconnectNow();
    return result;
  }

  /** A promise for the outcome of the next hello. */
  nextHello() {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.listeners.get('ready').delete(onReady);
        this.listeners.get('rejected').delete(onRejected);
      };
      const onReady = () => { done(); resolve(this.user); };
      const onRejected = (error) => { done(); reject(error); };
      const timer = setTimeout(() => {
        done();
        reject(new ProtocolError('timeout', 'The server cannot be reached.'));
      }, REQUEST_TIMEOUT_MS);
      this.on('ready', onReady);
      this.on('rejected', onRejected);
    });
  }

  /** Skips the backoff wait (the "retry now" button, the browser coming online). */
  reconnectNow() {
    if (this.stopped || this.transport) return;
    clearTimeout(this.timer);
    this.attempt = 0;
    this.open();
  }

  /** Drops the current connection as if the network had; reconnects unless offline. */
  drop() {
    this.transport?.close();
  }

  open() {
    if (navigator.onLine === false) {
      this.setState('offline');
      return;
    }
    this.setState(this.user ? 'reconnecting' : 'connecting');
    this.retryAt = 0;
    const via = this.via;
    const transport = (via === 'websocket' ? openSocket : openLongPoll)({
      onOpen: () => this.hello(),
      onFrame: (frame) => {
        transport.heard = true;
        this.receive(frame);
      },
      onClose: () => this.closed(transport),
    });
    transport.via = via;
    transport.heard = false;
    this.transport = transport;
  }

  async hello(pow) {
    const args = { name: this.name };
    const session = store.session;
    if (session) args.session = session;
    if (pow) args.pow = pow;
    try {
      const result = await this.request('hello', args, true);
      store.session = result.session;
      this.user = result.user;
      this.ready = true;
      this.attempt = 0;
      this.puzzles = 0;
      this.setState('connected');
      this.schedulePing();
      if (this.transport?.via === 'longpoll') this.scheduleProbe();
      this.emit('ready', result);
    } catch (error) {
      if (error.code === 'disconnected') return;
      // The server's defensive mode: show the work, then say hello again
      // (a puzzle refused, as one that ran out, is followed by a new one).
      if (error.challenge && (this.puzzles ?? 0) < 3) {
        this.puzzles = (this.puzzles ?? 0) + 1;
        this.setState('solving');
        const solved = await solve(error.challenge);
        if (this.transport) this.hello(solved);
        return;
      }
      if (FATAL_HELLO.has(error.code)) {
        this.stopped = true;
        this.transport?.close();
        this.setState('stopped');
        this.emit('rejected', error);
      } else {
        this.drop();
      }
    }
  }

  closed(transport) {
    if (this.transport !== transport) return;
    this.transport = null;
    this.ready = false;
    clearTimeout(this.pingTimer);
    this.stopProbing();
    this.rejectPending();
    const fellBack = this.choose(transport);
    if (this.stopped) return;
    if (navigator.onLine === false) {
      this.setState('offline');
      return;
    }
    if (fellBack) {
      this.open();
      return;
    }
    // Exponential backoff with jitter, so a restarted server is not met by
    // every client at the same instant.
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.attempt++;
    this.retryAt = Date.now() + delay;
    this.setState('reconnecting');
    this.timer = setTimeout(() => this.open(), delay);
  }

  rejectPending() {
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(new ProtocolError('disconnected', 'The connection was lost.'));
    }
    this.pending.clear();
  }

  /**
   * Picks the transport for the next connection after `transport` closed.
   * Returns true when WebSocket has just been given up for long-polling.
   */
  choose(transport) {
    if (transport.via === 'websocket') {
      this.socketFailures = transport.heard ? 0 : this.socketFailures + 1;
      if (this.socketFailures < SOCKET_ATTEMPTS) return false;
      this.socketFailures = 0;
      this.via = 'longpoll';
      return true;
    }
    // Long-polling could not connect either: the server itself may be
    // down, so the next attempt tries a WebSocket again.
    if (!transport.heard) this.via = 'websocket';
    return false;
  }

  scheduleProbe() {
    clearTimeout(this.probeTimer);
    this.probeTimer = setTimeout(() => this.probeSocket(), this.probeDelay);
    this.probeDelay = Math.min(PROBE_MAX_MS, this.probeDelay * 2);
  }

  stopProbing() {
    clearTimeout(this.probeTimer);
    const probe = this.probe;
    this.probe = null;
    probe?.close();
  }

  /**
   * Tries a WebSocket while on long-polling. It has to carry a frame, not
   * just open (some proxies accept the upgrade and then cut it): a ping
   * before hello is answered, with an error, and that answer will do.
   */
  probeSocket() {
    const id = this.nextId++;
    let adopted = false;
    const socket = openSocket({
      onOpen: () => socket.send({ op: 'ping', id }),
      onFrame: (frame) => {
        if (adopted) {
          this.receive(frame);
        } else if (frame.re === id && this.probe === socket) {
          adopted = true;
          this.adopt(socket);
        }
      },
      onClose: () => {
        if (adopted) {
          this.closed(socket);
        } else if (this.probe === socket) {
          this.probe = null;
          this.scheduleProbe();
        }
      },
    });
    socket.via = 'websocket';
    socket.heard = true;
    this.probe = socket;
  }

  /**
   * Moves from long-polling to the WebSocket `socket`: a reconnect with no
   * wait. The long-poll connection is closed, and the member's seat held for
   * grace until the page, on 'ready', joins again with `since`; requests in
   * flight fail as 'disconnected', and the page sends them again.
   */
  adopt(socket) {
    this.probe = null;
    const old = this.transport;
    this.transport = socket;
    this.via = 'websocket';
    this.socketFailures = 0;
    this.probeDelay = PROBE_MIN_MS;
    this.ready = false;
    clearTimeout(this.pingTimer);
    this.rejectPending();
    // No longer the current transport: its close is not a disconnect.
    old?.close();
    this.hello();
  }

  schedulePing() {
    clearTimeout(this.pingTimer);
    this.pingTimer = setTimeout(async () => {
      try {
        await this.request('ping', {}, false, PING_TIMEOUT_MS);
        this.schedulePing();
      } catch (error) {
        // No pong in time: the connection is half-open. Start over.
        if (error.code === 'timeout') this.drop();
      }
    }, PING_EVERY_MS);
  }

  receive(frame) {
    if (frame.re !== undefined) {
      const entry = this.pending.get(frame.re);
      if (!entry) return;
      this.pending.delete(frame.re);
      clearTimeout(entry.timer);
      if (frame.ok) {
        entry.resolve(frame);
      } else {
        const { code = 'internal', message = '', retry_after_ms: retry, challenge } = frame.error ?? {};
        entry.reject(new ProtocolError(code, message, retry ?? frame.retry_after_ms, challenge));
      }
    } else if (frame.ev) {
      this.emit(frame.ev, frame);
    }
  }

  /**
   * Sends an op and resolves with the reply (rejects with a ProtocolError).
   * Only allowed after hello, except for hello itself.
   */
  request(op, args = {}, beforeReady = false, timeoutMs = REQUEST_TIMEOUT_MS) {
    if (!this.transport || (!this.ready && !beforeReady)) {
      return Promise.reject(new ProtocolError('disconnected', 'Not connected.'));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ProtocolError('timeout', 'The server did not answer in time.'));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.transport.send({ op, id, ...args });
    });
  }

  /** Sends an op that expects no reply (failures come back as an 'error' event). */
  notify(op, args = {}) {
    if (this.ready) this.transport.send({ op, ...args });
  }
}
