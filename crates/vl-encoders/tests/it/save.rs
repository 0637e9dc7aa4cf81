//! [`save_hf`] writes a standard Hugging Face `CLIPModel` checkpoint: it loads back through
//! [`load_clip`] bit for bit, its tensor names, shapes and values are those of the transformers
//! fixtures (made by `tests/fixtures/make_fixtures.py` with `save_pretrained`), its `config.json`
//! parses to the same configuration, and a model or configuration it cannot write is an error
//! that leaves the directory untouched.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::fixture;
use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn_store::{ModuleSnapshot, bridge};
use safetensors::{Dtype, SafeTensors};
use vl_encoders::Error;
use vl_encoders::clip::{
    CheckpointFormat, Clip, ClipActivation, ClipConfig, ClipTextConfig, ClipVisionConfig,
    LoadOptions, TensorFiles, TextPooling, load_clip, save_hf,
};

/// A two-layer model of each tower, with non-default activation, pooling, epsilon and scale so
/// that every config field is exercised.
fn tiny_config() -> ClipConfig {
    let vision = ClipVisionConfig::new(32, 48, 2, 2, [32, 32], 16)
        .with_activation(ClipActivation::Gelu)
        .with_layer_norm_eps(1e-6);
    let text = ClipTextConfig::new(64, 16, 40, 2, 3, 8, TextPooling::FirstId(63))
        .with_activation(ClipActivation::GeluTanh);
    ClipConfig::new(vision, text, 24).with_logit_scale_init(1.5)
}

/// Replaces every float parameter with normal noise, so LayerNorms and biases are not their
/// trivial initial values.
struct Randomize;

impl ModuleMapper for Randomize {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| t.random_like(Distribution::Normal(0.0, 0.5)))
    }
}

fn random_model(config: &ClipConfig, device: &Device) -> Clip {
    config.init(device).map(&mut Randomize)
}

/// Every float parameter by module path, as f32 bit patterns.
fn parameters(model: &Clip) -> BTreeMap<String, (Vec<usize>, Vec<u32>)> {
    model
        .collect(None, None, false)
        .into_iter()
        .map(|t| {
            let name = t.name.clone();
            let data = bridge::into_data(t).unwrap();
            let shape = data.shape().to_vec();
            let bits = data
                .try_into_vec_as::<f32>()
                .unwrap()
                .into_iter()
                .map(f32::to_bits)
                .collect();
            (name, (shape, bits))
        })
        .collect()
}

fn bits<const D: usize>(t: Tensor<D>) -> Vec<u32> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

/// Tensor name -> (dtype, shape).
type Header = BTreeMap<String, (Dtype, Vec<usize>)>;

/// The tensors of a safetensors file and its `format` metadata.
fn header(path: &Path) -> (Header, Option<String>) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    let format = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get("format").cloned());
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, (view.dtype(), view.shape().to_vec())))
        .collect();
    (tensors, format)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn save_hf_round_trips_through_load_clip() {
    let device = Device::flex();
    let config = tiny_config();
    let model = random_model(&config, &device);
    let dir = tempfile::tempdir().unwrap();
    save_hf(&model, &config, dir.path()).unwrap();
    assert_eq!(listing(dir.path()), ["config.json", "model.safetensors"]);

    let (loaded, info) = load_clip(dir.path(), &LoadOptions::default(), &device).unwrap();
    assert_eq!(info.format, CheckpointFormat::HuggingFace);
    assert_eq!(info.config_file, Some(dir.path().join("config.json")));

    let ours = parameters(&model);
    let back = parameters(&loaded);
    assert_eq!(ours.len(), back.len());
    for (name, value) in &ours {
        assert!(back.get(name) == Some(value), "parameter `{name}` differs");
    }

    let pixels = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let ids = Tensor::<2, Int>::from_data(
        TensorData::new(
            vec![5i64, 9, 63, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 63],
            [2, 8],
        ),
        &device,
    );
    assert_eq!(
        bits(model.encode_image(pixels.clone())),
        bits(loaded.encode_image(pixels))
    );
    assert_eq!(
        bits(model.encode_text(ids.clone())),
        bits(loaded.encode_text(ids))
    );
}

#[test]
fn save_hf_config_json_parses_to_an_equal_config() {
    let device = Device::flex();
    let config = tiny_config();
    let dir = tempfile::tempdir().unwrap();
    save_hf(&random_model(&config, &device), &config, dir.path()).unwrap();
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("\n  \"model_type\": \"clip\""),
        "not pretty: {text}"
    );
    let back = ClipConfig::from_hf_file(&path).unwrap();
    assert_eq!(
        serde_json::to_value(&back).unwrap(),
        serde_json::to_value(&config).unwrap()
    );
}

