//! IRC for the clients people already have (irssi, WeeChat, HexChat):
//! the client side of the protocol, as modern.ircdocs.horse describes it,
//! onto the same rooms. A room is a channel: `#main` is the board main,
//! `#K7QX2M` the room of that code.
//!
//! As the terminal protocol does, each IRC connection is an ordinary hub
//! [`Conn`]: a command becomes ops of the JSON protocol, and what the hub
//! queues (replies and events, as JSON) becomes IRC lines. So an IRC user
//! is a user like any other: the rooms' seats, bans, visibility, rates and
//! grace hold for them, and they talk with web and terminal users.
//!
//! Registration: `CAP LS`/`REQ`/`END` (the capabilities `server-time`,
//! `message-tags` and `echo-message`), `PASS` (a confab session token:
//! the same user again, back in their seats within the grace), `NICK` and
//! `USER`; then 001–005 and 422 (no MOTD). Joining a channel joins an
//! existing room; a room is made with `/msg confab create [title]`.

mod history;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use confab_core::Outbox;
use confab_proto::{ClientOp, Request};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout};

use crate::admission::Ticket;
use crate::tcp::line::{Line, LineReader};
use crate::tcp::{IDLE_TIMEOUT, LOGIN_TIMEOUT, Sent, WRITE_TIMEOUT, send, send_unless_closed};
use crate::{App, Conn};

/// The server's name in IRC lines.
const SERVER: &str = "confab";
/// The most bytes of a line from a client: IRC's 512, and the IRCv3
/// allowance for tags.
const LINE_BYTES: usize = 512 + 8191;
/// The capabilities this server offers.
const CAPS: &[&str] = &[
    "server-time",
    "message-tags",
    "echo-message",
    "batch",
    "draft/chathistory",
    "labeled-response",
    "draft/multiline=max-bytes=4096,max-lines=64",
];
/// The most of one multi-line message (draft/multiline).
const MULTILINE_BYTES: usize = 4096;
const MULTILINE_LINES: usize = 64;
/// The most messages one CHATHISTORY answers (as `history`).
const HISTORY_MOST: u32 = 100;
/// The most CHATHISTORY searches for a time one session has under way
/// (each costs about log2 of the room's message count reads); more are
/// refused until one is answered.
const SEARCHES_MOST: usize = 16;

/// Runs one IRC session until either side ends it (accepted by
/// `tcp::listen`).
pub(crate) async fn serve<S: AsyncRead + AsyncWrite>(
    stream: S,
    app: App,
    peer: Option<IpAddr>,
    ticket: Ticket,
) {
    let (reader, mut writer) = tokio::io::split(stream);
    let mut lines = LineReader::new(reader, LINE_BYTES);
    let (outbox, mut receiver) = Outbox::new(app.outbox);
    let signal = receiver.signal();
    let mut irc = Irc::new(Conn::open(&app.hub, outbox, peer));
    metrics::gauge!(crate::metrics::CONNECTIONS, "transport" => "irc").increment(1.0);
    let mut deadline = Instant::now() + LOGIN_TIMEOUT;
    // A drain closes each connection at its turn, as the other transports'.
    let turn = app.leave_turn();
    tokio::pin!(turn);
    let farewell = loop {
        if !irc.out.is_empty() {
            match send_unless_closed(&mut writer, &mut irc.out, &signal, &app).await {
                Sent::Done => {}
                Sent::Gone => break None,
                Sent::Interrupted(reason) => break Some(reason.as_str().to_owned()),
            }
        }
        if irc.quit.is_some() && irc.pending.is_empty() {
            break irc.quit.take();
        }
        tokio::select! {
            biased;
            reason = signal.closed() => break Some(reason.as_str().to_owned()),
            () = &mut turn => {
                irc.conn.close_for_shutdown();
                break Some("the server is shutting down".into());
            }
            frame = receiver.recv() => {
                let Some(frame) = frame else { break Some("shutting down".into()) };
                irc.frame(&frame);
                while let Some(frame) = receiver.try_recv() {
                    irc.frame(&frame);
                }
                irc.follow_up().await;
            }
            line = lines.next_line(), if irc.quit.is_none() => {
                match line {
                    Ok(Some(Line::Complete(bytes))) => {
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        irc.line(&text).await;
                    }
                    Ok(Some(Line::TooLong(_))) => irc.numeric("417", &[], "Input line was too long"),
                    Ok(None) | Err(_) => break None,
                }
                while let Some(frame) = receiver.try_recv() {
                    irc.frame(&frame);
                }
                irc.follow_up().await;
                if irc.registered {
                    deadline = Instant::now() + IDLE_TIMEOUT;
                }
            }
            () = tokio::time::sleep_until(deadline) => break Some("ping timeout".into()),
        }
    };
    if let Some(reason) = farewell {
        irc.out.push_str(&format!("ERROR :Closing link: {}\r\n", clean(&reason)));
        send(&mut writer, &mut irc.out).await;
    }
    let _ = timeout(WRITE_TIMEOUT, writer.shutdown()).await;
    drop(irc);
    metrics::gauge!(crate::metrics::CONNECTIONS, "transport" => "irc").decrement(1.0);
    // Unread input would make the kernel reset the connection, and the
    // last lines with it.
    if !app.shutdown.is_cancelled() {
        let _ = timeout(Duration::from_secs(2), lines.discard()).await;
    }
    drop(ticket);
}

/// The value of client tag `name` on a raw line, if it has it.
fn client_tag<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let tags = line.strip_prefix('@')?.split(' ').next()?;
    tags.split(';').find_map(|tag| {
        let (key, value) = tag.split_once('=').unwrap_or((tag, ""));
        (key == name).then_some(value)
    })
}

