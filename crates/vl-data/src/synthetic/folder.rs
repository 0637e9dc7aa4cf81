//! Writing a slice of the synthetic world to disk as an image folder plus a captions file, so the
//! same data feeds the ordinary image-folder and caption loaders.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::task::Task;
use super::world::{Split, SyntheticWorld};
use crate::{Error, Result};

/// What [`SyntheticWorld::write_image_folder`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFolderSummary {
    /// The folder.
    pub dir: PathBuf,
    /// The task's class names; `dir/<class name>/` exists for each, possibly empty.
    pub class_names: Vec<String>,
    /// `(index, label)` of every image written, in index order.
    pub items: Vec<(u64, usize)>,
}

fn io_error(path: &Path, source: io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        source,
    }
}

impl SyntheticWorld {
    /// Writes the first `n` labelled images of `split` for `task` (see
    /// [`SyntheticWorld::classification_set`]) as `dir/<class name>/<index:08>.png`, one folder
    /// per class (all classes, even empty ones), plus `dir/captions.jsonl` with one
    /// `{"path": "<class name>/<index:08>.png", "caption": "..."}` line per image, in index order.
    /// Class folder names are [`SyntheticWorld::class_names`] as is (they may contain spaces);
    /// an image-folder loader that sorts folder names gets alphabetical, not config, label order.
    ///
    /// Everything is first written to a sibling temporary folder `.<name>.partial-<pid>`, which is
    /// then renamed to `dir`, so `dir` never holds a partial result. Fails, writing nothing,
    /// when `dir` exists and is not an empty folder (an empty folder is replaced).
    pub fn write_image_folder(
        &self,
        dir: impl AsRef<Path>,
        task: Task,
        split: Split,
        n: usize,
    ) -> Result<ImageFolderSummary> {
        let dir = dir.as_ref();
        if dir.exists() {
            let empty = fs::read_dir(dir)
                .map_err(|e| io_error(dir, e))?
                .next()
                .is_none();
            if !empty {
                let message = "refusing to overwrite: the folder exists and is not empty";
                return Err(io_error(
                    dir,
                    io::Error::new(io::ErrorKind::AlreadyExists, message),
                ));
            }
        }
        let name = dir.file_name().ok_or_else(|| {
            io_error(
                dir,
                io::Error::new(io::ErrorKind::InvalidInput, "no folder name"),
            )
        })?;
        let tmp = dir.with_file_name(format!(
            ".{}.partial-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let result = self.write_into(&tmp, task, split, n);
        let items = match result {
            Ok(items) => items,
            Err(error) => {
                // Best effort: the error that matters is the one that stopped the writing.
                let _ = fs::remove_dir_all(&tmp);
                return Err(error);
            }
        };
        if dir.exists() {
            fs::remove_dir(dir).map_err(|e| io_error(dir, e))?;
        }
        if let Err(e) = fs::rename(&tmp, dir) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(io_error(dir, e));
        }
        Ok(ImageFolderSummary {
            dir: dir.to_owned(),
            class_names: self.class_names(task),
            items,
        })
    }

    fn write_into(
        &self,
        tmp: &Path,
        task: Task,
        split: Split,
        n: usize,
    ) -> Result<Vec<(u64, usize)>> {
        let items = self.classification_set(task, split, n)?;
        let class_names = self.class_names(task);
        if tmp.exists() {
            fs::remove_dir_all(tmp).map_err(|e| io_error(tmp, e))?;
        }
        for class in &class_names {
            let class_dir = tmp.join(class);
            fs::create_dir_all(&class_dir).map_err(|e| io_error(&class_dir, e))?;
        }
        let captions_path = tmp.join("captions.jsonl");
        let file = fs::File::create(&captions_path).map_err(|e| io_error(&captions_path, e))?;
        let mut captions = io::BufWriter::new(file);
        for &(index, label) in &items {
            let sample = self.sample_in(split, index);
            let relative = format!("{}/{index:08}.png", class_names[label]);
            let path = tmp.join(&relative);
            sample
                .image
                .save_with_format(&path, image::ImageFormat::Png)
                .map_err(|e| io_error(&path, io::Error::other(e)))?;
            let line = serde_json::json!({ "path": relative, "caption": sample.caption });
            writeln!(captions, "{line}").map_err(|e| io_error(&captions_path, e))?;
        }
        captions.flush().map_err(|e| io_error(&captions_path, e))?;
        Ok(items)
    }
}
