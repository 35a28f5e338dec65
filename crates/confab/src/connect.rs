//! `confab connect [HOST [PORT]]`: the terminal client of the line
//! protocol (`docs/terminal.md`).
//!
//! It is a thin relay: typed lines go to the server as they are, server
//! lines are shown as they arrive, even while a line is being typed. The
//! client adds line editing and history, and commands of its own:
//! `%connect HOST PORT` (drop this server, connect to another), `%help`
//! (its own commands, then the server's), `%hide NAME`, `%unhide NAME` and
//! `%hidden` (people whose messages this terminal does not show,
//! [`hidden`]), and `%exit` (also Ctrl-D or Ctrl-C), which asks the server
//! to leave every room and waits for its goodbye before quitting.
//!
//! One task waits for whichever comes first, a typed line or a server
//! line; typing happens on a thread of its own ([`console`]).

mod console;
mod hidden;

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

use self::console::{Input, Screen};
use self::hidden::Hidden;

pub(crate) const DEFAULT_HOST: &str = "127.0.0.1";
pub(crate) const DEFAULT_PORT: u16 = 6789;

/// How long `%exit` waits for the server to finish and close.
const EXIT_WAIT: Duration = Duration::from_secs(5);

const HELP: &[&str] = &[
    "client commands:",
    "  %connect <host> <port>  leave this server and connect to another",
    "  %help                   this help, then the server's commands",
    "  %hide <name>            do not show this person's messages (kept on this machine)",
    "  %unhide <name>          show them again",
    "  %hidden                 who is hidden",
    "  %exit                   leave every room and quit (Ctrl-D and Ctrl-C too)",
];

/// A connection to a server: plain TCP, or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

/// How to reach servers: in the clear, or over TLS with this client.
#[derive(Clone)]
pub(crate) struct Security(Option<TlsConnector>);

impl Security {
    /// Plain TCP.
    pub fn plain() -> Security {
        Security(None)
    }

    /// TLS, trusting the certificates of `ca` (PEM), or of the system's
    /// bundle without it; or trusting any certificate, if `insecure`.
    ///
    /// # Errors
    ///
    /// The certificates cannot be read.
    pub fn tls(ca: Option<&std::path::Path>, insecure: bool) -> Result<Security, String> {
        let mut config = client_config(ca, insecure)?;
        config.alpn_protocols = vec![confab_server::tls::TERMINAL_ALPN.to_vec()];
        Ok(Security(Some(TlsConnector::from(std::sync::Arc::new(config)))))
    }
}

/// A TLS client trusting the certificates of `ca` (PEM), or of the
/// system's bundle without it; or any certificate, if `insecure`.
///
/// # Errors
///
/// The certificates cannot be read.
pub(crate) fn client_config(
    ca: Option<&std::path::Path>,
    insecure: bool,
) -> Result<rustls::ClientConfig, String> {
    if insecure {
        return Ok(crate::unchecked_tls::config());
    }
    confab_server::tls::client_config(ca)
}

/// A connection to a server.
struct Link {
    /// `host:port`, as the user gave it.
    name: String,
    lines: Lines<BufReader<ReadHalf<Box<dyn Stream>>>>,
    writer: WriteHalf<Box<dyn Stream>>,
}

impl Link {
    async fn open(host: &str, port: u16, security: &Security) -> std::io::Result<Link> {
        let tcp = TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match &security.0 {
            None => Box::new(tcp),
            Some(client) => {
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                Box::new(client.connect(name, tcp).await?)
            }
        };
        let (reader, writer) = tokio::io::split(stream);
        Ok(Link { name: format!("{host}:{port}"), lines: BufReader::new(reader).lines(), writer })
    }

    async fn send(&mut self, line: &str) -> std::io::Result<()> {
        self.writer.write_all(format!("{line}\n").as_bytes()).await?;
        self.writer.flush().await
    }
}

