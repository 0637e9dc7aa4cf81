//! PEFT parity and adapter lifecycle on the tiny random-init CLIP of the vl-encoders fixtures:
//! adapters written by PEFT (`tests/fixtures/make_fixtures.py`) give PEFT's embeddings within
//! 1e-4, unmerged and merged; fresh adapters are the identity at initialisation; gradients reach
//! only adapter parameters; merged equals unmerged; saving and loading round-trips; bad targets
//! and unsupported options are clear errors.

use std::path::PathBuf;

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use safetensors::SafeTensors;
use vl_data::Overwrite;
use vl_encoders::clip::{Clip, LoadOptions, load_clip};
use vl_peft::{
    Error, PeftConfig, PeftMethod, Tower, apply_peft, load_peft_adapter, merge, save_peft_adapter,
};

const TOL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn clip(device: &Device) -> Clip {
    load_clip(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../vl-encoders/tests/fixtures/hf_quickgelu_p16"),
        &LoadOptions::default(),
        device,
    )
    .expect("fixture checkpoint")
    .0
}

struct Reference(Vec<u8>);

impl Reference {
    fn open() -> Self {
        Self(std::fs::read(fixtures().join("reference.safetensors")).expect("fixture"))
    }
    fn f32(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let t = st.tensor(key).unwrap_or_else(|_| panic!("{key}"));
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        (t.shape().to_vec(), v)
    }
    fn inputs(&self, device: &Device) -> (Tensor<4>, Tensor<2, Int>) {
        let (shape, px) = self.f32("pixel_values");
        let pixels = Tensor::from_data(
            TensorData::new(px, [shape[0], shape[1], shape[2], shape[3]]),
            device,
        );
        let st = SafeTensors::deserialize(&self.0).unwrap();
        let t = st.tensor("input_ids").unwrap();
        let ids: Vec<i64> = t
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let s = t.shape().to_vec();
        (
            pixels,
            Tensor::from_data(TensorData::new(ids, [s[0], s[1]]), device),
        )
    }
}

fn max_diff(got: Tensor<2>, want: &[f32]) -> f32 {
    let got = got.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn embeds(clip: &Clip, r: &Reference, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let (px, ids) = r.inputs(device);
    (clip.encode_image(px), clip.encode_text(ids))
}

#[test]
fn peft_adapters_reproduce_peft_embeddings_unmerged_and_merged() {
    let r = Reference::open();
    let device = Device::flex();
    let base = clip(&device);
    let (img, txt) = embeds(&base, &r, &device);
    assert!(max_diff(img, &r.f32("base.image_embeds").1) < TOL);
    assert!(max_diff(txt, &r.f32("base.text_embeds").1) < TOL);
    for name in ["lora_qv", "lora_rs_fc1", "dora", "vera"] {
        let (adapted, state) = load_peft_adapter(base.clone(), fixtures().join(name)).unwrap();
        assert!(!state.targets.is_empty(), "{name}");
        let (img, txt) = embeds(&adapted, &r, &device);
        let d_img = max_diff(img, &r.f32(&format!("{name}.image_embeds")).1);
        let d_txt = max_diff(txt, &r.f32(&format!("{name}.text_embeds")).1);
        let merged = merge(&adapted);
        let (mimg, mtxt) = embeds(&merged, &r, &device);
        let m_img = max_diff(mimg, &r.f32(&format!("{name}.merged.image_embeds")).1);
        let m_txt = max_diff(mtxt, &r.f32(&format!("{name}.merged.text_embeds")).1);
        println!(
            "{name}: unmerged {d_img:.2e} / {d_txt:.2e}, merged {m_img:.2e} / {m_txt:.2e}; {}",
            state.trainable_line()
        );
        for d in [d_img, d_txt, m_img, m_txt] {
            assert!(d < TOL, "{name}: max |diff| {d:e} against PEFT");
        }
        // The adapter changes the outputs (so the comparison above means something).
        let (bimg, _) = embeds(&base, &r, &device);
        let (aimg, _) = embeds(&adapted, &r, &device);
        let delta = (bimg - aimg).abs().max().into_scalar::<f32>();
        assert!(
            delta > 1e-2 || name == "lora_rs_fc1",
            "{name}: adapter has no effect ({delta})"
        );
    }
}

fn all_methods() -> Vec<PeftMethod> {
    vec![
        PeftMethod::Lora {
            r: 4,
            alpha: 8.0,
            rslora: false,
        },
        PeftMethod::Lora {
            r: 4,
            alpha: 8.0,
            rslora: true,
        },
        PeftMethod::Dora {
            r: 4,
            alpha: 8.0,
            rslora: false,
        },
        PeftMethod::Vera {
            r: 8,
            d_initial: 0.1,
            projection_seed: 3,
        },
        PeftMethod::Dvora {
            r: 8,
            d_initial: 0.1,
            projection_seed: 3,
        },
        PeftMethod::BitFit,
        PeftMethod::LayerNorm,
    ]
}

/// Adds `0.05 * (1 + index)` to every trainable parameter (so fresh adapters stop being the
/// identity without training).
struct Nudge;

impl ModuleMapper for Nudge {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if param.is_require_grad() {
            // A fresh leaf (a mapped tensor would not collect gradients).
            param.map(|t| t.add_scalar(0.05).detach().require_grad())
        } else {
            param
        }
    }
}

