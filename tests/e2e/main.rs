//! End-to-end tests: each test starts its own real `regmesh` process on
//! loopback (port 0 everywhere, its own data directory) through the harness
//! and drives it with SIPp, hand-made SIP, JSON-RPC and `regmesh ctl`.
//!
//! Build the binary first: `cargo build -p regmesh`. SIPp comes from
//! `scripts/install-deps.sh`.

mod auth;
mod bench;
mod durability;
mod ipv6;
mod malformed;
mod metrics;
mod overload;
mod rpc;
mod sip_register;
mod startup;
mod tcp;
mod tls;
