//! Keys already denied, remembered locally until their `retry_after`.

use dashmap::DashMap;

/// Local memory of denials: a key Redis denied stays denied here until its retry time, so an
/// abusive hot key costs no Redis round trip while it is blocked.
///
/// Safe because a denial does not change the key's Redis state: every algorithm's retry time
/// only moves later with more traffic, never earlier, so answering "denied" locally until then
/// is what Redis would have answered.
#[derive(Debug)]
pub(crate) struct DenyCache {
    /// key → clock µs until which it is denied.
    until: DashMap<String, u64>,
    /// Entries kept at most; beyond it expired entries are purged, then new ones skipped.
    capacity: usize,
}

impl DenyCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            until: DashMap::new(),
            capacity,
        }
    }

    /// µs remaining on `key`'s denial, if it is still denied at `now`.
    pub(crate) fn remaining(&self, key: &str, now: u64) -> Option<u64> {
        let until = *self.until.get(key)?;
        if now < until {
            return Some(until - now);
        }
        self.until.remove_if(key, |_, &u| u <= now);
        None
    }

    /// Remembers that `key` is denied until `until`.
    pub(crate) fn insert(&self, key: &str, until: u64, now: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.until.len() >= self.capacity {
            self.until.retain(|_, &mut u| u > now);
            if self.until.len() >= self.capacity {
                return;
            }
        }
        self.until.insert(key.to_owned(), until);
    }
}