/// Cuts a line of text into pieces of at most `bytes` bytes, at character
/// boundaries (at a space when there is one near the end).
fn pieces(text: &str, bytes: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > bytes {
        let mut cut = bytes;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Some(space) = rest[..cut].rfind(' ').filter(|&s| s > cut / 2) {
            cut = space + 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out.push(rest);
    out
}

/// The most bytes of message text in one PRIVMSG line, leaving room for
/// the prefix, the channel and the tags within IRC's 512.
const TEXT_BYTES: usize = 350;

/// What a reply answers.
#[derive(Debug, Clone)]
enum Pending {
    Create,
    Hello,
    Join(String),
    Part(String),
    Post {
        channel: String,
        text: String,
        notice: bool,
    },
    Names(String),
    /// A CHATHISTORY's answer: the messages after `floor`, as a batch.
    History {
        channel: String,
        floor: Option<u64>,
    },
    /// A CHATHISTORY's search for a time: the room's newest message.
    Newest(history::Seek),
    /// The same, reading a message.
    Seek(history::Seek, u64),
    /// A CHATHISTORY read forward: the room's newest message.
    ForwardNewest(history::Forward),
    /// The same, a page (read below its number).
    Forward(history::Forward, u64),
    Who(String),
    Topic(String),
    SetTopic(String),
    List,
    Quiet,
}

/// An IRC user's side of a hub connection.
struct Irc {
    conn: Conn,
    out: String,
    nick: Option<String>,
    user: bool,
    pass: Option<String>,
    /// CAP negotiation under way: registration waits for `CAP END`.
    negotiating: bool,
    caps: HashSet<&'static str>,
    registered: bool,
    /// This user's id once `hello` was answered.
    me: Option<String>,
    pending: HashMap<i64, Pending>,
    next_id: i64,
    /// Rooms joined, by code as the hub spells it: their titles.
    titles: HashMap<String, String>,
    quit: Option<String>,
    /// The batch the lines being written belong to, if any.
    batch: Option<String>,
    /// The `label` of a command whose answer is a reply still to come, by
    /// the reply's id (labeled-response).
    labels: HashMap<i64, String>,
    /// A multi-line message being received (draft/multiline).
    multiline: Option<Multiline>,
    /// The requests answers call for (each a CHATHISTORY's next step),
    /// with the label its command's answer carries, if any.
    follow: Vec<(Pending, ClientOp, Option<String>)>,
}

/// A `draft/multiline` batch from the client: its reference, target and
/// text so far.
struct Multiline {
    reference: String,
    target: String,
    text: String,
    lines: usize,
    /// Over the bounds: refused, its lines dropped until its end.
    failed: bool,
}

/// Text safe on one IRC line: no CR, LF or NUL.
fn clean(text: &str) -> String {
    text.chars().map(|c| if matches!(c, '\r' | '\n' | '\0') { ' ' } else { c }).collect()
}

/// A confab name as an IRC nick, reversibly ([`name_of`] turns it back):
/// letters, digits and ``[]`_^{|}-`` as they are; a space as `\_`; a
/// backslash as `\\`; anything else as `\{hex}`; a name that would start
/// with a digit or `-` (or be empty) gets a `\` in front.
pub(crate) fn nick_of(name: &str) -> String {
    let mut nick = String::with_capacity(name.len());
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        nick.push('\\');
    }
    for c in name.chars() {
        match c {
            ' ' => nick.push_str("\\_"),
            '\\' => nick.push_str("\\\\"),
            c if c.is_ascii_alphanumeric() || "[]`_^{|}-".contains(c) => nick.push(c),
            c => nick.push_str(&format!("\\{{{:x}}}", c as u32)),
        }
    }
    nick
}

/// The confab name an IRC nick stands for (see [`nick_of`]); a nick
/// without escapes is the name itself.
pub(crate) fn name_of(nick: &str) -> String {
    let mut name = String::with_capacity(nick.len());
    let mut chars = nick.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            name.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some('_') => {
                chars.next();
                name.push(' ');
            }
            Some('\\') => {
                chars.next();
                name.push('\\');
            }
            Some('{') => {
                chars.next();
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    name.push(c);
                }
            }
            // The lead-in of a name starting with a digit or `-`.
            _ => {}
        }
    }
    name
}

/// The room of a channel name (`#main` → `main`), if it is one.
fn room_of(channel: &str) -> Option<&str> {
    channel.strip_prefix('#').filter(|r| !r.is_empty() && r.len() <= 32)
}

fn channel_of(code: &str) -> String {
    format!("#{code}")
}

/// Splits an IRC line into its command and parameters (tags and a
/// source, if a client sends them, are dropped).
fn parse(line: &str) -> Option<(String, Vec<String>)> {
    let mut rest = line.trim_end_matches(['\r', '\n']);
    if rest.starts_with('@') {
        rest = rest.split_once(' ').map_or("", |(_, r)| r);
    }
    if rest.starts_with(':') {
        rest = rest.split_once(' ').map_or("", |(_, r)| r);
    }
    let rest = rest.trim_start();
    if rest.is_empty() {
        return None;
    }
    let (head, trailing) = match rest.split_once(" :") {
        Some((head, trailing)) => (head, Some(trailing)),
        None => (rest, None),
    };
    let mut words = head.split(' ').filter(|w| !w.is_empty());
    let command = words.next()?.to_ascii_uppercase();
    let mut params: Vec<String> = words.map(str::to_owned).collect();
    if let Some(trailing) = trailing {
        params.push(trailing.to_owned());
    }
    Some((command, params))
}

impl Irc {
    fn new(conn: Conn) -> Irc {
        Irc {
            conn,
            out: String::new(),
            nick: None,
            user: false,
            pass: None,
            negotiating: false,
            caps: HashSet::new(),
            registered: false,
            me: None,
            pending: HashMap::new(),
            next_id: 1,
            titles: HashMap::new(),
            quit: None,
            batch: None,
            labels: HashMap::new(),
            multiline: None,
            follow: Vec::new(),
        }
    }

    fn nick(&self) -> &str {
        self.nick.as_deref().unwrap_or("*")
    }

    fn say(&mut self, line: &str) {
        self.out.push_str(line);
        self.out.push_str("\r\n");
    }

    /// `:confab <code> <nick> <params…> :<text>`.
    fn numeric(&mut self, code: &str, params: &[&str], text: &str) {
        let mut line = format!(":{SERVER} {code} {}", self.nick());
        for param in params {
            line.push(' ');
            line.push_str(param);
        }
        line.push_str(" :");
        line.push_str(&clean(text));
        self.say(&line);
    }

    /// The tags a line from the hub carries, for the capabilities asked.
    fn tags(&self, ts: Option<&str>, msgid: Option<String>) -> String {
        let mut tags = Vec::new();
        if let Some(batch) = &self.batch {
            tags.push(format!("batch={batch}"));
        }
        if let Some(ts) = ts.filter(|_| self.caps.contains("server-time")) {
            tags.push(format!("time={ts}"));
        }
        if let Some(id) = msgid.filter(|_| self.caps.contains("message-tags")) {
            tags.push(format!("msgid={id}"));
        }
        if tags.is_empty() { String::new() } else { format!("@{} ", tags.join(";")) }
    }

