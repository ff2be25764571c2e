//! Reading Kamailio-shaped JSON-RPC results.
//!
//! `ul.lookup` answers `{"AoR": .., "Contacts": [{"Contact": {"Address": ..,
//! "Expires": ..}}]}`; `ul.dump` nests the same records deeper (Kamailio:
//! `Domains[].Domain.AoRs[].Info`). The helpers search the whole value for
//! those records instead of hard-coding one nesting, so the assertions are
//! about the records, which is what the tests care about.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Every string under an `"AoR"` key anywhere in `v`.
pub fn aors(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    walk(v, &mut |k, val| {
        if k == "AoR"
            && let Some(s) = val.as_str()
        {
            out.insert(s.to_owned());
        }
    });
    out
}

/// Every record `{"AoR": .., "Contacts": [..]}` in `v`, by AoR.
pub fn records(v: &Value) -> BTreeMap<String, Vec<Map<String, Value>>> {
    let mut out = BTreeMap::new();
    collect_records(v, &mut out);
    out
}

fn collect_records(v: &Value, out: &mut BTreeMap<String, Vec<Map<String, Value>>>) {
    match v {
        Value::Object(m) => {
            if let Some(aor) = m.get("AoR").and_then(Value::as_str) {
                let cs = m.get("Contacts").map(contacts).unwrap_or_default();
                out.entry(aor.to_owned()).or_default().extend(cs);
            }
            for val in m.values() {
                collect_records(val, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|i| collect_records(i, out)),
        _ => {}
    }
}

/// Every object under a `"Contact"` key anywhere in `v`.
pub fn contacts(v: &Value) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    walk(v, &mut |k, val| {
        if k == "Contact"
            && let Some(m) = val.as_object()
        {
            out.push(m.clone());
        }
    });
    out
}

/// A contact record's `Address`.
pub fn address(c: &Map<String, Value>) -> &str {
    c.get("Address")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("contact record without a string Address: {c:?}"))
}

/// A contact record's `Expires` in seconds (remaining, as Kamailio shows it),
/// whether sent as a number or a numeric string.
pub fn expires(c: &Map<String, Value>) -> i64 {
    let v = c
        .get("Expires")
        .unwrap_or_else(|| panic!("contact record without Expires: {c:?}"));
    v.as_i64()
        .or_else(|| v.as_f64().map(|f| f.round() as i64))
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .unwrap_or_else(|| panic!("contact Expires is not a number of seconds: {v}"))
}

/// `stats.get_statistics` lines `"group:name = value"` → `{"group:name": value}`.
pub fn statistics(v: &Value) -> BTreeMap<String, i64> {
    let lines = v
        .as_array()
        .unwrap_or_else(|| panic!("stats.get_statistics did not return an array: {v}"));
    lines
        .iter()
        .map(|l| {
            let s = l
                .as_str()
                .unwrap_or_else(|| panic!("statistic is not a string: {l}"));
            let (name, val) = s
                .split_once('=')
                .unwrap_or_else(|| panic!("statistic is not `name = value`: {s:?}"));
            let val = val
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("statistic value in {s:?} is not an integer: {e}"));
            (name.trim().to_owned(), val)
        })
        .collect()
}

/// The statistic `group:name` (or any group's `name` when unique); fails the
/// test when missing.
pub fn stat(stats: &BTreeMap<String, i64>, name: &str) -> i64 {
    if let Some(v) = stats.get(name) {
        return *v;
    }
    let suffix = format!(":{name}");
    let found: Vec<_> = stats.iter().filter(|(k, _)| k.ends_with(&suffix)).collect();
    match found.as_slice() {
        [(_, v)] => **v,
        [] => panic!("statistic {name} missing from {stats:?}"),
        many => panic!("statistic {name} is ambiguous: {many:?}"),
    }
}

/// The JSON-RPC error code of a response object, if it is an error.
pub fn error_code(resp: &Value) -> Option<i64> {
    resp.get("error").map(|e| {
        e["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("JSON-RPC error without an integer code: {resp}"))
    })
}

/// The JSON-RPC error message of a response object ("" if none).
pub fn error_message(resp: &Value) -> String {
    let e = &resp["error"];
    let mut m = e["message"].as_str().unwrap_or_default().to_owned();
    if !e["data"].is_null() {
        m.push(' ');
        m.push_str(&e["data"].to_string());
    }
    m
}

fn walk(v: &Value, f: &mut impl FnMut(&str, &Value)) {
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                f(k, val);
                walk(val, f);
            }
        }
        Value::Array(a) => a.iter().for_each(|i| walk(i, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_records_in_lookup_and_kamailio_dump_shapes() {
        let lookup =
            json!({"AoR": "a@x", "Contacts": [{"Contact": {"Address": "sip:a@h", "Expires": 60}}]});
        let dump = json!({"Domains": [{"Domain": {"Domain": "location", "AoRs": [
            {"Info": {"AoR": "a@x", "Contacts": [{"Contact": {"Address": "sip:a@h", "Expires": "59"}}]}},
            {"Info": {"AoR": "b@x", "Contacts": []}}
        ]}}]});
        assert_eq!(aors(&lookup).len(), 1);
        assert_eq!(aors(&dump), ["a@x", "b@x"].map(String::from).into());
        let r = records(&dump);
        assert_eq!(expires(&r["a@x"][0]), 59);
        assert_eq!(address(&contacts(&lookup)[0]), "sip:a@h");
    }

    #[test]
    fn statistics_parse() {
        let s = statistics(&json!([
            "registrar:accepted_regs = 5",
            "usrloc:registered_users = 2"
        ]));
        assert_eq!(stat(&s, "accepted_regs"), 5);
        assert_eq!(stat(&s, "usrloc:registered_users"), 2);
    }
}
