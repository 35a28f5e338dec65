//! People hidden on this terminal: their messages are not shown.
//!
//! The terminal shows names, not user ids, so a person is hidden by name
//! (as the server compares names: without regard to case). The names are
//! kept one a line in `$XDG_CONFIG_HOME/confab/hidden` (by default
//! `~/.config/confab/hidden`), so that they stay hidden in the next
//! session. The server knows nothing of it: the messages still arrive,
//! and are dropped here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub(crate) struct Hidden {
    /// Lower-cased name, and the name as it was typed.
    names: BTreeMap<String, String>,
    /// Where the names are kept; `None` when there is no home to keep
    /// them in (they last for the session).
    path: Option<PathBuf>,
    /// The last line was a hidden message's: the indented lines of its
    /// body that follow (after `%message`) are hidden too.
    in_hidden_message: bool,
}

impl Hidden {
    /// The names kept on this machine.
    pub fn load() -> Hidden {
        Hidden::at(default_path())
    }

    fn at(path: Option<PathBuf>) -> Hidden {
        let text =
            path.as_deref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
        let names = text
            .lines()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| (name.to_lowercase(), name.to_owned()))
            .collect();
        Hidden { names, path, in_hidden_message: false }
    }

    /// Hides `name`'s messages; says what happened, a note for the screen.
    pub fn hide(&mut self, name: &str) -> String {
        if self.names.insert(name.to_lowercase(), name.to_owned()).is_some() {
            return format!("{name} is already hidden");
        }
        self.saved(format!("{name}'s messages are hidden on this terminal; %unhide {name} to undo"))
    }

    /// Shows `name`'s messages again.
    pub fn unhide(&mut self, name: &str) -> String {
        if self.names.remove(&name.to_lowercase()).is_none() {
            return format!("{name} is not hidden");
        }
        self.saved(format!("{name}'s messages are shown again"))
    }

    /// The hidden names, for `%hidden`.
    pub fn list(&self) -> String {
        if self.names.is_empty() {
            return "nobody is hidden on this terminal".to_owned();
        }
        let names: Vec<&str> = self.names.values().map(String::as_str).collect();
        format!("hidden on this terminal ({}): {}", names.len(), names.join(", "))
    }

    /// Whether a server line is shown: not a message of a hidden person
    /// (pushed, or listed by `%list`), nor a body line of one (`%message`).
    pub fn shows(&mut self, line: &str) -> bool {
        if self.in_hidden_message && line.starts_with("  ") {
            return false;
        }
        self.in_hidden_message =
            sender(line).is_some_and(|name| self.names.contains_key(&name.to_lowercase()));
        !self.in_hidden_message
    }

    /// `note`, once the names are written where they are kept (or with
    /// why they could not be).
    fn saved(&self, note: String) -> String {
        let Some(path) = &self.path else {
            return format!("{note} (for this session: no home directory to keep it in)");
        };
        match write(path, self.names.values()) {
            Ok(()) => note,
            Err(e) => format!("{note} (for this session: cannot write {}: {e})", path.display()),
        }
    }
}

/// The sender of a message line, `[room] seq | name | date | subject` or,
/// in a `%list`, `seq | name | date | subject`.
fn sender(line: &str) -> Option<&str> {
    let rest = match line.strip_prefix('[') {
        Some(rest) => rest.split_once("] ")?.1,
        None => line,
    };
    let mut fields = rest.split(" | ");
    let seq = fields.next()?;
    let name = fields.next()?;
    let complete = fields.next().is_some() && fields.next().is_some();
    (complete && !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit())).then_some(name)
}

fn default_path() -> Option<PathBuf> {
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(config.join("confab").join("hidden"))
}

fn write<'a>(path: &Path, names: impl Iterator<Item = &'a String>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut text: String = names.map(|name| format!("{name}\n")).collect();
    if text.is_empty() {
        text.push('\n');
    }
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_of_a_message_line() {
        assert_eq!(sender("[main] 4 | Ann | 2026-12-05 07:40:01.123 UTC | hello"), Some("Ann"));
        assert_eq!(
            sender("12 | Bob Smith | 2026-12-05 07:40:01.123 UTC | (no subject)"),
            Some("Bob Smith")
        );
        assert_eq!(sender("[main] Ann joined"), None);
        assert_eq!(sender("[main] you posted 5"), None);
        assert_eq!(sender("[main] members (2): Ann, Bob"), None);
        assert_eq!(sender("welcome to confab 0.1.0 (local)"), None);
        assert_eq!(sender("x | Ann | date | subject"), None);
    }

    #[test]
    fn hidden_messages_and_their_bodies_are_dropped_and_the_names_kept() {
        let dir = std::env::temp_dir().join(format!("confab-hidden-{}", std::process::id()));
        let path = dir.join("confab").join("hidden");
        let mut hidden = Hidden::at(Some(path.clone()));
        assert_eq!(hidden.list(), "nobody is hidden on this terminal");
        assert!(hidden.hide("Spammer").contains("hidden on this terminal"));
        assert_eq!(hidden.hide("SPAMMER"), "SPAMMER is already hidden");
        let lines = [
            "[main] 7 | spammer | 2026-12-05 07:40:01.123 UTC | buy now",
            "[main] 8 | Ann | 2026-12-05 07:40:02.123 UTC | hello",
            "[main] 7 | Spammer | 2026-12-05 07:40:01.123 UTC | buy now",
            "  cheap watches",
            "  at my site",
            "[main] Spammer left",
            "  an indented line after a shown one",
        ];
        let shown: Vec<&str> = lines.into_iter().filter(|line| hidden.shows(line)).collect();
        assert_eq!(
            shown,
            [
                "[main] 8 | Ann | 2026-12-05 07:40:02.123 UTC | hello",
                "[main] Spammer left",
                "  an indented line after a shown one",
            ]
        );
        // Kept for the next session.
        let mut again = Hidden::at(Some(path.clone()));
        assert_eq!(again.list(), "hidden on this terminal (1): Spammer");
        assert!(!again.shows("[main] 9 | SPAMMER | 2026-12-05 07:40:03.123 UTC | again"));
        assert_eq!(again.unhide("spammer"), "spammer's messages are shown again");
        assert_eq!(again.unhide("spammer"), "spammer is not hidden");
        assert!(Hidden::at(Some(path)).names.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