/// What a typed line asks of the client.
#[derive(Debug, PartialEq, Eq)]
enum Local {
    Connect {
        host: String,
        port: u16,
    },
    Help,
    Exit,
    Hide(String),
    Unhide(String),
    ListHidden,
    /// A client command written wrongly: the error to show.
    Misuse(String),
    /// Anything else: a line for the server.
    Relay,
}

fn local(line: &str) -> Local {
    let mut words = line.split_whitespace();
    let Some(first) = words.next() else { return Local::Relay };
    match first.to_lowercase().as_str() {
        "%connect" => {
            let usage = "usage: %connect <host> <port>";
            match (words.next(), words.next(), words.next()) {
                (Some(host), Some(port), None) => match port.parse::<u16>() {
                    Ok(port) if port > 0 => Local::Connect { host: host.to_owned(), port },
                    _ => Local::Misuse(format!("error: {port:?} is not a port; {usage}")),
                },
                _ => Local::Misuse(format!("error: %connect needs a host and a port; {usage}")),
            }
        }
        "%help" if words.next().is_none() => Local::Help,
        "%exit" if words.next().is_none() => Local::Exit,
        "%hidden" if words.next().is_none() => Local::ListHidden,
        command @ ("%hide" | "%unhide") => {
            // The rest of the line: a name may hold spaces.
            let name = line.trim_start()[command.len()..].trim();
            match (name.is_empty(), command) {
                (true, _) => {
                    Local::Misuse(format!("error: {command} needs a name; usage: {command} <name>"))
                }
                (false, "%hide") => Local::Hide(name.to_owned()),
                (false, _) => Local::Unhide(name.to_owned()),
            }
        }
        _ => Local::Relay,
    }
}

/// Runs the client until the user quits.
pub async fn run(host: Option<String>, port: Option<u16>, security: Security) -> ExitCode {
    let host = host.unwrap_or_else(|| DEFAULT_HOST.to_owned());
    let port = port.unwrap_or(DEFAULT_PORT);
    let (mut input, mut screen) = console::open();
    // The session each server gave, by `host:port`: connecting there again
    // presents it, so the seats held through a drop are the user's again.
    let mut sessions = HashMap::new();
    let mut hidden = Hidden::load();
    let mut link = match connect(&host, port, &security, &sessions, &mut screen).await {
        Some(link) => Some(link),
        // A script cannot type `%connect`: fail at once.
        None if screen.is_plain() => return ExitCode::FAILURE,
        None => None,
    };
    loop {
        tokio::select! {
            typed = input.recv() => {
                let line = match typed {
                    Some(Input::Line(line)) => line,
                    Some(Input::End) | None => return exit(link, &mut screen, &mut hidden).await,
                };
                match local(&line) {
                    Local::Connect { host, port } => {
                        // Dropping the old connection is a disconnect there:
                        // its rooms hold the seat for the reconnect grace.
                        drop(link.take());
                        link = connect(&host, port, &security, &sessions, &mut screen).await;
                    }
                    Local::Help => {
                        for text in HELP {
                            screen.note(text);
                        }
                        if link.is_some() {
                            relay(&mut link, &line, &mut screen).await;
                        }
                    }
                    Local::Exit => return exit(link, &mut screen, &mut hidden).await,
                    Local::Hide(name) => screen.note(&hidden.hide(&name)),
                    Local::Unhide(name) => screen.note(&hidden.unhide(&name)),
                    Local::ListHidden => screen.note(&hidden.list()),
                    Local::Misuse(error) => screen.note(&error),
                    Local::Relay => relay(&mut link, &line, &mut screen).await,
                }
            }
            line = next_line(&mut link) => match line {
                Some(line) => {
                    if let (Some(token), Some(open)) = (session_token(&line), &link) {
                        sessions.insert(open.name.clone(), token.to_owned());
                    }
                    if hidden.shows(&line) {
                        screen.server(&line);
                    }
                }
                None => {
                    let name = link.take().map(|l| l.name).unwrap_or_default();
                    if screen.is_plain() {
                        return ExitCode::SUCCESS;
                    }
                    screen.note(&format!(
                        "connection to {name} closed; %connect <host> <port> to connect again"
                    ));
                }
            },
        }
    }
}

