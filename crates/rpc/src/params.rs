//! Parameter extraction for both JSON-RPC parameter structures (§4.2):
//! positional (`params` is an array) and named (`params` is an object). A
//! method asks for each parameter by position *and* name; every error names
//! the parameter.
//!
//! Leniency, on purpose: a string parameter accepts a JSON number (turned
//! into its decimal text) and an integer parameter accepts a string of
//! digits, because command-line clients (`regmesh ctl`, `kamcmd`) cannot
//! always tell `1001` the user from `1001` the number. Booleans, arrays and
//! objects are never coerced. A JSON `null` counts as absent.

use crate::error::RpcError;
use serde_json::{Map, Value};

/// The `params` of one request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Params<'a> {
    /// No `params` member.
    Empty,
    /// An array.
    Positional(&'a [Value]),
    /// An object.
    Named(&'a Map<String, Value>),
}

/// A named parameter that distinguishes "absent" from an explicit `null`
/// (used where `null` means "clear this field").
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Field<'a> {
    /// Not given.
    Absent,
    /// Given as `null`.
    Null,
    /// Given.
    Value(&'a Value),
}

impl<'a> Params<'a> {
    /// Wrap a request's `params` (already checked to be an array or object).
    pub(crate) fn new(params: Option<&'a Value>) -> Self {
        match params {
            Some(Value::Array(a)) => Self::Positional(a),
            Some(Value::Object(o)) => Self::Named(o),
            _ => Self::Empty,
        }
    }

    /// True for the named form.
    pub(crate) fn is_named(&self) -> bool {
        matches!(self, Self::Named(_))
    }

    /// The value at position `idx` (positional) or under `name` (named);
    /// `None` when absent or `null`.
    pub(crate) fn get(&self, idx: usize, name: &str) -> Option<&'a Value> {
        let v = match self {
            Self::Empty => None,
            Self::Positional(a) => a.get(idx),
            Self::Named(o) => o.get(name),
        };
        v.filter(|v| !v.is_null())
    }

    /// A named parameter, telling `null` from absent (always `Absent` in
    /// the positional form).
    pub(crate) fn field(&self, name: &str) -> Field<'a> {
        match self {
            Self::Named(o) => match o.get(name) {
                None => Field::Absent,
                Some(Value::Null) => Field::Null,
                Some(v) => Field::Value(v),
            },
            Self::Empty | Self::Positional(_) => Field::Absent,
        }
    }

    /// Reject extra positional parameters and unknown names: a typo such as
    /// `expire` for `expires` must not be silently ignored.
    pub(crate) fn allow(&self, max_positional: usize, names: &[&str]) -> Result<(), RpcError> {
        match self {
            Self::Empty => Ok(()),
            Self::Positional(a) if a.len() > max_positional => Err(RpcError::TooManyParams {
                max: max_positional,
            }),
            Self::Positional(_) => Ok(()),
            Self::Named(o) => match o.keys().find(|k| !names.contains(&k.as_str())) {
                Some(k) => Err(RpcError::unknown_param(k)),
                None => Ok(()),
            },
        }
    }

    /// Every positional parameter (for variadic methods); the named form
    /// gives the value(s) under `name` (a string or an array of them).
    pub(crate) fn rest(&self, name: &str) -> Vec<&'a Value> {
        match self {
            Self::Empty => Vec::new(),
            Self::Positional(a) => a.iter().filter(|v| !v.is_null()).collect(),
            Self::Named(o) => match o.get(name) {
                Some(Value::Array(a)) => a.iter().collect(),
                Some(Value::Null) | None => Vec::new(),
                Some(v) => vec![v],
            },
        }
    }

    /// A required string.
    pub(crate) fn string(&self, idx: usize, name: &'static str) -> Result<String, RpcError> {
        let v = self.get(idx, name).ok_or(RpcError::MissingParam { name })?;
        as_string(v, name)
    }

    /// An optional string.
    pub(crate) fn opt_string(
        &self,
        idx: usize,
        name: &'static str,
    ) -> Result<Option<String>, RpcError> {
        self.get(idx, name).map(|v| as_string(v, name)).transpose()
    }

    /// A required unsigned 32-bit integer.
    pub(crate) fn u32(&self, idx: usize, name: &'static str) -> Result<u32, RpcError> {
        let v = self.get(idx, name).ok_or(RpcError::MissingParam { name })?;
        as_u32(v, name)
    }

    /// A required number.
    pub(crate) fn f64(&self, idx: usize, name: &'static str) -> Result<f64, RpcError> {
        let v = self.get(idx, name).ok_or(RpcError::MissingParam { name })?;
        as_f64(v, name)
    }
}

