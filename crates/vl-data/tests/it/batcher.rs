//! `ImageBatcher` and `CaptionBatcher` under Burn's multi-threaded `DataLoader`, on a small
//! synthetic-world image folder written to a temporary folder: shapes, labels, pixels equal to
//! the preprocessor's, seeded augmentation, and construction errors.

use std::collections::BTreeMap;
use std::path::Path;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use burn::prelude::{Device, Tensor};
use vl_data::augment::AugmentConfig;
use vl_data::dataset::{Captions, DecodeImages, ImageFolder, ImageFolderOptions, TokenizeCaptions};
use vl_data::synthetic::{Split, SyntheticWorld, SyntheticWorldConfig, Task};
use vl_data::{
    CaptionBatcher, ClipTokenizer, Error, ImageBatcher, ImagePreprocessor, PreprocessConfig,
    ResizeMode, SharedEpoch,
};

const N_IMAGES: usize = 10;
const SIZE: u32 = 32;
const CLIP_TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/clip_tokenizer/tokenizer.json"
);

/// Writes `N_IMAGES` shape-labelled images as `dir/folder/<shape>/<index>.png` plus
/// `captions.jsonl`, and returns the folder.
fn synthetic_folder(dir: &Path) -> std::path::PathBuf {
    let world = SyntheticWorld::new(SyntheticWorldConfig::default()).unwrap();
    let folder = dir.join("folder");
    world
        .write_image_folder(&folder, Task::Shape, Split::Eval, N_IMAGES)
        .unwrap();
    folder
}

fn preprocessor() -> ImagePreprocessor {
    ImagePreprocessor::new(PreprocessConfig::clip(SIZE)).unwrap()
}

fn to_vec_f32(t: Tensor<4>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn to_vec_i64<const D: usize>(t: Tensor<D, burn::prelude::Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap()
}

/// Runs a loader over the folder and returns `index -> (label, pixels)`.
fn run_image_loader(
    folder: &Path,
    batcher: ImageBatcher,
    batch_size: usize,
    workers: usize,
    shuffle: Option<u64>,
) -> BTreeMap<usize, (i64, Vec<f32>)> {
    let dataset =
        DecodeImages::new(ImageFolder::open(folder, &ImageFolderOptions::default()).unwrap());
    let mut builder = DataLoaderBuilder::new(batcher)
        .batch_size(batch_size)
        .num_workers(workers)
        .set_device(Device::flex());
    if let Some(seed) = shuffle {
        builder = builder.shuffle(seed);
    }
    let loader = builder.build(dataset);
    let mut seen = BTreeMap::new();
    let per_image = 3 * SIZE as usize * SIZE as usize;
    for batch in loader.iter() {
        let batch = batch.unwrap();
        let n = batch.indices.len();
        assert!((1..=batch_size).contains(&n));
        assert_eq!(
            batch.pixel_values.dims(),
            [n, 3, SIZE as usize, SIZE as usize]
        );
        assert_eq!(batch.labels.dims(), [n]);
        let pixels = to_vec_f32(batch.pixel_values);
        let labels = to_vec_i64(batch.labels);
        for (i, &index) in batch.indices.iter().enumerate() {
            let image = pixels[i * per_image..(i + 1) * per_image].to_vec();
            assert!(
                seen.insert(index, (labels[i], image)).is_none(),
                "{index} twice"
            );
        }
    }
    seen
}

#[test]
fn image_batches_hold_preprocessed_pixels_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let folder = synthetic_folder(dir.path());
    let items = ImageFolder::open(&folder, &ImageFolderOptions::default()).unwrap();
    let batcher = ImageBatcher::new(preprocessor(), None, 0).unwrap();
    assert_eq!(batcher.output_size(), (SIZE, SIZE));

    let seen = run_image_loader(&folder, batcher, 4, 2, None);
    assert_eq!(seen.len(), N_IMAGES);
    let reference = preprocessor();
    for (index, (label, pixels)) in &seen {
        let item = items.get(*index).unwrap();
        assert_eq!(*label, item.label as i64, "{}", item.path.display());
        let expected = reference.preprocess_file(&item.path).unwrap();
        assert!(pixels == &expected, "{}", item.path.display());
    }
}

