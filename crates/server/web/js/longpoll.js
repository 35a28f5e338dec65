// The long-polling transport, for networks that block WebSockets: the same
// shape as the WebSocket transport (transport.js) over plain HTTP requests.
//
// POST /lp opens a connection; POST /lp/<conn> carries our frames, one
// request at a time so they apply in order; GET /lp/<conn>?ack=<n> waits
// for the server's frames. Frames are numbered: each poll acknowledges the
// last one received, and the server keeps everything unacknowledged, so a
// poll cut off on the way is simply answered again by the next one.

/** A poll that fails (network error, proxy error) is tried this many times more. */
const POLL_RETRIES = 3;
const RETRY_DELAY_MS = 1_000;
/** The most bytes sent in one POST, well under the server's frame limit. */
const BATCH_BYTES = 32 * 1024;

const encoder = new TextEncoder();

/**
 * Opens a connection to the server this page came from.
 * Callbacks: `onOpen()`, `onFrame(object)`, `onClose()`. `onClose` is
 * called exactly once, whether the connection failed, dropped or was closed.
 */
export function connect({ onOpen, onFrame, onClose }) {
  const abort = new AbortController();
  const outgoing = [];
  let conn = null;
  let closed = false;
  let sending = false;
  // The number of the last frame received.
  let ack = 0;

  const url = () => `/lp/${encodeURIComponent(conn)}`;

  // The server closes a connection nobody polls only after a minute; say
  // goodbye when the page goes away, as a WebSocket would.
  const release = () => {
    if (conn) fetch(url(), { method: 'DELETE', keepalive: true }).catch(() => {});
  };

  const finish = () => {
    if (closed) return;
    closed = true;
    abort.abort();
    window.removeEventListener('pagehide', release);
    onClose();
  };

  async function open() {
    try {
      const response = await fetch('/lp', { method: 'POST', cache: 'no-store', signal: abort.signal });
      if (!response.ok) throw new Error(`open: ${response.status}`);
      conn = (await response.json()).conn;
    } catch {
      finish();
      return;
    }
    if (closed) {
      release();
      return;
    }
    window.addEventListener('pagehide', release);
    onOpen();
    poll();
  }

  async function poll() {
    let failures = 0;
    while (!closed) {
      let frames;
      let last;
      try {
        const response = await fetch(`${url()}?ack=${ack}`, { cache: 'no-store', signal: abort.signal });
        // The connection is gone (closed by the server, expired): start over.
        if (response.status === 404) break;
        if (!response.ok) throw new Error(`poll: ${response.status}`);
        last = Number(response.headers.get('Confab-Last'));
        frames = await response.json();
        if (!Array.isArray(frames) || !Number.isSafeInteger(last)) throw new Error('poll: bad answer');
      } catch {
        if (closed || ++failures > POLL_RETRIES) break;
        await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS * failures));
        continue;
      }
      failures = 0;
      // Frames are numbered consecutively up to `last`; skip any already seen.
      const first = last - frames.length + 1;
      for (let i = 0; i < frames.length && !closed; i++) {
        if (first + i <= ack) continue;
        ack = first + i;
        // A failing listener is reported, as it would be for a WebSocket
        // message event, and does not stop the polling.
        try {
          onFrame(frames[i]);
        } catch (error) {
          window.reportError(error);
        }
      }
    }
    finish();
  }

  /** Sends what is queued, in order, one request at a time. */
  async function flush() {
    sending = true;
    while (outgoing.length && !closed) {
      const batch = [];
      let size = 2;
      while (outgoing.length && (batch.length === 0 || size + outgoing[0].bytes + 1 <= BATCH_BYTES)) {
        const { text, bytes } = outgoing.shift();
        size += bytes + 1;
        batch.push(text);
      }
      try {
        const response = await fetch(url(), {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: `[${batch.join(',')}]`,
          signal: abort.signal,
        });
        // Whether a failed request was applied is unknown: as with a dropped
        // WebSocket, start over and let the client resume.
        if (response.status !== 204) throw new Error(`send: ${response.status}`);
      } catch {
        finish();
      }
    }
    sending = false;
  }

  open();

  return {
    send(frame) {
      if (closed || !conn) return;
      const text = JSON.stringify(frame);
      // Sized in bytes, as the server counts them.
      outgoing.push({ text, bytes: encoder.encode(text).length });
      if (!sending) flush();
    },
    close() {
      release();
      finish();
    },
  };
}
