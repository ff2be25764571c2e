//! `core.version`, `core.uptime`, `system.listMethods`, `system.methodHelp`.

use crate::RpcContext;
use crate::error::RpcError;
use crate::params::Params;
use regmesh_location::Timestamp;
use serde_json::{Value, json};

/// `core.version` → `"regmesh 0.1.0"` (Kamailio answers `"kamailio 5.x.y ..."`).
pub(crate) fn version(p: &Params<'_>) -> Result<Value, RpcError> {
    p.allow(0, &[])?;
    Ok(json!(format!("regmesh {}", env!("CARGO_PKG_VERSION"))))
}

/// `core.uptime` → `{"now": ctime, "up_since": ctime, "uptime": seconds}`,
/// Kamailio's keys. Kamailio formats the times with `ctime(3)` in local
/// time; regmesh uses the same layout in UTC (`Thu Jan  1 00:00:00 1970`),
/// so the answer does not depend on the host's time zone.
pub(crate) fn uptime(ctx: &RpcContext, p: &Params<'_>) -> Result<Value, RpcError> {
    p.allow(0, &[])?;
    let now = ctx.location.clock().now();
    Ok(json!({
        "now": ctime(now),
        "up_since": ctime(ctx.started),
        "uptime": now.saturating_millis_since(ctx.started) / 1000,
    }))
}

/// `system.listMethods` → `["ul.dump", ...]`.
pub(crate) fn list_methods(
    p: &Params<'_>,
    names: impl Iterator<Item = &'static str>,
) -> Result<Value, RpcError> {
    p.allow(0, &[])?;
    Ok(Value::Array(names.map(Value::from).collect()))
}

/// `system.methodHelp method` → its help text.
pub(crate) fn method_help(
    p: &Params<'_>,
    doc: impl Fn(&str) -> Option<&'static str>,
) -> Result<Value, RpcError> {
    p.allow(1, &["method"])?;
    let name = p.string(0, "method")?;
    doc(&name).map(Value::from).ok_or(RpcError::InvalidParam {
        name: "method",
        expected: "must name a method of system.listMethods",
    })
}

/// `ctime(3)` layout in UTC, without the trailing newline:
/// `Www Mmm dd hh:mm:ss yyyy`, the day padded with a space.
pub(crate) fn ctime(t: Timestamp) -> String {
    let u = t.utc();
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        u.weekday_name(),
        u.month_name(),
        u.day,
        u.hour,
        u.minute,
        u.second,
        u.year
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_layout() {
        assert_eq!(ctime(Timestamp::ZERO), "Thu Jan  1 00:00:00 1970");
        // 2000-02-29 12:34:56 UTC (a leap day), a Tuesday.
        assert_eq!(
            ctime(Timestamp::from_secs(951_827_696)),
            "Tue Feb 29 12:34:56 2000"
        );
        // 2024-12-31 23:59:59 UTC, a Tuesday.
        assert_eq!(
            ctime(Timestamp::from_secs(1_735_689_599)),
            "Tue Dec 31 23:59:59 2024"
        );
    }
}
