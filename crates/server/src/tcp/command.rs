//! Terminal commands: a line becomes a [`Command`], or a [`Misuse`] that
//! says what is wrong and how the command is written.

use std::fmt;

/// The board the plain commands (`%join`, `%post`, …) act on.
pub(crate) const MAIN: &str = "main";

/// One command of the terminal protocol, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Join {
        room: String,
    },
    Leave {
        room: String,
    },
    Post {
        room: String,
        subject: String,
        body: String,
    },
    Users {
        room: String,
    },
    List {
        room: String,
    },
    Message {
        room: String,
        id: u64,
    },
    Report {
        room: String,
        id: u64,
        reason: Option<String>,
    },
    Role {
        room: String,
        role: confab_proto::Role,
        name: String,
    },
    Kick {
        room: String,
        name: String,
    },
    Ban {
        room: String,
        name: String,
    },
    Unban {
        room: String,
        user: String,
    },
    Bans {
        room: String,
    },
    Mute {
        room: String,
        name: String,
        shadow: bool,
    },
    Unmute {
        room: String,
        user: String,
    },
    Slow {
        room: String,
        seconds: u32,
    },
    Title {
        room: String,
        title: String,
    },
    Delete {
        room: String,
        id: u64,
    },
    /// A post answering message `id` (no subject).
    Reply {
        room: String,
        id: u64,
        body: String,
    },
    Edit {
        room: String,
        id: u64,
        body: String,
    },
    React {
        room: String,
        id: u64,
        emoji: String,
    },
    Lock {
        room: String,
        locked: bool,
    },
    Groups,
    /// Before the username: come back as the user of this session token.
    Session {
        token: String,
    },
    Help,
    Exit,
}

/// How one command is written, for `%help` and for usage errors.
#[derive(Debug)]
pub(crate) struct Spec {
    pub usage: &'static str,
    pub about: &'static str,
}

