//! Pixel parity with transformers' `CLIPImageProcessor` (torchvision and PIL backends) and
//! open_clip's eval transform.
//!
//! Fixtures: `tests/fixtures/images/` and `tests/fixtures/preprocess_reference.{json,safetensors}`
//! (keys `<processor>/<image>`, `[3, H, W]`; the 224 ones stored as f16), written by
//! `tests/fixtures/make_fixtures.py` with transformers 5.23, open_clip 3.3, torchvision 0.29 and
//! Pillow 13. Each processor is rebuilt here from a config file in the format a checkpoint ships
//! (`preprocessor_config.json` / `open_clip_config.json`), so the file readers are covered too.

use std::path::{Path, PathBuf};

use image::RgbImage;
use safetensors::{Dtype, SafeTensors};
use vl_data::{Error, ImagePreprocessor, PreprocessConfig, Reference};

/// Bound on the mean absolute difference per image (normalised units).
const MEAN_TOLERANCE: f32 = 0.02;
/// Bound on the max absolute difference where the decoders agree (PNG, WebP): the f16 rounding
/// of the stored 224 references (half an ulp at 2.1 is 0.00098), float noise for the f32 ones.
const EXACT_F16: f32 = 1e-3;
const EXACT_F32: f32 = 1e-5;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn images() -> Vec<String> {
    let text = std::fs::read_to_string(fixtures().join("images/manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

struct ReferenceFile {
    bytes: Vec<u8>,
}

impl ReferenceFile {
    fn load() -> Self {
        Self {
            bytes: std::fs::read(fixtures().join("preprocess_reference.safetensors")).unwrap(),
        }
    }

    /// The tensor as f32 values, its shape, and the max-difference bound its dtype allows.
    fn get(&self, key: &str) -> (Vec<f32>, Vec<usize>) {
        let (values, shape, _) = self.get_with_bound(key);
        (values, shape)
    }

    fn get_with_bound(&self, key: &str) -> (Vec<f32>, Vec<usize>, f32) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let view = st.tensor(key).unwrap();
        let data = view.data();
        let values = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::U8 => data.iter().map(|&b| f32::from(b)).collect(),
            other => panic!("{key}: unexpected dtype {other:?}"),
        };
        let bound = if view.dtype() == Dtype::F16 {
            EXACT_F16
        } else {
            EXACT_F32
        };
        (values, view.shape().to_vec(), bound)
    }
}

/// Mean and max absolute difference.
fn diff(ours: &[f32], reference: &[f32]) -> (f32, f32) {
    assert_eq!(ours.len(), reference.len());
    let (sum, max) = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold((0f64, 0f32), |(s, m), d| (s + f64::from(d), m.max(d)));
    ((sum / ours.len() as f64) as f32, max)
}

fn write(dir: &Path, name: &str, value: &serde_json::Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path
}

/// The processors of the reference file, rebuilt from config files.
fn processors(dir: &Path) -> Vec<(&'static str, ImagePreprocessor)> {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("preprocess_reference.json")).unwrap(),
    )
    .unwrap();
    let hf_config = |name: &str| {
        let config = &reference["processors"][name]["config"];
        assert!(config.is_object(), "{name} has no config");
        PreprocessConfig::from_hf_file(write(dir, &format!("{name}.json"), config)).unwrap()
    };
    // hf42 was made with the old integer format; read it in that format.
    let hf42_old = PreprocessConfig::from_hf_file(write(
        dir,
        "hf42_old.json",
        &serde_json::json!({"size": 42, "crop_size": 42, "do_resize": true, "resample": 3,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711]}),
    ))
    .unwrap();
    assert_eq!(hf42_old, hf_config("hf42"));
    let open_clip = PreprocessConfig::from_open_clip_file(write(
        dir,
        "open_clip_config.json",
        &serde_json::json!({"model_cfg": {"embed_dim": 512, "vision_cfg": {"image_size": 224}},
            "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                "std": [0.26862954, 0.26130258, 0.27577711], "interpolation": "bicubic",
                "resize_mode": "shortest"}}),
    ))
    .unwrap();
    let pil = Reference::TransformersPil;
    [
        ("hf224", hf_config("hf224")),
        ("openclip224", open_clip),
        ("hf32", hf_config("hf32")),
        ("hf42", hf42_old),
        ("hf32_pil", hf_config("hf32_pil").with_reference(pil)),
        ("hf42_pil", hf_config("hf42_pil").with_reference(pil)),
    ]
    .into_iter()
    .map(|(name, config)| (name, ImagePreprocessor::new(config).unwrap()))
    .collect()
}