    async fn request(&mut self, pending: Pending, op: ClientOp) {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, pending);
        self.conn.handle(Request { id: Some(id), op }).await;
    }

    /// Acts on one line from the client, its answer labelled if it asked
    /// (labeled-response): the lines it wrote now, or, when its answer is
    /// the hub's reply, that reply's.
    async fn line(&mut self, text: &str) {
        let label = client_tag(text, "label")
            .filter(|l| !l.is_empty() && l.len() <= 64 && self.caps.contains("labeled-response"))
            .map(str::to_owned);
        let (start, first_id) = (self.out.len(), self.next_id);
        self.command(text).await;
        let Some(label) = label else { return };
        let made = self.next_id - first_id;
        if made == 1 && self.out.len() == start {
            self.labels.insert(first_id, label);
        } else {
            self.label(start, &label);
        }
    }

    /// Tags the lines written since `start` with `label`: one line gets
    /// the tag, several a `labeled-response` batch, none an ACK.
    fn label(&mut self, start: usize, label: &str) {
        let written: Vec<String> =
            self.out[start..].split("\r\n").filter(|l| !l.is_empty()).map(str::to_owned).collect();
        self.out.truncate(start);
        let tagged = |line: &str, tag: &str| match line.strip_prefix('@') {
            Some(rest) => format!("@{tag};{rest}"),
            None => format!("@{tag} {line}"),
        };
        match written.as_slice() {
            [] => self.say(&format!("@label={label} :{SERVER} ACK")),
            [one] => self.say(&tagged(one, &format!("label={label}"))),
            many => {
                let batch = format!("l{}", self.next_id);
                self.next_id += 1;
                self.say(&format!("@label={label} :{SERVER} BATCH +{batch} labeled-response"));
                for line in many {
                    // A line of an inner batch is that batch's; its BATCH
                    // lines are this one's.
                    if line.starts_with("@batch=") {
                        self.say(line);
                    } else {
                        self.say(&tagged(line, &format!("batch={batch}")));
                    }
                }
                self.say(&format!(":{SERVER} BATCH -{batch}"));
            }
        }
    }

    async fn command(&mut self, text: &str) {
        let Some((command, params)) = parse(text) else { return };
        let param = |i: usize| params.get(i).map(String::as_str);
        match command.as_str() {
            "CAP" => self.cap(param(0).unwrap_or(""), param(1).unwrap_or("")).await,
            "PASS" => {
                if let Some(pass) = param(0) {
                    self.pass = Some(pass.to_owned());
                }
            }
            "NICK" => match param(0) {
                None => self.numeric("431", &[], "No nickname given"),
                Some(_) if self.registered => self.numeric(
                    "484",
                    &[],
                    "Your nickname is the one you chose when you connected",
                ),
                Some(nick) => {
                    self.nick = Some(nick.to_owned());
                    self.register().await;
                }
            },
            "USER" => {
                if params.len() < 4 {
                    return self.numeric("461", &["USER"], "Not enough parameters");
                }
                self.user = true;
                self.register().await;
            }
            "PING" => {
                let token = clean(param(0).unwrap_or(SERVER));
                self.say(&format!(":{SERVER} PONG {SERVER} :{token}"));
            }
            "PONG" => {}
            "QUIT" => {
                let rooms: Vec<String> = self.conn.rooms().map(str::to_owned).collect();
                for room in rooms {
                    self.request(Pending::Quiet, ClientOp::Leave { room }).await;
                }
                self.quit = Some(format!("Quit: {}", param(0).unwrap_or("")));
            }
            _ if !self.registered => self.numeric("451", &[], "You have not registered"),
            "JOIN" => {
                let Some(channels) = param(0) else {
                    return self.numeric("461", &["JOIN"], "Not enough parameters");
                };
                for channel in channels.split(',').map(str::to_owned).collect::<Vec<_>>() {
                    match room_of(&channel) {
                        Some(room) => {
                            let op =
                                ClientOp::Join { room: room.to_owned(), since: None, rev: None };
                            self.request(Pending::Join(channel.clone()), op).await;
                        }
                        None => self.numeric("403", &[&channel], "No such channel"),
                    }
                }
            }
            "PART" => {
                let Some(channels) = param(0) else {
                    return self.numeric("461", &["PART"], "Not enough parameters");
                };
                for channel in channels.split(',').map(str::to_owned).collect::<Vec<_>>() {
                    let Some(room) = room_of(&channel) else {
                        self.numeric("403", &[&channel], "No such channel");
                        continue;
                    };
                    let op = ClientOp::Leave { room: room.to_owned() };
                    self.request(Pending::Part(channel.clone()), op).await;
                }
            }
            "BATCH" => self.batch_command(param(0).unwrap_or(""), param(1), param(2)).await,
            "PRIVMSG"
                if self
                    .multiline
                    .as_ref()
                    .is_some_and(|m| client_tag(text, "batch") == Some(m.reference.as_str())) =>
            {
                let concat = client_tag(text, "draft/multiline-concat").is_some();
                let line = param(1).unwrap_or("");
                let Some(batch) = self.multiline.as_mut() else { return };
                if batch.failed {
                    return;
                }
                if batch.lines > 0 && !concat {
                    batch.text.push('\n');
                }
                batch.text.push_str(line);
                batch.lines += 1;
                if !batch.failed
                    && (batch.text.len() > MULTILINE_BYTES || batch.lines > MULTILINE_LINES)
                {
                    // The rest of it is taken and dropped, up to its end.
                    batch.failed = true;
                    batch.text.clear();
                    let reference = batch.reference.clone();
                    self.say(&format!(
                        ":{SERVER} FAIL BATCH MULTILINE_MAX_BYTES {MULTILINE_BYTES} :Multi-line message {reference} is too long"
                    ));
                }
            }
            "PRIVMSG" | "NOTICE" => {
                let notice = command == "NOTICE";
                let (Some(target), Some(text)) = (param(0), param(1)) else {
                    if !notice {
                        self.numeric("412", &[], "No text to send");
                    }
                    return;
                };
                if target.eq_ignore_ascii_case(SERVER) && !notice {
                    return self.service(text).await;
                }
                let Some(room) = room_of(target) else {
                    if !notice {
                        self.numeric("401", &[target], "Only channels (rooms) take messages here");
                    }
                    return;
                };
                // A CTCP ACTION (/me) is sent as its words.
                let body = match text.strip_prefix("\u{1}ACTION ") {
                    Some(action) => {
                        format!("* {} {}", self.nick(), action.trim_end_matches('\u{1}'))
                    }
                    None => text.to_owned(),
                };
                let op = ClientOp::Post {
                    room: room.to_owned(),
                    body,
                    subject: None,
                    cid: None,
                    reply: None,
                };
                let pending =
                    Pending::Post { channel: target.to_owned(), text: text.to_owned(), notice };
                self.request(pending, op).await;
            }
            "TOPIC" => {
                let Some(channel) = param(0).map(str::to_owned) else {
                    return self.numeric("461", &["TOPIC"], "Not enough parameters");
                };
                let Some(room) = room_of(&channel).map(str::to_owned) else {
                    return self.numeric("403", &[&channel], "No such channel");
                };
                match param(1) {
                    Some(title) => {
                        let op = ClientOp::Title { room, title: title.to_owned() };
                        self.request(Pending::SetTopic(channel), op).await;
                    }
                    None => self.request(Pending::Topic(channel), ClientOp::Members { room }).await,
                }
            }
            "NAMES" => {
                let Some(channel) = param(0).map(str::to_owned) else {
                    return self.numeric("366", &["*"], "End of /NAMES list");
                };
                match room_of(&channel).map(str::to_owned) {
                    Some(room) => {
                        self.request(Pending::Names(channel), ClientOp::Members { room }).await
                    }
                    None => self.numeric("366", &[&channel], "End of /NAMES list"),
                }
            }
            "WHO" => {
                let mask = param(0).unwrap_or("*").to_owned();
                match room_of(&mask).map(str::to_owned) {
                    Some(room) => {
                        self.request(Pending::Who(mask), ClientOp::Members { room }).await
                    }
                    None => self.numeric("315", &[&mask], "End of WHO list"),
                }
            }
            "LIST" => self.request(Pending::List, ClientOp::Rooms).await,
            // IRCv3 draft/chathistory (irc/history.rs).
            "CHATHISTORY" => {
                let sub = param(0).unwrap_or("").to_ascii_uppercase();
                let sub = match sub.as_str() {
                    "BEFORE" => history::Sub::Before,
                    "AFTER" => history::Sub::After,
                    "LATEST" => history::Sub::Latest,
                    "AROUND" => history::Sub::Around,
                    "BETWEEN" => history::Sub::Between,
                    "" => {
                        return self.say(&format!(
                            ":{SERVER} FAIL CHATHISTORY NEED_MORE_PARAMS :Missing parameters"
                        ));
                    }
                    _ => {
                        return self.say(&format!(
                            ":{SERVER} FAIL CHATHISTORY INVALID_PARAMS {sub} :Unknown subcommand"
                        ));
                    }
                };
                let marks = if sub == history::Sub::Between { 2 } else { 1 };
                let (Some(target), Some(limit)) = (param(1), param(2 + marks)) else {
                    return self.say(&format!(
                        ":{SERVER} FAIL CHATHISTORY NEED_MORE_PARAMS :Missing parameters"
                    ));
                };
                let Some(room) = room_of(target).map(str::to_owned) else {
                    return self.say(&format!(":{SERVER} FAIL CHATHISTORY INVALID_TARGET {target} :Only channels have history"));
                };
                let mut found = Vec::new();
                for at in (2..2 + marks).filter_map(&param) {
                    if sub == history::Sub::Latest && at == "*" {
                        continue;
                    }
                    match history::mark(at, &room) {
                        Some(mark) => found.push(mark),
                        None => {
                            return self.say(&format!(
                                ":{SERVER} FAIL CHATHISTORY INVALID_PARAMS {at} :Give msgid=<an id of this channel's> or timestamp=YYYY-MM-DDThh:mm:ss.sssZ"
                            ));
                        }
                    }
                }
                let Some(limit) =
                    limit.parse::<u32>().ok().filter(|l| *l > 0).map(|l| l.min(HISTORY_MOST))
                else {
                    return self.say(&format!(
                        ":{SERVER} FAIL CHATHISTORY INVALID_PARAMS {limit} :Bad limit"
                    ));
                };
                let searching = |p: &Pending| matches!(p, Pending::Newest(_) | Pending::Seek(..));
                let timed = found.iter().any(|m| matches!(m, history::Mark::Time(_)));
                if timed && self.pending.values().filter(|p| searching(p)).count() >= SEARCHES_MOST
                {
                    return self.say(&format!(
                        ":{SERVER} FAIL CHATHISTORY MESSAGE_ERROR {target} :Too many searches by time under way; ask again once they are answered"
                    ));
                }
                let query = history::Query::new(target.to_owned(), room, sub, limit, found);
                let (step, seek) = query.clone().next();
                if let Some((pending, op)) = self.history_step(&query, step, seek) {
                    self.request(pending, op).await;
                }
            }
            "MODE" => {
                let Some(target) = param(0).map(str::to_owned) else {
                    return self.numeric("461", &["MODE"], "Not enough parameters");
                };
                if target.starts_with('#') {
                    match param(1) {
                        Some(b) if b.trim_start_matches('+') == "b" => {
                            self.numeric("368", &[&target], "End of channel ban list");
                        }
                        Some(_) => {
                            self.numeric("482", &[&target], "Modes are not changed from IRC")
                        }
                        None => {
                            let nick = self.nick().to_owned();
                            self.say(&format!(":{SERVER} 324 {nick} {target} +nt"));
                        }
                    }
                } else {
                    self.numeric("221", &[], "+");
                }
            }
            "AWAY" => {
                if params.is_empty() {
                    self.numeric("305", &[], "You are no longer marked as being away");
                } else {
                    self.numeric("306", &[], "You have been marked as being away");
                }
            }
            "MOTD" => self.numeric("422", &[], "MOTD File is missing"),
            // `@+typing=active TAGMSG #room`: typing, as IRCv3's client tag.
            "TAGMSG" => {
                let (Some(target), Some(typing)) = (param(0), client_tag(text, "+typing")) else {
                    return;
                };
                if let Some(room) = room_of(target) {
                    let active = typing == "active";
                    let op = ClientOp::Typing { room: room.to_owned(), active };
                    self.request(Pending::Quiet, op).await;
                }
            }
            "WHOIS" | "USERHOST" | "ISON" | "INVITE" | "KICK" | "OPER" => {
                self.numeric("421", &[&command], "Unknown command (not spoken here)");
            }
            _ => self.numeric("421", &[&command], "Unknown command"),
        }
    }

    async fn cap(&mut self, sub: &str, args: &str) {
        match sub.to_ascii_uppercase().as_str() {
            "LS" => {
                self.negotiating = !self.registered;
                let nick = self.nick().to_owned();
                self.say(&format!(":{SERVER} CAP {nick} LS :{}", CAPS.join(" ")));
            }
            "REQ" => {
                self.negotiating = !self.registered;
                let asked: Vec<&str> = args.split(' ').filter(|c| !c.is_empty()).collect();
                let name = |cap: &str| cap.split('=').next().unwrap_or("").to_owned();
                let known =
                    asked.iter().all(|c| CAPS.iter().any(|k| name(k) == c.trim_start_matches('-')));
                let nick = self.nick().to_owned();
                if known {
                    for cap in &asked {
                        match cap.strip_prefix('-') {
                            Some(off) => {
                                self.caps.retain(|c| *c != off);
                            }
                            None => {
                                if let Some(on) = CAPS.iter().find(|c| name(c) == *cap) {
                                    self.caps.insert(on.split('=').next().unwrap_or(on));
                                }
                            }
                        }
                    }
                    self.say(&format!(":{SERVER} CAP {nick} ACK :{args}"));
                } else {
                    self.say(&format!(":{SERVER} CAP {nick} NAK :{args}"));
                }
            }
            "LIST" => {
                let nick = self.nick().to_owned();
                let on: Vec<&str> = self.caps.iter().copied().collect();
                self.say(&format!(":{SERVER} CAP {nick} LIST :{}", on.join(" ")));
            }
            "END" => {
                self.negotiating = false;
                self.register().await;
            }
            other => self.numeric("410", &[other], "Invalid CAP command"),
        }
    }

    /// Says `hello` once NICK and USER are in (and CAP is done).
    async fn register(&mut self) {
        if self.registered
            || self.negotiating
            || !self.user
            || self.pending.values().any(|p| matches!(p, Pending::Hello))
        {
            return;
        }
        let Some(nick) = self.nick.clone() else { return };
        let hello = ClientOp::Hello {
            name: name_of(&nick),
            session: self.pass.clone(),
            resume: None,
            pow: None,
        };
        self.request(Pending::Hello, hello).await;
    }

    /// Writes out one frame the hub queued.
    fn frame(&mut self, frame: &[u8]) {
        let Ok(value) = serde_json::from_slice::<Value>(frame) else { return };
        if let Some(re) = value["re"].as_i64() {
            let Some(pending) = self.pending.remove(&re) else { return };
            let (start, follows) = (self.out.len(), self.follow.len());
            if value["ok"] == true {
                self.answered(pending, &value);
            } else {
                self.refused(pending, &value["error"]);
            }
            if let Some(label) = self.labels.remove(&re) {
                match self.follow.get_mut(follows) {
                    // The answer is the next request's.
                    Some((_, _, next)) => *next = Some(label),
                    None => self.label(start, &label),
                }
            }
        } else {
            self.event(&value);
        }
    }

    /// Acts on a CHATHISTORY's next step: the request it needs, if any
    /// (an empty answer is written at once).
    fn history_step(
        &mut self,
        query: &history::Query,
        step: history::Step,
        seek: Option<history::Seek>,
    ) -> Option<(Pending, ClientOp)> {
        let room = query.room.clone();
        match (step, seek) {
            (history::Step::Newest, Some(seek)) => {
                let op = ClientOp::History { room, before: None, limit: Some(1) };
                Some((Pending::Newest(seek), op))
            }
            (history::Step::Probe(seq), Some(seek)) => {
                let op =
                    ClientOp::History { room, before: Some(seq.saturating_add(1)), limit: Some(1) };
                Some((Pending::Seek(seek, seq), op))
            }
            (history::Step::Forward { after, until, limit }, _) => {
                let forward = history::Forward::new(query, after, until, limit);
                let op = ClientOp::History { room, before: None, limit: Some(1) };
                Some((Pending::ForwardNewest(forward), op))
            }
            (history::Step::History { before, limit, floor }, _) => {
                let channel = query.channel.clone();
                let op = ClientOp::History { room, before, limit: Some(limit) };
                Some((Pending::History { channel, floor }, op))
            }
            (history::Step::Empty | history::Step::Newest | history::Step::Probe(_), _) => {
                self.history_batch(&query.channel, Vec::new());
                None
            }
        }
    }

    /// A forward read's next page, or its answer.
    fn forward(&mut self, forward: history::Forward, page: Option<(u64, u32)>) {
        match page {
            Some((before, limit)) => {
                let room = forward.room.clone();
                let op = ClientOp::History { room, before: Some(before), limit: Some(limit) };
                self.follow.push((Pending::Forward(forward, before), op, None));
            }
            None => {
                let history::Forward { channel, got, .. } = forward;
                self.history_batch(&channel, got);
            }
        }
    }

    /// A CHATHISTORY's answer: `messages` in a `chathistory` batch.
    fn history_batch(&mut self, channel: &str, messages: Vec<Value>) {
        let batch = format!("h{}", self.next_id);
        self.next_id += 1;
        let batched = self.caps.contains("batch");
        if batched {
            self.say(&format!(":{SERVER} BATCH +{batch} chathistory {channel}"));
            self.batch = Some(batch.clone());
        }
        for message in messages {
            self.message(&message, false);
        }
        if batched {
            self.batch = None;
            self.say(&format!(":{SERVER} BATCH -{batch}"));
        }
    }

    /// Sends the requests answers called for.
    ///
    /// A follow-up is part of a command already paid for from the read
    /// budget: a CHATHISTORY costs one read, whatever its search and pages
    /// take (at most about log2 of the room's messages reads of one message
    /// and 8 pages, and 16 searches at once).
    async fn follow_up(&mut self) {
        for (pending, op, label) in std::mem::take(&mut self.follow) {
            let id = self.next_id;
            self.next_id += 1;
            self.pending.insert(id, pending);
            self.conn.handle_follow_up(Request { id: Some(id), op }).await;
            if let Some(label) = label {
                self.labels.insert(id, label);
            }
        }
    }

    fn welcome(&mut self, hello: &Value) {
        self.registered = true;
        self.me = hello["user"]["id"].as_str().map(str::to_owned);
        // The nick others see: made from the name, as theirs are.
        if let Some(name) = hello["user"]["name"].as_str() {
            self.nick = Some(nick_of(name));
        }
        let nick = self.nick().to_owned();
        let version = env!("CARGO_PKG_VERSION");
        self.numeric("001", &[], &format!("Welcome to confab, {nick}"));
        self.numeric("002", &[], &format!("Your host is {SERVER}, running version {version}"));
        self.numeric("003", &[], "This server speaks IRC onto confab's rooms");
        self.say(&format!(":{SERVER} 004 {nick} {SERVER} {version} i nt"));
        self.say(&format!(
            ":{SERVER} 005 {nick} CHANTYPES=# CASEMAPPING=ascii NICKLEN=64 CHANNELLEN=33 \
             TOPICLEN=80 NETWORK=confab PREFIX=(qo)~@ CHANMODES=,,,nt CHATHISTORY=100 MSGREFTYPES=msgid \
             :are supported by this server"
        ));
        self.numeric("422", &[], "MOTD File is missing");
        if let Some(session) = hello["session"].as_str() {
            let note = format!(
                "your confab session is {session}: connect with PASS {session} to come back as yourself"
            );
            self.say(&format!(":{SERVER} NOTICE {nick} :{note}"));
        }
    }

    fn names(&mut self, channel: &str, members: &Value, roles: &Value) {
        let mut names: Vec<String> = members
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|u| {
                        let prefix = match roles[u["id"].as_str().unwrap_or("")].as_str() {
                            Some("owner") => "~",
                            Some("moderator") => "@",
                            _ => "",
                        };
                        format!("{prefix}{}", nick_of(u["name"].as_str().unwrap_or("")))
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let nick = self.nick().to_owned();
        for chunk in names.chunks(40) {
            self.say(&format!(":{SERVER} 353 {nick} = {channel} :{}", chunk.join(" ")));
        }
        self.numeric("366", &[channel], "End of /NAMES list");
    }

    fn answered(&mut self, pending: Pending, reply: &Value) {
        let me = self.nick().to_owned();
        match pending {
            Pending::Hello => self.welcome(reply),
            Pending::Create => {
                let code = reply["room"]["code"].as_str().unwrap_or("");
                let text = format!(
                    "room #{code} is made: /join #{code} (only you and those you give the code to can find it)"
                );
                self.say(&format!(":{SERVER}!{SERVER}@{SERVER} NOTICE {me} :{text}"));
            }
            Pending::Join(_) => {
                let code = reply["room"]["code"].as_str().unwrap_or("").to_owned();
                let channel = channel_of(&code);
                let title = reply["room"]["title"].as_str().unwrap_or("").to_owned();
                self.titles.insert(code, title.clone());
                self.say(&format!(
                    ":{me}!{}@{SERVER} JOIN {channel}",
                    self.me.clone().unwrap_or_default()
                ));
                self.numeric("332", &[&channel], &title);
                self.names(&channel, &reply["members"], &reply["roles"]);
                // The room's recent messages, as history a client shows.
                for message in reply["messages"].as_array().cloned().unwrap_or_default() {
                    self.message(&message, false);
                }
            }
            Pending::Part(channel) => {
                let id = self.me.clone().unwrap_or_default();
                self.say(&format!(":{me}!{id}@{SERVER} PART {channel}"));
            }
            Pending::Post { channel, text, notice } => {
                if self.caps.contains("echo-message") {
                    let id = self.me.clone().unwrap_or_default();
                    let message = &reply["message"];
                    let tags = self.tags(message["ts"].as_str(), msgid(message));
                    let verb = if notice { "NOTICE" } else { "PRIVMSG" };
                    for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
                        for piece in pieces(line, TEXT_BYTES) {
                            let piece = clean(piece);
                            self.say(&format!(
                                "{tags}:{me}!{id}@{SERVER} {verb} {channel} :{piece}"
                            ));
                        }
                    }
                }
            }
            Pending::Names(channel) => self.names(&channel, &reply["members"], &reply["roles"]),
            Pending::History { channel, floor } => {
                let messages = reply["messages"].as_array().cloned().unwrap_or_default();
                let after = |m: &Value| floor.is_none_or(|f| m["seq"].as_u64() > Some(f));
                self.history_batch(&channel, messages.into_iter().filter(after).collect());
            }
            Pending::Newest(seek) => {
                let query = seek.query.clone();
                let newest = reply["messages"].as_array().and_then(|m| m.last());
                let newest = newest.and_then(|m| Some((m["seq"].as_u64()?, m["ts"].as_str()?)));
                let (step, seek) = seek.newest(newest);
                if let Some((pending, op)) = self.history_step(&query, step, seek) {
                    self.follow.push((pending, op, None));
                }
            }
            Pending::ForwardNewest(mut forward) => {
                let newest = reply["messages"].as_array().and_then(|m| m.last());
                let page = forward.newest(newest.and_then(|m| m["seq"].as_u64()));
                self.forward(forward, page);
            }
            Pending::Forward(mut forward, before) => {
                let messages = reply["messages"].as_array().cloned().unwrap_or_default();
                let page = forward.page(before, messages);
                self.forward(forward, page);
            }
            Pending::Seek(seek, probe) => {
                let query = seek.query.clone();
                let found = reply["messages"].as_array().and_then(|m| m.last());
                let found = found.and_then(|m| Some((m["seq"].as_u64()?, m["ts"].as_str()?)));
                let (step, seek) = seek.read(probe, found);
                if let Some((pending, op)) = self.history_step(&query, step, seek) {
                    self.follow.push((pending, op, None));
                }
            }
            Pending::Who(channel) => {
                for user in reply["members"].as_array().cloned().unwrap_or_default() {
                    let nick = nick_of(user["name"].as_str().unwrap_or(""));
                    let id = user["id"].as_str().unwrap_or("");
                    let name = clean(user["name"].as_str().unwrap_or(""));
                    self.say(&format!(
                        ":{SERVER} 352 {me} {channel} {id} {SERVER} {SERVER} {nick} H :0 {name}"
                    ));
                }
                self.numeric("315", &[&channel], "End of WHO list");
            }
            Pending::Topic(channel) => {
                let code = room_of(&channel).unwrap_or("");
                let title = self
                    .titles
                    .iter()
                    .find(|(c, _)| c.eq_ignore_ascii_case(code))
                    .map(|(_, t)| t.clone());
                match title {
                    Some(title) => self.numeric("332", &[&channel], &title),
                    None => self.numeric("331", &[&channel], "No topic is set"),
                }
            }
            Pending::SetTopic(_) | Pending::Quiet => {}
            Pending::List => {
                self.numeric("321", &["Channel"], "Users  Name");
                for room in reply["rooms"].as_array().cloned().unwrap_or_default() {
                    let channel = channel_of(room["code"].as_str().unwrap_or(""));
                    let users = room["members"].as_u64().unwrap_or(0).to_string();
                    let title = room["title"].as_str().unwrap_or("").to_owned();
                    self.numeric("322", &[&channel, &users], &title);
                }
                self.numeric("323", &[], "End of /LIST");
            }
        }
    }

    fn refused(&mut self, pending: Pending, error: &Value) {
        let code = error["code"].as_str().unwrap_or("");
        let text = error["message"].as_str().unwrap_or("refused").to_owned();
        // Over the read budget: RPL_TRYAGAIN (and MESSAGE_ERROR for a
        // CHATHISTORY) instead of "not on that channel".
        let busy = code == "rate_limited";
        match pending {
            Pending::Hello => {
                let nick = self.nick.take().unwrap_or_default();
                match code {
                    "bad_request" => self.numeric("432", &[&nick], &text),
                    _ => self.numeric("465", &[], &text),
                }
            }
            Pending::Join(channel) => match code {
                "room_full" => self.numeric("471", &[&channel], &text),
                "forbidden" => self.numeric("474", &[&channel], &text),
                "name_taken" => self.numeric("433", &[self.nick().to_owned().as_str()], &text),
                "not_found" => self.numeric(
                    "403",
                    &[&channel],
                    "No such channel (IRC joins rooms that exist; make one in the web chat)",
                ),
                _ => self.numeric("479", &[&channel], &text),
            },
            Pending::Part(channel) => {
                self.numeric("442", &[&channel], "You're not on that channel")
            }
            Pending::Post { channel, notice, .. } => {
                if !notice {
                    let text = if code == "not_member" {
                        "Cannot send to channel (join it first)".into()
                    } else {
                        text
                    };
                    self.numeric("404", &[&channel], &text);
                }
            }
            Pending::SetTopic(channel) => match code {
                "forbidden" => {
                    self.numeric("482", &[&channel], "You're not the room's owner or a moderator")
                }
                _ => self.numeric("442", &[&channel], &text),
            },
            Pending::History { channel, .. }
            | Pending::Newest(history::Seek { query: history::Query { channel, .. }, .. })
            | Pending::Seek(history::Seek { query: history::Query { channel, .. }, .. }, _)
            | Pending::ForwardNewest(history::Forward { channel, .. })
            | Pending::Forward(history::Forward { channel, .. }, _) => {
                let why = if busy { "MESSAGE_ERROR" } else { "INVALID_TARGET" };
                self.say(&format!(":{SERVER} FAIL CHATHISTORY {why} {channel} :{}", clean(&text)));
            }
            // A list ends, whatever refused it, so that a client waiting
            // for its end goes on.
            Pending::Names(channel) => {
                self.not_read(busy, "NAMES", &channel, &text);
                self.numeric("366", &[&channel], "End of /NAMES list");
            }
            Pending::Who(mask) => {
                self.not_read(busy, "WHO", &mask, &text);
                self.numeric("315", &[&mask], "End of WHO list");
            }
            Pending::Topic(channel) => self.not_read(busy, "TOPIC", &channel, &text),
            Pending::List => {
                self.numeric("263", &["LIST"], &text);
                self.numeric("323", &[], "End of /LIST");
            }
            Pending::Create => {
                let me = self.nick().to_owned();
                self.say(&format!(":{SERVER}!{SERVER}@{SERVER} NOTICE {me} :{}", clean(&text)));
            }
            Pending::Quiet => {}
        }
    }

    /// Why a channel's list or topic was refused: over the read budget
    /// (try again), or not a channel one may read.
    fn not_read(&mut self, busy: bool, command: &str, channel: &str, text: &str) {
        if busy {
            self.numeric("263", &[command], text);
        } else {
            self.numeric("442", &[channel], "You're not on that channel");
        }
    }

    /// `BATCH +ref draft/multiline #room` opens a multi-line message;
    /// `BATCH -ref` sends it, as one message.
    async fn batch_command(&mut self, reference: &str, kind: Option<&str>, target: Option<&str>) {
        if let Some(reference) = reference.strip_prefix('+') {
            if kind != Some("draft/multiline") || !self.caps.contains("draft/multiline") {
                return self.say(&format!(
                    ":{SERVER} FAIL BATCH INVALID_TYPE :Only draft/multiline batches are taken"
                ));
            }
            let Some(target) = target else {
                return self.numeric("461", &["BATCH"], "Not enough parameters");
            };
            self.multiline = Some(Multiline {
                reference: reference.to_owned(),
                target: target.to_owned(),
                text: String::new(),
                lines: 0,
                failed: false,
            });
        } else if let Some(reference) = reference.strip_prefix('-') {
            let Some(batch) = self.multiline.take().filter(|m| m.reference == reference) else {
                return self.say(&format!(
                    ":{SERVER} FAIL BATCH INVALID_REFTAG {reference} :No such batch"
                ));
            };
            let Some(room) = room_of(&batch.target).map(str::to_owned) else {
                return self.numeric(
                    "401",
                    &[&batch.target],
                    "Only channels (rooms) take messages here",
                );
            };
            if batch.failed || batch.text.trim().is_empty() {
                return;
            }
            let op = ClientOp::Post {
                room,
                body: batch.text.clone(),
                subject: None,
                cid: None,
                reply: None,
            };
            let pending = Pending::Post { channel: batch.target, text: batch.text, notice: false };
            self.request(pending, op).await;
        }
    }

    /// A message to the service user `confab`: `create [title]` makes a
    /// room (IRC makes none by joining), `help` says so.
    async fn service(&mut self, text: &str) {
        let (word, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
        match word.to_ascii_lowercase().as_str() {
            "create" => {
                let title = Some(rest.trim().to_owned()).filter(|t| !t.is_empty());
                let op = ClientOp::Create {
                    title,
                    capacity: None,
                    retention: None,
                    backlog: None,
                    public: None,
                };
                self.request(Pending::Create, op).await;
            }
            _ => {
                let me = self.nick().to_owned();
                let help =
                    "/msg confab create [title] makes a private room and tells you its channel";
                self.say(&format!(":{SERVER}!{SERVER}@{SERVER} NOTICE {me} :{help}"));
            }
        }
    }

    /// A message of a room, as PRIVMSG lines (one per line of its body).
    fn message(&mut self, message: &Value, live: bool) {
        let _ = live;
        let from = &message["from"];
        let nick = nick_of(from["name"].as_str().unwrap_or(""));
        let id = from["id"].as_str().unwrap_or("");
        let channel = channel_of(message["room"].as_str().unwrap_or(""));
        let tags = self.tags(message["ts"].as_str(), msgid(message));
        if message["deleted"] == true {
            return self.say(&format!("{tags}:{nick}!{id}@{SERVER} NOTICE {channel} :(deleted)"));
        }
        let mut body = message["body"].as_str().unwrap_or("").to_owned();
        if let Some(subject) = message["subject"].as_str() {
            body = format!("[{subject}] {body}");
        }
        for line in body.split('\n').filter(|l| !l.trim().is_empty()) {
            for piece in pieces(line, TEXT_BYTES) {
                self.say(&format!(
                    "{tags}:{nick}!{id}@{SERVER} PRIVMSG {channel} :{}",
                    clean(piece)
                ));
            }
        }
    }

    /// An event of a room, as IRC lines.
    fn event(&mut self, event: &Value) {
        let room = event["room"].as_str().unwrap_or("");
        let channel = channel_of(room);
        let user = &event["user"];
        let nick = nick_of(user["name"].as_str().unwrap_or(""));
        let id = user["id"].as_str().unwrap_or("");
        match event["ev"].as_str().unwrap_or("") {
            "message" => self.message(&event["message"], true),
            "join" => self.say(&format!(":{nick}!{id}@{SERVER} JOIN {channel}")),
            "leave" => {
                let reason = event["reason"].as_str().unwrap_or("left");
                self.say(&format!(":{nick}!{id}@{SERVER} PART {channel} :{reason}"));
            }
            "title" => {
                let title = clean(event["title"].as_str().unwrap_or(""));
                self.titles.insert(room.to_owned(), title.clone());
                self.say(&format!(":{nick}!{id}@{SERVER} TOPIC {channel} :{title}"));
            }
            "edited" => {
                let message = &event["message"];
                let nick = nick_of(message["from"]["name"].as_str().unwrap_or(""));
                let first =
                    message["body"].as_str().unwrap_or("").lines().next().unwrap_or("").to_owned();
                self.say(&format!(
                    ":{SERVER} NOTICE {channel} :{nick} edited a message: {}",
                    clean(&first)
                ));
            }
            "deleted" => {
                let by = nick_of(event["by"]["name"].as_str().unwrap_or(""));
                self.say(&format!(":{SERVER} NOTICE {channel} :a message was deleted by {by}"));
            }
            "closed" => {
                let me = self.nick().to_owned();
                let reason = event["reason"].as_str().unwrap_or("closed");
                self.say(&format!(":{SERVER} KICK {channel} {me} :{reason}"));
            }
            "typing" if self.caps.contains("message-tags") => {
                let state = if event["active"] == true { "active" } else { "done" };
                self.say(&format!("@+typing={state} :{nick}!{id}@{SERVER} TAGMSG {channel}"));
            }
            "notice" => {
                let text = clean(event["text"].as_str().unwrap_or(""));
                self.say(&format!(":{SERVER} NOTICE {channel} :{text}"));
            }
            "error" => {
                let text = event["error"]["message"].as_str().unwrap_or("").to_owned();
                let me = self.nick().to_owned();
                self.say(&format!(":{SERVER} NOTICE {me} :{}", clean(&text)));
            }
            // Typing, reactions, roles, locks, mutes and slow mode have no
            // IRC line every client shows.
            _ => {}
        }
    }
}