#[test]
fn augmented_batches_repeat_for_the_same_seed_and_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let folder = synthetic_folder(dir.path());
    let augment = AugmentConfig::strong(SIZE, SIZE);
    let batcher = || ImageBatcher::new(preprocessor(), Some(augment.clone()), 7).unwrap();

    let first = run_image_loader(&folder, batcher(), 4, 2, None);
    // Another batch size, worker count and order: the same pixels per item.
    let second = run_image_loader(&folder, batcher(), 3, 1, Some(5));
    assert_eq!(first.len(), N_IMAGES);
    assert!(first == second);

    // Each item's pixels are `pixels(image, index, epoch)` of the batcher.
    let decoded =
        DecodeImages::new(ImageFolder::open(&folder, &ImageFolderOptions::default()).unwrap());
    let reference = batcher();
    for (index, (_, pixels)) in &first {
        let loaded = decoded.get(*index).unwrap();
        assert!(pixels == &reference.pixels(&loaded.image, *index, 0));
    }
    // Augmentation actually changed something relative to plain preprocessing.
    let plain = run_image_loader(
        &folder,
        ImageBatcher::new(preprocessor(), None, 7).unwrap(),
        4,
        2,
        None,
    );
    assert!(first != plain);

    // Another epoch (set through the shared handle) or another seed: other pixels.
    let epoch = SharedEpoch::new(0);
    let later = batcher().with_epoch(epoch.clone());
    epoch.set(1);
    assert_eq!(later.epoch().get(), 1);
    let next_epoch = run_image_loader(&folder, later, 4, 2, None);
    assert!(next_epoch != first);
    let other_seed = run_image_loader(
        &folder,
        ImageBatcher::new(preprocessor(), Some(augment.clone()), 8).unwrap(),
        4,
        2,
        None,
    );
    assert!(other_seed != first);
}

#[test]
fn caption_batches_hold_pixels_and_token_rows() {
    let dir = tempfile::tempdir().unwrap();
    let folder = synthetic_folder(dir.path());
    let tokenizer = ClipTokenizer::from_file(CLIP_TOKENIZER)
        .unwrap()
        .with_context_length(16)
        .unwrap();
    let captions = Captions::open(folder.join("captions.jsonl"), &folder).unwrap();
    let items: Vec<_> = captions.items().to_vec();
    let dataset = DecodeImages::new(TokenizeCaptions::new(captions, tokenizer.clone()));
    let batcher = CaptionBatcher::new(
        ImageBatcher::new(preprocessor(), None, 0).unwrap(),
        &tokenizer,
    );
    assert_eq!(batcher.context_length(), 16);
    let loader = DataLoaderBuilder::new(batcher)
        .batch_size(4)
        .num_workers(2)
        .set_device(Device::flex())
        .build(dataset);
    let reference = preprocessor();
    let per_image = 3 * SIZE as usize * SIZE as usize;
    let mut n_seen = 0;
    for batch in loader.iter() {
        let batch = batch.unwrap();
        let n = batch.indices.len();
        assert_eq!(batch.input_ids.dims(), [n, 16]);
        let ids = to_vec_i64(batch.input_ids);
        let pixels = to_vec_f32(batch.pixel_values);
        for (i, &index) in batch.indices.iter().enumerate() {
            let item = &items[index];
            assert_eq!(
                ids[i * 16..(i + 1) * 16],
                tokenizer.encode(&item.caption).unwrap()
            );
            let expected = reference.preprocess_file(&item.path).unwrap();
            assert!(pixels[i * per_image..(i + 1) * per_image] == expected[..]);
            n_seen += 1;
        }
    }
    assert_eq!(n_seen, N_IMAGES);
}

#[test]
fn unreadable_image_is_a_loader_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let folder = synthetic_folder(dir.path());
    let class = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    std::fs::write(class.join("zz-broken.png"), b"not a png").unwrap();
    let dataset =
        DecodeImages::new(ImageFolder::open(&folder, &ImageFolderOptions::default()).unwrap());
    let loader = DataLoaderBuilder::new(ImageBatcher::new(preprocessor(), None, 0).unwrap())
        .batch_size(4)
        .num_workers(2)
        .set_device(Device::flex())
        .build(dataset);
    let error = loader
        .iter()
        .find_map(|batch| batch.err())
        .expect("the broken file fails its batch")
        .to_string();
    assert!(error.contains("zz-broken.png"), "{error}");
}

#[test]
fn size_varying_preprocessing_is_rejected_unless_augmentation_crops() {
    let config = PreprocessConfig {
        do_center_crop: false,
        ..PreprocessConfig::clip(SIZE)
    };
    let error =
        ImageBatcher::new(ImagePreprocessor::new(config.clone()).unwrap(), None, 0).unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidSetting {
                setting: "do_center_crop",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("do_center_crop"), "{error}");

    // An augmentation crop fixes the size: 24x24 crops, shortest edge resized to 32.
    let cropped = ImageBatcher::new(
        ImagePreprocessor::new(config.clone()).unwrap(),
        Some(AugmentConfig::weak(24, 24)),
        0,
    )
    .unwrap();
    assert_eq!(cropped.output_size(), (SIZE, SIZE));

    // So does an exact resize.
    let exact = PreprocessConfig {
        resize_mode: ResizeMode::Exact {
            height: 20,
            width: 30,
        },
        ..config
    };
    let batcher = ImageBatcher::new(ImagePreprocessor::new(exact).unwrap(), None, 0).unwrap();
    assert_eq!(batcher.output_size(), (20, 30));
}

#[test]
fn invalid_augmentation_is_rejected_naming_the_field() {
    let augment = AugmentConfig {
        flip_p: 1.5,
        ..AugmentConfig::weak(SIZE, SIZE)
    };
    let error = ImageBatcher::new(preprocessor(), Some(augment), 0).unwrap_err();
    assert!(error.to_string().contains("flip_p"), "{error}");
}
