// Human wording for the protocol's error codes.

export function describeError(error, { code } = {}) {
  switch (error.code) {
    case 'not_found':
      return code ? `There is no room with the code ${code}. Check the code, or the room may have ended.` : 'That room does not exist.';
    case 'room_full':
      return 'That room is full: every seat is taken. Try again when someone leaves.';
    case 'name_taken':
      return 'Someone in that room already uses this name. Pick another one.';
    case 'rate_limited':
      return 'Slow down a little — too many requests. Try again in a moment.';
    case 'too_large':
    case 'bad_request':
    case 'forbidden':
      return error.message || 'The server refused that request.';
    case 'disconnected':
    case 'timeout':
      return 'Not connected to the server right now. Try again in a moment.';
    case 'unavailable':
      return error.message ? `The server cannot do that right now: ${error.message}` : 'The server cannot do that right now.';
    default:
      return error.message ? `Something went wrong: ${error.message}` : 'Something went wrong on the server.';
  }
}
