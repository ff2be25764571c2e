//! JSON-RPC over HTTP: `POST /RPC` (Kamailio's `jsonrpcs` path).
//!
//! - The body is one JSON-RPC request or batch, at most [`MAX_BODY`] bytes
//!   (larger: HTTP 413 with a JSON-RPC -32600 body). Any `Content-Type` is
//!   accepted, so `curl -d '{...}'` works without `-H`; answers are
//!   `application/json`.
//! - Malformed JSON is HTTP 200 with a -32700 error: the transport worked,
//!   the JSON-RPC layer reports the failure.
//! - A body of notifications only is HTTP 204 with no body.
//! - With a token configured, `Authorization: Bearer <token>` is required
//!   (scheme case-insensitive, RFC 7235 §2.1); otherwise HTTP 401 with
//!   `WWW-Authenticate: Bearer` (RFC 6750 §3) and a JSON-RPC -32001 body.
//!   The token is compared in constant time, and checked before the body
//!   is read.
//! - Other methods on `/RPC` get 405 (axum's method routing).

use crate::RpcContext;
use crate::error::RpcError;
use crate::jsonrpc::{encode, failure};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use std::sync::Arc;

/// Largest accepted request body.
pub const MAX_BODY: usize = 1 << 20;

/// What the handler needs.
struct HttpState {
    ctx: RpcContext,
    token: Option<String>,
}

/// The router (see the module docs).
pub(crate) fn router(ctx: RpcContext, token: Option<String>) -> Router {
    let token = token.filter(|t| !t.is_empty());
    Router::new()
        .route("/RPC", post(rpc))
        .with_state(Arc::new(HttpState { ctx, token }))
}

async fn rpc(State(st): State<Arc<HttpState>>, headers: HeaderMap, body: Body) -> Response {
    if let Some(token) = &st.token
        && !authorized(&headers, token)
    {
        let mut resp = error_reply(StatusCode::UNAUTHORIZED, &RpcError::Unauthorized);
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    let too_large = || {
        error_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            &RpcError::TooLarge { limit: MAX_BODY },
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.into_inner().is::<http_body_util::LengthLimitError>();
            return if over {
                too_large()
            } else {
                StatusCode::BAD_REQUEST.into_response()
            };
        }
    };
    match crate::handle(&st.ctx, &bytes).await {
        Some(out) => json_reply(StatusCode::OK, out),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// `Authorization: Bearer <token>` with the right token?
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, given)) = value.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// Compare without an early exit, so the time taken does not tell an
/// attacker how many leading bytes were right. (The length of the
/// configured token is not treated as secret.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

fn json_reply(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn error_reply(status: StatusCode, e: &RpcError) -> Response {
    json_reply(status, encode(&failure(Value::Null, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_header_parsing() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "t0k"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0k"),
        );
        assert!(authorized(&h, "t0k"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  t0k "),
        );
        assert!(authorized(&h, "t0k"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic t0k"));
        assert!(!authorized(&h, "t0k"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t0"));
        assert!(!authorized(&h, "t0k"));
    }
}