#[test]
fn every_method_is_identity_at_init_trains_only_its_parameters_merges_and_round_trips() {
    let r = Reference::open();
    let device = Device::flex().autodiff();
    let base = clip(&device);
    let (b_img, b_txt) = embeds(&base, &r, &device);
    for method in all_methods() {
        let config = PeftConfig {
            method: method.clone(),
            target_modules: vec!["self_attn.(q|v)_proj".into(), "mlp.fc1".into()],
            tower: Tower::Both,
        };
        let (adapted, state) = apply_peft(base.clone(), &config, 1).unwrap();
        assert!(
            state.trainable > 0 && state.trainable < state.total,
            "{method:?}"
        );
        let (img, txt) = embeds(&adapted, &r, &device);
        let identity = (img.clone() - b_img.clone())
            .abs()
            .max()
            .into_scalar::<f32>()
            .max((txt - b_txt.clone()).abs().max().into_scalar::<f32>());
        assert!(
            identity < 1e-5,
            "{method:?}: not the identity at init ({identity:e})"
        );

        // Gradients reach exactly the method's parameters: their count equals `trainable`.
        let adapted = adapted.map(&mut Nudge);
        let (img, txt) = embeds(&adapted, &r, &device);
        let loss = img.powi_scalar(2).sum() + txt.powi_scalar(2).sum();
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &adapted);
        let mut counted = 0usize;
        struct Count<'a>(&'a burn::optim::GradientsParams, &'a mut usize);
        impl burn::module::ModuleVisitor for Count<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if self.0.get::<D>(param.id).is_some() {
                    *self.1 += param.shape().num_elements();
                }
            }
        }
        adapted.visit(&mut Count(&grads, &mut counted));
        assert_eq!(
            counted, state.trainable,
            "{method:?}: parameters with gradients"
        );

        // Merged equals unmerged.
        let merged = merge(&adapted);
        let (u_img, u_txt) = embeds(&adapted, &r, &device);
        let (m_img, m_txt) = embeds(&merged, &r, &device);
        let d = (u_img.clone() - m_img)
            .abs()
            .max()
            .into_scalar::<f32>()
            .max((u_txt.clone() - m_txt).abs().max().into_scalar::<f32>());
        assert!(d < 1e-4, "{method:?}: merged differs by {d:e}");
        assert_eq!(
            merged.num_params(),
            base.num_params(),
            "{method:?}: merged has no adapters"
        );

        // Save and load round trip (adapter methods).
        if matches!(method, PeftMethod::BitFit | PeftMethod::LayerNorm) {
            let dir = tempfile::tempdir().unwrap();
            assert!(save_peft_adapter(&adapted, &state, dir.path(), Overwrite::Refuse).is_err());
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("adapter");
        save_peft_adapter(&adapted, &state, &out, Overwrite::Refuse).unwrap();
        assert!(
            save_peft_adapter(&adapted, &state, &out, Overwrite::Refuse).is_err(),
            "no silent overwrite"
        );
        let (loaded, loaded_state) = load_peft_adapter(base.clone(), &out).unwrap();
        assert_eq!(loaded_state.targets, state.targets);
        assert_eq!(loaded_state.config.method, method);
        let (l_img, l_txt) = embeds(&loaded, &r, &device);
        let d = (u_img - l_img)
            .abs()
            .max()
            .into_scalar::<f32>()
            .max((u_txt - l_txt).abs().max().into_scalar::<f32>());
        assert!(d < 1e-5, "{method:?}: reloaded adapter differs by {d:e}");
    }
}

