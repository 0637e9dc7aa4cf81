//! End-to-end checks of `vl embed` and of the file pipeline behind it: raw image files through
//! our decoding and preprocessing, captions through our tokenizer, into the encoders, against
//! the references' own preprocessing (transformers `CLIPImageProcessor`, open_clip's eval
//! transform) and tokenizer (`CLIPTokenizerFast`). Fixtures live in the vl-encoders and vl-data
//! crates (see their `make_fixtures.py`).

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::prelude::*;
use safetensors::SafeTensors;
use serde_json::Value;
use vl_data::{ClipTokenizer, ImagePreprocessor, PreprocessConfig};
use vl_encoders::clip::{LoadOptions, load_clip};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn encoder_fixture(name: &str) -> PathBuf {
    root().join("crates/vl-encoders/tests/fixtures").join(name)
}

fn images_dir() -> PathBuf {
    root().join("crates/vl-data/tests/fixtures/images")
}

fn tokenizer_dir() -> PathBuf {
    root().join("crates/vl-data/tests/fixtures/clip_tokenizer")
}

/// `(shape, values)` of an f32 or i64 reference tensor, as f64.
fn reference(fixture: &str, name: &str) -> (Vec<usize>, Vec<f64>) {
    let bytes = std::fs::read(encoder_fixture(fixture).join("reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let values = match t.dtype() {
        safetensors::Dtype::F32 => t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        safetensors::Dtype::I64 => t
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        other => panic!("{name}: {other:?}"),
    };
    (t.shape().to_vec(), values)
}

fn reference_json(fixture: &str) -> Value {
    serde_json::from_slice(&std::fs::read(encoder_fixture(fixture).join("reference.json")).unwrap())
        .unwrap()
}

/// The captions a fixture's `file_text_embeds` were computed from.
fn captions(fixture: &str) -> Vec<String> {
    reference_json(fixture)["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn image_paths(fixture: &str) -> Vec<PathBuf> {
    reference_json(fixture)["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| images_dir().join(f.as_str().unwrap()))
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Preprocesses the fixture's raw images with `config`, compares the pixels and the embeddings
/// with the reference, and returns (mean |pixel diff|, min cosine).
fn files_match_reference(fixture: &str, config: PreprocessConfig) -> (f64, f64) {
    let device = Device::flex();
    let (clip, _) = load_clip(encoder_fixture(fixture), &LoadOptions::default(), &device).unwrap();
    let processor = ImagePreprocessor::new(config).unwrap();
    let pixels = processor.preprocess_files(&image_paths(fixture)).unwrap();
    let (ref_shape, ref_pixels) = reference(fixture, "file_pixel_values");
    assert_eq!(pixels.shape.to_vec(), ref_shape);
    let per_image = ref_pixels.len() / ref_shape[0];
    let mut worst_mean: f64 = 0.0;
    for (i, path) in image_paths(fixture).iter().enumerate() {
        let ours = &pixels.data[i * per_image..(i + 1) * per_image];
        let theirs = &ref_pixels[i * per_image..(i + 1) * per_image];
        let mean = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (*a as f64 - b).abs())
            .sum::<f64>()
            / per_image as f64;
        println!(
            "{fixture} {}: mean |pixel diff| {mean:.2e}",
            path.file_name().unwrap().to_string_lossy()
        );
        assert!(mean <= 0.02, "{}: mean pixel diff {mean}", path.display());
        worst_mean = worst_mean.max(mean);
    }
    let embeds = clip.encode_image(pixels.to_tensor(&device));
    let [n, d] = embeds.dims();
    let ours: Vec<f64> = embeds
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| *v as f64)
        .collect();
    let (_, theirs) = reference(fixture, "file_image_embeds");
    let mut worst_cos: f64 = 1.0;
    for i in 0..n {
        let c = cosine(&ours[i * d..(i + 1) * d], &theirs[i * d..(i + 1) * d]);
        println!("{fixture} image {i}: cosine {c:.6}");
        assert!(c >= 0.999, "image {i}: cosine {c}");
        worst_cos = worst_cos.min(c);
    }
    (worst_mean, worst_cos)
}

#[test]
fn hf_files_match_clip_image_processor_and_embeddings() {
    let config = PreprocessConfig::from_hf_file(
        encoder_fixture("hf_quickgelu_p16").join("preprocessor_config.json"),
    )
    .unwrap();
    files_match_reference("hf_quickgelu_p16", config);
}

#[test]
fn hf_old_style_preprocessor_config_files_match() {
    let config = PreprocessConfig::from_hf_file(
        encoder_fixture("hf_gelu_p14").join("preprocessor_config.json"),
    )
    .unwrap();
    files_match_reference("hf_gelu_p14", config);
}

#[test]
fn open_clip_files_match_open_clip_transform_and_embeddings() {
    let config = PreprocessConfig::from_open_clip_file(
        encoder_fixture("openclip_quickgelu_cfg").join("open_clip_config.json"),
    )
    .unwrap();
    files_match_reference("openclip_quickgelu_cfg", config);
}

#[test]
fn captions_through_our_tokenizer_match_transformers_text_embeddings() {
    let device = Device::flex();
    let fixture = "hf_quickgelu_p16";
    let (clip, _) = load_clip(encoder_fixture(fixture), &LoadOptions::default(), &device).unwrap();
    let texts = captions(fixture);
    let tokenizer = ClipTokenizer::from_dir(tokenizer_dir()).unwrap();
    let ids = tokenizer.encode_batch(&texts).unwrap();
    let (_, ref_ids) = reference(fixture, "file_input_ids");
    assert_eq!(
        ids.ids.iter().map(|v| *v as f64).collect::<Vec<_>>(),
        ref_ids
    );
    let embeds = clip.encode_text(ids.to_tensor(&device));
    let ours = embeds
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let (_, theirs) = reference(fixture, "file_text_embeds");
    let diff = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    println!("text embeds from raw captions: max abs diff {diff:.2e}");
    assert!(diff <= 1e-4);
}

/// A model directory as a user has it: checkpoint files plus the tokenizer.
fn model_dir(fixture: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(encoder_fixture(fixture))
        .unwrap()
        .chain(std::fs::read_dir(tokenizer_dir()).unwrap())
    {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("reference") && !name.ends_with(".json.check") {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    dir
}

fn vl(args: &[&str], env: &[(&str, &Path)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vl"));
    cmd.args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("RUST_BACKTRACE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn embed_and_check(model: &str, env: &[(&str, &Path)]) {
    let fixture = "hf_quickgelu_p16";
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("embeds.json");
    let images = image_paths(fixture);
    let texts = captions(fixture);
    let mut args = vec![
        "embed",
        "--model",
        model,
        "--out",
        out.to_str().unwrap(),
        "--image",
    ];
    args.extend(images.iter().map(|p| p.to_str().unwrap()));
    args.push("--text");
    args.extend(texts.iter().map(String::as_str));
    let (ok, stderr) = vl(&args, env);
    assert!(ok, "{stderr}");
    let json: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let flat = |key: &str| -> Vec<f64> {
        json[key]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
            .collect()
    };
    let (_, ref_text) = reference(fixture, "file_text_embeds");
    let text_diff = flat("text_embeds")
        .iter()
        .zip(&ref_text)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(text_diff <= 1e-4, "text embeds differ by {text_diff}");
    let (_, ref_image) = reference(fixture, "file_image_embeds");
    let ours = flat("image_embeds");
    let d = ref_image.len() / images.len();
    for i in 0..images.len() {
        assert!(cosine(&ours[i * d..(i + 1) * d], &ref_image[i * d..(i + 1) * d]) >= 0.999);
    }
    assert_eq!(
        json["logits_per_image"].as_array().unwrap().len(),
        images.len()
    );
    assert_eq!(
        json["logits_per_image"][0].as_array().unwrap().len(),
        texts.len()
    );
    assert_eq!(json["meta"]["dtype"], "f32");
    assert_eq!(json["meta"]["format"], "hugging_face");

    // Nothing is silently overwritten.
    let (ok, stderr) = vl(&args, env);
    assert!(!ok && stderr.contains("--force"), "{stderr}");
}

#[test]
fn vl_embed_writes_reference_embeddings_from_a_local_directory() {
    let dir = model_dir("hf_quickgelu_p16");
    embed_and_check(dir.path().to_str().unwrap(), &[]);
}

#[test]
fn vl_embed_resolves_a_hub_id_from_the_local_cache_offline() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--openai--clip-tiny-fixture");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let model = model_dir("hf_quickgelu_p16");
    for entry in std::fs::read_dir(model.path()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, snapshot.join(path.file_name().unwrap())).unwrap();
    }
    embed_and_check("openai/clip-tiny-fixture", &[("HF_HOME", home.path())]);
}

#[test]
fn uncached_hub_id_offline_says_what_to_download_and_where() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("x.json");
    let (ok, stderr) = vl(
        &[
            "embed",
            "--model",
            "openai/clip-vit-base-patch32",
            "--text",
            "a cat",
            "--out",
            out.to_str().unwrap(),
        ],
        &[("HF_HOME", home.path())],
    );
    assert!(!ok);
    assert!(
        stderr.contains("model.safetensors") && stderr.contains("config.json"),
        "{stderr}"
    );
    assert!(
        stderr.contains("models--openai--clip-vit-base-patch32"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn undecodable_image_is_an_error_naming_the_file() {
    let dir = model_dir("hf_quickgelu_p16");
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("x.json");
    let bad = images_dir().join("not_an_image.png");
    let (ok, stderr) = vl(
        &[
            "embed",
            "--model",
            dir.path().to_str().unwrap(),
            "--image",
            bad.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("not_an_image.png"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn open_clip_directory_without_tokenizer_asks_for_one() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("x.json");
    let model = encoder_fixture("openclip_quickgelu_cfg");
    let (ok, stderr) = vl(
        &[
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--text",
            "a cat",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok && stderr.contains("--tokenizer"), "{stderr}");
}

#[test]
fn vl_embed_with_a_peft_adapter_matches_peft_text_embeddings() {
    let peft = root().join("crates/vl-peft/tests/fixtures");
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("embeds.json");
    let model = encoder_fixture("hf_quickgelu_p16");
    let tokenizer = tokenizer_dir().join("tokenizer.json");
    let adapter = peft.join("lora_qv");
    let (ok, stderr) = vl(
        &[
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--adapter",
            adapter.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--text",
            "a photo of a cat",
            "a diagram",
            "two dogs on a beach",
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("trainable params"), "{stderr}");
    let json: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        json["meta"]["adapter"]["targets"].as_array().unwrap().len(),
        8
    );
    let got: Vec<f64> = json["text_embeds"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    let bytes = std::fs::read(peft.join("reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let want: Vec<f64> = st
        .tensor("lora_qv.text_embeds")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    assert_eq!(got.len(), want.len());
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(diff < 1e-4, "max |diff| {diff:e} against PEFT");
}
