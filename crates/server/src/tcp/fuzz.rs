//! Property tests of the terminal protocol's parsing layers: whatever
//! bytes arrive, in whatever pieces, the line reader yields exactly the
//! lines a simple model predicts and never buffers past its limit; the
//! decoder accepts exactly UTF-8 without control characters; the command
//! parser answers every line with a command or a usage error, never a
//! panic, and well-formed commands parse to exactly what was typed.
//! `PROPTEST_CASES` raises the number of cases (CI runs more).

use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

use super::command::{self, Command, MAIN};
use super::line::{Line, LineReader};

/// What the reader should yield for `input`, by the rules in `line.rs`:
/// split at `\n`, drop one `\r` before it, a last line without `\n` still
/// counts, and a line over `limit` bytes is reported by its length.
fn model(input: &[u8], limit: usize) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (mut line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        if line.ends_with(b"\r") {
            line = &line[..line.len() - 1];
        }
        lines.push(if line.len() > limit {
            Line::TooLong(line.len())
        } else {
            Line::Complete(bytes::Bytes::copy_from_slice(line))
        });
        rest = next;
    }
    lines
}

/// Bytes rich in what matters to the reader: newlines, carriage returns,
/// long runs, and arbitrary bytes.
fn input() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..40),
        2 => Just(b"\n".to_vec()),
        2 => Just(b"\r\n".to_vec()),
        1 => Just(b"\r".to_vec()),
        1 => (1usize..200).prop_map(|n| vec![b'x'; n]),
    ];
    prop::collection::vec(piece, 0..20).prop_map(|pieces| pieces.concat())
}

/// Reads every line of `input`, delivered in pieces of the given sizes.
fn read_all(input: &[u8], pieces: &[usize], limit: usize) -> Vec<Line> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(64);
        let input = input.to_vec();
        let pieces = pieces.to_vec();
        let writer = tokio::spawn(async move {
            let mut at = 0;
            let mut sizes = pieces.iter().cycle();
            while at < input.len() {
                let size = (*sizes.next().unwrap_or(&1)).max(1).min(input.len() - at);
                client.write_all(&input[at..at + size]).await.unwrap();
                at += size;
            }
        });
        let mut reader = LineReader::new(server, limit);
        let mut lines = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            lines.push(line);
        }
        writer.await.unwrap();
        lines
    })
}

proptest! {
    #[test]
    fn the_line_reader_yields_what_the_model_predicts(
        input in input(),
        pieces in prop::collection::vec(1usize..50, 1..8),
        limit in 1usize..64,
    ) {
        prop_assert_eq!(read_all(&input, &pieces, limit), model(&input, limit));
    }

    #[test]
    fn decode_accepts_exactly_utf8_without_control_characters(
        line in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let expected = std::str::from_utf8(&line)
            .ok()
            .filter(|text| !text.chars().any(char::is_control));
        match command::decode(&line) {
            Ok(text) => prop_assert_eq!(Some(text), expected),
            Err(misuse) => {
                prop_assert!(expected.is_none());
                prop_assert!(!misuse.to_string().is_empty());
            }
        }
    }

    #[test]
    fn any_line_is_a_command_or_a_usage_error(
        line in prop_oneof![
            ".{0,80}",
            "%[a-zA-Z]{0,14}( [^\n]{0,20}){0,4}",
        ],
    ) {
        match command::parse(&line) {
            Ok(None) => prop_assert!(line.trim().is_empty()),
            Ok(Some(_)) => prop_assert!(line.trim_start().starts_with('%')),
            Err(misuse) => {
                let text = misuse.to_string();
                prop_assert!(
                    text.contains("usage: %") || text.contains("%help lists the commands"),
                    "{}", text
                );
            }
        }
    }

    #[test]
    fn well_formed_commands_parse_to_what_was_typed(
        room in "[A-Za-z0-9]{1,12}",
        subject in "[^\\s]{1,20}",
        body in "[^\\s][^\n]{0,40}",
        id in 1u64..u64::MAX,
        spaces in " {1,3}",
    ) {
        let body = body.trim_end().to_owned();
        let s = spaces.as_str();
        let cases = [
            (format!("%groupjoin{s}{room}"), Command::Join { room: room.clone() }),
            (format!("%GroupLeave{s}{room}"), Command::Leave { room: room.clone() }),
            (
                format!("%grouppost{s}{room}{s}{subject}{s}{body}"),
                Command::Post { room: room.clone(), subject: subject.clone(), body: body.clone() },
            ),
            (
                format!("%post{s}{subject}{s}{body}"),
                Command::Post { room: MAIN.into(), subject: subject.clone(), body: body.clone() },
            ),
            (format!("%groupmessage{s}{room}{s}{id}"), Command::Message { room: room.clone(), id }),
            (format!("{s}%message{s}{id}{s}"), Command::Message { room: MAIN.into(), id }),
        ];
        for (line, expected) in cases {
            prop_assert_eq!(command::parse(&line), Ok(Some(expected)), "{}", line);
        }
    }
}
