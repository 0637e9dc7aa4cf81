//! The 11 data sets of the CoOp suite in CoOp's folder layout (CoOp's `DATASETS.md`,
//! <https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md>, and the readers in its
//! `datasets/*.py`): nine with a `split_zhou_<Name>.json` file, FGVC-Aircraft with its
//! `variants.txt` and `images_variant_{train,val,test}.txt`, ImageNet with `classnames.txt` and
//! the `images/train` and `images/val` class folders. Every reader returns the same
//! [`CoopSets`]; every error names the file (and line) at fault.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vl_data::LabeledImage;

use crate::{Error, Result};

/// A data set of the CoOp suite (a run config's `data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoopData {
    /// CoOp's data root (`$DATA`), holding e.g. `oxford_pets/`.
    pub root: PathBuf,
    /// The data set's CoOp name: one of [`COOP_DATASETS`].
    pub dataset: String,
}

/// How a data set's folder is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoopLayout {
    /// `<folder>/<split file>` with paths relative to `<folder>/<image dir>`.
    SplitFile {
        /// The image folder under the data set's folder (empty: the folder itself).
        image_dir: &'static str,
        /// The `split_zhou_<Name>.json` file.
        split_file: &'static str,
    },
    /// FGVC-Aircraft: `variants.txt`, `images_variant_<split>.txt`, `images/<id>.jpg`.
    Aircraft,
    /// ImageNet: `classnames.txt` (`<wnid> <name>`), `images/train/<wnid>/`, `images/val/<wnid>/`.
    ImageNet,
}

/// The CoOp suite: (CoOp name, folder under the data root, layout).
pub const COOP_DATASETS: [(&str, &str, CoopLayout); 11] = {
    const fn split(image_dir: &'static str, split_file: &'static str) -> CoopLayout {
        CoopLayout::SplitFile {
            image_dir,
            split_file,
        }
    }
    [
        ("ImageNet", "imagenet", CoopLayout::ImageNet),
        (
            "Caltech101",
            "caltech-101",
            split("101_ObjectCategories", "split_zhou_Caltech101.json"),
        ),
        (
            "OxfordPets",
            "oxford_pets",
            split("images", "split_zhou_OxfordPets.json"),
        ),
        (
            "StanfordCars",
            "stanford_cars",
            split("", "split_zhou_StanfordCars.json"),
        ),
        (
            "OxfordFlowers",
            "oxford_flowers",
            split("jpg", "split_zhou_OxfordFlowers.json"),
        ),
        (
            "Food101",
            "food-101",
            split("images", "split_zhou_Food101.json"),
        ),
        ("FGVCAircraft", "fgvc_aircraft", CoopLayout::Aircraft),
        (
            "SUN397",
            "sun397",
            split("SUN397", "split_zhou_SUN397.json"),
        ),
        (
            "DescribableTextures",
            "dtd",
            split("images", "split_zhou_DescribableTextures.json"),
        ),
        (
            "EuroSAT",
            "eurosat",
            split("2750", "split_zhou_EuroSAT.json"),
        ),
        (
            "UCF101",
            "ucf101",
            split("UCF-101-midframes", "split_zhou_UCF101.json"),
        ),
    ]
};

