// The connection indicator: a coloured dot and a label that follows the
// client's state, counting down to the next reconnect attempt.

const LABELS = {
  connecting: 'Connecting…',
  offline: 'Offline',
  stopped: 'Disconnected',
  solving: 'Verifying…',
};

export function bindIndicator(client, root, label, connectedText = 'Connected') {
  let timer = 0;
  const render = () => {
    clearTimeout(timer);
    root.dataset.state = client.state;
    if (client.state === 'connected') {
      label.textContent = connectedText;
    } else if (client.state === 'reconnecting') {
      const seconds = Math.ceil((client.retryAt - Date.now()) / 1000);
      label.textContent = seconds > 0 ? `Reconnecting in ${seconds}s` : 'Reconnecting…';
      if (seconds > 0) timer = setTimeout(render, 250);
    } else {
      label.textContent = LABELS[client.state];
    }
  };
  client.on('state', render);
  render();
}