/// Every command, in the order `%help` lists them.
pub(crate) const COMMANDS: &[Spec] = &[
    Spec { usage: "%join", about: "join the board main" },
    Spec { usage: "%leave", about: "leave the board main" },
    Spec { usage: "%post <subject> <content...>", about: "post to main (subject: one word)" },
    Spec { usage: "%users", about: "members of main" },
    Spec {
        usage: "%list",
        about: "messages of main you can see: id, sender, date, subject, first line",
    },
    Spec { usage: "%message <id>", about: "one message of main, with its content" },
    Spec { usage: "%report <id> [reason...]", about: "tell the operator about a message of main" },
    Spec {
        usage: "%delete <id>",
        about: "delete a message of main: your own, or any as the owner or a moderator",
    },
    Spec { usage: "%reply <id> <content...>", about: "answer a message of main (quoting it)" },
    Spec {
        usage: "%edit <id> <content...>",
        about: "replace the text of your own message of main, soon after posting it",
    },
    Spec {
        usage: "%react <id> <emoji>",
        about: "put an emoji on a message of main, or take yours off",
    },
    Spec {
        usage: "%role <owner|moderator|member> <name...>",
        about: "give a member of main a role (the owner only)",
    },
    Spec {
        usage: "%kick <name...>",
        about: "remove a member from main for 10 minutes (owner, moderators)",
    },
    Spec {
        usage: "%ban <name...>",
        about: "ban a member from main, their addresses too, until lifted (owner, moderators)",
    },
    Spec { usage: "%bans", about: "who is banned or removed from main, with their user ids" },
    Spec { usage: "%unban <user id>", about: "lift a ban (or removal) in main" },
    Spec {
        usage: "%mute <name...>",
        about: "stop a member of main from posting (owner, moderators)",
    },
    Spec {
        usage: "%shadowmute <name...>",
        about: "let a member of main post to themselves only, unbeknown to anyone",
    },
    Spec { usage: "%unmute <user id>", about: "let a muted user of main post again" },
    Spec {
        usage: "%slow <seconds>",
        about: "slow mode in main: one message per member every so often (0: off)",
    },
    Spec { usage: "%title <title...>", about: "rename main's room (owner, moderators)" },
    Spec { usage: "%groups", about: "public rooms and boards" },
    Spec { usage: "%groupjoin <room>", about: "join a room, by code or board name" },
    Spec { usage: "%groupleave <room>", about: "leave a room" },
    Spec { usage: "%grouppost <room> <subject> <content...>", about: "post to a room" },
    Spec { usage: "%groupusers <room>", about: "members of a room" },
    Spec { usage: "%grouplist <room>", about: "messages of a room you can see" },
    Spec { usage: "%groupmessage <room> <id>", about: "one message of a room" },
    Spec { usage: "%groupreport <room> <id> [reason...]", about: "report a message of a room" },
    Spec { usage: "%groupdelete <room> <id>", about: "delete a message of a room" },
    Spec { usage: "%groupreply <room> <id> <content...>", about: "answer a message of a room" },
    Spec { usage: "%groupedit <room> <id> <content...>", about: "edit your message of a room" },
    Spec { usage: "%groupreact <room> <id> <emoji>", about: "react to a message of a room" },
    Spec {
        usage: "%grouprole <room> <owner|moderator|member> <name...>",
        about: "give a member of a room a role",
    },
    Spec { usage: "%groupkick <room> <name...>", about: "remove a member from a room" },
    Spec { usage: "%groupban <room> <name...>", about: "ban a member from a room" },
    Spec { usage: "%groupbans <room>", about: "who is banned or removed from a room" },
    Spec { usage: "%groupunban <room> <user id>", about: "lift a ban in a room" },
    Spec { usage: "%groupmute <room> <name...>", about: "stop a member of a room from posting" },
    Spec { usage: "%groupshadowmute <room> <name...>", about: "shadow-mute a member of a room" },
    Spec { usage: "%groupunmute <room> <user id>", about: "let a muted user post again" },
    Spec { usage: "%groupslow <room> <seconds>", about: "slow mode in a room (0: off)" },
    Spec { usage: "%grouptitle <room> <title...>", about: "rename a room" },
    Spec { usage: "%lock", about: "let nobody new join main (owner, moderators)" },
    Spec { usage: "%unlock", about: "let people join main again" },
    Spec { usage: "%grouplock <room>", about: "lock a room" },
    Spec { usage: "%groupunlock <room>", about: "unlock a room" },
    Spec {
        usage: "%session <token>",
        about: "before your username: come back as the user that token names",
    },
    Spec { usage: "%help", about: "this list" },
    Spec { usage: "%exit", about: "leave every room and disconnect" },
];

/// A line that is not a command that can be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Misuse {
    pub problem: String,
    /// How the command is written, when the command itself was known.
    pub usage: Option<&'static str>,
}

impl Misuse {
    fn new(problem: impl Into<String>) -> Self {
        Misuse { problem: problem.into(), usage: None }
    }

    fn usage(problem: impl Into<String>, name: &str) -> Self {
        let usage = COMMANDS
            .iter()
            .find(|spec| spec.usage.split(' ').next() == Some(name))
            .map(|spec| spec.usage);
        Misuse { problem: problem.into(), usage }
    }
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.usage {
            Some(usage) => write!(f, "{}; usage: {usage}", self.problem),
            None => write!(f, "{}; %help lists the commands", self.problem),
        }
    }
}

/// Checks that a line is text a terminal can show back: UTF-8 without
/// control characters.
///
/// # Errors
///
/// A [`Misuse`] naming the problem.
pub(crate) fn decode(line: &[u8]) -> Result<&str, Misuse> {
    let text = std::str::from_utf8(line).map_err(|e| {
        Misuse::new(format!("the line is not valid UTF-8 (at byte {})", e.valid_up_to()))
    })?;
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(Misuse::new(format!(
            "the line contains a control character (U+{:04X})",
            u32::from(c)
        )));
    }
    Ok(text)
}

