//! Configuration: strict TOML → validated [`Config`], before any port is bound.
//!
//! Three steps (STYLE.md §3): [`RawConfig`] is what serde reads, with
//! `deny_unknown_fields` on every table so a misspelt key stops the start
//! naming that key; [`RawConfig::validate`] applies the cross-field rules and
//! yields a [`Config`] whose values are already checked; `serve` builds the
//! components from it. Every key has an embedded default, so `regmesh serve`
//! with no file runs a node on loopback.

use regmesh_registrar::OverflowPolicy;
use regmesh_registrar::auth::Algorithm;
use regmesh_sip::Transport;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A configuration error: names the key and states the rule.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// TOML syntax error or unknown key (serde's message names the key).
    #[error(transparent)]
    Parse(#[from] toml::de::Error),
    /// A value breaks a rule.
    #[error("invalid value for `{key}`: {rule}")]
    Invalid {
        /// Dotted key, e.g. `sip.listen`.
        key: &'static str,
        /// The rule, stated for the operator.
        rule: String,
    },
}

fn invalid(key: &'static str, rule: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        rule: rule.into(),
    }
}

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawConfig {
    /// `[node]`
    pub(crate) node: RawNode,
    /// `[sip]`
    pub(crate) sip: RawSip,
    /// `[registrar]`
    pub(crate) registrar: RawRegistrar,
    /// `[auth]`
    pub(crate) auth: RawAuth,
    /// `[store]`
    pub(crate) store: RawStore,
    /// `[rpc]`
    pub(crate) rpc: RawRpc,
    /// `[log]`
    pub(crate) log: RawLog,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawStore {
    /// Group commits start at most this often, e.g. `"500us"`; `"0ms"`
    /// commits as soon as the previous fsync is done.
    pub(crate) commit_interval: String,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            commit_interval: format!("{}us", regmesh_location::store::COMMIT_INTERVAL.as_micros()),
        }
    }
}

/// `[node]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawNode {
    /// Node id, unique in a cluster (Kamailio's `server_id`).
    pub(crate) id: u32,
    /// Where the database and the UNIX socket live.
    pub(crate) data_dir: PathBuf,
}

impl Default for RawNode {
    fn default() -> Self {
        Self {
            id: 1,
            data_dir: PathBuf::from("./regmesh-data"),
        }
    }
}

/// `[sip]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawSip {
    /// `"udp:127.0.0.1:5060"`, `"tcp:[::1]:5060"`, `"tls:0.0.0.0:5061"`.
    pub(crate) listen: Vec<String>,
    /// Largest datagram or stream message accepted, bytes.
    pub(crate) max_message_size: usize,
    /// Concurrent TCP/TLS connections accepted per listener.
    pub(crate) max_connections: usize,
    /// A TCP/TLS connection idle this long is closed, e.g. `"300s"`.
    pub(crate) idle_timeout: String,
    /// UDP overload: a queue delay above this for a whole
    /// [`crate::sip_udp::OVERLOAD_INTERVAL`] counts as overload, as kernel
    /// drops do; while overloaded a growing share of new REGISTERs that
    /// would be challenged gets 503 with Retry-After. `"0ms"` = never
    /// refuse anything.
    pub(crate) overload_queue_delay: String,
    /// Receive threads per UDP socket; 0 = one per two cores (at least one).
    pub(crate) udp_threads: usize,
    /// Threads per UDP socket that sleep until the receive threads fall
    /// behind (a full batch), then help drain the backlog; 0 = none.
    pub(crate) udp_standby_threads: usize,
    /// After a batch of more than one datagram, a receive thread waits this
    /// long before it reads again, so that what arrives meanwhile is
    /// handled (and committed) together; `"0us"` = read again at once.
    pub(crate) udp_receive_pause: String,
    /// `[sip.tls]`, needed when a `tls:` listener is configured.
    pub(crate) tls: Option<RawTls>,
}

impl Default for RawSip {
    fn default() -> Self {
        Self {
            listen: vec!["udp:127.0.0.1:5060".into(), "tcp:127.0.0.1:5060".into()],
            max_message_size: 65_535,
            max_connections: 4096,
            idle_timeout: "300s".into(),
            overload_queue_delay: "50ms".into(),
            udp_threads: 0,
            udp_standby_threads: 1,
            udp_receive_pause: format!("{}us", crate::sip_udp::RECEIVE_PAUSE.as_micros()),
            tls: None,
        }
    }
}

/// `[sip.tls]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    /// PEM certificate chain.
    pub(crate) cert: PathBuf,
    /// PEM private key.
    pub(crate) key: PathBuf,
}

