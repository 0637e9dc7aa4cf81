//! Burn's random number generator belongs to the backend and is global to the process:
//! `Device::seed` followed by parameter initialisation (and any random op during training) draws
//! from one shared stream. Two runs in one process at the same time (test threads, a user's sweep
//! on several threads) would interleave their draws and silently lose bit-reproducibility. Every
//! run that seeds the device therefore holds [`exclusive`] from its seed to its end: such runs in
//! one process take turns instead. The prompt, PEFT and retrieval runs hold it too: the modules
//! they build and load may draw from it through lazy initialisers.

use std::sync::{Mutex, MutexGuard, PoisonError};

static DEVICE_RNG: Mutex<()> = Mutex::new(());

/// Holds the process's device generator until the guard is dropped. A run that panicked while
/// holding it leaves no state behind that matters (the next run seeds again), so poisoning is
/// ignored.
pub(crate) fn exclusive() -> MutexGuard<'static, ()> {
    DEVICE_RNG.lock().unwrap_or_else(PoisonError::into_inner)
}
