//! The crate's one error type. Every way a call can fail is a variant, and
//! [`RpcError::code`] maps each to its JSON-RPC error code in one exhaustive
//! `match`, so a new variant does not compile until its code is chosen.

use regmesh_location::StoreError;
use serde_json::{Value, json};

/// Longest method name echoed back in a "Method not found" error; the rest is
/// cut so a hostile client cannot make us reflect a megabyte.
const MAX_ECHOED_METHOD: usize = 64;

/// Why a JSON-RPC call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The body is not JSON (JSON-RPC 2.0 §5.1: -32700).
    #[error("Parse error: invalid JSON at line {line} column {column}")]
    Parse {
        /// Line of the first error (1-based).
        line: usize,
        /// Column of the first error (1-based).
        column: usize,
    },
    /// JSON, but not a valid request object (-32600).
    #[error("Invalid Request: {reason}")]
    InvalidRequest {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A body or line over the transport's size limit (-32600).
    #[error("Invalid Request: larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// No such method (-32601).
    #[error("Method not found: {method}")]
    MethodNotFound {
        /// The name asked for (cut to 64 bytes).
        method: String,
    },
    /// A required parameter is absent (-32602).
    #[error("Invalid params: missing parameter `{name}`")]
    MissingParam {
        /// The parameter's name.
        name: &'static str,
    },
    /// A parameter has the wrong type or value (-32602).
    #[error("Invalid params: parameter `{name}` {expected}")]
    InvalidParam {
        /// The parameter's name.
        name: &'static str,
        /// What it must be, phrased to follow the name ("must be ...").
        expected: &'static str,
    },
    /// A named parameter the method does not take (-32602); catches typos
    /// that would otherwise be silently ignored.
    #[error("Invalid params: unknown parameter `{name}`")]
    UnknownParam {
        /// The name given (cut to 64 bytes).
        name: String,
    },
    /// More positional parameters than the method takes (-32602).
    #[error("Invalid params: at most {max} parameters")]
    TooManyParams {
        /// How many the method takes.
        max: usize,
    },
    /// The AoR has no live binding (Kamailio: code 404, "AOR not found").
    #[error("AOR not found")]
    AorNotFound,
    /// The AoR has no binding of that contact (Kamailio: 404, "Contact not found").
    #[error("Contact not found")]
    ContactNotFound,
    /// No such subscriber (404).
    #[error("Subscriber not found")]
    SubscriberNotFound,
    /// `subscriber.add` of an existing subscriber (409; use `subscriber.passwd`).
    #[error("Subscriber already exists")]
    SubscriberExists,
    /// The store failed; the change may not be durable (-32603).
    #[error("Internal error: storage failed: {source}")]
    Store {
        /// The store's error (boxed: it is large, and rare).
        source: Box<StoreError>,
    },
    /// A handler's worker task failed (-32603); nothing was changed.
    #[error("Internal error: {what}")]
    Internal {
        /// What was being done.
        what: &'static str,
    },
    /// The HTTP request lacks the configured bearer token (-32001, HTTP 401).
    #[error("Unauthorized: a valid bearer token is required")]
    Unauthorized,
}

impl RpcError {
    /// The JSON-RPC error code. The reserved range (-32768..=-32000) is used
    /// as JSON-RPC 2.0 §5.1 says; application errors use Kamailio's
    /// HTTP-like codes (404) so Kamailio tooling reads them the same way.
    pub fn code(&self) -> i64 {
        match self {
            Self::Parse { .. } => -32700,
            Self::InvalidRequest { .. } | Self::TooLarge { .. } => -32600,
            Self::MethodNotFound { .. } => -32601,
            Self::MissingParam { .. }
            | Self::InvalidParam { .. }
            | Self::UnknownParam { .. }
            | Self::TooManyParams { .. } => -32602,
            Self::Store { .. } | Self::Internal { .. } => -32603,
            Self::Unauthorized => -32001,
            Self::AorNotFound | Self::ContactNotFound | Self::SubscriberNotFound => 404,
            Self::SubscriberExists => 409,
        }
    }

    /// The error's `data` member: the parameter's name for parameter errors,
    /// so a client can point at the field without parsing the message.
    pub fn data(&self) -> Option<Value> {
        match self {
            Self::MissingParam { name } | Self::InvalidParam { name, .. } => {
                Some(json!({ "param": name }))
            }
            Self::UnknownParam { name } => Some(json!({ "param": name })),
            Self::Parse { .. }
            | Self::InvalidRequest { .. }
            | Self::TooLarge { .. }
            | Self::MethodNotFound { .. }
            | Self::TooManyParams { .. }
            | Self::AorNotFound
            | Self::ContactNotFound
            | Self::SubscriberNotFound
            | Self::SubscriberExists
            | Self::Store { .. }
            | Self::Internal { .. }
            | Self::Unauthorized => None,
        }
    }

    /// The JSON-RPC error object (`{"code", "message"[, "data"]}`).
    pub fn to_json(&self) -> Value {
        let mut obj = json!({ "code": self.code(), "message": self.to_string() });
        if let (Some(data), Some(map)) = (self.data(), obj.as_object_mut()) {
            map.insert("data".into(), data);
        }
        obj
    }

    /// [`RpcError::MethodNotFound`] with the name cut to a bounded length.
    pub(crate) fn method_not_found(method: &str) -> Self {
        Self::MethodNotFound {
            method: truncate(method),
        }
    }

    /// [`RpcError::UnknownParam`] with the name cut to a bounded length.
    pub(crate) fn unknown_param(name: &str) -> Self {
        Self::UnknownParam {
            name: truncate(name),
        }
    }
}

impl From<StoreError> for RpcError {
    fn from(e: StoreError) -> Self {
        Self::Store {
            source: Box::new(e),
        }
    }
}

/// At most [`MAX_ECHOED_METHOD`] bytes of `s`, cut on a character boundary.
fn truncate(s: &str) -> String {
    if s.len() <= MAX_ECHOED_METHOD {
        return s.to_owned();
    }
    let mut end = MAX_ECHOED_METHOD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_json_rpc_and_kamailio() {
        assert_eq!(RpcError::Parse { line: 1, column: 2 }.code(), -32700);
        assert_eq!(RpcError::InvalidRequest { reason: "x" }.code(), -32600);
        assert_eq!(RpcError::method_not_found("x").code(), -32601);
        assert_eq!(RpcError::MissingParam { name: "aor" }.code(), -32602);
        assert_eq!(RpcError::AorNotFound.code(), 404);
        assert_eq!(RpcError::AorNotFound.to_string(), "AOR not found");
    }

    #[test]
    fn param_errors_name_the_parameter() {
        let e = RpcError::InvalidParam {
            name: "expires",
            expected: "must be a non-negative integer",
        };
        let j = e.to_json();
        assert_eq!(j["code"], -32602);
        assert_eq!(
            j["message"],
            "Invalid params: parameter `expires` must be a non-negative integer"
        );
        assert_eq!(j["data"]["param"], "expires");
        assert!(RpcError::AorNotFound.to_json().get("data").is_none());
    }

    #[test]
    fn echoed_names_are_bounded() {
        let long = "é".repeat(100);
        let RpcError::MethodNotFound { method } = RpcError::method_not_found(&long) else {
            panic!("variant");
        };
        assert!(method.len() <= MAX_ECHOED_METHOD + "…".len());
    }
}
