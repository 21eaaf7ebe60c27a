//! Locks on the operator's in-process memories.

use std::sync::{Mutex, MutexGuard};

/// The guard of `mutex`, poisoned or not. Every memory behind these locks is whole after each
/// statement that changes it (an insert, a removal, a swap), so a panic elsewhere while one
/// was held leaves nothing half-done, and must not stop every later turn.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_gives_its_value() {
        let memory = std::sync::Arc::new(Mutex::new(1));
        let held = memory.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.lock().unwrap();
            panic!("a panic while holding it");
        })
        .join();
        assert!(memory.is_poisoned());
        *lock(&memory) += 1;
        assert_eq!(*lock(&memory), 2);
    }
}
