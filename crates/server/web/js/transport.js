// The WebSocket transport: one connection carrying JSON frames. The protocol
// client only uses `send`, `close` and the three callbacks, so another
// transport (long-polling) can stand in with the same shape.

/**
 * Opens a connection to the server this page came from.
 * Callbacks: `onOpen()`, `onFrame(object)`, `onClose()`. `onClose` is
 * called exactly once, whether the connection failed, dropped or was closed.
 */
export function connect({ onOpen, onFrame, onClose }) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(`${scheme}//${location.host}/ws`);
  let closed = false;

  const finish = () => {
    if (closed) return;
    closed = true;
    onClose();
  };

  socket.addEventListener('open', () => onOpen());
  socket.addEventListener('message', (event) => {
    if (typeof event.data !== 'string') return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    onFrame(frame);
  });
  socket.addEventListener('close', finish);
  socket.addEventListener('error', finish);

  return {
    send(frame) {
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
    },
    close() {
      socket.close(1000);
      finish();
    },
  };
}
