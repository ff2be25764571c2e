//! Digest-auth subscribers: held in memory for lookups, written through the
//! same group-commit writer as bindings (table `subscribers`).

use crate::codec;
use parking_lot::RwLock;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// A digest-auth subscriber (HA1 hashes only, never a password).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subscriber {
    /// User part.
    pub user: String,
    /// Domain.
    pub domain: String,
    /// Realm the HA1s were computed with.
    pub realm: String,
    /// HA1 = MD5(user:realm:password), lowercase hex.
    pub ha1_md5: String,
    /// HA1 = SHA-256(user:realm:password), lowercase hex.
    pub ha1_sha256: String,
}

/// The in-memory subscriber map, keyed `user@domain` (the on-disk key).
///
/// A `parking_lot::RwLock`: lookups (one per authenticated REGISTER) far
/// outnumber provisioning writes, and no lock is held across an `.await`.
/// Entries are shared (`Arc`) so that a lookup on the REGISTER path hands
/// out a reference count, not a copy of five strings.
#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    map: RwLock<HashMap<String, Arc<Subscriber>>>,
}

/// Calls `f` with the subscriber key (`codec::subscriber_key`) built in a
/// buffer this thread reuses, so a lookup allocates nothing.
fn with_key<R>(user: &str, domain: &str, f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static KEY: RefCell<String> = const { RefCell::new(String::new()) };
    }
    KEY.with_borrow_mut(|key| {
        key.clear();
        codec::push_subscriber_key(key, user, domain);
        f(key)
    })
}

impl Subscribers {
    pub(crate) fn from_loaded(list: Vec<Subscriber>) -> Self {
        let map = list
            .into_iter()
            .map(|s| (codec::subscriber_key(&s.user, &s.domain), Arc::new(s)))
            .collect();
        Self {
            map: RwLock::new(map),
        }
    }

    /// Write access, held while the row write is queued so that disk order
    /// follows memory order.
    pub(crate) fn write(
        &self,
    ) -> parking_lot::RwLockWriteGuard<'_, HashMap<String, Arc<Subscriber>>> {
        self.map.write()
    }

    pub(crate) fn get(&self, user: &str, domain: &str) -> Option<Arc<Subscriber>> {
        with_key(user, domain, |key| self.map.read().get(key).cloned())
    }

    /// All subscribers sorted by (domain, user).
    pub(crate) fn all(&self) -> Vec<Arc<Subscriber>> {
        let mut v: Vec<Arc<Subscriber>> = self.map.read().values().cloned().collect();
        v.sort_by(|a, b| (&a.domain, &a.user).cmp(&(&b.domain, &b.user)));
        v
    }

    pub(crate) fn len(&self) -> usize {
        self.map.read().len()
    }
}