#[test]
fn bad_targets_and_unsupported_peft_options_are_clear_errors() {
    let device = Device::flex();
    let base = clip(&device);
    let config = PeftConfig {
        method: PeftMethod::Lora {
            r: 2,
            alpha: 4.0,
            rslora: false,
        },
        target_modules: vec!["query".into()],
        tower: Tower::Vision,
    };
    let err = apply_peft(base.clone(), &config, 0).unwrap_err();
    assert!(matches!(err, Error::NoTarget { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("query") && msg.contains("vision_model.encoder.layers.*.self_attn.q_proj"),
        "{msg}"
    );
    assert!(
        !msg.contains("text_model"),
        "only the chosen tower is listed: {msg}"
    );

    // fan_in_fan_out is refused, naming the key.
    let dir = tempfile::tempdir().unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(fixtures().join("lora_qv").join(f), dir.path().join(f)).unwrap();
    }
    let cfg_path = dir.path().join("adapter_config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["fan_in_fan_out"] = serde_json::json!(true);
    cfg["some_future_key"] = serde_json::json!(1);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let err = load_peft_adapter(base.clone(), dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fan_in_fan_out") && err.contains("adapter_config.json"),
        "{err}"
    );
    // Unknown keys alone are tolerated.
    cfg["fan_in_fan_out"] = serde_json::json!(false);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    assert!(load_peft_adapter(base.clone(), dir.path()).is_ok());
    // A rank that disagrees with the tensors names the tensor and both shapes.
    cfg["r"] = serde_json::json!(3);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let err = load_peft_adapter(base, dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("lora_A.weight") && err.contains("[3, 16]") && err.contains("[4, 16]"),
        "{err}"
    );
}

/// The adapters vlkit writes for the PEFT check (`tests/fixtures/check_vlkit_adapters.py` loads
/// them in PEFT and compares with our embeddings): LoRA, DoRA and VeRA on q/v and fc1 of both
/// towers, every trainable parameter nudged by 0.05 so that none is at its identity value.
fn vlkit_adapters(dir: &std::path::Path) {
    let r = Reference::open();
    let device = Device::flex();
    let base = clip(&device);
    type Entry = (String, (Vec<usize>, Vec<u8>));
    let mut tensors: Vec<Entry> = Vec::new();
    let methods = [
        (
            "lora",
            PeftMethod::Lora {
                r: 4,
                alpha: 8.0,
                rslora: false,
            },
        ),
        (
            "dora",
            PeftMethod::Dora {
                r: 4,
                alpha: 8.0,
                rslora: true,
            },
        ),
        (
            "vera",
            PeftMethod::Vera {
                r: 8,
                d_initial: 0.1,
                projection_seed: 5,
            },
        ),
    ];
    for (name, method) in methods {
        let config = PeftConfig {
            method,
            target_modules: vec!["self_attn.(q|v)_proj".into(), "mlp.fc1".into()],
            tower: Tower::Both,
        };
        let (adapted, state) = apply_peft(base.clone(), &config, 9).unwrap();
        let adapted = adapted.map(&mut Nudge);
        save_peft_adapter(&adapted, &state, dir.join(name), Overwrite::Allow).unwrap();
        let (img, txt) = embeds(&adapted, &r, &device);
        for (what, t) in [("image_embeds", img), ("text_embeds", txt)] {
            let shape = t.dims().to_vec();
            let bytes = t
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            tensors.push((format!("{name}.{what}"), (shape, bytes)));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(k, (s, b))| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(
        dir.join("vlkit_embeds.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
}

/// Regenerates `tests/fixtures/from_vlkit/` (then run `check_vlkit_adapters.py`).
#[test]
#[ignore = "writes the fixtures of the PEFT check; run by hand, see tests/fixtures/check_vlkit_adapters.py"]
fn write_vlkit_adapters_for_the_peft_check() {
    vlkit_adapters(&fixtures().join("from_vlkit"));
}

#[test]
fn adapters_vlkit_writes_are_the_ones_peft_was_checked_on() {
    // The committed files are what `check_vlkit_adapters.py` loaded in PEFT (its verdict is in
    // from_vlkit/check.json); today's code must still write exactly them.
    let dir = tempfile::tempdir().unwrap();
    vlkit_adapters(dir.path());
    let committed = fixtures().join("from_vlkit");
    for file in [
        "lora/adapter_model.safetensors",
        "dora/adapter_model.safetensors",
        "vera/adapter_model.safetensors",
        "vlkit_embeds.safetensors",
    ] {
        let now = std::fs::read(dir.path().join(file)).unwrap();
        let then = std::fs::read(committed.join(file)).unwrap();
        assert!(
            now == then,
            "{file} differs from the adapter PEFT was checked on"
        );
    }
    let check: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(committed.join("check.json")).unwrap())
            .unwrap();
    for name in ["lora", "dora", "vera"] {
        let diff = check[name]["max_abs_diff"].as_f64().unwrap();
        assert!(
            diff < 1e-4,
            "PEFT reproduced our {name} adapter only to {diff:e}"
        );
    }
}
