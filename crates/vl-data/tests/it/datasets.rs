//! Data sets, few-shot sampling, the base/novel split and manifests, on small trees of tiny PNGs
//! written into a temporary folder by each test (plus one corrupt file and one missing file).

use std::path::{Path, PathBuf};

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::Device;
use vl_data::Error;
use vl_data::dataset::{
    BadImagePolicy, CaptionFormat, Captions, CoopSplit, DecodeImages, ImageCheck, ImageFolder,
    ImageFolderOptions, LabeledImage, LoadedImage, Manifest, Overwrite, Split, ValidateImages,
};
use vl_data::sampling::{BaseNovel, base_novel_split, few_shot};

fn write_png(path: &Path, shade: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(2, 3, image::Rgb([shade, 0, 255 - shade]))
        .save(path)
        .unwrap();
}

/// `root/<class>/<i>.png` for the given per-class counts; classes `c0`, `c1`, ...
fn image_tree(root: &Path, counts: &[usize]) {
    for (class, &count) in counts.iter().enumerate() {
        for i in 0..count {
            write_png(
                &root.join(format!("c{class}/{i:02}.png")),
                (class * 10 + i) as u8,
            );
        }
    }
}

/// Items without files: `counts[label]` items per label.
fn labeled(counts: &[usize]) -> Vec<LabeledImage> {
    let mut items = Vec::new();
    for (label, &count) in counts.iter().enumerate() {
        for i in 0..count {
            items.push(LabeledImage {
                path: PathBuf::from(format!("c{label}/{i:02}.png")),
                label,
                class_name: format!("c{label}"),
            });
        }
    }
    items
}

fn chain(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Image folder

#[test]
fn image_folder_lists_sorted_classes_and_image_files() {
    let dir = tempfile::tempdir().unwrap();
    image_tree(dir.path(), &[2, 3]);
    std::fs::write(dir.path().join("c0/notes.txt"), "not an image").unwrap();
    std::fs::write(dir.path().join("README"), "top-level file").unwrap();
    write_png(&dir.path().join("b_class/x.PNG"), 1);

    let folder = ImageFolder::open(dir.path(), &ImageFolderOptions::default()).unwrap();
    assert_eq!(folder.classes(), ["b_class", "c0", "c1"]);
    assert_eq!(folder.len(), 6);
    let first = folder.get(0).unwrap();
    assert_eq!((first.label, first.class_name.as_str()), (0, "b_class"));
    let labels: Vec<usize> = folder.items().iter().map(|item| item.label).collect();
    assert_eq!(labels, [0, 1, 1, 2, 2, 2]);
    assert_eq!(folder.items()[1].path, dir.path().join("c0/00.png"));
}

#[test]
fn image_folder_without_class_folders_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = ImageFolder::open(dir.path(), &ImageFolderOptions::default()).unwrap_err();
    assert!(matches!(error, Error::EmptyDataset { .. }), "{error}");
}

#[test]
fn get_past_the_end_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    image_tree(dir.path(), &[1]);
    let folder = ImageFolder::open(dir.path(), &ImageFolderOptions::default()).unwrap();
    let error = folder.get(5).unwrap_err();
    assert!(error.to_string().contains("index 5"), "{error}");
}

#[test]
fn skip_policy_counts_and_names_the_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    image_tree(dir.path(), &[2, 2]);
    let corrupt = dir.path().join("c1/zz_corrupt.png");
    std::fs::write(&corrupt, b"definitely not a png").unwrap();

    let folder = ImageFolder::open(dir.path(), &ImageFolderOptions::default()).unwrap();
    assert_eq!(folder.len(), 5);
    let report = folder.validate(BadImagePolicy::Skip).unwrap();
    assert_eq!(report.n_ok, 4);
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].0, corrupt);
    assert!(
        report.skipped[0].1.contains("zz_corrupt.png"),
        "{}",
        report.skipped[0].1
    );

    let (folder, report) = folder
        .validated(BadImagePolicy::Skip, ImageCheck::Decode)
        .unwrap();
    assert_eq!((folder.len(), report.skipped.len()), (4, 1));
    assert_eq!(folder.classes().len(), 2);
}

