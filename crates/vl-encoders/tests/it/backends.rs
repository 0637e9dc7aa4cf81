//! Backend agreement: the encoders give the same outputs on the GPU backends as on `flex`, within
//! 1e-3 in f32, on the reference fixtures of the parity tests (which check `flex` itself against
//! transformers and open_clip to 1e-4).
//!
//! The check runs for every GPU backend compiled in (`cargo test -p vl-encoders --features wgpu`
//! or `--features cuda`) whose device opens, and says on stderr why it skips otherwise: CI builds
//! `flex` only and has no GPU. On a GPU machine, build the test binary here and run it there
//! (`docs/performance.md`).

use crate::common::{Reference, fixture, values};
use burn::prelude::*;
use vl_encoders::clip::{LoadOptions, load_clip};

/// Largest difference allowed between a GPU backend and `flex` (f32).
const TOLERANCE: f32 = 1e-3;

/// Every fixture of the parity tests: QuickGELU and GELU, patch 14 and 16, both text poolings,
/// f16 and bf16 checkpoints, open_clip layouts.
const FIXTURES: [&str; 6] = [
    "hf_quickgelu_p16",
    "hf_gelu_p14",
    "hf_legacy_bf16",
    "openclip_quickgelu_cfg",
    "openclip_gelu_nonsquare",
    "openclip_shapes_only",
];

/// The GPU devices compiled into this test binary, by backend name.
fn gpu_devices() -> Vec<(&'static str, Device)> {
    #[allow(unused_mut)]
    let mut devices = Vec::new();
    #[cfg(feature = "wgpu")]
    devices.push((
        "wgpu",
        Device::wgpu(burn::prelude::DeviceKind::DefaultDevice),
    ));
    #[cfg(feature = "cuda")]
    devices.push(("cuda", Device::cuda(0)));
    devices
}

/// Whether `device` opens and computes (a GPU backend without a GPU or driver panics).
fn device_opens(device: &Device) -> bool {
    let device = device.clone();
    std::panic::catch_unwind(move || {
        let x = Tensor::<1>::from_floats([1.0, 2.0], &device);
        x.sum().into_data()
    })
    .is_ok()
}

/// `(output name, shape, values)` of one fixture's forward pass on `device`.
fn outputs(name: &str, device: &Device) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
    let (clip, _) = load_clip(fixture(name), &LoadOptions::default(), device)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let reference = Reference::open(name);
    let out = clip.forward(
        reference.tensor("pixel_values", device),
        reference.ids("input_ids", device),
    );
    [
        ("image_embeds", values(out.image_embeds)),
        ("text_embeds", values(out.text_embeds)),
        ("logits_per_image", values(out.logits_per_image)),
    ]
    .into_iter()
    .map(|(what, (shape, data))| (what, shape, data))
    .collect()
}

/// The largest difference between two runs' outputs, by output name.
fn max_diffs(
    a: &[(&'static str, Vec<usize>, Vec<f32>)],
    b: &[(&'static str, Vec<usize>, Vec<f32>)],
) -> Vec<(&'static str, f32)> {
    a.iter()
        .zip(b)
        .map(|((what, shape_a, a), (_, shape_b, b))| {
            assert_eq!(shape_a, shape_b, "{what}: shapes differ");
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            (*what, diff)
        })
        .collect()
}

#[test]
fn gpu_backends_agree_with_flex_on_the_encoder_fixtures() {
    let devices = gpu_devices();
    if devices.is_empty() {
        eprintln!("skipped: no GPU backend compiled in (test with `--features wgpu` or `cuda`)");
        return;
    }
    let flex = Device::flex();
    // Every backend and fixture is measured and printed before the verdict, so one run on a GPU
    // machine gives the whole table (on an H100, cuda's f32 matmuls run in TF32: see
    // docs/performance.md).
    let mut failures = Vec::new();
    for (backend, device) in devices {
        if !device_opens(&device) {
            eprintln!("skipped {backend}: its device did not open (no GPU or driver here)");
            continue;
        }
        for name in FIXTURES {
            let expected = outputs(name, &flex);
            let got = outputs(name, &device);
            for (what, diff) in max_diffs(&expected, &got) {
                println!("{backend} vs flex  {name:<24} {what:<17} max abs diff {diff:.3e}");
                if diff > TOLERANCE {
                    failures.push(format!(
                        "{backend} vs flex on {name}: {what} differs by {diff:e} > {TOLERANCE:e}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn backend_comparison_sees_a_difference_above_tolerance() {
    // The comparison itself must be able to fail: perturb one output past the tolerance.
    let flex = Device::flex();
    let expected = outputs("hf_quickgelu_p16", &flex);
    let mut perturbed = expected.clone();
    perturbed[1].2[0] += 2.0 * TOLERANCE;
    let diffs = max_diffs(&expected, &perturbed);
    assert_eq!(diffs[0], ("image_embeds", 0.0));
    assert!(diffs[1].1 > TOLERANCE, "{diffs:?}");
}