/// Parses one line of text. A blank line is `Ok(None)`.
///
/// # Errors
///
/// A [`Misuse`] for a line that is not a command, an unknown command, or
/// missing, extra or malformed arguments.
pub(crate) fn parse(text: &str) -> Result<Option<Command>, Misuse> {
    let Some((word, rest)) = split_word(text) else {
        return Ok(None);
    };
    if !word.starts_with('%') {
        return Err(Misuse::new(format!("commands start with %, and {word:?} does not")));
    }
    let name = word.to_lowercase();
    let mut args = Args { name: &name, rest };
    let command = match name.as_str() {
        "%join" => Command::Join { room: MAIN.into() },
        "%leave" => Command::Leave { room: MAIN.into() },
        "%post" => {
            let subject = args.word("a subject")?;
            Command::Post { room: MAIN.into(), subject, body: args.content()? }
        }
        "%users" => Command::Users { room: MAIN.into() },
        "%list" => Command::List { room: MAIN.into() },
        "%message" => Command::Message { room: MAIN.into(), id: args.id()? },
        "%report" => {
            let id = args.id()?;
            Command::Report { room: MAIN.into(), id, reason: args.optional_content() }
        }
        "%delete" => Command::Delete { room: MAIN.into(), id: args.id()? },
        "%groupdelete" => {
            let room = args.word("a room")?;
            Command::Delete { room, id: args.id()? }
        }
        "%reply" => {
            let id = args.id()?;
            Command::Reply { room: MAIN.into(), id, body: args.content()? }
        }
        "%groupreply" => {
            let room = args.word("a room")?;
            let id = args.id()?;
            Command::Reply { room, id, body: args.content()? }
        }
        "%edit" => {
            let id = args.id()?;
            Command::Edit { room: MAIN.into(), id, body: args.content()? }
        }
        "%groupedit" => {
            let room = args.word("a room")?;
            let id = args.id()?;
            Command::Edit { room, id, body: args.content()? }
        }
        "%react" => {
            let id = args.id()?;
            Command::React { room: MAIN.into(), id, emoji: args.word("an emoji")? }
        }
        "%groupreact" => {
            let room = args.word("a room")?;
            let id = args.id()?;
            Command::React { room, id, emoji: args.word("an emoji")? }
        }
        "%groups" => Command::Groups,
        "%groupjoin" => Command::Join { room: args.word("a room")? },
        "%groupleave" => Command::Leave { room: args.word("a room")? },
        "%grouppost" => {
            let room = args.word("a room")?;
            let subject = args.word("a subject")?;
            Command::Post { room, subject, body: args.content()? }
        }
        "%groupusers" => Command::Users { room: args.word("a room")? },
        "%grouplist" => Command::List { room: args.word("a room")? },
        "%groupmessage" => {
            let room = args.word("a room")?;
            Command::Message { room, id: args.id()? }
        }
        "%role" => {
            let role = args.role()?;
            Command::Role { room: MAIN.into(), role, name: args.content()? }
        }
        "%grouprole" => {
            let room = args.word("a room")?;
            let role = args.role()?;
            Command::Role { room, role, name: args.content()? }
        }
        "%kick" => Command::Kick { room: MAIN.into(), name: args.content()? },
        "%lock" => Command::Lock { room: MAIN.into(), locked: true },
        "%unlock" => Command::Lock { room: MAIN.into(), locked: false },
        "%grouplock" => Command::Lock { room: args.word("a room")?, locked: true },
        "%groupunlock" => Command::Lock { room: args.word("a room")?, locked: false },
        "%groupkick" => {
            let room = args.word("a room")?;
            Command::Kick { room, name: args.content()? }
        }
        "%ban" => Command::Ban { room: MAIN.into(), name: args.content()? },
        "%groupban" => {
            let room = args.word("a room")?;
            Command::Ban { room, name: args.content()? }
        }
        "%bans" => Command::Bans { room: MAIN.into() },
        "%groupbans" => Command::Bans { room: args.word("a room")? },
        "%unban" => Command::Unban { room: MAIN.into(), user: args.word("a user id")? },
        "%mute" => Command::Mute { room: MAIN.into(), name: args.content()?, shadow: false },
        "%groupmute" => {
            let room = args.word("a room")?;
            Command::Mute { room, name: args.content()?, shadow: false }
        }
        "%shadowmute" => Command::Mute { room: MAIN.into(), name: args.content()?, shadow: true },
        "%groupshadowmute" => {
            let room = args.word("a room")?;
            Command::Mute { room, name: args.content()?, shadow: true }
        }
        "%unmute" => Command::Unmute { room: MAIN.into(), user: args.word("a user id")? },
        "%groupunmute" => {
            let room = args.word("a room")?;
            Command::Unmute { room, user: args.word("a user id")? }
        }
        "%slow" => Command::Slow { room: MAIN.into(), seconds: args.seconds()? },
        "%groupslow" => {
            let room = args.word("a room")?;
            Command::Slow { room, seconds: args.seconds()? }
        }
        "%title" => Command::Title { room: MAIN.into(), title: args.content()? },
        "%grouptitle" => {
            let room = args.word("a room")?;
            Command::Title { room, title: args.content()? }
        }
        "%groupunban" => {
            let room = args.word("a room")?;
            Command::Unban { room, user: args.word("a user id")? }
        }
        "%groupreport" => {
            let room = args.word("a room")?;
            let id = args.id()?;
            Command::Report { room, id, reason: args.optional_content() }
        }
        "%session" => Command::Session { token: args.word("the token hello gave you")? },
        "%help" => Command::Help,
        "%exit" => Command::Exit,
        _ => return Err(Misuse::new(format!("unknown command {word}"))),
    };
    args.end()?;
    Ok(Some(command))
}

