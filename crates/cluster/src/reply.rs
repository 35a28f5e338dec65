//! The room script's replies, decoded by type: a reply of the wrong shape
//! is an error (`unavailable`, logged), never a silent `""` or `0`.

use confab_core::frames::unavailable;
use confab_proto::ErrorBody;
use redis::Value;
use serde::de::DeserializeOwned;

/// One reply of `room.lua`: an array whose first item is a status word.
#[derive(Debug)]
pub(crate) struct Reply(Vec<Value>);

impl Reply {
    /// Checks that a script's answer is an array led by a status word.
    pub fn new(value: Value) -> Result<Reply, ErrorBody> {
        match value {
            Value::Array(items) if matches!(items.first(), Some(v) if as_text(v).is_some()) => {
                Ok(Reply(items))
            }
            other => Err(unexpected(&format!("{other:?}"))),
        }
    }

    /// The status word (`ok`, `not_member`, …).
    pub fn status(&self) -> &str {
        self.0.first().and_then(as_text).unwrap_or_default()
    }

    fn item(&self, i: usize) -> Result<&Value, ErrorBody> {
        self.0.get(i).ok_or_else(|| unexpected(&format!("no item {i} in {:?}", self.0)))
    }

    /// Item `i`, a string.
    pub fn text(&self, i: usize) -> Result<&str, ErrorBody> {
        let item = self.item(i)?;
        as_text(item).ok_or_else(|| unexpected(&format!("item {i} is not text: {item:?}")))
    }

    /// Item `i`, an integer (Lua numbers come back as integers, numbers
    /// read from Redis keys as strings).
    pub fn int(&self, i: usize) -> Result<i64, ErrorBody> {
        let item = self.item(i)?;
        let n = match item {
            Value::Int(n) => Some(*n),
            other => as_text(other).and_then(|s| s.parse().ok()),
        };
        n.ok_or_else(|| unexpected(&format!("item {i} is not a number: {item:?}")))
    }

    /// Item `i`, a non-negative integer.
    pub fn uint(&self, i: usize) -> Result<u64, ErrorBody> {
        let n = self.int(i)?;
        u64::try_from(n).map_err(|_| unexpected(&format!("item {i} is negative: {n}")))
    }

    /// Item `i`, a JSON document.
    pub fn json<T: DeserializeOwned>(&self, i: usize) -> Result<T, ErrorBody> {
        decode(self.text(i)?.as_bytes())
    }

    /// Item `i`, an array of JSON documents.
    pub fn list<T: DeserializeOwned>(&self, i: usize) -> Result<Vec<T>, ErrorBody> {
        match self.item(i)? {
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::BulkString(b) => decode(b),
                    other => Err(unexpected(&format!("a list item is not text: {other:?}"))),
                })
                .collect(),
            // An empty Lua table comes back as an empty array; anything
            // else is not a list.
            other => Err(unexpected(&format!("item {i} is not a list: {other:?}"))),
        }
    }
}

impl Reply {
    /// Item `i`, an array of strings.
    pub fn texts(&self, i: usize) -> Result<Vec<String>, ErrorBody> {
        match self.item(i)? {
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    as_text(item)
                        .map(str::to_owned)
                        .ok_or_else(|| unexpected(&format!("a list item is not text: {item:?}")))
                })
                .collect(),
            other => Err(unexpected(&format!("item {i} is not a list: {other:?}"))),
        }
    }
}

fn as_text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ErrorBody> {
    serde_json::from_slice(bytes)
        .map_err(|e| unexpected(&format!("a document that does not decode: {e}")))
}

/// The cluster answered something this node cannot read.
pub(crate) fn unexpected(what: &str) -> ErrorBody {
    tracing::error!("cluster: an unexpected answer: {what}");
    unavailable("the cluster gave an unexpected answer")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_reply_of_the_wrong_shape_is_an_error_not_a_default() {
        assert!(Reply::new(Value::Int(1)).is_err(), "not an array");
        assert!(Reply::new(Value::Array(vec![])).is_err(), "no status");
        let r = Reply::new(Value::Array(vec![bulk("ok"), bulk("12"), Value::Int(-1), bulk("x")]))
            .unwrap();
        assert_eq!(r.status(), "ok");
        assert_eq!(r.uint(1).unwrap(), 12, "a number read from a key");
        assert!(r.uint(2).is_err(), "negative");
        assert!(r.int(3).is_err(), "not a number");
        assert!(r.text(4).is_err(), "missing");
        assert!(r.list::<String>(1).is_err(), "not a list");
        assert!(r.json::<serde_json::Value>(3).is_err(), "not JSON");
    }

    #[test]
    fn lists_decode_every_item_or_fail() {
        let users = Value::Array(vec![bulk(r#"{"id":"u_1","name":"Ann"}"#)]);
        let r = Reply::new(Value::Array(vec![bulk("ok"), users])).unwrap();
        let list: Vec<confab_proto::User> = r.list(1).unwrap();
        assert_eq!(list[0].name, "Ann");
        let damaged = Value::Array(vec![bulk(r#"{"id":"u_1"}"#)]);
        let r = Reply::new(Value::Array(vec![bulk("ok"), damaged])).unwrap();
        assert!(r.list::<confab_proto::User>(1).is_err());
    }
}