/// `[registrar]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawRegistrar {
    /// Seconds, when the REGISTER gives no expiry.
    pub(crate) default_expires: u32,
    /// Seconds; shorter non-zero expiries get 423.
    pub(crate) min_expires: u32,
    /// Seconds; longer expiries are clamped (0 = no limit).
    pub(crate) max_expires: u32,
    /// Bindings per AoR (0 = no limit).
    pub(crate) max_contacts: u32,
    /// `"reject"` (403) or `"replace-oldest"`.
    pub(crate) overflow: String,
}

impl Default for RawRegistrar {
    fn default() -> Self {
        Self {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 86_400,
            max_contacts: 0,
            overflow: "reject".into(),
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAuth {
    /// Require digest authentication for REGISTER.
    pub(crate) enabled: bool,
    /// Realm in challenges (default: the AoR's domain).
    pub(crate) realm: Option<String>,
    /// Secret that signs nonces; the same on every node of a cluster.
    pub(crate) secret: Option<String>,
    /// Nonce lifetime, e.g. `"300s"`.
    pub(crate) nonce_ttl: String,
    /// The authenticated user must be the AoR's user and domain.
    pub(crate) match_aor: bool,
    /// Digest algorithms offered, in order (`"MD5"`, `"SHA-256"`).
    pub(crate) algorithms: Vec<String>,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            enabled: false,
            realm: None,
            secret: None,
            nonce_ttl: "300s".into(),
            match_aor: true,
            algorithms: vec!["MD5".into(), "SHA-256".into()],
        }
    }
}

/// `[rpc]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawRpc {
    /// HTTP listener for `POST /RPC`, `/metrics`, `/health`; `""` disables it.
    pub(crate) listen: String,
    /// UNIX socket path, relative to `node.data_dir`; `""` disables it.
    pub(crate) socket: String,
    /// Bearer token; required when `listen` is not a loopback address.
    pub(crate) token: Option<String>,
}

