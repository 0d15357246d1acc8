//! Locks striped by key (an email, a phone, a conversation id): work on one key runs one at
//! a time within a process, without a lock per key ever being allocated or freed.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

/// 64 mutexes; a key always maps to the same one (case-insensitively).
pub struct StripedLocks {
    stripes: Vec<Mutex<()>>,
}

impl Default for StripedLocks {
    fn default() -> Self {
        Self {
            stripes: (0..64).map(|_| Mutex::new(())).collect(),
        }
    }
}

impl StripedLocks {
    /// Holds the stripes of every key given (in index order, so two holders never wait on
    /// each other crosswise).
    pub async fn hold(&self, keys: &[&str]) -> Vec<MutexGuard<'_, ()>> {
        let mut indexes: Vec<usize> = keys
            .iter()
            .map(|key| {
                let mut hasher = DefaultHasher::new();
                key.to_ascii_lowercase().hash(&mut hasher);
                (hasher.finish() % self.stripes.len() as u64) as usize
            })
            .collect();
        indexes.sort_unstable();
        indexes.dedup();
        let mut guards = Vec::with_capacity(indexes.len());
        for index in indexes {
            guards.push(self.stripes[index].lock().await);
        }
        guards
    }
}
