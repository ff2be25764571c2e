//! JSON-RPC 2.0 framing (<https://www.jsonrpc.org/specification>): decoding a
//! body into requests, and encoding responses. No methods, no transport.
//!
//! Rules implemented here:
//! - a body that is not JSON gets one error response, -32700, `id: null` (§5);
//! - a request must be an object with `"jsonrpc": "2.0"`, a string `method`,
//!   `params` (if present) an array or an object, and `id` (if present) a
//!   string, a number or null; otherwise -32600, echoing the id when it is
//!   one of those types and `null` otherwise (§4, §5);
//! - a request without `id` is a notification: it runs, nothing is sent
//!   back, not even an error (§4.1);
//! - a batch is a non-empty array of requests answered by an array of the
//!   non-notification responses, or nothing at all when every member was a
//!   notification (§6); an empty array is one -32600 error. Batches are
//!   capped at [`MAX_BATCH`] members and run in order, so writes in a batch
//!   apply in the order given.

use crate::error::RpcError;
use serde_json::{Map, Value, json};

/// The protocol version every request must carry (§4).
pub const VERSION: &str = "2.0";

/// Most requests accepted in one batch; a larger batch is one -32600 error.
pub const MAX_BATCH: usize = 1000;

/// One decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Method name.
    pub method: String,
    /// `params`: an array (positional), an object (named) or absent.
    pub params: Option<Value>,
    /// `None` for a notification; otherwise a string, number or null.
    pub id: Option<Value>,
}

impl Request {
    /// True when no response is to be sent (§4.1).
    pub fn is_notification(&self) -> bool {
        self.id.is_none()
    }
}

/// One member of a body: a request, or why it is not one (with the id to
/// answer with).
pub type Entry = Result<Request, (Value, RpcError)>;

/// A decoded body.
#[derive(Debug)]
pub enum Body {
    /// A single request object (or a non-request that gets one error).
    Single(Entry),
    /// A batch (§6), in order.
    Batch(Vec<Entry>),
}

/// Decode a body. `Err` is a body-level failure answered by a single error
/// response with `id: null` (parse error, empty or oversized batch).
pub fn decode(body: &[u8]) -> Result<Body, RpcError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| RpcError::Parse {
        line: e.line(),
        column: e.column(),
    })?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(RpcError::InvalidRequest {
                    reason: "empty batch",
                });
            }
            if items.len() > MAX_BATCH {
                return Err(RpcError::InvalidRequest {
                    reason: "batch larger than 1000 requests",
                });
            }
            Ok(Body::Batch(items.into_iter().map(entry).collect()))
        }
        other => Ok(Body::Single(entry(other))),
    }
}

/// Decode one request object (§4).
pub fn entry(value: Value) -> Entry {
    let Value::Object(mut obj) = value else {
        return Err((
            Value::Null,
            RpcError::InvalidRequest {
                reason: "a request must be an object",
            },
        ));
    };
    // The id is checked first so that the other errors can echo it.
    let id = match obj.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id),
        Some(_) => {
            return Err((
                Value::Null,
                RpcError::InvalidRequest {
                    reason: "`id` must be a string, a number or null",
                },
            ));
        }
    };
    let fail = |reason| {
        Err((
            id.clone().unwrap_or(Value::Null),
            RpcError::InvalidRequest { reason },
        ))
    };
    match obj.get("jsonrpc") {
        Some(Value::String(v)) if v == VERSION => {}
        _ => return fail("`jsonrpc` must be \"2.0\""),
    }
    let Some(Value::String(method)) = obj.remove("method") else {
        return fail("`method` must be a string");
    };
    let params = match obj.remove("params") {
        None => None,
        Some(p @ (Value::Array(_) | Value::Object(_))) => Some(p),
        Some(_) => return fail("`params` must be an array or an object"),
    };
    Ok(Request { method, params, id })
}

/// A success response (§5).
pub fn success(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": VERSION, "result": result, "id": id })
}

/// An error response (§5, §5.1).
pub fn failure(id: Value, error: &RpcError) -> Value {
    let mut obj = Map::new();
    obj.insert("jsonrpc".into(), Value::from(VERSION));
    obj.insert("error".into(), error.to_json());
    obj.insert("id".into(), id);
    Value::Object(obj)
}

/// Serialize a response; a `Value` always serializes, the fallback only
/// keeps this total.
pub fn encode(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| {
        br#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"Internal error"},"id":null}"#
            .to_vec()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_request() {
        let Ok(Body::Single(Ok(r))) =
            decode(br#"{"jsonrpc":"2.0","method":"ul.dump","params":["brief"],"id":7}"#)
        else {
            panic!("decode");
        };
        assert_eq!(r.method, "ul.dump");
        assert_eq!(r.params, Some(json!(["brief"])));
        assert_eq!(r.id, Some(json!(7)));
        assert!(!r.is_notification());
    }

    #[test]
    fn notification_has_no_id_but_null_id_is_a_request() {
        let Ok(Body::Single(Ok(r))) = decode(br#"{"jsonrpc":"2.0","method":"m"}"#) else {
            panic!("decode");
        };
        assert!(r.is_notification());
        let Ok(Body::Single(Ok(r))) = decode(br#"{"jsonrpc":"2.0","method":"m","id":null}"#) else {
            panic!("decode");
        };
        assert_eq!(r.id, Some(Value::Null));
    }

    #[test]
    fn parse_error_reports_position() {
        let Err(e) = decode(b"{\"jsonrpc\": ") else {
            panic!("must fail");
        };
        assert_eq!(e.code(), -32700);
    }

    #[test]
    fn invalid_requests_echo_a_valid_id() {
        for (body, id) in [
            (&br#"{"jsonrpc":"1.0","method":"m","id":3}"#[..], json!(3)),
            (br#"{"method":"m","id":"a"}"#, json!("a")),
            (br#"{"jsonrpc":"2.0","method":1,"id":4}"#, json!(4)),
            (
                br#"{"jsonrpc":"2.0","method":"m","params":"x","id":5}"#,
                json!(5),
            ),
            (
                br#"{"jsonrpc":"2.0","method":"m","id":{"x":1}}"#,
                Value::Null,
            ),
            (br#"42"#, Value::Null),
        ] {
            let Ok(Body::Single(Err((got, e)))) = decode(body) else {
                panic!("{}", String::from_utf8_lossy(body));
            };
            assert_eq!(got, id);
            assert_eq!(e.code(), -32600);
        }
    }

    #[test]
    fn batches() {
        let Ok(Body::Batch(v)) = decode(br#"[{"jsonrpc":"2.0","method":"a","id":1}, 1]"#) else {
            panic!("batch");
        };
        assert_eq!(v.len(), 2);
        assert!(v[0].is_ok());
        assert!(v[1].is_err());
        assert_eq!(decode(b"[]").map(|_| ()).map_err(|e| e.code()), Err(-32600));
        let big = format!("[{}]", vec!["1"; MAX_BATCH + 1].join(","));
        assert!(decode(big.as_bytes()).is_err());
    }

    #[test]
    fn responses() {
        assert_eq!(
            success(json!(1), json!("ok")),
            json!({"jsonrpc":"2.0","result":"ok","id":1})
        );
        let f = failure(Value::Null, &RpcError::MissingParam { name: "aor" });
        assert_eq!(f["error"]["code"], -32602);
        assert_eq!(f["id"], Value::Null);
        assert!(encode(&f).starts_with(b"{"));
    }
}
