//! One suite for every `Store`: SQLite, PostgreSQL (when
//! `CONFAB_TEST_POSTGRES` is set) and memory.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::postgres_database;
use confab_core::{MemoryStore, RoomSpec, Store, StoredRoom, StoredVisibility, Write};
use confab_proto::{Message, User};
use confab_server::store::SqlStore;

fn room(code: &str, board: bool) -> StoredRoom {
    StoredRoom {
        rev: 0,
        spec: RoomSpec {
            code: code.into(),
            title: format!("Room {code}"),
            capacity: if board { None } else { Some(4) },
            retention: confab_proto::Retention::Persistent,
            backlog: 2,
            public: board,
            board,
            created: "2026-01-01T00:00:00.000Z".into(),
        },
        last_seq: 0,
        roles: Default::default(),
        locked: false,
        bans: Vec::new(),
        slow: 0,
    }
}

fn message(room: &str, seq: u64, user: &str, ts: &str, cid: Option<&str>) -> Write {
    Write::Message(Arc::new(Message {
        bot: false,
        edited: None,
        reactions: Vec::new(),
        reply: None,
        room: room.into(),
        seq,
        from: User { id: user.into(), name: format!("name of {user}") },
        subject: seq.is_multiple_of(2).then(|| format!("subject {seq}")),
        body: format!("body {seq} ✓ 'quoted' \"double\""),
        ts: ts.into(),
        cid: cid.map(str::to_owned),
        deleted: false,
        shadow: false,
    }))
}

fn ts(seq: u64) -> String {
    format!("2026-01-01T00:00:{:02}.000Z", seq % 60)
}

