//! The location store (Kamailio calls it usrloc): bindings, the AoR index, the
//! merge rule, expiry and durable persistence.
//!
//! CONTRACT (skeleton written by the integrator; the public items below are
//! used by `regmesh-registrar`, `regmesh-rpc` and `regmesh`).
#![warn(missing_docs)]

pub mod model;
pub mod clock;
pub mod store;

pub use clock::{Clock, SystemClock, Timestamp};
pub use model::*;
pub use store::{Commit, Location, LocationStats, StoreError, Subscriber};
