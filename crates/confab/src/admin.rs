//! `confab admin`: the operator's API from a shell. The token comes from
//! `CONFAB_ADMIN_TOKEN` (never a flag: flags show in the process list).

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// The server's HTTP address [default: http://127.0.0.1:8080]
    #[arg(long, env = "CONFAB_ADMIN_SERVER", value_name = "URL")]
    server: Option<String>,
    /// Print the server's JSON answer as it is
    #[arg(long)]
    json: bool,
    /// With https://, trust the certificates of this PEM file instead of the system's
    /// bundle (a self-signed server)
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// With https://, trust any certificate: the token goes to whoever answers, so for
    /// a test server only
    #[arg(long, conflicts_with = "ca")]
    insecure: bool,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Every room, private ones too, with its members
    Rooms,
    /// The members of a room, and its owner and moderators
    Room { code: String },
    /// End a room: its members are told and let go; a persistent room's messages are deleted
    Close { code: String },
    /// Give a member of a room a role: moderator (a board's too), member, or owner (a created
    /// room handed over)
    Role {
        code: String,
        #[arg(value_parser = ["owner", "moderator", "member"])]
        role: String,
        /// Their name in the room
        #[arg(required = true, num_args = 1..)]
        name: Vec<String>,
    },
    /// Tell every room something (one line)
    Announce {
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Delete every message of a user (by user id), in every room
    Purge { user: String },
    /// Ban an address from the whole server (an IPv6 address by its /64)
    Ban {
        address: String,
        /// For this long [default: until lifted]
        #[arg(long)]
        minutes: Option<u32>,
        /// Why (kept in the audit log)
        #[arg(long)]
        reason: Option<String>,
    },
    /// The addresses banned (as the keyed hashes the server keeps)
    Bans,
    /// Lift a ban, by the address or by the hash `bans` lists
    Unban { address: String },
    /// The defensive mode: `on` (new sessions must solve a small puzzle), `off`, or
    /// `status`
    Defense {
        #[arg(value_parser = ["on", "off", "status"])]
        state: String,
        /// How hard the puzzle is, in bits of work (16: about a second on a phone)
        #[arg(long, default_value_t = 16)]
        bits: u32,
    },
}

/// Runs one action; 0 when the server did it, 1 when it refused or could
/// not be reached, 2 for a usage mistake.
pub fn run(args: AdminArgs) -> ExitCode {
    let Ok(token) = std::env::var("CONFAB_ADMIN_TOKEN") else {
        eprintln!("confab: set CONFAB_ADMIN_TOKEN to the server's --admin-token");
        return ExitCode::from(2);
    };
    let server = args.server.unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let server = server.trim_end_matches('/');
    let path = |tail: &str| format!("{server}/admin/v1/{tail}");
    let segment = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let (method, url, body) = match &args.action {
        Action::Rooms => ("GET", path("rooms"), None),
        Action::Room { code } => ("GET", path(&format!("rooms/{}", segment(code))), None),
        Action::Close { code } => ("POST", path(&format!("rooms/{}/close", segment(code))), None),
        Action::Role { code, role, name } => (
            "POST",
            path(&format!("rooms/{}/roles", segment(code))),
            Some(json!({ "name": name.join(" "), "role": role })),
        ),
        Action::Announce { text } => {
            ("POST", path("announce"), Some(json!({ "text": text.join(" ") })))
        }
        Action::Purge { user } => ("POST", path(&format!("users/{}/purge", segment(user))), None),
        Action::Ban { address, minutes, reason } => {
            let mut ban = json!({ "address": address });
            if let Some(minutes) = minutes {
                ban["minutes"] = json!(minutes);
            }
            if let Some(reason) = reason {
                ban["reason"] = json!(reason);
            }
            ("POST", path("bans"), Some(ban))
        }
        Action::Bans => ("GET", path("bans"), None),
        Action::Unban { address } => ("DELETE", path(&format!("bans/{}", segment(address))), None),
        Action::Defense { state, bits } => match state.as_str() {
            "status" => ("GET", path("defense"), None),
            "on" => ("POST", path("defense"), Some(json!({ "bits": bits }))),
            _ => ("POST", path("defense"), Some(json!({ "bits": 0 }))),
        },
    };
    let host = server.split("://").nth(1).unwrap_or("").split('/').next().unwrap_or("");
    let host = crate::http_client::host_of(host);
    if server.starts_with("http://") && !matches!(host, "127.0.0.1" | "::1" | "localhost") {
        eprintln!("confab: warning: the token crosses the network in the clear; use https://");
    }
    // The token goes only to a server whose certificate checks out.
    let tls = match crate::http_client::tls_for(server, args.ca.as_deref(), args.insecure) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("confab: {e}");
            return ExitCode::from(2);
        }
    };
    let authorization = format!("Bearer {}", token.trim());
    let mut headers = vec![("Authorization", authorization.as_str())];
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let (status, answer) =
        match crate::http_client::request(method, &url, &headers, body.as_bytes(), tls) {
            Ok(answer) => answer,
            Err(e) => {
                eprintln!("confab: {url}: {e}");
                return ExitCode::FAILURE;
            }
        };
    let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        let message = answer["error"]["message"].as_str().unwrap_or("no reason given");
        eprintln!("confab: the server answered {status}: {message}");
        return ExitCode::FAILURE;
    }
    if args.json {
        println!("{answer}");
    } else {
        print!("{}", show(&args.action, &answer));
    }
    ExitCode::SUCCESS
}