async fn connect(
    host: &str,
    port: u16,
    security: &Security,
    sessions: &HashMap<String, String>,
    screen: &mut Screen,
) -> Option<Link> {
    match Link::open(host, port, security).await {
        Ok(mut link) => {
            screen.note(&format!("connected to {}", link.name));
            if let Some(token) = sessions.get(&link.name) {
                if let Err(e) = link.send(&format!("%session {token}")).await {
                    screen.note(&format!("error: connection to {} lost: {e}", link.name));
                    return None;
                }
                screen.note("(as the same user as before: your session was sent)");
            }
            Some(link)
        }
        Err(e) => {
            screen.note(&format!("error: cannot connect to {host}:{port}: {e}"));
            None
        }
    }
}

/// The token in the server's `session <token>: …` line after a login.
fn session_token(line: &str) -> Option<&str> {
    let token = line.strip_prefix("session ")?.split(':').next()?;
    (!token.is_empty() && !token.contains(' ')).then_some(token)
}

/// Sends a typed line to the server, if there is one.
async fn relay(link: &mut Option<Link>, line: &str, screen: &mut Screen) {
    let Some(open) = link else {
        return screen.note("error: not connected; %connect <host> <port> first");
    };
    if let Err(e) = open.send(line).await {
        screen.note(&format!("error: connection to {} lost: {e}", open.name));
        *link = None;
    }
}

/// The next server line; `None` when the server closed. Waits forever
/// without a connection.
///
/// # Cancel safety
///
/// Cancel safe: `Lines::next_line` keeps a partial line for the next call.
async fn next_line(link: &mut Option<Link>) -> Option<String> {
    match link {
        Some(link) => link.lines.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// Asks the server to leave every room and shows its last lines.
async fn exit(link: Option<Link>, screen: &mut Screen, hidden: &mut Hidden) -> ExitCode {
    let Some(mut link) = link else { return ExitCode::SUCCESS };
    if link.send("%exit").await.is_err() {
        return ExitCode::SUCCESS;
    }
    let finished = tokio::time::timeout(EXIT_WAIT, async {
        while let Ok(Some(line)) = link.lines.next_line().await {
            if hidden.shows(&line) {
                screen.server(&line);
            }
        }
    })
    .await;
    if finished.is_err() {
        screen.note(&format!("{} did not close within {EXIT_WAIT:?}; quitting", link.name));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_commands_are_recognised_and_the_rest_is_relayed() {
        assert_eq!(
            local(" %CONNECT example.org 7000 "),
            Local::Connect { host: "example.org".into(), port: 7000 }
        );
        assert_eq!(local("%help"), Local::Help);
        assert_eq!(local("%exit"), Local::Exit);
        assert_eq!(local("%join"), Local::Relay);
        assert_eq!(local("%hide  Bob Smith "), Local::Hide("Bob Smith".into()));
        assert_eq!(local("%UNHIDE bob"), Local::Unhide("bob".into()));
        assert_eq!(local("%hidden"), Local::ListHidden);
        assert_eq!(
            local("%hide"),
            Local::Misuse("error: %hide needs a name; usage: %hide <name>".into())
        );
        assert_eq!(local("%post %exit is a fine subject"), Local::Relay);
        assert_eq!(local(""), Local::Relay);
        assert_eq!(
            local("%connect host"),
            Local::Misuse(
                "error: %connect needs a host and a port; usage: %connect <host> <port>".into()
            )
        );
        assert_eq!(
            local("%connect host http"),
            Local::Misuse("error: \"http\" is not a port; usage: %connect <host> <port>".into())
        );
    }

    #[test]
    fn the_session_token_is_read_from_the_login_line() {
        let line = "session 0123abcd: type \"%session 0123abcd\" before your username";
        assert_eq!(session_token(line), Some("0123abcd"));
        assert_eq!(session_token("[main] 1 | session | date | subject"), None);
        assert_eq!(session_token("session : nothing"), None);
    }
}