#[test]
fn fail_policy_error_names_the_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    image_tree(dir.path(), &[2]);
    std::fs::write(dir.path().join("c0/bad.png"), b"\x89PNG\r\n\x1a\ntruncated").unwrap();
    let folder = ImageFolder::open(dir.path(), &ImageFolderOptions::default()).unwrap();
    let error = folder.validate(BadImagePolicy::Fail).unwrap_err();
    assert!(chain(&error).contains("bad.png"), "{}", chain(&error));
}

#[test]
fn decode_images_loads_pixels_and_names_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    image_tree(dir.path(), &[1]);
    std::fs::write(dir.path().join("c0/zz.png"), b"junk").unwrap();
    let folder = ImageFolder::open(dir.path(), &ImageFolderOptions::default()).unwrap();
    let decoded = DecodeImages::new(folder);
    assert_eq!(decoded.len(), 2);
    let loaded = decoded.get(0).unwrap();
    assert_eq!(loaded.image.dimensions(), (2, 3));
    assert_eq!(loaded.item.label, 0);
    let error = decoded.get(1).unwrap_err();
    let text = format!("{error}");
    assert!(text.contains("zz.png"), "{text}");
}

/// Collects (width, height, label) per item; makes no tensors, so any device will do.
#[derive(Clone)]
struct SizeBatcher;

impl Batcher<LoadedImage<LabeledImage>, Vec<(u32, u32, usize)>> for SizeBatcher {
    fn batch(
        &self,
        items: Vec<LoadedImage<LabeledImage>>,
        _device: &Device,
    ) -> Vec<(u32, u32, usize)> {
        items
            .iter()
            .map(|loaded| {
                (
                    loaded.image.width(),
                    loaded.image.height(),
                    loaded.item.label,
                )
            })
            .collect()
    }
}

#[test]
fn burn_data_loader_decodes_on_workers_and_reports_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    image_tree(dir.path(), &[3, 2]);
    let folder = ImageFolder::open(dir.path(), &ImageFolderOptions::default()).unwrap();
    let loader = DataLoaderBuilder::new(SizeBatcher)
        .batch_size(2)
        .num_workers(2)
        .set_device(Device::default())
        .build(DecodeImages::new(folder));
    let mut seen: Vec<(u32, u32, usize)> = loader.iter().flat_map(|batch| batch.unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [(2, 3, 0), (2, 3, 0), (2, 3, 0), (2, 3, 1), (2, 3, 1)]
    );

    std::fs::write(dir.path().join("c1/zz.png"), b"junk").unwrap();
    let folder = ImageFolder::open(dir.path(), &ImageFolderOptions::default()).unwrap();
    let loader = DataLoaderBuilder::new(SizeBatcher)
        .batch_size(6)
        .set_device(Device::default())
        .build(DecodeImages::new(folder));
    // Burn 0.22.1's batch iterator does not move past a failing chunk (it yields the same error
    // again on every `next`), so stop at the first error.
    let error = loader
        .iter()
        .find_map(|batch| batch.err())
        .expect("the junk file fails its batch")
        .to_string();
    assert!(error.contains("zz.png"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// CoOp split files

const SPLIT: &str = r#"{
  "train": [["c0/00.png", 0, "cat"], ["c1/00.png", 1, "dog"], ["c1/01.png", 1, "dog"]],
  "val": [["c0/01.png", 0, "cat"]],
  "test": [["c1/missing.png", 1, "dog"], ["c0/00.png", 0, "cat"]],
  "extra": "ignored"
}"#;

fn split_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("split_zhou_Test.json");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn coop_split_reads_entries_and_classes() {
    let dir = tempfile::tempdir().unwrap();
    image_tree(&dir.path().join("images"), &[2, 2]);
    let file = split_file(dir.path(), SPLIT);
    let train = CoopSplit::open(&file, dir.path().join("images"), Split::Train).unwrap();
    assert_eq!(train.len(), 3);
    assert_eq!(train.items()[1].path, dir.path().join("images/c1/00.png"));
    assert_eq!(train.items()[1].label, 1);
    assert_eq!(train.items()[1].class_name, "dog");
    let classes: Vec<(usize, &str)> = train
        .classes()
        .iter()
        .map(|(l, n)| (*l, n.as_str()))
        .collect();
    assert_eq!(classes, [(0, "cat"), (1, "dog")]);
    let val = CoopSplit::open(&file, dir.path().join("images"), Split::Val).unwrap();
    assert_eq!(val.len(), 1);
    assert!(train.validate(BadImagePolicy::Fail).unwrap().is_clean());
}

#[test]
fn coop_split_missing_image_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    image_tree(&dir.path().join("images"), &[2, 2]);
    let file = split_file(dir.path(), SPLIT);
    let test = CoopSplit::open(&file, dir.path().join("images"), Split::Test).unwrap();
    let report = test.validate(BadImagePolicy::Skip).unwrap();
    assert_eq!(report.n_ok, 1);
    assert_eq!(
        report.skipped[0].0,
        dir.path().join("images/c1/missing.png")
    );
    let error = test.validate(BadImagePolicy::Fail).unwrap_err();
    assert!(error.to_string().contains("missing.png"), "{error}");
}