/// An answer as lines for a person.
fn show(action: &Action, answer: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let mut out = String::new();
    match action {
        Action::Rooms => {
            let rooms = answer["rooms"].as_array().cloned().unwrap_or_default();
            out.push_str(&format!("rooms ({}):\n", rooms.len()));
            for room in &rooms {
                let kind = match (room["board"].as_bool(), room["public"].as_bool()) {
                    (Some(true), _) => "board",
                    (_, Some(true)) => "public",
                    _ => "private",
                };
                out.push_str(&format!(
                    "{} | {} | {} members | {kind} | {}\n",
                    text(&room["code"]),
                    text(&room["title"]),
                    room["members"],
                    text(&room["retention"]),
                ));
            }
        }
        Action::Room { .. } => {
            let members = answer["members"].as_array().cloned().unwrap_or_default();
            out.push_str(&format!("members ({}):\n", members.len()));
            for member in &members {
                let id = text(&member["id"]);
                let role =
                    answer["roles"][&id].as_str().map(|r| format!(" ({r})")).unwrap_or_default();
                out.push_str(&format!("{} {id}{role}\n", text(&member["name"])));
            }
        }
        Action::Close { code } => out.push_str(&format!("room {code} closed\n")),
        Action::Role { code, role, name } => {
            out.push_str(&format!("{} is now {role} in {code}\n", name.join(" ")));
        }
        Action::Announce { .. } => out.push_str(&format!("told {} rooms\n", answer["rooms"])),
        Action::Purge { user } => out.push_str(&format!("every message of {user} deleted\n")),
        Action::Ban { .. } => {
            out.push_str(&format!("banned: {}\n", text(&answer["ban"]["address"])));
        }
        Action::Bans => {
            let bans = answer["bans"].as_array().cloned().unwrap_or_default();
            out.push_str(&format!("bans ({}):\n", bans.len()));
            for ban in &bans {
                let until = ban["until"]
                    .as_u64()
                    .map_or_else(|| "until lifted".to_owned(), |ms| format!("until {ms} ms"));
                out.push_str(&format!(
                    "{} | {until} | {} | {}\n",
                    text(&ban["address"]),
                    text(&ban["created"]),
                    text(&ban["reason"]),
                ));
            }
        }
        Action::Unban { .. } => out.push_str(&format!("lifted: {}\n", text(&answer["lifted"]))),
        Action::Defense { .. } => match answer["bits"].as_u64() {
            Some(0) | None => out.push_str("defensive mode: off\n"),
            Some(bits) => out.push_str(&format!("defensive mode: on, {bits} bits of work\n")),
        },
    }
    out
}
