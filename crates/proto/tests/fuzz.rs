//! Property tests of the frame decoder: whatever arrives, it answers with a
//! request or an error, never a panic; well-formed ops decode to exactly
//! what was sent. `PROPTEST_CASES` raises the number of cases (CI runs
//! more than the default).

use confab_proto::{ClientOp, ErrorCode, parse_request};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Arbitrary JSON values, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const OPS: &[&str] = &[
    "hello", "create", "join", "leave", "post", "typing", "rooms", "members", "history", "get",
    "mine", "ping",
];

/// Frames that look like ops, with arguments of any shape.
fn op_like() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(OPS),
        prop::option::of(any::<i64>()),
        prop::collection::btree_map(
            prop::sample::select(
                &[
                    "name",
                    "session",
                    "resume",
                    "title",
                    "capacity",
                    "retention",
                    "backlog",
                    "public",
                    "room",
                    "since",
                    "body",
                    "subject",
                    "cid",
                    "active",
                    "before",
                    "limit",
                    "seq",
                ][..],
            ),
            json_value(),
            0..6,
        ),
    )
        .prop_map(|(op, id, args)| {
            let mut frame = json!({"op": op});
            if let Some(id) = id {
                frame["id"] = json!(id);
            }
            for (k, v) in args {
                frame[k] = v;
            }
            frame
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = parse_request(&bytes) {
            prop_assert_eq!(e.error.code, ErrorCode::BadRequest);
            prop_assert!(!e.error.message.is_empty());
        }
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        let _ = parse_request(value.to_string().as_bytes());
    }

    #[test]
    fn op_like_frames_decode_or_say_why(frame in op_like()) {
        match parse_request(frame.to_string().as_bytes()) {
            Ok(request) => {
                prop_assert_eq!(request.id, frame["id"].as_i64());
                prop_assert_eq!(request.op.name(), frame["op"].as_str().unwrap());
            }
            Err(e) => {
                prop_assert_eq!(e.error.code, ErrorCode::BadRequest);
                // The id survives a bad argument, so the error can be a reply.
                prop_assert_eq!(e.id, frame["id"].as_i64());
            }
        }
    }

    #[test]
    fn posts_decode_exactly(
        id in any::<i64>(),
        room in "[A-Z2-9]{6}",
        body in ".{1,200}",
        subject in prop::option::of(".{0,40}"),
        cid in prop::option::of("[a-z0-9-]{1,64}"),
    ) {
        let mut frame = json!({"op": "post", "id": id, "room": room, "body": body});
        if let Some(subject) = &subject {
            frame["subject"] = json!(subject);
        }
        if let Some(cid) = &cid {
            frame["cid"] = json!(cid);
        }
        let request = parse_request(frame.to_string().as_bytes()).unwrap();
        prop_assert_eq!(request.id, Some(id));
        prop_assert_eq!(request.op, ClientOp::Post { reply: None, room, body, subject, cid });
    }
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(parse_request(deep.as_bytes()).unwrap_err().error.code, ErrorCode::BadRequest);
    let deep = format!(r#"{{"op":"ping","x":{}{}}}"#, "{\"a\":".repeat(50_000), "}".repeat(50_000));
    assert_eq!(parse_request(deep.as_bytes()).unwrap_err().error.code, ErrorCode::BadRequest);
}

#[test]
fn ids_beyond_i64_are_refused() {
    let e = parse_request(br#"{"op":"ping","id":18446744073709551615}"#).unwrap_err();
    assert_eq!(e.error.code, ErrorCode::BadRequest);
}
