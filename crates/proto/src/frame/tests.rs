use super::*;

#[test]
fn parses_a_post_with_id() {
    let r = parse_request(br#"{"op":"post","id":7,"room":"main","body":"hi","extra":1}"#).unwrap();
    assert_eq!(r.id, Some(7));
    assert_eq!(
        r.op,
        ClientOp::Post {
            reply: None,
            room: "main".into(),
            body: "hi".into(),
            subject: None,
            cid: None
        }
    );
}

#[test]
fn keeps_the_id_when_the_op_is_unknown() {
    let e = parse_request(br#"{"op":"dance","id":3}"#).unwrap_err();
    assert_eq!(e.id, Some(3));
    assert_eq!(e.error.code, ErrorCode::BadRequest);
    assert!(e.error.message.contains("dance"), "{}", e.error.message);
}

#[test]
fn names_a_missing_field() {
    let e = parse_request(br#"{"op":"join","id":1}"#).unwrap_err();
    assert!(e.error.message.contains("room"), "{}", e.error.message);
}

#[test]
fn refuses_wrong_types() {
    let e = parse_request(br#"{"op":"join","id":1,"room":5}"#).unwrap_err();
    assert_eq!(e.id, Some(1));
    let e = parse_request(br#"{"op":"create","capacity":-1}"#).unwrap_err();
    assert_eq!(e.error.code, ErrorCode::BadRequest);
    let e = parse_request(br#"{"op":"create","retention":"forever"}"#).unwrap_err();
    assert!(e.error.message.contains("forever"));
}

#[test]
fn refuses_non_objects_and_bad_ids() {
    assert_eq!(parse_request(b"[1,2]").unwrap_err().id, None);
    assert_eq!(parse_request(b"{nope").unwrap_err().error.code, ErrorCode::BadRequest);
    assert_eq!(parse_request(br#"{"op":"ping","id":"x"}"#).unwrap_err().id, None);
    assert_eq!(parse_request(br#"{"op":"ping","id":1.5}"#).unwrap_err().id, None);
    assert!(parse_request(br#"{"id":4}"#).unwrap_err().error.message.contains("op"));
}

#[test]
fn ops_without_arguments() {
    assert_eq!(parse_request(br#"{"op":"ping"}"#).unwrap().op, ClientOp::Ping);
    assert_eq!(
        parse_request(br#"{"op":"rooms","id":null}"#).unwrap(),
        Request { id: None, op: ClientOp::Rooms }
    );
}
