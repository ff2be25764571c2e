//! Small value conversions for binding fields: q-values, the methods
//! bitmask, `received` and `socket` strings, and contact URI comparison.

use crate::LocalSocket;
use regmesh_sip::{Source, Transport, Uri};
use std::net::{IpAddr, SocketAddr};

/// Allowed-method bits of [`regmesh_location::Binding::methods`].
///
/// The assignment is Kamailio's (`METHOD_INVITE` = 1 … `METHOD_PUBLISH` =
/// 8192) so a bitmask read from or written to a Kamailio `location` table,
/// or sent over its JSON-RPC, means the same thing. Methods outside this
/// table (Kamailio folds them into `METHOD_OTHER`) are ignored.
pub mod method_bits {
    /// INVITE
    pub const INVITE: u32 = 1;
    /// CANCEL
    pub const CANCEL: u32 = 1 << 1;
    /// ACK
    pub const ACK: u32 = 1 << 2;
    /// BYE
    pub const BYE: u32 = 1 << 3;
    /// INFO
    pub const INFO: u32 = 1 << 4;
    /// REGISTER
    pub const REGISTER: u32 = 1 << 5;
    /// SUBSCRIBE
    pub const SUBSCRIBE: u32 = 1 << 6;
    /// NOTIFY
    pub const NOTIFY: u32 = 1 << 7;
    /// MESSAGE
    pub const MESSAGE: u32 = 1 << 8;
    /// OPTIONS
    pub const OPTIONS: u32 = 1 << 9;
    /// PRACK
    pub const PRACK: u32 = 1 << 10;
    /// UPDATE
    pub const UPDATE: u32 = 1 << 11;
    /// REFER
    pub const REFER: u32 = 1 << 12;
    /// PUBLISH
    pub const PUBLISH: u32 = 1 << 13;

    /// Method tokens and their bits, in bit order.
    pub const TABLE: [(&str, u32); 14] = [
        ("INVITE", INVITE),
        ("CANCEL", CANCEL),
        ("ACK", ACK),
        ("BYE", BYE),
        ("INFO", INFO),
        ("REGISTER", REGISTER),
        ("SUBSCRIBE", SUBSCRIBE),
        ("NOTIFY", NOTIFY),
        ("MESSAGE", MESSAGE),
        ("OPTIONS", OPTIONS),
        ("PRACK", PRACK),
        ("UPDATE", UPDATE),
        ("REFER", REFER),
        ("PUBLISH", PUBLISH),
    ];
}

/// The bitmask of a comma-separated method list (an `Allow` value or a
/// `methods` feature parameter, RFC 3840 §9). Method names are
/// case-sensitive (RFC 3261 §7.1); unknown ones are ignored.
pub fn methods_mask<'a>(lists: impl IntoIterator<Item = &'a str>) -> u32 {
    lists
        .into_iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter_map(|m| {
            method_bits::TABLE
                .iter()
                .find(|(n, _)| *n == m)
                .map(|(_, b)| *b)
        })
        .fold(0, |acc, b| acc | b)
}

/// A q-value in thousandths as written on the wire (`1`, `0.5`, `0.725`).
pub fn format_q(q: u16) -> String {
    if q >= 1000 {
        return "1".to_owned();
    }
    if q == 0 {
        return "0".to_owned();
    }
    let frac = format!("{q:03}");
    format!("0.{}", frac.trim_end_matches('0'))
}

/// The lowercase transport name used in `transport=` and socket strings.
pub fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
    }
}

/// Append `ip:port` (IPv6 in brackets) to `out`.
fn push_host_port(out: &mut String, addr: SocketAddr) {
    use std::fmt::Write as _;
    let _ = match addr.ip() {
        IpAddr::V4(ip) => write!(out, "{ip}:{}", addr.port()),
        IpAddr::V6(ip) => write!(out, "[{ip}]:{}", addr.port()),
    };
}

/// The source of a request as Kamailio's `received`:
/// `sip:<ip>:<port>;transport=<udp|tcp|tls>` (RFC 3581: where the NAT
/// pinhole is; IPv6 in brackets, RFC 3261 §25.1 `IPv6reference`).
/// Written into one buffer: it is built for every REGISTER.
pub fn received(source: Source) -> String {
    let mut out = String::with_capacity(64);
    write_received(&mut out, source);
    out
}

/// [`received`] into `out` (cleared first; its buffer is reused: a refresh
/// rewrites the stored value).
pub fn write_received(out: &mut String, source: Source) {
    out.clear();
    out.push_str("sip:");
    push_host_port(out, source.addr);
    out.push_str(";transport=");
    out.push_str(transport_name(source.transport));
}