/// The splits of one data set.
#[derive(Debug, Clone)]
pub struct CoopSets {
    /// The CoOp name (also the key of its template).
    pub name: &'static str,
    /// `(label, class name)` sorted by label, names as CoOp prints them (`_` read as spaces).
    pub classes: Vec<(usize, String)>,
    /// The training split.
    pub train: Vec<LabeledImage>,
    /// The validation split (`None` for ImageNet, which has none in CoOp).
    pub val: Option<Vec<LabeledImage>>,
    /// The test split.
    pub test: Vec<LabeledImage>,
    /// The file that lists the data set (for error messages and the manifest).
    pub listing: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a data set's splits.
pub fn read_coop(data: &CoopData) -> Result<CoopSets> {
    let &(name, folder, layout) = COOP_DATASETS
        .iter()
        .find(|d| d.0 == data.dataset)
        .ok_or_else(|| Error::InvalidConfig {
            field: "data.dataset".into(),
            expected: format!("one of {}", COOP_DATASETS.map(|d| d.0).join(", ")),
            found: data.dataset.clone(),
        })?;
    let dir = data.root.join(folder);
    match layout {
        CoopLayout::SplitFile {
            image_dir,
            split_file,
        } => {
            let listing = dir.join(split_file);
            let image_root = if image_dir.is_empty() {
                dir.clone()
            } else {
                dir.join(image_dir)
            };
            let open = |split| vl_data::CoopSplit::open(&listing, &image_root, split);
            let test = open(vl_data::Split::Test)?;
            let classes = test
                .classes()
                .iter()
                .map(|(&l, n)| (l, n.replace('_', " ")))
                .collect();
            Ok(CoopSets {
                name,
                classes,
                train: open(vl_data::Split::Train)?.items().to_vec(),
                val: Some(open(vl_data::Split::Val)?.items().to_vec()),
                test: test.items().to_vec(),
                listing,
            })
        }
        CoopLayout::Aircraft => {
            let listing = dir.join("variants.txt");
            let text = std::fs::read_to_string(&listing).map_err(io(&listing))?;
            let names: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            let label_of: BTreeMap<&str, usize> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), i))
                .collect();
            let read = |split: &str| -> Result<Vec<LabeledImage>> {
                let file = dir.join(format!("images_variant_{split}.txt"));
                let text = std::fs::read_to_string(&file).map_err(io(&file))?;
                let mut items = Vec::new();
                for (line_no, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() {
                        continue;
                    }
                    let (id, class) = line.split_once(' ').unwrap_or((line, ""));
                    let label = *label_of.get(class).ok_or_else(|| Error::InvalidConfig {
                        field: format!("{} line {}", file.display(), line_no + 1),
                        expected: format!("`<image id> <a variant of {}>`", listing.display()),
                        found: line.to_string(),
                    })?;
                    items.push(LabeledImage {
                        path: dir.join("images").join(format!("{id}.jpg")),
                        label,
                        class_name: class.to_string(),
                    });
                }
                Ok(items)
            };
            Ok(CoopSets {
                name,
                classes: names.iter().cloned().enumerate().collect(),
                train: read("train")?,
                val: Some(read("val")?),
                test: read("test")?,
                listing,
            })
        }
        CoopLayout::ImageNet => {
            let listing = dir.join("classnames.txt");
            let text = std::fs::read_to_string(&listing).map_err(io(&listing))?;
            let mut names = BTreeMap::new();
            for (line_no, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let (wnid, name) = line.split_once(' ').ok_or_else(|| Error::InvalidConfig {
                    field: format!("{} line {}", listing.display(), line_no + 1),
                    expected: "`<wnid> <class name>`".into(),
                    found: line.to_string(),
                })?;
                names.insert(wnid.to_string(), name.trim().to_string());
            }
            // CoOp labels the sorted class folders of each split in order.
            let read = |split: &str| -> Result<Vec<LabeledImage>> {
                let split_dir = dir.join("images").join(split);
                let mut folders: Vec<String> = std::fs::read_dir(&split_dir)
                    .map_err(io(&split_dir))?
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                folders.sort();
                let mut items = Vec::new();
                for (label, folder) in folders.iter().enumerate() {
                    let class = names.get(folder).ok_or_else(|| Error::InvalidConfig {
                        field: listing.display().to_string(),
                        expected: format!("a class name for folder {folder}"),
                        found: "none".into(),
                    })?;
                    let class_dir = split_dir.join(folder);
                    let mut files: Vec<PathBuf> = std::fs::read_dir(&class_dir)
                        .map_err(io(&class_dir))?
                        .filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| {
                            p.is_file()
                                && !p
                                    .file_name()
                                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                        })
                        .collect();
                    files.sort();
                    items.extend(files.into_iter().map(|path| LabeledImage {
                        path,
                        label,
                        class_name: class.clone(),
                    }));
                }
                Ok(items)
            };
            let train = read("train")?;
            let test = read("val")?;
            let mut classes: Vec<(usize, String)> = Vec::new();
            for item in &test {
                if classes.last().is_none_or(|c| c.0 != item.label) {
                    classes.push((item.label, item.class_name.clone()));
                }
            }
            Ok(CoopSets {
                name,
                classes,
                train,
                val: None,
                test,
                listing,
            })
        }
    }
}
