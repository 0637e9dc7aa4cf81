//! Parity of [`vl_encoders::clip`] with transformers' `CLIPModel` and open_clip on the random-init
//! fixtures made by `tests/fixtures/make_fixtures.py`: image and text embeddings and logits
//! within 1e-4 (f32, flex), from the pixel tensors and token ids the references used. Covers
//! QuickGELU and GELU, patch 14 and 16, a non-square open_clip model, both text pooling rules,
//! f16 and bf16 checkpoints, a legacy diff-style config and shape-only architecture inference.

use crate::common::{Reference, fixture, max_abs_diff};
use burn::prelude::*;
use vl_encoders::clip::{CheckpointFormat, LoadOptions, TextPooling, load_clip};

const TOLERANCE: f32 = 1e-4;

/// Loads a fixture, runs the reference inputs and returns the worst difference per output.
fn check(name: &str, format: CheckpointFormat) -> Vec<(String, f32)> {
    let device = Device::flex();
    let (clip, info) = load_clip(fixture(name), &LoadOptions::default(), &device)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(info.format, format, "{name}");
    let reference = Reference::open(name);
    let out = clip.forward(
        reference.tensor("pixel_values", &device),
        reference.ids("input_ids", &device),
    );
    let mut diffs = vec![
        (
            "image_embeds".to_string(),
            max_abs_diff(out.image_embeds, reference.f32("image_embeds")),
        ),
        (
            "text_embeds".into(),
            max_abs_diff(out.text_embeds, reference.f32("text_embeds")),
        ),
        (
            "logits_per_image".into(),
            max_abs_diff(out.logits_per_image, reference.f32("logits_per_image")),
        ),
        (
            "logits_per_text".into(),
            max_abs_diff(out.logits_per_text, reference.f32("logits_per_text")),
        ),
    ];
    if reference.has("file_pixel_values") {
        let embeds = clip.encode_image(reference.tensor("file_pixel_values", &device));
        diffs.push((
            "file_image_embeds".into(),
            max_abs_diff(embeds, reference.f32("file_image_embeds")),
        ));
    }
    if reference.has("file_input_ids") {
        let embeds = clip.encode_text(reference.ids("file_input_ids", &device));
        diffs.push((
            "file_text_embeds".into(),
            max_abs_diff(embeds, reference.f32("file_text_embeds")),
        ));
    }
    for (what, diff) in &diffs {
        println!("{name:<26} {what:<18} max abs diff {diff:.3e}");
        assert!(
            *diff <= TOLERANCE,
            "{name}: {what} differs by {diff:e} > {TOLERANCE:e}"
        );
    }
    diffs
}

#[test]
fn hf_quickgelu_f16_checkpoint_matches_transformers() {
    check("hf_quickgelu_p16", CheckpointFormat::HuggingFace);
}

#[test]
fn hf_gelu_patch14_first_eos_pooling_matches_transformers() {
    let (clip, _) = load_clip(
        fixture("hf_gelu_p14"),
        &LoadOptions::default(),
        &Device::flex(),
    )
    .unwrap();
    assert_eq!(clip.text_model.pooling, TextPooling::FirstId(500));
    check("hf_gelu_p14", CheckpointFormat::HuggingFace);
}

#[test]
fn hf_legacy_bf16_diff_config_matches_transformers() {
    check("hf_legacy_bf16", CheckpointFormat::HuggingFace);
}

#[test]
fn openclip_quickgelu_with_config_matches_open_clip() {
    check("openclip_quickgelu_cfg", CheckpointFormat::OpenClip);
}

#[test]
fn openclip_non_square_gelu_matches_open_clip() {
    check("openclip_gelu_nonsquare", CheckpointFormat::OpenClip);
}

#[test]
fn openclip_architecture_inferred_from_shapes_matches_open_clip() {
    let (_, info) = load_clip(
        fixture("openclip_shapes_only"),
        &LoadOptions::default(),
        &Device::flex(),
    )
    .unwrap();
    assert!(info.config_file.is_none());
    check("openclip_shapes_only", CheckpointFormat::OpenClip);
}

#[test]
fn bare_safetensors_file_is_detected_by_its_keys() {
    let device = Device::flex();
    let file = fixture("openclip_quickgelu_cfg").join("open_clip_model.safetensors");
    let (_, info) = load_clip(&file, &LoadOptions::default(), &device).unwrap();
    assert_eq!(info.format, CheckpointFormat::OpenClip);
    // The config beside the file is used, so this is the same model as the directory.
    assert!(info.config_file.is_some());
    assert_eq!(info.config.vision.n_heads, 4);
}
