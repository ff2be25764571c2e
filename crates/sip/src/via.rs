//! The Via header (RFC 3261 §20.42, §25.1).
//!
//! `via-parm = sent-protocol LWS sent-by *( SEMI via-params )` with
//! `sent-protocol = protocol-name SLASH protocol-version SLASH transport`;
//! SLASH and SEMI allow whitespace around them (RFC 4475 §3.1.1.1).

use crate::ParseError;
use crate::syntax::{find_param, is_token_byte, is_wsp, parse_generic_params, trim_wsp_start};

/// One Via value (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    /// Transport token (`UDP`, `TCP`, `TLS`, ...), as written.
    pub transport: &'a str,
    /// sent-by host.
    pub host: &'a str,
    /// sent-by port.
    pub port: Option<u16>,
    /// Parameters (`branch`, `rport`, `received`, ...).
    pub params: Vec<(&'a str, Option<&'a str>)>,
}

const BAD: ParseError = ParseError::Malformed {
    what: "Via",
    offset: 0,
};

impl<'a> Via<'a> {
    /// Parse one via-parm (a single comma-separated element of a Via field).
    /// Only `SIP/2.0` is accepted as sent-protocol.
    pub fn parse(text: &'a str) -> Result<Self, ParseError> {
        let (name, rest) = token(text)?;
        let rest = slash(rest)?;
        let (version, rest) = token(rest)?;
        let rest = slash(rest)?;
        let (transport, rest) = token(rest)?;
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return Err(BAD);
        }
        // LWS between sent-protocol and sent-by is mandatory.
        if !rest.as_bytes().first().is_some_and(|&c| is_wsp(c)) {
            return Err(BAD);
        }
        let rest = trim_wsp_start(rest);
        let b = rest.as_bytes();
        let host_len = if b.first() == Some(&b'[') {
            memchr::memchr(b']', b).ok_or(BAD)? + 1
        } else {
            b.iter()
                .take_while(|&&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
                .count()
        };
        if host_len == 0 {
            return Err(BAD);
        }
        let host = &rest[..host_len];
        let mut rest = &rest[host_len..];
        let mut port = None;
        if let Some(after) = trim_wsp_start(rest).strip_prefix(':') {
            let after = trim_wsp_start(after);
            let n = after.bytes().take_while(u8::is_ascii_digit).count();
            port = Some(after[..n].parse::<u16>().map_err(|_| BAD)?);
            rest = &after[n..];
        }
        let params = parse_generic_params(rest).ok_or(BAD)?;
        Ok(Self {
            transport,
            host,
            port,
            params,
        })
    }

    /// Parameter value (case-insensitive name); `Some(None)` for a flag such as `;rport`.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(&self.params, name)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.param("branch").flatten()
    }
}

fn token(s: &str) -> Result<(&str, &str), ParseError> {
    let s = trim_wsp_start(s);
    let n = s.bytes().take_while(|&c| is_token_byte(c)).count();
    if n == 0 {
        return Err(BAD);
    }
    Ok((&s[..n], &s[n..]))
}

fn slash(s: &str) -> Result<&str, ParseError> {
    trim_wsp_start(s).strip_prefix('/').ok_or(BAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        let v = Via::parse("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;rport")
            .expect("valid");
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "pc33.atlanta.com");
        assert_eq!(v.port, Some(5066));
        assert_eq!(v.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(v.param("RPORT"), Some(None));
    }

    #[test]
    fn tortuous_whitespace() {
        // RFC 4475 §3.1.1.1, after unfolding
        let v = Via::parse("SIP  /   2.0 /UDP     192.0.2.2;branch=390skdjuw").expect("valid");
        assert_eq!((v.transport, v.host), ("UDP", "192.0.2.2"));
        let v =
            Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8")
                .expect("valid");
        assert_eq!((v.transport, v.host), ("TCP", "spindle.example.com"));
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
    }

    #[test]
    fn ipv6_sent_by_and_received() {
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9:1]:6050;received=[2001:db8::9:255];branch=x")
            .expect("valid");
        assert_eq!(v.host, "[2001:db8::9:1]");
        assert_eq!(v.port, Some(6050));
        assert_eq!(v.param("received"), Some(Some("[2001:db8::9:255]")));
    }

    #[test]
    fn rejects() {
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/7.0/UDP c.example.com",
            "SIP/2.0/UDP",
            "SIP/2.0/UDPhost",
            "SIP/2.0 UDP host",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host:",
            "SIP/2.0/UDP host junk",
            "",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad:?}");
        }
    }
}
