//! The method table and dispatch. Method names are Kamailio's where Kamailio
//! has the method (`ul.*`, `stats.*`, `core.*`, `system.*`); `subscriber.*`
//! is regmesh's own (Kamailio provisions subscribers through its database).

mod core;
mod stats;
mod subscriber;
mod ul;

pub(crate) use ul::PERMANENT;

use crate::RpcContext;
use crate::error::RpcError;
use crate::params::Params;
use serde_json::Value;

/// Which handler runs; matched exhaustively in [`call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    UlDump,
    UlLookup,
    UlRm,
    UlRmContact,
    UlAdd,
    SubscriberAdd,
    SubscriberPasswd,
    SubscriberRm,
    SubscriberShow,
    SubscriberList,
    StatsGet,
    StatsFetch,
    StatsFetchNumeric,
    CoreVersion,
    CoreUptime,
    ListMethods,
    MethodHelp,
}

/// One method: its name, a one-line help text with its parameters, and its handler.
struct Method {
    name: &'static str,
    doc: &'static str,
    kind: Kind,
}

/// Every method, in the order `system.listMethods` shows them.
const METHODS: &[Method] = &[
    Method {
        name: "ul.dump",
        doc: "Dump the location table. Params: [\"brief\"] (AoRs with contact addresses and expires only).",
        kind: Kind::UlDump,
    },
    Method {
        name: "ul.lookup",
        doc: "Live contacts of one AoR. Params: table AOR (table must be \"location\").",
        kind: Kind::UlLookup,
    },
    Method {
        name: "ul.rm",
        doc: "Remove an AoR with all its contacts. Params: table AOR.",
        kind: Kind::UlRm,
    },
    Method {
        name: "ul.rm_contact",
        doc: "Remove one contact of an AoR. Params: table AOR contact.",
        kind: Kind::UlRmContact,
    },
    Method {
        name: "ul.add",
        doc: "Add or refresh a contact. Params: table AOR contact expires q path flags cflags methods \
              [received] [socket] (expires in seconds, 0 = permanent; q -1 = none; path/received/socket \
              \"0\" or \".\" = unset), or named: aor contact [expires q path flags cflags methods received \
              socket call_id cseq user_agent instance reg_id ruid table].",
        kind: Kind::UlAdd,
    },
    Method {
        name: "subscriber.add",
        doc: "Provision a subscriber (stored as HA1 hashes only). Params: USER@DOMAIN password, \
              or named {aor, password} / {user, domain, password}.",
        kind: Kind::SubscriberAdd,
    },
    Method {
        name: "subscriber.passwd",
        doc: "Change a subscriber's password. Params: USER@DOMAIN password.",
        kind: Kind::SubscriberPasswd,
    },
    Method {
        name: "subscriber.rm",
        doc: "Remove a subscriber. Params: USER@DOMAIN.",
        kind: Kind::SubscriberRm,
    },
    Method {
        name: "subscriber.show",
        doc: "Show a subscriber (user, domain, realm; never the HA1s). Params: USER@DOMAIN.",
        kind: Kind::SubscriberShow,
    },
    Method {
        name: "subscriber.list",
        doc: "List subscribers (user, domain, realm). Params: [domain].",
        kind: Kind::SubscriberList,
    },
    Method {
        name: "stats.get_statistics",
        doc: "Statistics as \"group:name = value\" lines. Params: one or more of all | group: | group:name | name.",
        kind: Kind::StatsGet,
    },
    Method {
        name: "stats.fetch",
        doc: "Statistics as {\"group.name\": \"value\"}. Params: as stats.get_statistics.",
        kind: Kind::StatsFetch,
    },
    Method {
        name: "stats.fetchn",
        doc: "Statistics as {\"group.name\": value} with numeric values. Params: as stats.get_statistics.",
        kind: Kind::StatsFetchNumeric,
    },
    Method {
        name: "core.version",
        doc: "Name and version of this server.",
        kind: Kind::CoreVersion,
    },
    Method {
        name: "core.uptime",
        doc: "Current time, start time and uptime in seconds.",
        kind: Kind::CoreUptime,
    },
    Method {
        name: "system.listMethods",
        doc: "The methods this server answers.",
        kind: Kind::ListMethods,
    },
    Method {
        name: "system.methodHelp",
        doc: "Help text of one method. Params: method.",
        kind: Kind::MethodHelp,
    },
];

/// Run `method` with `params`.
pub(crate) async fn call(
    ctx: &RpcContext,
    method: &str,
    params: Params<'_>,
) -> Result<Value, RpcError> {
    let m = METHODS
        .iter()
        .find(|m| m.name == method)
        .ok_or_else(|| RpcError::method_not_found(method))?;
    let p = &params;
    match m.kind {
        Kind::UlDump => ul::dump(ctx, p).await,
        Kind::UlLookup => ul::lookup(ctx, p),
        Kind::UlRm => ul::rm(ctx, p).await,
        Kind::UlRmContact => ul::rm_contact(ctx, p).await,
        Kind::UlAdd => ul::add(ctx, p).await,
        Kind::SubscriberAdd => subscriber::add(ctx, p).await,
        Kind::SubscriberPasswd => subscriber::passwd(ctx, p).await,
        Kind::SubscriberRm => subscriber::rm(ctx, p).await,
        Kind::SubscriberShow => subscriber::show(ctx, p),
        Kind::SubscriberList => subscriber::list(ctx, p),
        Kind::StatsGet => stats::get_statistics(ctx, p),
        Kind::StatsFetch => stats::fetch(ctx, p, false),
        Kind::StatsFetchNumeric => stats::fetch(ctx, p, true),
        Kind::CoreVersion => core::version(p),
        Kind::CoreUptime => core::uptime(ctx, p),
        Kind::ListMethods => core::list_methods(p, METHODS.iter().map(|m| m.name)),
        Kind::MethodHelp => core::method_help(p, |name| {
            METHODS.iter().find(|m| m.name == name).map(|m| m.doc)
        }),
    }
}

/// The names of every method (for docs and tests).
pub fn method_names() -> impl Iterator<Item = &'static str> {
    METHODS.iter().map(|m| m.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = method_names().collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