async fn suite(store: Arc<dyn Store>) {
    // Sessions.
    let ann = User { id: "u_ann".into(), name: "Ann".into() };
    assert_eq!(store.session("tok").await.unwrap(), None);
    store.save_session("tok", &ann).await.unwrap();
    assert_eq!(store.session("tok").await.unwrap(), Some(ann.clone()));
    let renamed = User { name: "Annie".into(), ..ann.clone() };
    store.save_session("tok", &renamed).await.unwrap();
    assert_eq!(store.session("tok").await.unwrap(), Some(renamed));

    // Rooms and boards.
    store.save_room(&room("ROOM22", false)).await.unwrap();
    store.save_room(&room("main", true)).await.unwrap();
    let mut board = room("main", true);
    board.spec.title = "Renamed board".into();
    board.spec.backlog = 7;
    store.save_room(&board).await.unwrap();
    let rooms = store.rooms().await.unwrap();
    assert_eq!(rooms.len(), 2);
    let main = rooms.iter().find(|r| r.spec.code == "main").unwrap();
    let board = &main.spec;
    assert_eq!((board.title.as_str(), board.backlog, board.board), ("Renamed board", 7, true));
    let created = rooms.iter().find(|r| r.spec.code == "ROOM22").unwrap();
    let spec = &created.spec;
    assert_eq!((spec.capacity, spec.public, created.last_seq), (Some(4), false, 0));

    // Roles: stored with a new room, replaced whole by a write.
    let mut owned = room("OWNED2", false);
    owned.roles.insert("u_ann".into(), confab_proto::Role::Owner);
    store.save_room(&owned).await.unwrap();
    let roles_of = |rooms: &[StoredRoom], code: &str| {
        rooms.iter().find(|r| r.spec.code == code).unwrap().roles.clone()
    };
    let stored = store.rooms().await.unwrap();
    assert_eq!(roles_of(&stored, "OWNED2"), owned.roles);
    assert!(roles_of(&stored, "ROOM22").is_empty());
    let mut handed: confab_proto::Roles = Default::default();
    handed.insert("u_bob".into(), confab_proto::Role::Owner);
    handed.insert("u_ann".into(), confab_proto::Role::Moderator);
    store.write(&[Write::Roles { room: "OWNED2".into(), roles: handed.clone() }]).await.unwrap();
    assert_eq!(roles_of(&store.rooms().await.unwrap(), "OWNED2"), handed);
    let none = confab_proto::Roles::default();
    store.write(&[Write::Roles { room: "OWNED2".into(), roles: none.clone() }]).await.unwrap();
    assert_eq!(roles_of(&store.rooms().await.unwrap(), "OWNED2"), none);
    let locked_of = |rooms: &[StoredRoom], code: &str| {
        rooms.iter().find(|r| r.spec.code == code).unwrap().locked
    };
    assert!(!locked_of(&store.rooms().await.unwrap(), "OWNED2"));
    store.write(&[Write::Locked { room: "OWNED2".into(), locked: true }]).await.unwrap();
    assert!(locked_of(&store.rooms().await.unwrap(), "OWNED2"));
    store.write(&[Write::Locked { room: "OWNED2".into(), locked: false }]).await.unwrap();
    assert!(!locked_of(&store.rooms().await.unwrap(), "OWNED2"));

    // Bans: inserted, replaced for the same user, lifted.
    let bans_of = |rooms: &[StoredRoom], code: &str| {
        let mut bans = rooms.iter().find(|r| r.spec.code == code).unwrap().bans.clone();
        bans.sort_by(|a, b| a.user.id.cmp(&b.user.id));
        bans
    };
    let user = |id: &str| User { id: id.into(), name: format!("name of {id}") };
    let ban = confab_core::Ban {
        user: user("u_eve"),
        by: user("u_ann"),
        reason: confab_proto::LeaveReason::Banned,
        until: None,
        addrs: vec!["00ff".into(), "a1b2".into()],
    };
    let kick = confab_core::Ban {
        user: user("u_fay"),
        reason: confab_proto::LeaveReason::Kicked,
        until: Some(1_900_000_000_000),
        addrs: Vec::new(),
        ..ban.clone()
    };
    let room_ban = |ban: &confab_core::Ban| Write::Ban { room: "OWNED2".into(), ban: ban.clone() };
    store.write(&[room_ban(&ban), room_ban(&kick)]).await.unwrap();
    assert_eq!(bans_of(&store.rooms().await.unwrap(), "OWNED2"), [ban.clone(), kick.clone()]);
    let longer = confab_core::Ban { until: Some(1_950_000_000_000), ..kick.clone() };
    store.write(&[room_ban(&longer)]).await.unwrap();
    assert_eq!(bans_of(&store.rooms().await.unwrap(), "OWNED2"), [ban.clone(), longer]);
    let lift = Write::Unban { room: "OWNED2".into(), user_id: "u_fay".into() };
    store.write(&[lift]).await.unwrap();
    assert_eq!(bans_of(&store.rooms().await.unwrap(), "OWNED2"), [ban]);

    // A new title and slow mode.
    let settings = [
        Write::Title { room: "OWNED2".into(), title: "Renamed ✓".into() },
        Write::Slow { room: "OWNED2".into(), seconds: 30 },
    ];
    store.write(&settings).await.unwrap();
    let rooms = store.rooms().await.unwrap();
    let owned = rooms.iter().find(|r| r.spec.code == "OWNED2").unwrap();
    assert_eq!((owned.spec.title.as_str(), owned.slow), ("Renamed ✓", 30));

    // A secret is made once and kept.
    let secret = store.secret("address").await.unwrap();
    assert_eq!(secret.len(), 32);
    assert_eq!(store.secret("address").await.unwrap(), secret);
    assert_ne!(store.secret("another").await.unwrap(), secret);

    // A batch of messages and visibility, in one write.
    let mut batch: Vec<Write> = (1..=10)
        .map(|seq| message("ROOM22", seq, "u_ann", &ts(seq), Some(&format!("c{seq}"))))
        .collect();
    batch.push(Write::Visibility {
        room: "ROOM22".into(),
        user_id: "u_ann".into(),
        visibility: StoredVisibility { from: 1, left_at: None },
    });
    store.write(&batch).await.unwrap();
    store.write(&[message("main", 1, "u_bob", &ts(30), None)]).await.unwrap();
    let rooms = store.rooms().await.unwrap();
    assert_eq!(rooms.iter().find(|r| r.spec.code == "ROOM22").unwrap().last_seq, 10);

    // Ranges: after < seq < before, newest `limit`, oldest first.
    let got = store.messages("ROOM22", 2, 9, 3, None).await.unwrap();
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), [6, 7, 8]);
    let Write::Message(original) = &batch[7] else { unreachable!() };
    assert_eq!(got[2], **original, "a message reads back exactly as written");
    assert!(store.messages("ROOM22", 10, u64::MAX, 5, None).await.unwrap().is_empty());
    assert!(store.messages("NOPE", 0, u64::MAX, 5, None).await.unwrap().is_empty());

    // A shadow-muted member's message is its author's only, with a viewer.
    let shadow = Message {
        bot: false,
        edited: None,
        reactions: Vec::new(),
        reply: None,
        room: "OWNED2".into(),
        seq: 2,
        from: User { id: "u_eve".into(), name: "Eve".into() },
        subject: None,
        body: "only I see this".into(),
        ts: ts(2),
        cid: None,
        deleted: false,
        shadow: true,
    };
    let plain = message("OWNED2", 1, "u_ann", &ts(1), None);
    store.write(&[plain, Write::Message(Arc::new(shadow.clone()))]).await.unwrap();
    let seen = |viewer| store.messages("OWNED2", 0, 3, 5, viewer);
    let seqs = |found: Vec<Message>| found.iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(seqs(seen(Some("u_ann")).await.unwrap()), [1], "hidden from others");
    assert_eq!(seen(Some("u_eve")).await.unwrap().last(), Some(&shadow), "its author's");
    assert_eq!(seqs(seen(None).await.unwrap()), [1, 2], "all, for the server itself");

    // A deleted message reads back as its tombstone: the text is gone.
    let quote = confab_proto::Quote::of(original).tombstone();
    store
        .write(&[Write::Delete { room: "ROOM22".into(), seq: 8, quote, rev: None }])
        .await
        .unwrap();
    let got = store.messages("ROOM22", 7, 9, 5, None).await.unwrap();
    assert_eq!(got, [original.tombstone()]);
    assert!(got[0].deleted && got[0].body.is_empty() && got[0].subject.is_none());
    assert_eq!(got[0].cid, original.cid, "its cid stays, for a retry");

    // A reply keeps its quote; an amend its text, edit time and
    // reactions, unless a later change was stored; a delete turns the
    // quotes of the message into its tombstone.
    store.save_room(&room("CONVO", false)).await.unwrap();
    let Write::Message(asked) = message("CONVO", 1, "u_ann", &ts(1), None) else { unreachable!() };
    let quote = confab_proto::Quote::of(&asked);
    let answer = Message { seq: 2, reply: Some(quote.clone()), ..Message::clone(&asked) };
    store.write(&[Write::Message(asked.clone())]).await.unwrap();
    let appended = store.append("CONVO", vec![Message { seq: 0, ..answer.clone() }], 16);
    let appended = appended.await.unwrap();
    assert_eq!(appended[0].message.seq, 2);
    assert_eq!(appended[0].message.reply, Some(quote.clone()), "append keeps the quote");
    let bob = User { id: "u_bob".into(), name: "Bob".into() };
    let reacted = Message {
        body: "asked, edited".into(),
        edited: Some(ts(3)),
        reactions: vec![confab_proto::Reaction {
            emoji: "👍".into(), count: 1, users: vec![bob]
        }],
        ..Message::clone(&asked)
    };
    let stale = Message { body: "an older edit".into(), ..reacted.clone() };
    let amend = |message: &Message, rev| Write::Amend {
        room: "CONVO".into(),
        message: Arc::new(message.clone()),
        rev,
    };
    store.write(&[amend(&reacted, 5), amend(&stale, 4)]).await.unwrap();
    let read = store.messages("CONVO", 0, 3, 5, None).await.unwrap();
    assert_eq!(read[0], reacted, "the later change wins");
    assert_eq!(read[1].reply, Some(quote.clone()));
    let rooms = store.rooms().await.unwrap();
    assert_eq!(rooms.iter().find(|r| r.spec.code == "CONVO").unwrap().rev, 5);
    let tomb = quote.tombstone();
    store
        .write(&[Write::Delete { room: "CONVO".into(), seq: 1, quote: tomb.clone(), rev: Some(6) }])
        .await
        .unwrap();
    let read = store.messages("CONVO", 0, 3, 5, None).await.unwrap();
    assert_eq!(read[0], reacted.tombstone(), "no text, edit or reaction left");
    assert_eq!(read[1].reply, Some(tomb), "its quote is a tombstone");
    let rooms = store.rooms().await.unwrap();
    assert_eq!(rooms.iter().find(|r| r.spec.code == "CONVO").unwrap().rev, 6, "a delete's rev");
    // A purge's change number, stored on its own; never back.
    store.write(&[Write::Rev { room: "CONVO".into(), rev: 9 }]).await.unwrap();
    store.write(&[Write::Rev { room: "CONVO".into(), rev: 7 }]).await.unwrap();
    let rooms = store.rooms().await.unwrap();
    assert_eq!(rooms.iter().find(|r| r.spec.code == "CONVO").unwrap().rev, 9, "a purge's rev");

    // Visibility, replaced on the second write.
    assert_eq!(
        store.visibility("ROOM22", "u_ann").await.unwrap(),
        Some(StoredVisibility { from: 1, left_at: None })
    );
    store
        .write(&[Write::Visibility {
            room: "ROOM22".into(),
            user_id: "u_ann".into(),
            visibility: StoredVisibility { from: 1, left_at: Some(10) },
        }])
        .await
        .unwrap();
    assert_eq!(
        store.visibility("ROOM22", "u_ann").await.unwrap(),
        Some(StoredVisibility { from: 1, left_at: Some(10) })
    );
    assert_eq!(store.visibility("ROOM22", "u_bob").await.unwrap(), None);

    // Recent cids, newest first; mine, newest first across rooms.
    let cids = store.recent_cids("ROOM22", 7).await.unwrap();
    assert_eq!(cids.iter().map(|m| m.seq).collect::<Vec<_>>(), [10, 9, 8]);
    let mine = store.mine("u_ann", 4).await.unwrap();
    assert_eq!(mine.iter().map(|m| m.seq).collect::<Vec<_>>(), [10, 9, 8, 7]);
    assert_eq!(store.mine("u_bob", 10).await.unwrap().len(), 1);

    // A duplicate seq fails the whole batch: nothing of it is kept.
    let failing = [
        message("ROOM22", 11, "u_ann", &ts(11), None),
        message("ROOM22", 5, "u_ann", &ts(5), None),
    ];
    assert!(store.write(&failing).await.is_err());
    assert!(store.messages("ROOM22", 10, u64::MAX, 5, None).await.unwrap().is_empty());

    // Pruning: created rooms only; keep the newest 4.
    let pruned = store.prune(false, Some(4), None).await.unwrap();
    assert_eq!(pruned, 6);
    let left = store.messages("ROOM22", 0, u64::MAX, 100, None).await.unwrap();
    assert_eq!(left.iter().map(|m| m.seq).collect::<Vec<_>>(), [7, 8, 9, 10]);
    assert_eq!(
        store.messages("main", 0, u64::MAX, 100, None).await.unwrap().len(),
        1,
        "boards untouched"
    );
    // By age: everything from 2026-01-01 is old now.
    assert_eq!(store.prune(true, None, Some(Duration::from_secs(3600))).await.unwrap(), 1);
    assert!(store.messages("main", 0, u64::MAX, 100, None).await.unwrap().is_empty());

    // Append: the store gives the seqs, after the room's latest, in order,
    // and concurrent appends never share one.
    store.save_room(&room("APPEND", false)).await.unwrap();
    let draft = |n: u64| {
        let Write::Message(m) = message("APPEND", 0, "u_ann", &ts(n), None) else { unreachable!() };
        Message { body: format!("draft {n}"), ..Message::clone(&m) }
    };
    let first = store.append("APPEND", vec![draft(1), draft(2)], 1024).await.unwrap();
    assert_eq!(first.iter().map(|a| a.message.seq).collect::<Vec<_>>(), [1, 2]);
    let (a, b) = tokio::join!(
        store.append("APPEND", (10..20).map(draft).collect(), 1024),
        store.append("APPEND", (20..30).map(draft).collect(), 1024),
    );
    let mut seqs: Vec<u64> =
        a.unwrap().into_iter().chain(b.unwrap()).map(|a| a.message.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (3..=22).collect::<Vec<_>>(), "no seq given twice, none skipped");
    let stored = store.messages("APPEND", 0, u64::MAX, 100, None).await.unwrap();
    assert_eq!(stored.len(), 22);
    assert_eq!(stored[0].body, "draft 1");
    let rooms = store.rooms().await.unwrap();
    assert_eq!(rooms.iter().find(|r| r.spec.code == "APPEND").unwrap().last_seq, 22);
    assert!(store.append("NOPE", vec![draft(1)], 1024).await.is_err(), "no such room");
    // A cid its author used in the room already is not stored again, from
    // an earlier append or from earlier in the same one.
    let with_cid = |n: u64, cid: &str| Message { cid: Some(cid.into()), ..draft(n) };
    let first = store.append("APPEND", vec![with_cid(40, "c1")], 1024).await.unwrap();
    assert_eq!((first[0].message.seq, first[0].new), (23, true));
    let batch = vec![with_cid(41, "c1"), with_cid(42, "c2"), with_cid(43, "c2")];
    let again = store.append("APPEND", batch, 1024);
    let again = again.await.unwrap();
    let seen: Vec<(u64, bool, &str)> =
        again.iter().map(|a| (a.message.seq, a.new, a.message.body.as_str())).collect();
    assert_eq!(seen, [(23, false, "draft 40"), (24, true, "draft 42"), (24, false, "draft 42")]);
    let other =
        Message { from: User { id: "u_bob".into(), name: "Bob".into() }, ..with_cid(44, "c1") };
    let theirs = store.append("APPEND", vec![other], 1024).await.unwrap();
    assert_eq!((theirs[0].message.seq, theirs[0].new), (25, true), "cids are per author");
    assert_eq!(store.messages("APPEND", 22, u64::MAX, 100, None).await.unwrap().len(), 3);
    // Only among the newest: past the window, a cid may be used again.
    let reused = store.append("APPEND", vec![with_cid(45, "c1")], 2).await.unwrap();
    assert_eq!((reused[0].message.seq, reused[0].new), (26, true));
    store.ping().await.unwrap();
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(None, dir.path()).await.unwrap();
    suite(store.into_store()).await;
    assert!(dir.path().join("confab.db").exists());
}

#[tokio::test]
#[ignore = "needs PostgreSQL: CONFAB_TEST_POSTGRES"]
async fn postgres_store() {
    let url = postgres_database().await;
    let store = SqlStore::open(Some(&url), std::path::Path::new(".")).await.unwrap();
    suite(store.into_store()).await;
}

#[tokio::test]
async fn memory_store() {
    suite(Arc::new(MemoryStore::new())).await;
}
