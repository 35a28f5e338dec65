"""An independent IRC client (the `irc` package from PyPI) for the IRC test:
registers, joins #main, says hello, and waits for a web user's message.

Usage: irc_client.py HOST PORT; prints "GOT <text>" and exits 0 once the
message "hello from the web" arrives, exits 1 after 20 s without it.
"""

import sys

import irc.client


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    reactor = irc.client.Reactor()
    connection = reactor.server().connect(host, port, "pyuser")
    state = {"got": None}

    def on_welcome(conn, event):
        conn.join("#main")

    def on_join(conn, event):
        if irc.client.NickMask(event.source).nick == "pyuser":
            conn.privmsg("#main", "hello from python")

    def on_pubmsg(conn, event):
        text = event.arguments[0]
        if text == "hello from the web":
            state["got"] = text
            conn.quit("done")

    connection.add_global_handler("welcome", on_welcome)
    connection.add_global_handler("join", on_join)
    connection.add_global_handler("pubmsg", on_pubmsg)
    for _ in range(200):
        reactor.process_once(timeout=0.1)
        if state["got"]:
            print("GOT " + state["got"], flush=True)
            return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
