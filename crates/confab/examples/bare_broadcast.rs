//! A bare WebSocket broadcast server: the baseline `confab bench` is
//! compared against. It speaks just enough of confab's protocol for the
//! bench (`hello`, `create`, `join`, `post`, `ping`) and nothing a chat
//! server needs beyond that: no limits, no presence, no history, no
//! validation, no bounded queues. A post gets the room's next `seq`, is
//! serialized once, and is sent to every other member's unbounded channel;
//! each connection's task writes what its channel holds.
//!
//! ```sh
//! cargo run --release -p confab --example bare_broadcast -- 127.0.0.1:18081
//! confab bench --url ws://127.0.0.1:18081/ws --rooms 1000 --members 10
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// A room: its latest `seq` and its members' channels.
#[derive(Default)]
struct Room {
    seq: u64,
    members: Vec<(u64, mpsc::UnboundedSender<Utf8Bytes>)>,
}

#[derive(Default)]
struct State {
    rooms: std::sync::Mutex<HashMap<String, Room>>,
    next: AtomicU64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18081".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("bare broadcast listening on {}", listener.local_addr()?);
    let state = Arc::new(State::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, state.clone()));
    }
}

async fn serve(stream: TcpStream, state: Arc<State>) {
    let Ok(socket) = tokio_tungstenite::accept_async(stream).await else { return };
    let (mut sink, mut source) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Utf8Bytes>();
    let id = state.next.fetch_add(1, Ordering::Relaxed);
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.feed(Message::Text(text)).await.is_err() {
                return;
            }
            while let Ok(text) = rx.try_recv() {
                if sink.feed(Message::Text(text)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut name = String::new();
    let mut joined: Vec<String> = Vec::new();
    while let Some(Ok(message)) = source.next().await {
        let Message::Text(text) = message else { continue };
        let Ok(op) = serde_json::from_str::<Value>(&text) else { continue };
        let re = op["id"].clone();
        let reply = match op["op"].as_str() {
            Some("hello") => {
                name = op["name"].as_str().unwrap_or("anon").to_owned();
                let user = json!({"id": format!("u{id}"), "name": name});
                ok(&re, &format!(r#","session":"s{id}","user":{user},"rooms":[]"#))
            }
            Some("create") => {
                let code = format!("R{:06}", state.next.fetch_add(1, Ordering::Relaxed));
                state.rooms.lock().expect("not poisoned").insert(code.clone(), Room::default());
                ok(&re, &format!(r#","room":{{"code":"{code}","title":"bench"}}"#))
            }
            Some("join") => {
                let code = op["room"].as_str().unwrap_or_default().to_owned();
                let mut rooms = state.rooms.lock().expect("not poisoned");
                match rooms.get_mut(&code) {
                    Some(room) => {
                        room.members.push((id, tx.clone()));
                        joined.push(code.clone());
                        let seq = room.seq;
                        ok(
                            &re,
                            &format!(
                                r#","room":{{"code":"{code}"}},"members":[],"messages":[],"seq":{seq},"gap":false"#
                            ),
                        )
                    }
                    None => format!(
                        r#"{{"re":{re},"ok":false,"error":{{"code":"not_found","message":"no room"}}}}"#
                    ),
                }
            }
            Some("post") => {
                let code = op["room"].as_str().unwrap_or_default();
                let body = op["body"].as_str().unwrap_or_default();
                let mut rooms = state.rooms.lock().expect("not poisoned");
                let Some(room) = rooms.get_mut(code) else { continue };
                room.seq += 1;
                // In confab's field order (the bench scans for `seq`, then
                // `body`), serialized once.
                let message = format!(
                    r#"{{"room":{},"seq":{},"from":{{"id":"u{id}","name":{}}},"body":{}}}"#,
                    Value::from(code),
                    room.seq,
                    Value::from(name.as_str()),
                    Value::from(body),
                );
                let event: Utf8Bytes = format!(r#"{{"ev":"message","message":{message}}}"#).into();
                for (member, channel) in &room.members {
                    if *member != id {
                        let _ = channel.send(event.clone());
                    }
                }
                drop(rooms);
                let _ = tx.send(format!(r#"{{"re":{re},"ok":true,"message":{message}}}"#).into());
                continue;
            }
            _ => ok(&re, ""),
        };
        let _ = tx.send(reply.into());
    }
    let mut rooms = state.rooms.lock().expect("not poisoned");
    for code in joined {
        if let Some(room) = rooms.get_mut(&code) {
            room.members.retain(|(member, _)| *member != id);
        }
    }
    drop(rooms);
    writer.abort();
}

/// A successful reply to `re`, its fields after `ok` (`rest` starts with a
/// comma): the bench finds a reply by its first bytes, `{"re":ID,`.
fn ok(re: &Value, rest: &str) -> String {
    format!(r#"{{"re":{re},"ok":true{rest}}}"#)
}
