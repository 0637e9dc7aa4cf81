//! Atomic file writes shared by everything in this crate that writes a file ([`Manifest`],
//! trained tokenizers): the bytes go to a temporary file in the destination's folder, are synced,
//! and are then renamed (or hard-linked, when overwriting is refused) into place, so the
//! destination never holds a partial file.
//!
//! [`Manifest`]: crate::Manifest

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Whether a write may replace an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// An existing file is an [`Error::AlreadyExists`]. The default.
    #[default]
    Refuse,
    /// An existing file is replaced (atomically).
    Allow,
}

/// Distinguishes temporary files of concurrent writes from one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically; with [`Overwrite::Refuse`] an existing file is left alone
/// and reported as [`Error::AlreadyExists`].
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: Overwrite) -> Result<()> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    if overwrite == Overwrite::Refuse && path.exists() {
        return Err(Error::AlreadyExists {
            path: path.to_path_buf(),
        });
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&temp).map_err(io_error(&temp))?;
        file.write_all(bytes).map_err(io_error(&temp))?;
        file.sync_all().map_err(io_error(&temp))?;
        drop(file);
        match overwrite {
            Overwrite::Allow => std::fs::rename(&temp, path).map_err(io_error(path)),
            // A hard link fails if the destination exists, so a file created since the check
            // above is not replaced either.
            Overwrite::Refuse => match std::fs::hard_link(&temp, path) {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(Error::AlreadyExists {
                        path: path.to_path_buf(),
                    })
                }
                Err(error) => Err(Error::Io {
                    path: path.to_path_buf(),
                    source: error,
                }),
            },
        }
    })();
    // The temporary file is gone after a rename; after a link (or a failure) remove it.
    let _ = std::fs::remove_file(&temp);
    result
}