/// A string, or a number as its decimal text.
pub(crate) fn as_string(v: &Value, name: &'static str) -> Result<String, RpcError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(RpcError::InvalidParam {
            name,
            expected: "must be a string",
        }),
    }
}

/// An integer in `0..=u32::MAX`, as a JSON number or a string of digits.
pub(crate) fn as_u32(v: &Value, name: &'static str) -> Result<u32, RpcError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| u32::try_from(n).ok())
        .ok_or(RpcError::InvalidParam {
            name,
            expected: "must be an integer from 0 to 4294967295",
        })
}

/// A finite number, as a JSON number or numeric text.
pub(crate) fn as_f64(v: &Value, name: &'static str) -> Result<f64, RpcError> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.filter(|n| n.is_finite()).ok_or(RpcError::InvalidParam {
        name,
        expected: "must be a number",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn positional_and_named_give_the_same_values() {
        let a = json!(["location", "alice@example.com", 3600]);
        let o = json!({"table": "location", "aor": "alice@example.com", "expires": 3600});
        for p in [Params::new(Some(&a)), Params::new(Some(&o))] {
            assert_eq!(p.string(0, "table").ok().as_deref(), Some("location"));
            assert_eq!(
                p.string(1, "aor").ok().as_deref(),
                Some("alice@example.com")
            );
            assert_eq!(p.u32(2, "expires").ok(), Some(3600));
        }
    }

    #[test]
    fn missing_and_wrong_types_name_the_parameter() {
        let a = json!(["x", true]);
        let p = Params::new(Some(&a));
        let e = p.string(2, "contact").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("Invalid params: missing parameter `contact`")
        );
        let e = p.u32(1, "expires").err().map(|e| e.to_json());
        assert_eq!(
            e.as_ref().map(|e| &e["data"]["param"]),
            Some(&json!("expires"))
        );
        assert!(p.string(1, "aor").is_err());
        assert!(Params::new(None).string(0, "aor").is_err());
    }

    #[test]
    fn coercions() {
        assert_eq!(as_string(&json!(1001), "aor").ok().as_deref(), Some("1001"));
        assert_eq!(as_u32(&json!("42"), "n").ok(), Some(42));
        assert!(as_u32(&json!(-1), "n").is_err());
        assert!(as_u32(&json!(1.5), "n").is_err());
        assert!(as_u32(&json!(u64::from(u32::MAX) + 1), "n").is_err());
        assert_eq!(as_f64(&json!(1), "q").ok(), Some(1.0));
        assert_eq!(as_f64(&json!("0.5"), "q").ok(), Some(0.5));
        assert!(as_f64(&json!("nan"), "q").is_err());
        assert!(as_f64(&json!([]), "q").is_err());
    }

    #[test]
    fn null_is_absent_but_field_tells_them_apart() {
        let o = json!({"received": null, "socket": "udp:1.2.3.4:5060"});
        let p = Params::new(Some(&o));
        assert_eq!(p.get(0, "received"), None);
        assert_eq!(p.field("received"), Field::Null);
        assert_eq!(p.field("path"), Field::Absent);
        assert!(matches!(p.field("socket"), Field::Value(_)));
    }

    #[test]
    fn allow_rejects_typos_and_extras() {
        let o = json!({"aor": "a@b", "expire": 5});
        let e = Params::new(Some(&o)).allow(2, &["aor", "expires"]);
        assert_eq!(
            e.err().map(|e| e.to_string()).as_deref(),
            Some("Invalid params: unknown parameter `expire`")
        );
        let a = json!([1, 2, 3]);
        assert!(Params::new(Some(&a)).allow(2, &[]).is_err());
        assert!(Params::new(Some(&a)).allow(3, &[]).is_ok());
    }

    #[test]
    fn rest_collects_variadic_values() {
        let a = json!(["usrloc:", "registrar:"]);
        assert_eq!(Params::new(Some(&a)).rest("statistics").len(), 2);
        let o = json!({"statistics": "all"});
        assert_eq!(
            Params::new(Some(&o)).rest("statistics"),
            vec![&json!("all")]
        );
    }
}
