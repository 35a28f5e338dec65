//! `confab post`: posts a message to a room through the HTTP API, as the
//! bot of one of the room's integrations (its token in `CONFAB_TOKEN`),
//! for shell scripts and CI jobs.

use std::io::Read;
use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

#[derive(Args, Debug)]
pub struct PostArgs {
    /// The room: its code, or a board's name (the room the token is for)
    room: String,
    /// The message; without it, standard input is read
    text: Vec<String>,
    /// The server's HTTP address [default: http://127.0.0.1:8080]
    #[arg(long, env = "CONFAB_SERVER")]
    server: Option<String>,
    /// A subject for the message
    #[arg(long)]
    subject: Option<String>,
    /// An id for this post, so that a retry posts it once (e.g. the CI job's id)
    #[arg(long)]
    cid: Option<String>,
    /// With https://, trust the certificates of this PEM file (a self-signed server)
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// With https://, trust any certificate: for a test server only
    #[arg(long, conflicts_with = "ca")]
    insecure: bool,
}

/// Exit codes: 0 posted, 1 refused or unreachable, 2 misused.
pub fn run(args: PostArgs) -> ExitCode {
    let Ok(token) = std::env::var("CONFAB_TOKEN") else {
        eprintln!("confab: set CONFAB_TOKEN to the integration's token");
        return ExitCode::from(2);
    };
    let body = if args.text.is_empty() {
        let mut text = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("confab: cannot read standard input: {e}");
            return ExitCode::from(2);
        }
        text.trim_end_matches('\n').to_owned()
    } else {
        args.text.join(" ")
    };
    if body.trim().is_empty() {
        eprintln!("confab: nothing to post");
        return ExitCode::from(2);
    }
    let server = args.server.unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let server = server.trim_end_matches('/');
    let room: String = args
        .room
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let url = format!("{server}/api/v1/rooms/{room}/messages");
    let tls = match crate::http_client::tls_for(server, args.ca.as_deref(), args.insecure) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("confab: {e}");
            return ExitCode::from(2);
        }
    };
    let mut message = json!({ "body": body });
    if let Some(subject) = args.subject {
        message["subject"] = json!(subject);
    }
    if let Some(cid) = args.cid {
        message["cid"] = json!(cid);
    }
    let authorization = format!("Bearer {}", token.trim());
    let headers = [("Authorization", authorization.as_str()), ("Content-Type", "application/json")];
    let payload = message.to_string();
    let (status, answer) =
        match crate::http_client::request("POST", &url, &headers, payload.as_bytes(), tls) {
            Ok(answer) => answer,
            Err(e) => {
                eprintln!("confab: {url}: {e}");
                return ExitCode::FAILURE;
            }
        };
    let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    if status != 201 {
        let message = answer["error"]["message"].as_str().unwrap_or("no reason given");
        eprintln!("confab: the server answered {status}: {message}");
        return ExitCode::FAILURE;
    }
    println!("posted {} to {}", answer["message"]["seq"], args.room);
    ExitCode::SUCCESS
}
