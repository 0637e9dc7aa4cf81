//! [`AtomicCheckpointer`]: burn-train checkpoints (model, optimiser and learning-rate scheduler
//! records as burnpack bytes) written atomically, so a run killed while saving never leaves a
//! torn file behind; and [`last_complete_epoch`], the epoch a resumed run continues from: the
//! latest one whose three records all exist.

use std::path::{Path, PathBuf};

use burn::train::checkpoint::{Checkpoint, Checkpointer, CheckpointerError};

use crate::atomic::write_atomic;

/// The three record kinds burn-train saves per epoch.
pub const RECORD_KINDS: [&str; 3] = ["model", "optim", "scheduler"];

/// Saves `<dir>/<name>-<epoch>.bpk` atomically.
#[derive(Debug, Clone)]
pub struct AtomicCheckpointer {
    dir: PathBuf,
    name: String,
}

impl AtomicCheckpointer {
    /// Checkpoints of kind `name` (`model`, `optim`, `scheduler`) in `dir`.
    pub fn new(dir: impl Into<PathBuf>, name: &str) -> Self {
        Self {
            dir: dir.into(),
            name: name.to_owned(),
        }
    }

    fn path(&self, epoch: usize) -> PathBuf {
        checkpoint_path(&self.dir, &self.name, epoch)
    }
}

/// `<dir>/<name>-<epoch>.bpk`.
pub fn checkpoint_path(dir: &Path, name: &str, epoch: usize) -> PathBuf {
    dir.join(format!("{name}-{epoch}.bpk"))
}

impl<R: Checkpoint> Checkpointer<R> for AtomicCheckpointer {
    fn save(&self, epoch: usize, record: R) -> Result<(), CheckpointerError> {
        let bytes = record
            .checkpoint_into_bytes()
            .map_err(CheckpointerError::Record)?;
        write_atomic(&self.path(epoch), &bytes)
            .map_err(|e| CheckpointerError::Unknown(e.to_string()))
    }

    fn delete(&self, epoch: usize) -> Result<(), CheckpointerError> {
        let path = self.path(epoch);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CheckpointerError::IOError(e)),
        }
    }

    fn restore(&self, epoch: usize) -> Result<R, CheckpointerError> {
        let path = self.path(epoch);
        let bytes = std::fs::read(&path).map_err(CheckpointerError::IOError)?;
        R::checkpoint_from_bytes(burn_std::Bytes::from_bytes_vec(bytes))
            .map_err(CheckpointerError::Record)
    }
}

/// The latest epoch with a model, optimiser and scheduler checkpoint in `dir`, if any.
pub fn last_complete_epoch(dir: &Path) -> Option<usize> {
    last_complete_epoch_of(dir, &RECORD_KINDS)
}

/// The latest epoch with a checkpoint of every one of `kinds` in `dir` (the first kind's files
/// list the candidate epochs), if any.
pub fn last_complete_epoch_of(dir: &Path, kinds: &[&str]) -> Option<usize> {
    let first = format!("{}-", kinds.first()?);
    let entries = std::fs::read_dir(dir).ok()?;
    let mut epochs: Vec<usize> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let epoch = name.strip_prefix(&first)?.strip_suffix(".bpk")?;
            epoch.parse().ok()
        })
        .collect();
    epochs.sort_unstable();
    epochs.into_iter().rev().find(|&epoch| {
        kinds
            .iter()
            .all(|kind| checkpoint_path(dir, kind, epoch).is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_complete_epoch_skips_an_epoch_missing_a_record() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last_complete_epoch(dir.path()), None);
        for kind in RECORD_KINDS {
            std::fs::write(checkpoint_path(dir.path(), kind, 3), b"x").unwrap();
        }
        // Epoch 4 was killed after the model record.
        std::fs::write(checkpoint_path(dir.path(), "model", 4), b"x").unwrap();
        assert_eq!(last_complete_epoch(dir.path()), Some(3));
    }
}