#[test]
fn coop_split_wrong_label_type_names_the_json_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = split_file(dir.path(), r#"{"train": [["a.png", "0", "cat"]]}"#);
    let error = CoopSplit::open(&file, dir.path(), Split::Train).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("train[0][1]"), "{text}");
    assert!(text.contains("non-negative integer"), "{text}");
    assert!(text.contains("\"0\""), "{text}");
    assert!(text.contains("split_zhou_Test.json"), "{text}");
}

#[test]
fn coop_split_bad_entries_name_their_json_path() {
    let dir = tempfile::tempdir().unwrap();
    for (text, location) in [
        (
            r#"{"train": [["a.png", 0, "cat"], ["b.png", 0]]}"#,
            "train[1]",
        ),
        (r#"{"train": [[3, 0, "cat"]]}"#, "train[0][0]"),
        (r#"{"train": [["a.png", -1, "cat"]]}"#, "train[0][1]"),
        (r#"{"train": [["a.png", 0, null]]}"#, "train[0][2]"),
        (
            r#"{"train": [["a.png", 0, "cat"], ["b.png", 0, "dog"]]}"#,
            "train[1][2]",
        ),
        (r#"{"train": {"a.png": 0}}"#, "train"),
    ] {
        let file = split_file(dir.path(), text);
        let error = CoopSplit::open(&file, dir.path(), Split::Train).unwrap_err();
        assert!(
            matches!(&error, Error::DataFormat { location: found, .. } if found == location),
            "{text}: {error}"
        );
    }
}

#[test]
fn coop_split_missing_split_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = split_file(dir.path(), r#"{"train": [], "test": []}"#);
    let error = CoopSplit::open(&file, dir.path(), Split::Val).unwrap_err();
    assert!(
        matches!(error, Error::MissingSplit { split: "val", .. }),
        "{error}"
    );
    assert!(error.to_string().contains("`val`"));
}

#[test]
fn coop_split_invalid_json_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = split_file(dir.path(), r#"{"train": ["#);
    let error = CoopSplit::open(&file, dir.path(), Split::Train).unwrap_err();
    assert!(matches!(error, Error::Json { .. }), "{error}");
    assert!(error.to_string().contains("split_zhou_Test.json"));
}

// ---------------------------------------------------------------------------------------------
// Caption lists

#[test]
fn captions_jsonl_accepts_both_key_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("caps.jsonl");
    std::fs::write(
        &file,
        "{\"path\": \"a.png\", \"caption\": \"a cat\"}\n\n{\"image\": \"b.png\", \"text\": \"a dog\", \"id\": 7}\n",
    )
    .unwrap();
    let captions = Captions::open(&file, dir.path()).unwrap();
    assert_eq!(captions.len(), 2);
    assert_eq!(captions.items()[1].path, dir.path().join("b.png"));
    assert_eq!(captions.items()[1].caption, "a dog");
}

#[test]
fn captions_jsonl_errors_give_the_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("caps.jsonl");
    for (text, location) in [
        (
            "{\"path\": \"a.png\", \"caption\": \"x\"}\n{\"path\": \"b.png\"}\n",
            "line 2",
        ),
        (
            "\n\n{\"path\": \"a.png\", \"caption\": 3}\n",
            "line 3, key `caption`",
        ),
        (
            "{\"path\": \"a.png\", \"caption\": \"x\"}\nnot json\n",
            "line 2",
        ),
        ("[1, 2]\n", "line 1"),
    ] {
        std::fs::write(&file, text).unwrap();
        let error = Captions::open(&file, dir.path()).unwrap_err();
        assert!(
            matches!(&error, Error::DataFormat { location: found, .. } if found == location),
            "{text:?}: {error}"
        );
        assert!(error.to_string().contains("caps.jsonl"));
    }
}

#[test]
fn captions_csv_handles_quoting_and_column_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("caps.csv");
    std::fs::write(
        &file,
        "caption,id,image\n\"a cat, \"\"small\"\"\",1,a.png\n\"two\nlines\",2,b.png\n",
    )
    .unwrap();
    let captions = Captions::open(&file, dir.path()).unwrap();
    assert_eq!(captions.len(), 2);
    assert_eq!(captions.items()[0].caption, "a cat, \"small\"");
    assert_eq!(captions.items()[0].path, dir.path().join("a.png"));
    assert_eq!(captions.items()[1].caption, "two\nlines");
}

#[test]
fn captions_csv_errors_give_the_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("caps.csv");
    for (text, location) in [
        ("path,caption\na.png,x\n\"b\nc.png\",y\nd.png\n", "line 5"),
        ("path,caption\na.png,x\n\"b\nc\".png,y\n", "line 4"),
        ("path,label\na.png,x\n", "line 1 (header)"),
        ("path,caption\na.png,\"unclosed\n", "line 2"),
    ] {
        std::fs::write(&file, text).unwrap();
        let error = Captions::open(&file, dir.path()).unwrap_err();
        assert!(
            matches!(&error, Error::DataFormat { location: found, .. } if found == location),
            "{text:?}: {error}"
        );
    }
}