impl Default for RawRpc {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9060".into(),
            socket: "regmesh.sock".into(),
            token: None,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawLog {
    /// `error`, `warn`, `info`, `debug`, `trace` (or a tracing filter directive).
    pub(crate) level: String,
    /// `"text"` or `"json"`.
    pub(crate) format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// One SIP listen address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listen {
    /// Transport.
    pub(crate) transport: Transport,
    /// Address (port 0 picks a free port).
    pub(crate) addr: SocketAddr,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Node id.
    pub(crate) node_id: u32,
    /// Data directory.
    pub(crate) data_dir: PathBuf,
    /// SIP listeners.
    pub(crate) listen: Vec<Listen>,
    /// Message size limit.
    pub(crate) max_message_size: usize,
    /// Connection cap per stream listener.
    pub(crate) max_connections: usize,
    /// Idle timeout for stream connections.
    pub(crate) idle_timeout: Duration,
    /// UDP overload threshold (None = never shed).
    pub(crate) overload_queue_delay: Option<Duration>,
    /// Receive threads per UDP socket (resolved: at least 1).
    pub(crate) udp_threads: usize,
    /// Standby receive threads per UDP socket.
    pub(crate) udp_standby_threads: usize,
    /// Pause after a batch of more than one datagram (zero: none).
    pub(crate) udp_receive_pause: Duration,
    /// TLS files, when a `tls:` listener exists.
    pub(crate) tls: Option<RawTls>,
    /// Registrar policy.
    pub(crate) policy: regmesh_registrar::Policy,
    /// Auth.
    pub(crate) auth: regmesh_registrar::AuthConfig,
    /// Location store tuning.
    pub(crate) store: regmesh_location::store::StoreOptions,
    /// RPC HTTP listener.
    pub(crate) rpc_listen: Option<SocketAddr>,
    /// UNIX socket path (absolute or relative to the working directory).
    pub(crate) rpc_socket: Option<PathBuf>,
    /// Bearer token.
    pub(crate) rpc_token: Option<String>,
    /// Log filter.
    pub(crate) log_level: String,
    /// Log format.
    pub(crate) log_format: LogFormat,
    /// The raw form, for `--check-config` output.
    pub(crate) raw: RawConfig,
}

impl RawConfig {
    /// The only parsing entry point.
    pub(crate) fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    /// Apply the cross-field rules.
    pub(crate) fn validate(self) -> Result<Config, ConfigError> {
        if self.node.id == 0 {
            return Err(invalid("node.id", "must be a positive integer"));
        }
        if self.node.data_dir.as_os_str().is_empty() {
            return Err(invalid("node.data_dir", "must not be empty"));
        }
        if self.sip.listen.is_empty() {
            return Err(invalid(
                "sip.listen",
                "at least one listen address is needed",
            ));
        }
        let mut listen = Vec::new();
        for l in &self.sip.listen {
            let parsed = parse_listen(l).ok_or_else(|| {
                invalid(
                    "sip.listen",
                    format!("`{l}` is not `udp:IP:PORT`, `tcp:IP:PORT` or `tls:IP:PORT`"),
                )
            })?;
            if listen.contains(&parsed) {
                return Err(invalid("sip.listen", format!("`{l}` is listed twice")));
            }
            listen.push(parsed);
        }
        if listen.iter().any(|l| l.transport == Transport::Tls) && self.sip.tls.is_none() {
            return Err(invalid(
                "sip.tls",
                "a `tls:` listener needs [sip.tls] with `cert` and `key`",
            ));
        }
        if !(512..=1_048_576).contains(&self.sip.max_message_size) {
            return Err(invalid(
                "sip.max_message_size",
                "must be between 512 and 1048576 bytes",
            ));
        }
        if self.sip.max_connections == 0 {
            return Err(invalid("sip.max_connections", "must be at least 1"));
        }
        let idle_timeout = parse_duration(&self.sip.idle_timeout)
            .filter(|d| d.as_secs() >= 1)
            .ok_or_else(|| {
                invalid(
                    "sip.idle_timeout",
                    "a duration of at least 1s, such as \"300s\" or \"5m\"",
                )
            })?;

        let overload_queue_delay = parse_duration(&self.sip.overload_queue_delay)
            .filter(|d| *d <= Duration::from_secs(10))
            .ok_or_else(|| {
                invalid(
                    "sip.overload_queue_delay",
                    "a duration from 0ms (never refuse for overload) to 10s, such as \"50ms\"",
                )
            })?;
        let overload_queue_delay =
            (!overload_queue_delay.is_zero()).then_some(overload_queue_delay);
        if self.sip.udp_threads > 64 {
            return Err(invalid(
                "sip.udp_threads",
                "must be from 0 (one per two cores) to 64",
            ));
        }
        if self.sip.udp_standby_threads > 64 {
            return Err(invalid("sip.udp_standby_threads", "must be from 0 to 64"));
        }
        let udp_receive_pause = parse_duration(&self.sip.udp_receive_pause)
            .filter(|d| *d <= crate::sip_udp::MAX_RECEIVE_PAUSE)
            .ok_or_else(|| {
                invalid(
                    "sip.udp_receive_pause",
                    "a duration from 0us (read again at once) to 1ms, such as \"200us\"",
                )
            })?;
        let udp_threads = match self.sip.udp_threads {
            0 => crate::sip_udp::default_receive_threads(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            n => n,
        };

        let r = &self.registrar;
        if r.default_expires == 0 {
            return Err(invalid(
                "registrar.default_expires",
                "must be at least 1 second",
            ));
        }
        if r.default_expires < r.min_expires {
            return Err(invalid(
                "registrar.default_expires",
                "must not be below registrar.min_expires",
            ));
        }
        if r.max_expires != 0 && r.max_expires < r.min_expires {
            return Err(invalid(
                "registrar.max_expires",
                "must be 0 (no limit) or at least registrar.min_expires",
            ));
        }
        let overflow = match r.overflow.as_str() {
            "reject" => OverflowPolicy::Reject,
            "replace-oldest" => OverflowPolicy::ReplaceOldest,
            _ => {
                return Err(invalid(
                    "registrar.overflow",
                    "must be \"reject\" or \"replace-oldest\"",
                ));
            }
        };
        let policy = regmesh_registrar::Policy {
            default_expires: r.default_expires,
            min_expires: r.min_expires,
            max_expires: r.max_expires,
            max_contacts: r.max_contacts,
            overflow,
        };

        let a = &self.auth;
        let secret = match (&a.secret, a.enabled) {
            (Some(s), _) if s.len() < 16 => {
                return Err(invalid("auth.secret", "must be at least 16 characters"));
            }
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, true) => {
                return Err(invalid(
                    "auth.secret",
                    "is required when auth.enabled = true (it signs nonces; use the same on every node)",
                ));
            }
            // Auth off and no secret: nonces are never issued; a random
            // secret keeps the type total without a magic value.
            (None, false) => rand::random::<[u8; 32]>().to_vec(),
        };
        if let Some(realm) = &a.realm
            && (realm.is_empty() || realm.contains('"'))
        {
            return Err(invalid(
                "auth.realm",
                "must be non-empty and contain no quote",
            ));
        }
        let nonce_ttl = parse_duration(&a.nonce_ttl)
            .filter(|d| d.as_secs() >= 1)
            .ok_or_else(|| {
                invalid(
                    "auth.nonce_ttl",
                    "a duration of at least 1s, such as \"300s\"",
                )
            })?;
        let mut algorithms = Vec::new();
        for name in &a.algorithms {
            let alg = Algorithm::from_param(Some(name)).ok_or_else(|| {
                invalid(
                    "auth.algorithms",
                    format!("`{name}`: use \"MD5\" or \"SHA-256\""),
                )
            })?;
            if algorithms.contains(&alg) {
                return Err(invalid(
                    "auth.algorithms",
                    format!("`{name}` is listed twice"),
                ));
            }
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            return Err(invalid("auth.algorithms", "list at least one algorithm"));
        }
        let auth = regmesh_registrar::AuthConfig {
            enabled: a.enabled,
            realm: a.realm.clone(),
            secret,
            nonce_ttl: u32::try_from(nonce_ttl.as_secs()).unwrap_or(u32::MAX),
            match_aor: a.match_aor,
            algorithms,
        };

        let commit_interval = parse_duration(&self.store.commit_interval)
            .filter(|d| *d <= Duration::from_millis(100))
            .ok_or_else(|| {
                invalid(
                    "store.commit_interval",
                    "a duration from 0us to 100ms, such as \"500us\" (every REGISTER may wait this long)",
                )
            })?;
        let store = regmesh_location::store::StoreOptions {
            commit_interval,
            ..Default::default()
        };

        let rpc_listen = if self.rpc.listen.is_empty() {
            None
        } else {
            Some(self.rpc.listen.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "rpc.listen",
                    "must be IP:PORT (e.g. \"127.0.0.1:9060\") or \"\"",
                )
            })?)
        };
        if let Some(t) = &self.rpc.token
            && t.len() < 16
        {
            return Err(invalid("rpc.token", "must be at least 16 characters"));
        }
        if let Some(addr) = rpc_listen
            && !addr.ip().is_loopback()
            && self.rpc.token.is_none()
        {
            return Err(invalid(
                "rpc.token",
                format!("is required because rpc.listen {addr} is not a loopback address"),
            ));
        }
        let rpc_socket = if self.rpc.socket.is_empty() {
            None
        } else {
            Some(self.node.data_dir.join(&self.rpc.socket))
        };
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid(
                "log.level",
                "a level (error, warn, info, debug, trace) or a tracing filter such as \"info,regmesh=debug\"",
            ));
        }
        let log_format = match self.log.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err(invalid("log.format", "must be \"text\" or \"json\"")),
        };
        Ok(Config {
            node_id: self.node.id,
            data_dir: self.node.data_dir.clone(),
            listen,
            max_message_size: self.sip.max_message_size,
            max_connections: self.sip.max_connections,
            idle_timeout,
            overload_queue_delay,
            udp_threads,
            udp_standby_threads: self.sip.udp_standby_threads,
            udp_receive_pause,
            tls: self.sip.tls.clone(),
            policy,
            auth,
            store,
            rpc_listen,
            rpc_socket,
            rpc_token: self.rpc.token.clone(),
            log_level: self.log.level.clone(),
            log_format,
            raw: self,
        })
    }
}

impl Config {
    /// The effective configuration as TOML for `--check-config`, with
    /// secrets (`auth.secret`, `rpc.token`) replaced by `"<redacted>"`.
    pub(crate) fn effective_toml(&self) -> Result<String, toml::ser::Error> {
        let mut raw = self.raw.clone();
        let hide = |v: &mut Option<String>| {
            if v.is_some() {
                *v = Some("<redacted>".into());
            }
        };
        hide(&mut raw.auth.secret);
        hide(&mut raw.rpc.token);
        toml::to_string_pretty(&raw)
    }
}

/// `udp:127.0.0.1:5060`, `tcp:[::1]:5060`, `tls:0.0.0.0:5061`.
fn parse_listen(s: &str) -> Option<Listen> {
    let (proto, addr) = s.split_once(':')?;
    let transport = match proto.to_ascii_lowercase().as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        _ => return None,
    };
    Some(Listen {
        transport,
        addr: addr.parse().ok()?,
    })
}

/// `"300s"`, `"5m"`, `"1h"`, `"250ms"`, `"500us"`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit {
        "us" => Some(Duration::from_micros(n)),
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
