//! The in-memory store of prefix states: token vectors with an opaque KV snapshot each,
//! evicted least-recently-used first.
//!
//! Generic over the snapshot type so the bookkeeping is unit-tested without a model.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One stored prefix.
#[derive(Debug)]
pub(crate) struct StoredPrefix<T, S> {
    pub(crate) id: String,
    pub(crate) tokens: Vec<T>,
    pub(crate) state: S,
    used: u64,
}

/// A small LRU keyed by id, searched by token prefix. Linear scans: it holds a handful.
#[derive(Debug)]
pub(crate) struct PrefixStore<T, S> {
    entries: Vec<StoredPrefix<T, S>>,
    capacity: usize,
    clock: u64,
}

impl<T: PartialEq + Clone, S> PrefixStore<T, S> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Vec::new(),
            capacity,
            clock: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Whether `id` is stored; marks it used.
    pub(crate) fn touch(&mut self, id: &str) -> bool {
        let now = self.tick();
        match self.entries.iter_mut().find(|e| e.id == id) {
            Some(e) => {
                e.used = now;
                true
            }
            None => false,
        }
    }

    /// Stores a state, replacing one with the same id and evicting the least recently used
    /// beyond capacity.
    pub(crate) fn insert(&mut self, id: String, tokens: Vec<T>, state: S) {
        let used = self.tick();
        self.entries.retain(|e| e.id != id);
        self.entries.push(StoredPrefix {
            id,
            tokens,
            state,
            used,
        });
        while self.entries.len() > self.capacity {
            let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i)
            else {
                break;
            };
            self.entries.swap_remove(oldest);
        }
    }

    /// The longest stored prefix of `tokens` that is at most `max_len` tokens long; marks it
    /// used.
    pub(crate) fn longest_prefix_of(
        &mut self,
        tokens: &[T],
        max_len: usize,
    ) -> Option<&StoredPrefix<T, S>> {
        let now = self.tick();
        let best = self
            .entries
            .iter_mut()
            .filter(|e| {
                !e.tokens.is_empty() && e.tokens.len() <= max_len && tokens.starts_with(&e.tokens)
            })
            .max_by_key(|e| e.tokens.len())?;
        best.used = now;
        Some(best)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Stable id of a prefix: hex SHA-256 over the model fingerprint and the token ids, so a
/// state can never be applied to other weights or other tokens.
pub(crate) fn prefix_id(fingerprint: &str, token_ids: impl IntoIterator<Item = i32>) -> String {
    let mut h = Sha256::new();
    h.update(fingerprint.as_bytes());
    h.update([0]);
    for t in token_ids {
        h.update(t.to_le_bytes());
    }
    hex::encode(h.finalize())
}

/// Where a prefix state lives on disk.
pub(crate) fn state_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.state"))
}

/// A temporary name beside the final one; written first and renamed, so a half-written
/// file never carries the final name.
pub(crate) fn temp_state_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!(".{id}.state.tmp{}", std::process::id()))
}

/// The checksum file beside a state file.
///
/// llama.cpp's state loader trusts its input and aborts the process on a damaged file, so a
/// state file is handed to it only when its SHA-256 matches the one written beside it.
pub(crate) fn checksum_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Hex SHA-256 of a file's contents.
pub(crate) fn file_sha256(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Whether `state`'s checksum file exists and matches its contents.
pub(crate) fn checksum_matches(state: &Path) -> Result<(), String> {
    let expected = std::fs::read_to_string(checksum_path(state))
        .map_err(|e| format!("no readable checksum beside it ({e})"))?;
    let actual = file_sha256(state).map_err(|e| format!("cannot read it ({e})"))?;
    if expected.trim() == actual {
        Ok(())
    } else {
        Err("its checksum does not match (damaged or half-written)".into())
    }
}

/// Length of the common prefix of two slices.
pub(crate) fn common_prefix<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_matching_prefix_wins_and_respects_max_len() {
        let mut store: PrefixStore<i32, &str> = PrefixStore::new(4);
        store.insert("a".into(), vec![1, 2], "short");
        store.insert("b".into(), vec![1, 2, 3, 4], "long");
        store.insert("c".into(), vec![9], "other");
        let prompt = [1, 2, 3, 4, 5];
        assert_eq!(
            store.longest_prefix_of(&prompt, 10).map(|e| e.state),
            Some("long")
        );
        // The prompt must keep at least one token to evaluate.
        assert_eq!(
            store.longest_prefix_of(&prompt[..4], 3).map(|e| e.state),
            Some("short")
        );
        assert!(store.longest_prefix_of(&[7, 7], 10).is_none());
    }

    #[test]
    fn evicts_least_recently_used() {
        let mut store: PrefixStore<i32, u8> = PrefixStore::new(2);
        store.insert("a".into(), vec![1], 1);
        store.insert("b".into(), vec![2], 2);
        assert!(store.touch("a"));
        store.insert("c".into(), vec![3], 3);
        assert_eq!(store.len(), 2);
        assert!(store.touch("a"));
        assert!(!store.touch("b"));
        assert!(store.touch("c"));
        // Re-inserting an id replaces it instead of duplicating.
        store.insert("c".into(), vec![3], 4);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut store: PrefixStore<i32, u8> = PrefixStore::new(0);
        store.insert("a".into(), vec![1], 1);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn ids_depend_on_fingerprint_and_tokens() {
        let a = prefix_id("m1", [1, 2, 3]);
        assert_eq!(a.len(), 64);
        assert_eq!(a, prefix_id("m1", [1, 2, 3]));
        assert_ne!(a, prefix_id("m2", [1, 2, 3]));
        assert_ne!(a, prefix_id("m1", [1, 2]));
    }

    #[test]
    fn checksums_catch_damage() {
        let dir = std::env::temp_dir().join(format!("sleeptime-llama-ck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let state = state_path(&dir, "abc");
        std::fs::write(&state, b"some state bytes").expect("write");
        assert!(checksum_matches(&state).is_err(), "no checksum file yet");
        std::fs::write(checksum_path(&state), file_sha256(&state).expect("hash")).expect("write");
        assert_eq!(checksum_matches(&state), Ok(()));
        std::fs::write(&state, b"some state").expect("truncate");
        assert!(checksum_matches(&state).is_err());
        assert!(checksum_path(&state)
            .to_string_lossy()
            .ends_with("abc.state.sha256"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn common_prefix_length() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix::<i32>(&[], &[1]), 0);
        assert_eq!(common_prefix(&[1, 2], &[1, 2]), 2);
    }
}
