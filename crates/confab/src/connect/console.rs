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
    /// Above the prompt of the line editor.
    Terminal(Box<dyn ExternalPrinter + Send>),
    /// Server lines to stdout, notes to stderr.
    Plain,
}

impl Screen {
    /// Shows a line from the server.
    pub(crate) fn server(&mut self, line: &str) {
        match self {
            Screen::Terminal(printer) => print(printer.as_mut(), line),
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
            Screen::Terminal(printer) => print(printer.as_mut(), text),
            Screen::Plain => eprintln!("{text}"),
        }
    }

    pub(crate) fn is_plain(&self) -> bool {
        matches!(self, Screen::Plain)
    }
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
            Ok((editor, printer)) => {
                std::thread::spawn(move || edit(editor, &tx));
                return (rx, Screen::Terminal(Box::new(printer)));
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

fn edit(mut editor: DefaultEditor, tx: &mpsc::Sender<Input>) {
    loop {
        match editor.readline(PROMPT) {
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