/// The arguments after a command's name, taken from the left.
struct Args<'a> {
    name: &'a str,
    rest: &'a str,
}

impl Args<'_> {
    /// The next word.
    fn word(&mut self, what: &str) -> Result<String, Misuse> {
        let (word, rest) = split_word(self.rest)
            .ok_or_else(|| Misuse::usage(format!("{} needs {what}", self.name), self.name))?;
        self.rest = rest;
        Ok(word.to_owned())
    }

    /// Everything left on the line, as typed.
    fn content(&mut self) -> Result<String, Misuse> {
        let content = std::mem::take(&mut self.rest).trim_end();
        if content.is_empty() {
            return Err(Misuse::usage(format!("{} needs some content", self.name), self.name));
        }
        Ok(content.to_owned())
    }

    /// A role: owner, moderator or member.
    fn role(&mut self) -> Result<confab_proto::Role, Misuse> {
        let word = self.word("a role")?;
        confab_proto::Role::parse(&word.to_lowercase()).ok_or_else(|| {
            Misuse::usage(format!("a role is owner, moderator or member, not {word:?}"), self.name)
        })
    }

    /// Everything left on the line, if anything.
    fn optional_content(&mut self) -> Option<String> {
        let content = std::mem::take(&mut self.rest).trim_end();
        (!content.is_empty()).then(|| content.to_owned())
    }

    /// A message id: the room's `seq`, 1 or more.
    fn id(&mut self) -> Result<u64, Misuse> {
        let word = self.word("a message id")?;
        match word.parse::<u64>() {
            Ok(id) if id > 0 => Ok(id),
            _ => Err(Misuse::usage(
                format!("a message id is a number from 1 up, not {word:?}"),
                self.name,
            )),
        }
    }

    /// A number of seconds (0 and up).
    fn seconds(&mut self) -> Result<u32, Misuse> {
        let word = self.word("a number of seconds")?;
        word.parse::<u32>().map_err(|_| {
            Misuse::usage(format!("seconds are a number from 0 up, not {word:?}"), self.name)
        })
    }

    /// Refuses anything left over.
    fn end(&self) -> Result<(), Misuse> {
        match split_word(self.rest) {
            None => Ok(()),
            Some((extra, _)) => {
                Err(Misuse::usage(format!("{} does not take {extra:?}", self.name), self.name))
            }
        }
    }
}

/// The first word of `text` and what follows it (without the white space
/// in between), or `None` if `text` is blank.
fn split_word(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    if text.is_empty() {
        return None;
    }
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    Some((&text[..end], text[end..].trim_start()))
}
