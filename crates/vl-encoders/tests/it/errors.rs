//! Bad checkpoints and configs give errors that name the file, the tensor or field, and what was
//! expected and found — never a panic. Each case copies a fixture into a temporary directory and
//! breaks one thing.

use std::path::{Path, PathBuf};

use crate::common::fixture;
use burn::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use vl_encoders::Error;
use vl_encoders::clip::{CheckpointFormat, LoadOptions, load_clip};

/// Copies a fixture's checkpoint files into a fresh temporary directory.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap();
        if file.to_str().is_some_and(|f| f.starts_with("reference")) {
            continue;
        }
        std::fs::copy(&path, dir.path().join(file)).unwrap();
    }
    dir
}

/// Rewrites a safetensors file through `edit`, which may drop or replace tensors.
fn rewrite(
    path: &Path,
    edit: impl Fn(&str, TensorView<'_>) -> Option<(Dtype, Vec<usize>, Vec<u8>)>,
) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut owned = Vec::new();
    for (name, view) in st.tensors() {
        if let Some(t) = edit(&name, view) {
            owned.push((name, t));
        }
    }
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn keep(view: TensorView<'_>) -> Option<(Dtype, Vec<usize>, Vec<u8>)> {
    Some((view.dtype(), view.shape().to_vec(), view.data().to_vec()))
}

fn load(path: &Path) -> Result<(), Error> {
    load_clip(path, &LoadOptions::default(), &Device::flex()).map(|_| ())
}

fn message(path: &Path) -> String {
    let err = load(path).expect_err("loading must fail");
    let msg = err.to_string();
    println!("{msg}");
    msg
}

#[test]
fn missing_tensor_names_file_key_and_expected_shape() {
    let dir = copy_fixture("hf_gelu_p14");
    let weights = dir.path().join("model.safetensors");
    let gone = "vision_model.encoder.layers.1.mlp.fc1.bias";
    rewrite(&weights, |name, view| {
        (name != gone).then(|| keep(view)).flatten()
    });
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { path, key, expected } if path == &weights && key == gone && expected == &[80]),
        "{err}"
    );
    assert!(err.to_string().contains("model.safetensors"));
}

#[test]
fn missing_open_clip_tensor_is_named_in_open_clip_spelling() {
    let dir = copy_fixture("openclip_quickgelu_cfg");
    let weights = dir.path().join("open_clip_model.safetensors");
    rewrite(&weights, |name, view| {
        (!name.ends_with("resblocks.0.attn.in_proj_weight"))
            .then(|| keep(view))
            .flatten()
    });
    let msg = message(dir.path());
    assert!(
        msg.contains("visual.transformer.resblocks.0.attn.in_proj_weight"),
        "{msg}"
    );
    assert!(msg.contains("[192, 64]"), "{msg}");
}

#[test]
fn wrong_shape_names_expected_and_found() {
    let dir = copy_fixture("hf_gelu_p14");
    let weights = dir.path().join("model.safetensors");
    rewrite(&weights, |name, view| {
        if name == "text_projection.weight" {
            Some((Dtype::F32, vec![40, 16], vec![0u8; 40 * 16 * 4]))
        } else {
            keep(view)
        }
    });
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { key, expected, found, .. }
            if key == "text_projection.weight" && expected == &[40, 32] && found == &[40, 16]),
        "{err}"
    );
}

#[test]
fn integer_tensor_where_a_float_is_expected_is_an_error() {
    let dir = copy_fixture("hf_gelu_p14");
    let weights = dir.path().join("model.safetensors");
    rewrite(&weights, |name, view| {
        if name == "logit_scale" {
            Some((Dtype::I32, vec![], vec![0u8; 4]))
        } else {
            keep(view)
        }
    });
    let msg = message(dir.path());
    assert!(msg.contains("logit_scale") && msg.contains("I32"), "{msg}");
}

#[test]
fn truncated_checkpoint_is_reported_not_panicked() {
    let dir = copy_fixture("hf_gelu_p14");
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Safetensors { path, .. } if path == &weights),
        "{err}"
    );
    assert!(err.to_string().contains("truncated or corrupt"));
}

#[test]
fn corrupt_header_is_reported() {
    let dir = copy_fixture("openclip_shapes_only");
    let weights = dir.path().join("open_clip_model.safetensors");
    let mut bytes = 64u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[b'{'; 64]);
    std::fs::write(&weights, bytes).unwrap();
    let msg = message(dir.path());
    assert!(msg.contains("open_clip_model.safetensors"), "{msg}");
}

#[test]
fn unparsable_config_names_the_file() {
    let dir = copy_fixture("hf_gelu_p14");
    let config = dir.path().join("config.json");
    std::fs::write(&config, "{\"projection_dim\": 40,").unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Json { path, .. } if path == &config),
        "{err}"
    );
}

#[test]
fn config_field_of_wrong_type_names_the_field() {
    let dir = copy_fixture("hf_gelu_p14");
    let config = dir.path().join("config.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    value["vision_config"]["patch_size"] = serde_json::json!("fourteen");
    std::fs::write(&config, value.to_string()).unwrap();
    let msg = message(dir.path());
    assert!(
        msg.contains("vision_config.patch_size") && msg.contains("fourteen"),
        "{msg}"
    );
    assert!(msg.contains("config.json"), "{msg}");
}

#[test]
fn config_that_disagrees_with_the_weights_reports_the_shape() {
    let dir = copy_fixture("hf_gelu_p14");
    let config = dir.path().join("config.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    value["vision_config"]["intermediate_size"] = serde_json::json!(96);
    std::fs::write(&config, value.to_string()).unwrap();
    let msg = message(dir.path());
    assert!(
        msg.contains("fc1.weight") && msg.contains("[96, 48]") && msg.contains("[80, 48]"),
        "{msg}"
    );
}

#[test]
fn missing_directory_is_an_io_error_naming_it() {
    let path = PathBuf::from("/nonexistent/vlkit-model");
    let err = load(&path).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path: p, .. } if p == &path),
        "{err}"
    );
}

#[test]
fn directory_without_checkpoint_lists_what_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pytorch_model.bin"), b"pickle").unwrap();
    let msg = message(dir.path());
    assert!(
        msg.contains("model.safetensors") && msg.contains("open_clip_model.safetensors"),
        "{msg}"
    );
    assert!(
        msg.contains("pytorch_model.bin") && msg.contains("convert"),
        "{msg}"
    );
}

#[test]
fn forcing_the_wrong_format_is_a_clear_error() {
    let options = LoadOptions {
        format: Some(CheckpointFormat::OpenClip),
        ..Default::default()
    };
    let err = load_clip(fixture("hf_gelu_p14"), &options, &Device::flex())
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, Error::NoCheckpoint { .. }), "{err}");
}

#[test]
fn unsupported_open_clip_option_is_rejected() {
    let dir = copy_fixture("openclip_quickgelu_cfg");
    let config = dir.path().join("open_clip_config.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    value["model_cfg"]["text_cfg"]["pool_type"] = serde_json::json!("first");
    std::fs::write(&config, value.to_string()).unwrap();
    let msg = message(dir.path());
    assert!(msg.contains("model_cfg.text_cfg.pool_type"), "{msg}");
}