/// For each transformers fixture: load, save, and compare the written file with the fixture's
/// `model.safetensors`: the same names (less the `position_ids` buffers old transformers wrote),
/// the same shapes, F32, and the same values (f16/bf16 fixtures widened exactly to f32).
#[test]
fn save_hf_writes_the_tensors_of_a_transformers_checkpoint() {
    let device = Device::flex();
    for name in ["hf_gelu_p14", "hf_quickgelu_p16", "hf_legacy_bf16"] {
        let (model, info) = load_clip(fixture(name), &LoadOptions::default(), &device).unwrap();
        let dir = tempfile::tempdir().unwrap();
        save_hf(&model, &info.config, dir.path()).unwrap();

        let reference_path = fixture(name).join("model.safetensors");
        let written_path = dir.path().join("model.safetensors");
        let (reference, _) = header(&reference_path);
        let (written, format) = header(&written_path);
        assert_eq!(format.as_deref(), Some("pt"), "{name}");
        let reference_shapes: BTreeMap<_, _> = reference
            .into_iter()
            .filter(|(key, _)| !key.ends_with("position_ids"))
            .map(|(key, (_, shape))| (key, shape))
            .collect();
        let written_shapes: BTreeMap<_, _> = written
            .iter()
            .map(|(key, (_, shape))| (key.clone(), shape.clone()))
            .collect();
        assert_eq!(written_shapes, reference_shapes, "{name}");
        assert!(
            written.values().all(|(dtype, _)| *dtype == Dtype::F32),
            "{name}"
        );

        let reference = TensorFiles::read(&[reference_path]).unwrap();
        let written = TensorFiles::read(&[written_path]).unwrap();
        for key in written_shapes.keys() {
            let (_, ours) = written.f32(key).unwrap().unwrap();
            let (_, theirs) = reference.f32(key).unwrap().unwrap();
            assert!(
                ours.iter()
                    .map(|v| v.to_bits())
                    .eq(theirs.iter().map(|v| v.to_bits())),
                "{name}: `{key}` differs"
            );
        }
    }
}

#[test]
fn save_hf_f32_checkpoint_is_reproduced_byte_for_byte() {
    let device = Device::flex();
    let (model, info) =
        load_clip(fixture("hf_gelu_p14"), &LoadOptions::default(), &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_hf(&model, &info.config, dir.path()).unwrap();
    let reference = std::fs::read(fixture("hf_gelu_p14").join("model.safetensors")).unwrap();
    let written = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let reference = SafeTensors::deserialize(&reference).unwrap();
    let written = SafeTensors::deserialize(&written).unwrap();
    for (key, view) in written.tensors() {
        assert_eq!(
            view.data(),
            reference.tensor(&key).unwrap().data(),
            "`{key}`"
        );
    }
}

#[test]
fn save_hf_replaces_an_existing_checkpoint() {
    let device = Device::flex();
    let config = tiny_config();
    let dir = tempfile::tempdir().unwrap();
    save_hf(&random_model(&config, &device), &config, dir.path()).unwrap();
    let second = random_model(&config, &device);
    save_hf(&second, &config, dir.path()).unwrap();
    assert_eq!(listing(dir.path()), ["config.json", "model.safetensors"]);
    let (loaded, _) = load_clip(dir.path(), &LoadOptions::default(), &device).unwrap();
    assert!(parameters(&loaded) == parameters(&second));
}

#[test]
fn save_hf_creates_missing_directories() {
    let device = Device::flex();
    let config = tiny_config();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a").join("b");
    save_hf(&random_model(&config, &device), &config, &dir).unwrap();
    assert_eq!(listing(&dir), ["config.json", "model.safetensors"]);
}

#[test]
fn save_hf_rejects_a_model_that_disagrees_with_the_config_and_writes_nothing() {
    let device = Device::flex();
    let config = tiny_config();
    let model = random_model(&config, &device);
    let mut other = tiny_config();
    other.text.d_ff = 24;
    let dir = tempfile::tempdir().unwrap();
    let err = save_hf(&model, &other, dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Save { path, .. } if path == dir.path()),
        "{err}"
    );
    let msg = err.to_string();
    // The first mismatch in path order is the fc1 bias of the first text layer.
    assert!(
        msg.contains("text_model.encoder.layers.0.mlp.fc1")
            && msg.contains("[40]")
            && msg.contains("[24]"),
        "{msg}"
    );
    assert!(listing(dir.path()).is_empty());

    let mut fewer_layers = tiny_config();
    fewer_layers.vision.n_layers = 1;
    let err = save_hf(&model, &fewer_layers, dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("vision_model.encoder.layers.1"),
        "{err}"
    );
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn save_hf_rejects_a_non_square_image_size_and_writes_nothing() {
    let device = Device::flex();
    let mut config = tiny_config();
    config.vision.image_size = [32, 48];
    let model = random_model(&config, &device);
    let dir = tempfile::tempdir().unwrap();
    let err = save_hf(&model, &config, dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidConfig { field, .. } if field == "vision.image_size"),
        "{err}"
    );
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn save_hf_rejects_an_invalid_config_instead_of_panicking() {
    let device = Device::flex();
    let config = tiny_config();
    let model = random_model(&config, &device);
    let mut bad = tiny_config();
    bad.text.n_heads = 3;
    let dir = tempfile::tempdir().unwrap();
    let err = save_hf(&model, &bad, dir.path()).unwrap_err();
    assert!(err.to_string().contains("num_attention_heads"), "{err}");
}

#[test]
fn save_hf_into_a_file_path_is_a_write_error_naming_it() {
    let device = Device::flex();
    let config = tiny_config();
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = save_hf(&random_model(&config, &device), &config, &file).unwrap_err();
    assert!(
        matches!(&err, Error::Write { path, .. } if path == &file),
        "{err}"
    );
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}