#[test]
fn pixels_match_python_references() {
    let dir = tempfile::tempdir().unwrap();
    let reference = ReferenceFile::load();
    let mut worst: Vec<String> = Vec::new();
    println!(
        "{:<12} {:<18} {:>10} {:>10}",
        "processor", "image", "mean|d|", "max|d|"
    );
    for (name, processor) in processors(dir.path()) {
        for image in images() {
            let path = fixtures().join("images").join(&image);
            let ours = processor.preprocess_file(&path).unwrap();
            let (expected, shape, exact) = reference.get_with_bound(&format!("{name}/{image}"));
            let (h, w) = processor.output_size(1, 1);
            assert_eq!(shape, vec![3, h as usize, w as usize], "{name}/{image}");
            let (mean, max) = diff(&ours, &expected);
            println!("{name:<12} {image:<18} {mean:>10.6} {max:>10.6}");
            // JPEG goes through a different decoder than Pillow's libjpeg-turbo (see
            // `jpeg_difference_is_the_decoder`); everything else must match to rounding.
            let decoder_independent = !image.ends_with(".jpg");
            if mean > MEAN_TOLERANCE || (decoder_independent && max > exact) {
                worst.push(format!("{name}/{image}: mean {mean} max {max}"));
            }
        }
    }
    assert!(worst.is_empty(), "over tolerance: {worst:#?}");
}

/// With the JPEG decoded by Pillow (stored in the reference file) instead of `zune-jpeg`, the
/// remaining difference is the preprocessing alone.
#[test]
fn jpeg_difference_is_the_decoder() {
    let reference = ReferenceFile::load();
    let (pil_pixels, shape) = reference.get("decoded/portrait.jpg");
    let [h, w, 3] = shape[..] else {
        panic!("decoded/portrait.jpg has shape {shape:?}")
    };
    let ours = vl_data::load_image(fixtures().join("images/portrait.jpg")).unwrap();
    assert_eq!((ours.width() as usize, ours.height() as usize), (w, h));
    let ours_f: Vec<f32> = ours.as_raw().iter().map(|&v| f32::from(v)).collect();
    let (mean, max) = diff(&ours_f, &pil_pixels);
    println!(
        "portrait.jpg decode, zune-jpeg vs libjpeg-turbo: mean {mean:.4} max {max} (8-bit levels)"
    );
    assert!(mean < 2.0, "decoders differ too much: mean {mean}");

    let pil_image = RgbImage::from_raw(
        w as u32,
        h as u32,
        pil_pixels.iter().map(|&v| v as u8).collect(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, processor) in processors(dir.path()) {
        let (expected, _, exact) = reference.get_with_bound(&format!("{name}/portrait.jpg"));
        let (mean, max) = diff(&processor.preprocess(&pil_image), &expected);
        println!("{name:<12} portrait.jpg (Pillow-decoded) mean {mean:.6} max {max:.6}");
        assert!(max <= exact, "{name}: max {max}");
    }
}

#[test]
fn undecodable_file_error_names_the_file() {
    let p = ImagePreprocessor::new(PreprocessConfig::clip(224)).unwrap();
    let path = fixtures().join("images/not_an_image.png");
    let err = p.preprocess_file(&path).unwrap_err();
    assert!(matches!(err, Error::UnknownImageFormat { .. }), "{err:?}");
    assert!(err.to_string().contains("not_an_image.png"), "{err}");
    let err = p
        .preprocess_files(&[fixtures().join("images/gray.png"), path])
        .unwrap_err();
    assert!(err.to_string().contains("not_an_image.png"), "{err}");
}

#[test]
fn missing_file_error_names_the_file() {
    let p = ImagePreprocessor::new(PreprocessConfig::clip(224)).unwrap();
    let path = fixtures().join("images/no_such_image.png");
    let err = p.preprocess_file(&path).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("no_such_image.png"), "{err}");
}

#[test]
fn files_batch_into_nchw_tensor() {
    let p = ImagePreprocessor::new(PreprocessConfig::clip(32)).unwrap();
    let paths: Vec<PathBuf> = images()
        .iter()
        .map(|i| fixtures().join("images").join(i))
        .collect();
    let batch = p.preprocess_files(&paths).unwrap();
    assert_eq!(batch.shape, [paths.len(), 3, 32, 32]);
    for (i, path) in paths.iter().enumerate() {
        assert_eq!(
            batch.image(i).unwrap(),
            p.preprocess_file(path).unwrap().as_slice()
        );
    }
    let t = batch.to_tensor(&burn::prelude::Device::flex());
    assert_eq!(t.dims(), [paths.len(), 3, 32, 32]);
}

#[test]
fn uncropped_batch_of_different_sizes_is_an_error() {
    let mut config = PreprocessConfig::clip(32);
    config.do_center_crop = false;
    let p = ImagePreprocessor::new(config).unwrap();
    let err = p
        .preprocess_files(&[
            fixtures().join("images/landscape.png"),
            fixtures().join("images/portrait.jpg"),
        ])
        .unwrap_err();
    assert!(matches!(err, Error::BatchShapeMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("portrait.jpg"), "{err}");
}
