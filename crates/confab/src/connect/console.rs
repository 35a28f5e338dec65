//! The client's side of the user: where typed lines come from and where
//! server lines go.
//!
//! On a terminal, a thread of its own sits in rustyline's `readline` (it
//! blocks) and hands each line over a channel; server lines are printed
//! through rustyline's external printer, which draws them above the prompt
//! and then redraws the prompt with the half-typed line intact. Otherwise
//! (a pipe, a file, a script) lines are read from stdin as they come and
//! server lines go to stdout as they are, so the output can be parsed;
//! the client's own notes go to stderr.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};
use tokio::sync::mpsc;

const PROMPT: &str = "> ";

/// Something the user did.
#[derive(Debug)]
pub(crate) enum Input {
    /// A line, without its end.
    Line(String),
    /// End of input: Ctrl-D, Ctrl-C, or the end of stdin.
    End,
}

/// Where output goes.
pub(crate) enum Screen {
    /// Above the prompt of the line editor, whose width (columns) the
    /// editing thread keeps up to date.
    Terminal(Box<dyn ExternalPrinter + Send>, Arc<AtomicUsize>),
    /// Server lines to stdout, notes to stderr.
    Plain,
}

impl Screen {
    /// Shows a line from the server.
    pub(crate) fn server(&mut self, line: &str) {
        match self {
            Screen::Terminal(printer, width) => {
                print(printer.as_mut(), &fit(line, width.load(Ordering::Relaxed)));
            }
            Screen::Plain => {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{line}");
                let _ = stdout.flush();
            }
        }
    }

    /// Shows a note from the client itself.
    pub(crate) fn note(&mut self, text: &str) {
        match self {
            Screen::Terminal(printer, _) => print(printer.as_mut(), text),
            Screen::Plain => eprintln!("{text}"),
        }
    }

    pub(crate) fn is_plain(&self) -> bool {
        matches!(self, Screen::Plain)
    }
}

/// A message line (`[room] id | sender | …`) cut to `width` columns, `…`
/// at its end when cut, so that each message takes one row; other lines
/// as they are. (A wide character counts as one column: such a line may
/// still wrap.)
pub(crate) fn fit(line: &str, width: usize) -> String {
    let is_message = line.starts_with('[')
        && line.split_once("] ").is_some_and(|(_, rest)| {
            rest.split_once(" | ").is_some_and(|(id, _)| id.bytes().all(|b| b.is_ascii_digit()))
        });
    // The last column stays free: a full row wraps on some terminals.
    let room = width.saturating_sub(1).max(20);
    if !is_message || line.chars().count() <= room {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(room - 1).collect();
    let trimmed = cut.trim_end().len();
    cut.truncate(trimmed);
    cut.push('…');
    cut
}

/// The terminal's width: `COLUMNS` if it is set, else what the editor
/// measures (80 if it cannot).
fn columns(editor: &mut DefaultEditor) -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .or_else(|| editor.dimensions().map(|(columns, _)| columns as usize))
        .filter(|&c| c > 0)
        .unwrap_or(80)
}

fn print(printer: &mut (dyn ExternalPrinter + Send), text: &str) {
    // Fails only if the terminal is gone, and then there is nobody to tell.
    let _ = printer.print(format!("{text}\n"));
}

/// Starts reading input: with the line editor when both stdin and stdout
/// are a terminal, else plainly from stdin.
///
/// The reading thread stops by itself after `%exit` or the end of input,
/// so the terminal is never left in raw mode; it is not joined, since
/// the process may end while it waits for a line.
pub(crate) fn open() -> (mpsc::Receiver<Input>, Screen) {
    let (tx, rx) = mpsc::channel(16);
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        match DefaultEditor::new().and_then(|mut editor| {
            let printer = editor.create_external_printer()?;
            Ok((editor, printer))
        }) {
            Ok((mut editor, printer)) => {
                let width = Arc::new(AtomicUsize::new(columns(&mut editor)));
                let measured = width.clone();
                std::thread::spawn(move || edit(editor, &tx, &measured));
                return (rx, Screen::Terminal(Box::new(printer), width));
            }
            Err(e) => eprintln!("confab: no line editing ({e}); reading plain lines"),
        }
    }
    std::thread::spawn(move || read_plain(&tx));
    (rx, Screen::Plain)
}

/// Whether a line ends the client, so no more input should be read.
pub(crate) fn is_exit(line: &str) -> bool {
    line.trim().eq_ignore_ascii_case("%exit")
}

fn edit(mut editor: DefaultEditor, tx: &mpsc::Sender<Input>, width: &AtomicUsize) {
    loop {
        let read = editor.readline(PROMPT);
        // A resized window is seen at the next line typed.
        width.store(columns(&mut editor), Ordering::Relaxed);
        match read {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                let last = is_exit(&line);
                if tx.blocking_send(Input::Line(line)).is_err() || last {
                    return;
                }
            }
            Err(e) => {
                if !matches!(e, ReadlineError::Eof | ReadlineError::Interrupted) {
                    eprintln!("confab: cannot read the terminal: {e}");
                }
                let _ = tx.blocking_send(Input::End);
                return;
            }
        }
    }
}

fn read_plain(tx: &mpsc::Sender<Input>) {
    let mut stdin = std::io::stdin().lock();
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match stdin.read_until(b'\n', &mut buffer) {
            Ok(0) | Err(_) => {
                let _ = tx.blocking_send(Input::End);
                return;
            }
            Ok(_) => {
                if buffer.ends_with(b"\n") {
                    buffer.pop();
                }
                if buffer.ends_with(b"\r") {
                    buffer.pop();
                }
                let line = String::from_utf8_lossy(&buffer).into_owned();
                let last = is_exit(&line);
                if tx.blocking_send(Input::Line(line)).is_err() || last {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn a_message_line_is_cut_to_the_width_and_other_lines_are_not() {
        let line =
            "[main] 12 | Ann | 2026-12-05 11:45:31 UTC | (no subject) | a body that goes on and on";
        let cut = fit(line, 60);
        assert_eq!(cut.chars().count(), 59, "{cut}");
        assert!(cut.ends_with('…') && line.starts_with(cut.trim_end_matches('…')), "{cut}");
        assert_eq!(fit(line, 200), line);
        let note =
            "error: forbidden: only its author edits message 1 of room main, and this goes on";
        assert_eq!(fit(note, 40), note);
        assert_eq!(
            fit("[main] Ann joined and then said a great many things", 20),
            "[main] Ann joined and then said a great many things"
        );
        assert_eq!(fit(line, 5).chars().count(), 20, "never narrower than 20 columns");
    }
}
