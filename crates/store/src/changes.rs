//! When a tenant's contacts last changed, as a generation number that only grows.
//!
//! Whatever is derived from a tenant's contacts (the API caches pages of its contact list) is
//! stored with the generation read *before* the data was, and is current while the generation
//! is unchanged. So a change must be announced *after* its transaction commits: announced
//! earlier, a reader could take the new generation, still read the old rows and keep them.
//!
//! Announcements come from two places:
//! - this process's writes: each store method (or engine step) that changes contacts calls
//!   [`contacts_changed`] after its commit, so a client reads its own writes at once;
//! - other processes' writes, on PostgreSQL: triggers on `contacts` and `contact_tags` send a
//!   `NOTIFY` on commit, and the change listener ([`crate::Db::change_listener`]) announces them
//!   here. SQLite serves from one process (as the auth cache assumes too).
//!
//! The state is process-wide on purpose: every `Db` handle of the process (tests run many)
//! shares it, so a write through any of them is seen by all; sharing can only make readers
//! drop entries that were still good, never keep one that is not. Readers should still bound
//! an entry's age, for writers that announce nothing (a command-line import into SQLite
//! beside a running server, a hand-written SQL statement).

use pinglayer_domain::TenantId;
use std::{
    collections::HashMap,
    sync::{
        LazyLock, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// The last generation handed out; each announcement takes the next one.
static LAST: AtomicU64 = AtomicU64::new(0);
/// Everything older than this changed (the listener lost its connection, say).
static FLOOR: AtomicU64 = AtomicU64::new(0);
static TENANTS: LazyLock<Mutex<HashMap<TenantId, u64>>> = LazyLock::new(Default::default);

/// The generation of `tenant`'s contacts: read it before reading the contacts.
pub fn contacts_generation(tenant: TenantId) -> u64 {
    let own = TENANTS
        .lock()
        .expect("change map poisoned")
        .get(&tenant)
        .copied()
        .unwrap_or(0);
    own.max(FLOOR.load(Ordering::Acquire))
}

/// `tenant`'s contacts changed (call after the commit).
pub fn contacts_changed(tenant: TenantId) {
    let mut map = TENANTS.lock().expect("change map poisoned");
    let g = LAST.fetch_add(1, Ordering::AcqRel) + 1;
    map.insert(tenant, g);
}

/// Any tenant's contacts may have changed.
pub fn all_contacts_changed() {
    let mut map = TENANTS.lock().expect("change map poisoned");
    let g = LAST.fetch_add(1, Ordering::AcqRel) + 1;
    FLOOR.store(g, Ordering::Release);
    // Entries below the floor say nothing any more.
    map.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_move_generations_forward() {
        let (a, b) = (TenantId::new(), TenantId::new());
        let a0 = contacts_generation(a);
        contacts_changed(a);
        let a1 = contacts_generation(a);
        assert!(a1 > a0);
        let b1 = contacts_generation(b);
        all_contacts_changed();
        assert!(contacts_generation(a) > a1);
        assert!(contacts_generation(b) > b1);
        let a2 = contacts_generation(a);
        contacts_changed(a);
        assert!(contacts_generation(a) > a2);
    }
}