/// A message's id for the `msgid` tag: its room and seq.
fn msgid(message: &Value) -> Option<String> {
    Some(format!("{}-{}", message["room"].as_str()?, message["seq"].as_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_into_command_and_parameters() {
        let (command, params) = parse("@label=x :me PRIVMSG #main :hello there").unwrap();
        assert_eq!(
            (command.as_str(), params),
            ("PRIVMSG", vec!["#main".to_owned(), "hello there".to_owned()])
        );
        let (command, params) = parse("join #a,#b").unwrap();
        assert_eq!((command.as_str(), params), ("JOIN", vec!["#a,#b".to_owned()]));
        assert_eq!(parse("   "), None);
    }

    #[test]
    fn long_text_is_cut_at_characters_and_spaces() {
        let text = "é".repeat(300);
        let cut = pieces(&text, 350);
        assert!(cut.iter().all(|p| p.len() <= 350) && cut.concat() == text);
        let words = "word ".repeat(100);
        let cut = pieces(&words, 350);
        assert!(cut[0].ends_with(' ') && cut.concat() == words);
        assert_eq!(client_tag("@+typing=active;x TAGMSG #main", "+typing"), Some("active"));
        assert_eq!(client_tag("TAGMSG #main", "+typing"), None);
    }

    #[test]
    fn names_become_nicks() {
        assert_eq!(nick_of("Ann"), "Ann");
        assert_eq!(nick_of("Ann Lee"), "Ann\\_Lee");
        assert_eq!(nick_of("9lives"), "\\9lives");
        assert_eq!(nick_of("Zoë"), "Zo\\{eb}");
        for name in
            ["Ann", "Ann Lee", "9lives", "-x", "", "Zoë 🦀", "a\\b_c", "snake_case", "[x]{y}|z"]
        {
            assert_eq!(name_of(&nick_of(name)), name, "{name:?} by {:?}", nick_of(name));
        }
        assert_eq!(name_of("plain_nick"), "plain_nick");
    }
}