#[test]
fn captions_unknown_extension_is_an_error_unless_the_format_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("caps.txt");
    std::fs::write(&file, "path,caption\na.png,x\n").unwrap();
    assert!(matches!(
        Captions::open(&file, dir.path()),
        Err(Error::DataFormat { .. })
    ));
    let captions = Captions::open_with_format(&file, dir.path(), CaptionFormat::Csv).unwrap();
    assert_eq!(captions.len(), 1);
}

#[test]
fn captions_missing_image_is_skipped_with_a_count() {
    let dir = tempfile::tempdir().unwrap();
    write_png(&dir.path().join("a.png"), 3);
    let file = dir.path().join("caps.jsonl");
    std::fs::write(
        &file,
        "{\"path\": \"a.png\", \"caption\": \"x\"}\n{\"path\": \"gone.png\", \"caption\": \"y\"}\n",
    )
    .unwrap();
    let (captions, report) = Captions::open(&file, dir.path())
        .unwrap()
        .validated(BadImagePolicy::Skip, ImageCheck::Header)
        .unwrap();
    assert_eq!(
        (captions.len(), report.n_ok, report.skipped.len()),
        (1, 1, 1)
    );
    assert_eq!(report.skipped[0].0, dir.path().join("gone.png"));
    let error = Captions::open(&file, dir.path())
        .unwrap()
        .validate(BadImagePolicy::Fail)
        .unwrap_err();
    assert!(error.to_string().contains("gone.png"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Few-shot sampling

#[test]
fn few_shot_picks_exactly_k_per_class() {
    let items = labeled(&[5, 6, 4]);
    for k in [1, 2, 4] {
        for seed in [0, 1, 42] {
            let picked = few_shot(&items, k, seed).unwrap();
            assert_eq!(picked.items.len(), 3 * k, "k={k} seed={seed}");
            for label in 0..3 {
                let n = picked
                    .items
                    .iter()
                    .filter(|item| item.label == label)
                    .count();
                assert_eq!(n, k, "k={k} seed={seed} label={label}");
            }
            assert!(picked.shortfalls.is_empty());
            let mut paths: Vec<_> = picked.items.iter().map(|item| &item.path).collect();
            paths.dedup();
            assert_eq!(paths.len(), 3 * k, "no item is picked twice");
        }
    }
}

#[test]
fn few_shot_same_seed_same_picks() {
    let items = labeled(&[20, 20]);
    assert_eq!(
        few_shot(&items, 4, 7).unwrap(),
        few_shot(&items, 4, 7).unwrap()
    );
}

#[test]
fn few_shot_different_seed_different_picks() {
    let items = labeled(&[20, 20]);
    assert_ne!(
        few_shot(&items, 4, 1).unwrap().items,
        few_shot(&items, 4, 2).unwrap().items
    );
}

#[test]
fn few_shot_class_picks_do_not_depend_on_other_classes() {
    let picks = |counts: &[usize]| {
        few_shot(&labeled(counts), 2, 3)
            .unwrap()
            .items
            .into_iter()
            .filter(|item| item.label == 0)
            .collect::<Vec<_>>()
    };
    assert_eq!(picks(&[10, 5]), picks(&[10, 9, 9]));
}

#[test]
fn few_shot_shortfall_is_reported_and_all_items_kept() {
    let items = labeled(&[5, 2, 4]);
    let picked = few_shot(&items, 4, 0).unwrap();
    assert_eq!(picked.items.len(), 4 + 2 + 4);
    assert_eq!(picked.shortfalls.len(), 1);
    let shortfall = &picked.shortfalls[0];
    assert_eq!(
        (
            shortfall.label,
            shortfall.class_name.as_str(),
            shortfall.available,
            shortfall.wanted
        ),
        (1, "c1", 2, 4)
    );
}

#[test]
fn few_shot_zero_shots_is_an_error() {
    assert!(matches!(
        few_shot(&labeled(&[3]), 0, 0),
        Err(Error::InvalidSetting {
            setting: "shots",
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// Base / novel

#[test]
fn base_novel_split_of_five_puts_three_in_base() {
    assert_eq!(base_novel_split(5), (vec![0, 1, 2], vec![3, 4]));
    assert_eq!(base_novel_split(4), (vec![0, 1], vec![2, 3]));
    assert_eq!(base_novel_split(1), (vec![0], vec![]));
}

#[test]
fn base_novel_apply_relabels_both_halves_from_zero() {
    let items = labeled(&[1, 1, 1, 1, 2]);
    let split = BaseNovel::from_items(&items);
    let (base, novel) = split.apply(&items).unwrap();
    let labels = |items: &[LabeledImage]| -> Vec<(usize, String)> {
        items
            .iter()
            .map(|i| (i.label, i.class_name.clone()))
            .collect()
    };
    assert_eq!(
        labels(&base),
        [(0, "c0".into()), (1, "c1".into()), (2, "c2".into())]
    );
    assert_eq!(
        labels(&novel),
        [(0, "c3".into()), (1, "c4".into()), (1, "c4".into())]
    );
}

#[test]
fn base_novel_sorts_sparse_labels_and_rejects_unknown_ones() {
    let split = BaseNovel::new([9, 2, 5, 2, 7]);
    assert_eq!(
        (split.base.as_slice(), split.novel.as_slice()),
        ([2, 5].as_slice(), [7, 9].as_slice())
    );
    let stray = LabeledImage {
        path: "x.png".into(),
        label: 3,
        class_name: "x".into(),
    };
    assert!(matches!(
        split.apply(&[stray]),
        Err(Error::UnknownLabel {
            label: 3,
            n_known: 4
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// Manifest

#[test]
fn manifest_round_trips_with_hashes() {
    let dir = tempfile::tempdir().unwrap();
    image_tree(dir.path(), &[3, 3]);
    let folder = ImageFolder::open(dir.path(), &ImageFolderOptions::default()).unwrap();
    let picked = few_shot(folder.items(), 2, 5).unwrap();
    let manifest = Manifest::from_labeled("Tiny", dir.path(), &picked.items)
        .with_split("train")
        .with_seed(5)
        .with_shots(2)
        .with_sha256()
        .unwrap();
    assert_eq!(manifest.files.len(), 4);
    assert!(manifest.files[0].path.is_relative());
    assert_eq!(manifest.files[0].sha256.as_ref().map(String::len), Some(64));

    let out = dir.path().join("manifest.json");
    manifest.write(&out, Overwrite::Refuse).unwrap();
    assert_eq!(Manifest::read(&out).unwrap(), manifest);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary file left behind");
}

#[test]
fn manifest_refuses_to_overwrite_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("manifest.json");
    std::fs::write(&out, "precious").unwrap();
    let manifest = Manifest::from_labeled("Tiny", dir.path(), &labeled(&[1]));
    let error = manifest.write(&out, Overwrite::Refuse).unwrap_err();
    assert!(
        matches!(&error, Error::AlreadyExists { path } if path == &out),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious");

    manifest.write(&out, Overwrite::Allow).unwrap();
    assert_eq!(Manifest::read(&out).unwrap(), manifest);
}

#[test]
fn manifest_hash_of_missing_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = Manifest::from_labeled("Tiny", dir.path(), &labeled(&[1]));
    let error = manifest.with_sha256().unwrap_err();
    assert!(error.to_string().contains("00.png"), "{error}");
}
