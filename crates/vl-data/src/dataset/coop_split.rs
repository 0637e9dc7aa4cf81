//! [`CoopSplit`]: one split of a CoOp / Dassl `split_zhou_<Name>.json` file.
//!
//! The file (written by CoOp's `OxfordPets.save_split`, read by `read_split`,
//! <https://github.com/KaiyangZhou/CoOp/blob/main/datasets/oxford_pets.py>) is
//! `{"train": [[relpath, label, classname], ...], "val": [...], "test": [...]}`; each relative path
//! is joined with the image folder given to [`CoopSplit::open`] (CoOp's `image_dir`). Other
//! top-level keys are ignored; only the requested split must be present. Every error names the
//! file and the JSON path of the bad value (e.g. `train[3][1]`) with what was expected and found.
//! The same label spelled with two class names is an error.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dataset::base::{LabeledImage, ValidateImages, get_item};
use crate::error::{Error, Result};
use crate::json;

/// Which split of a split file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// `"train"`.
    Train,
    /// `"val"`.
    Val,
    /// `"test"`.
    Test,
}

impl Split {
    /// The key in the split file.
    pub fn key(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// One split of a CoOp split file; see the module docs.
#[derive(Debug, Clone)]
pub struct CoopSplit {
    split_file: PathBuf,
    image_root: PathBuf,
    split: Split,
    classes: BTreeMap<usize, String>,
    items: Vec<LabeledImage>,
}

impl CoopSplit {
    /// Reads `split` from `split_file`, resolving paths against `image_root`.
    pub fn open(
        split_file: impl AsRef<Path>,
        image_root: impl AsRef<Path>,
        split: Split,
    ) -> Result<Self> {
        let split_file = split_file.as_ref().to_path_buf();
        let image_root = image_root.as_ref().to_path_buf();
        let value = json::read(&split_file)?;
        let (items, classes) = parse_split(&split_file, &image_root, &value, split)?;
        Ok(Self {
            split_file,
            image_root,
            split,
            classes,
            items,
        })
    }

    /// The split file.
    pub fn split_file(&self) -> &Path {
        &self.split_file
    }

    /// The folder relative paths are resolved against.
    pub fn image_root(&self) -> &Path {
        &self.image_root
    }

    /// Which split this is.
    pub fn split(&self) -> Split {
        self.split
    }

    /// `(label, class name)` pairs of this split, sorted by label (Dassl's `lab2cname`).
    pub fn classes(&self) -> &BTreeMap<usize, String> {
        &self.classes
    }

    /// The entries, in file order.
    pub fn items(&self) -> &[LabeledImage] {
        &self.items
    }
}

fn json_type(value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    format!("{kind} {}", json::short(value))
}

type Parsed = (Vec<LabeledImage>, BTreeMap<usize, String>);

fn parse_split(path: &Path, image_root: &Path, value: &Value, split: Split) -> Result<Parsed> {
    let format_error = |location: String, expected: &str, found: &Value| Error::DataFormat {
        path: path.to_path_buf(),
        location,
        expected: expected.to_string(),
        found: json_type(found),
    };
    let Value::Object(root) = value else {
        return Err(format_error(
            "top level".into(),
            "an object with `train`, `val` and `test`",
            value,
        ));
    };
    let key = split.key();
    let entries = match root.get(key) {
        None => {
            return Err(Error::MissingSplit {
                path: path.to_path_buf(),
                split: key,
            });
        }
        Some(Value::Array(entries)) => entries,
        Some(other) => return Err(format_error(key.into(), "an array of entries", other)),
    };
    let mut items = Vec::with_capacity(entries.len());
    let mut classes: BTreeMap<usize, String> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = |j: usize| format!("{key}[{i}][{j}]");
        let fields = match entry {
            Value::Array(fields) if fields.len() == 3 => fields,
            _ => {
                return Err(format_error(
                    format!("{key}[{i}]"),
                    "an array [relative path, label, class name]",
                    entry,
                ));
            }
        };
        let Value::String(relative) = &fields[0] else {
            return Err(format_error(
                at(0),
                "a relative image path (string)",
                &fields[0],
            ));
        };
        let label = fields[1]
            .as_u64()
            .and_then(|label| usize::try_from(label).ok())
            .ok_or_else(|| format_error(at(1), "a non-negative integer label", &fields[1]))?;
        let Value::String(class_name) = &fields[2] else {
            return Err(format_error(at(2), "a class name (string)", &fields[2]));
        };
        match classes.get(&label) {
            Some(known) if known != class_name => {
                return Err(format_error(
                    at(2),
                    &format!("{known:?}, the class name of label {label} in earlier entries"),
                    &fields[2],
                ));
            }
            Some(_) => {}
            None => {
                classes.insert(label, class_name.clone());
            }
        }
        items.push(LabeledImage {
            path: image_root.join(relative),
            label,
            class_name: class_name.clone(),
        });
    }
    Ok((items, classes))
}

impl ValidateImages for CoopSplit {
    type Item = LabeledImage;

    fn image_items(&self) -> &[LabeledImage] {
        &self.items
    }

    fn image_items_mut(&mut self) -> &mut Vec<LabeledImage> {
        &mut self.items
    }
}

impl Dataset<LabeledImage> for CoopSplit {
    fn get(&self, index: usize) -> std::result::Result<LabeledImage, DatasetError> {
        get_item(&self.items, index)
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}