/// The local socket as Kamailio writes it: `<proto>:<ip>:<port>`.
pub fn socket(local: LocalSocket) -> String {
    let mut out = String::with_capacity(56);
    write_socket(&mut out, local);
    out
}

/// [`socket`] into `out` (cleared first, buffer reused).
pub fn write_socket(out: &mut String, local: LocalSocket) {
    out.clear();
    out.push_str(transport_name(local.transport));
    out.push(':');
    push_host_port(out, local.addr);
}

/// Parameters that must agree whenever either URI has them (RFC 3261 §19.1.4).
const MUST_MATCH: [&str; 5] = ["user", "ttl", "method", "maddr", "transport"];

/// Are two contact URIs the same binding? RFC 3261 §10.3 step 7 compares
/// them with the URI rules of §19.1.4: user part case-sensitive, everything
/// else case-insensitive, a missing port differs from an explicit 5060, the
/// `user`/`ttl`/`method`/`maddr`/`transport` parameters must agree when
/// either side has them, other parameters only when both do. URIs that do
/// not parse as SIP are compared as text, case-insensitively.
pub fn same_contact(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (Ok(ua), Ok(ub)) = (Uri::parse(a), Uri::parse(b)) else {
        return false;
    };
    if !ua.is_sip() || !ub.is_sip() {
        return a.eq_ignore_ascii_case(b);
    }
    if !ua.scheme.eq_ignore_ascii_case(ub.scheme)
        || ua.user != ub.user
        || !ua.host.eq_ignore_ascii_case(ub.host)
        || ua.port != ub.port
        || ua.headers != ub.headers
    {
        return false;
    }
    let value_eq = |x: Option<&str>, y: Option<&str>| match (x, y) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        (None, None) => true,
        _ => false,
    };
    for (name, va) in &ua.params {
        match ub.param(name) {
            Some(vb) if !value_eq(*va, vb) => return false,
            Some(_) => {}
            None if MUST_MATCH.iter().any(|m| m.eq_ignore_ascii_case(name)) => return false,
            None => {}
        }
    }
    ub.params.iter().all(|(name, _)| {
        ua.param(name).is_some() || !MUST_MATCH.iter().any(|m| m.eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_formatting() {
        assert_eq!(format_q(1000), "1");
        assert_eq!(format_q(500), "0.5");
        assert_eq!(format_q(725), "0.725");
        assert_eq!(format_q(50), "0.05");
        assert_eq!(format_q(1), "0.001");
        assert_eq!(format_q(0), "0");
    }

    #[test]
    fn methods_bitmask_is_kamailio_compatible() {
        assert_eq!(methods_mask(["INVITE, ACK,BYE"]), 1 | 4 | 8);
        assert_eq!(methods_mask(["INVITE", "PUBLISH,FOO", "invite"]), 1 | 8192);
        assert_eq!(methods_mask([""]), 0);
        let all = method_bits::TABLE
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(methods_mask([all.as_str()]), (1 << 14) - 1);
    }

    #[test]
    fn received_and_socket_strings() {
        let v4 = Source {
            transport: Transport::Udp,
            addr: "192.0.2.7:5062".parse().expect("addr"),
        };
        assert_eq!(received(v4), "sip:192.0.2.7:5062;transport=udp");
        let v6 = Source {
            transport: Transport::Tls,
            addr: "[2001:db8::1]:5061".parse().expect("addr"),
        };
        assert_eq!(received(v6), "sip:[2001:db8::1]:5061;transport=tls");
        let local = LocalSocket {
            transport: Transport::Tcp,
            addr: "[::1]:5060".parse().expect("addr"),
        };
        assert_eq!(socket(local), "tcp:[::1]:5060");
    }

    #[test]
    fn contact_comparison_follows_rfc3261_19_1_4() {
        assert!(same_contact(
            "sip:alice@Host.example.com:5060",
            "sip:alice@host.example.com:5060"
        ));
        assert!(!same_contact("sip:Alice@host", "sip:alice@host"));
        assert!(!same_contact("sip:alice@host", "sip:alice@host:5060"));
        assert!(same_contact(
            "sip:alice@host;transport=TCP",
            "sip:alice@host;transport=tcp"
        ));
        assert!(!same_contact(
            "sip:alice@host;transport=tcp",
            "sip:alice@host"
        ));
        assert!(!same_contact(
            "sip:alice@host",
            "sip:alice@host;transport=tcp"
        ));
        assert!(same_contact("sip:alice@host;ob", "sip:alice@host"));
        assert!(!same_contact(
            "sip:alice@host;foo=1",
            "sip:alice@host;foo=2"
        ));
        assert!(same_contact("tel:+1234", "TEL:+1234"));
        assert!(!same_contact("sip:alice@host", "sips:alice@host"));
    }
}
