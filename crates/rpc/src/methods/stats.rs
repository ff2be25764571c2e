//! `stats.get_statistics`, `stats.fetch`, `stats.fetchn`: counters under
//! Kamailio's group and statistic names, in Kamailio's output shapes.
//!
//! Selectors (one or more parameters, as in Kamailio): `all`; a group with
//! a trailing colon (`usrloc:`); `group:name`; or a bare `name` (any group).
//! A selector that matches nothing adds nothing, as in Kamailio.
//!
//! | statistic | meaning |
//! |---|---|
//! | `registrar:accepted_regs` | REGISTERs answered 2xx |
//! | `registrar:rejected_regs` | REGISTERs answered with an error |
//! | `registrar:auth_challenges`, `auth_failures`, `bad_messages`, `dropped`, `lookups`, `redirects`, `not_found`, `options`, `overload_rejected` | regmesh's own registrar counters (see `regmesh_registrar::Stats`) |
//! | `registrar:default_expire` | `default_expires` in effect (seconds) |
//! | `registrar:max_expires`, `registrar:max_contacts` | the policy in effect (0 = no limit) |
//! | `usrloc:registered_users` | AoRs with at least one live binding |
//! | `usrloc:location-users` | the same, for the `location` table |
//! | `usrloc:location-contacts` | live bindings |
//! | `usrloc:location-tombstones` | removal markers held (regmesh's own) |

use crate::RpcContext;
use crate::error::RpcError;
use crate::params::{Params, as_string};
use serde_json::{Map, Value};

/// One statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    group: &'static str,
    name: &'static str,
    value: u64,
}

/// Every statistic, groups in alphabetical order.
fn collect(ctx: &RpcContext) -> Vec<Stat> {
    let loc = ctx.location.stats();
    let stat = |group, name, value| Stat { group, name, value };
    let mut all: Vec<Stat> = ctx
        .stats
        .snapshot()
        .into_iter()
        .map(|(name, value)| stat("registrar", name, value))
        .collect();
    all.extend([
        stat(
            "registrar",
            "default_expire",
            u64::from(ctx.default_expires),
        ),
        stat("registrar", "max_expires", u64::from(ctx.max_expires)),
        stat("registrar", "max_contacts", u64::from(ctx.max_contacts)),
        stat("usrloc", "registered_users", loc.aors),
        stat("usrloc", "location-users", loc.aors),
        stat("usrloc", "location-contacts", loc.bindings),
        stat("usrloc", "location-tombstones", loc.tombstones),
    ]);
    all
}

/// The statistics one selector picks, in order.
fn select<'a>(all: &'a [Stat], selector: &'a str) -> impl Iterator<Item = &'a Stat> + 'a {
    let selector = selector.trim();
    all.iter().filter(move |s| {
        if selector == "all" {
            return true;
        }
        if let Some(group) = selector.strip_suffix(':') {
            return s.group == group;
        }
        // Kamailio's `stats.fetch` also accepts `group.name`.
        match selector.split_once([':', '.']) {
            Some((group, name)) if s.group == group && s.name == name => true,
            _ => s.name == selector,
        }
    })
}

/// The selectors: at least one string.
fn selectors(p: &Params<'_>) -> Result<Vec<String>, RpcError> {
    p.allow(usize::MAX, &["statistics"])?;
    let values = p.rest("statistics");
    if values.is_empty() {
        return Err(RpcError::MissingParam { name: "statistics" });
    }
    values
        .into_iter()
        .map(|v| as_string(v, "statistics"))
        .collect()
}

/// The statistics chosen, each once, in the order first selected.
fn chosen(ctx: &RpcContext, p: &Params<'_>) -> Result<Vec<Stat>, RpcError> {
    let sel = selectors(p)?;
    let all = collect(ctx);
    let mut out: Vec<Stat> = Vec::new();
    for s in &sel {
        for stat in select(&all, s) {
            if !out.contains(stat) {
                out.push(*stat);
            }
        }
    }
    Ok(out)
}

/// `stats.get_statistics sel..` → `["group:name = value", ..]` (Kamailio's
/// lines, exactly).
pub(crate) fn get_statistics(ctx: &RpcContext, p: &Params<'_>) -> Result<Value, RpcError> {
    Ok(Value::Array(
        chosen(ctx, p)?
            .iter()
            .map(|s| Value::String(format!("{}:{} = {}", s.group, s.name, s.value)))
            .collect(),
    ))
}

/// `stats.fetch sel..` → `{"group.name": "value"}`; `stats.fetchn` the
/// same with numeric values (Kamailio's two forms).
pub(crate) fn fetch(ctx: &RpcContext, p: &Params<'_>, numeric: bool) -> Result<Value, RpcError> {
    let mut obj = Map::new();
    for s in chosen(ctx, p)? {
        let v = if numeric {
            Value::from(s.value)
        } else {
            Value::String(s.value.to_string())
        };
        obj.insert(format!("{}.{}", s.group, s.name), v);
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Stat> {
        vec![
            Stat {
                group: "registrar",
                name: "accepted_regs",
                value: 1,
            },
            Stat {
                group: "usrloc",
                name: "registered_users",
                value: 2,
            },
            Stat {
                group: "usrloc",
                name: "location-contacts",
                value: 3,
            },
        ]
    }

    #[test]
    fn selectors_match_like_kamailio() {
        let all = sample();
        let names = |sel| select(&all, sel).map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(names("all").len(), 3);
        assert_eq!(
            names("usrloc:"),
            vec!["registered_users", "location-contacts"]
        );
        assert_eq!(names("usrloc:registered_users"), vec!["registered_users"]);
        assert_eq!(names("usrloc.location-contacts"), vec!["location-contacts"]);
        assert_eq!(names("accepted_regs"), vec!["accepted_regs"]);
        assert!(names("nosuch:").is_empty());
        assert!(names("registrar:registered_users").is_empty());
    }
}
