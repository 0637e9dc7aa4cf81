//! Every prompt learner's loss and the gradient with respect to each of its trainable
//! parameters against the PyTorch reference of `tests/fixtures/make_fixtures.py` (the same
//! forward written on transformers' CLIP modules), on the tiny random-init checkpoint of the
//! vl-encoders fixtures. Tolerance 1e-4 (absolute, relative above 1). Also: the frozen CLIP gets
//! no gradient, and a phrase-initialised context equals the phrase's token embeddings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::module::{Module, Param};
use burn::prelude::*;
use safetensors::SafeTensors;
use serde_json::Value;
use vl_data::ClipTokenizer;
use vl_encoders::clip::{Clip, LoadOptions, load_clip};
use vl_prompting::model::{PromptTask, TaskTemplates, loss};
use vl_prompting::{ObjectiveConfig, PromptConfig, PromptLearner, Templates};

const TOL: f32 = 1e-4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Reference {
    bytes: Vec<u8>,
    json: Value,
}

impl Reference {
    fn open() -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        Self {
            bytes: std::fs::read(dir.join("prompting.safetensors")).expect("fixture"),
            json: serde_json::from_str(
                &std::fs::read_to_string(dir.join("prompting.json")).expect("fixture"),
            )
            .expect("json"),
        }
    }

    fn raw(&self, case: &str, name: &str) -> Option<(Vec<usize>, Vec<u8>, safetensors::Dtype)> {
        let st = SafeTensors::deserialize(&self.bytes).expect("safetensors");
        let t = st.tensor(&format!("{case}.{name}")).ok()?;
        Some((t.shape().to_vec(), t.data().to_vec(), t.dtype()))
    }

    fn values(&self, case: &str, name: &str) -> (Vec<usize>, Vec<f32>) {
        let (shape, data, dtype) = self
            .raw(case, name)
            .unwrap_or_else(|| panic!("fixture tensor {case}.{name}"));
        assert_eq!(dtype, safetensors::Dtype::F32, "{case}.{name}");
        let v = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        (shape, v)
    }

    fn has(&self, case: &str, name: &str) -> bool {
        self.raw(case, name).is_some()
    }

    fn tensor<const D: usize>(&self, case: &str, name: &str, device: &Device) -> Tensor<D> {
        let (shape, v) = self.values(case, name);
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    fn targets(&self, case: &str, device: &Device) -> Tensor<1, Int> {
        let (_, data, _) = self.raw(case, "targets").expect("targets");
        let v: Vec<i64> = data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let n = v.len();
        Tensor::from_data(TensorData::new(v, [n]), device)
    }
}

fn close(what: &str, got: Vec<f32>, want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let diff = (g - w).abs() / w.abs().max(1.0);
        assert!(
            diff <= TOL,
            "{what}[{i}]: got {g}, reference {w} (|diff| {diff:e} > {TOL:e})"
        );
        worst = worst.max(diff);
    }
    worst
}

fn setup(device: &Device) -> (Clip, ClipTokenizer) {
    let (clip, _) = load_clip(
        root().join("vl-encoders/tests/fixtures/hf_quickgelu_p16"),
        &LoadOptions::default(),
        device,
    )
    .expect("fixture checkpoint");
    let tokenizer = ClipTokenizer::from_dir(root().join("vl-data/tests/fixtures/clip_tokenizer"))
        .expect("fixture tokenizer");
    (clip.no_grad(), tokenizer)
}

/// Overwrites the learner's parameters with the fixture's (Burn layout in the file).
fn set_params(learner: &mut PromptLearner, r: &Reference, case: &str, device: &Device) {
    let p = |name: &str| Param::from_tensor(r.tensor::<2>(case, name, device));
    let p1 = |name: &str| Param::from_tensor(r.tensor::<1>(case, name, device));
    if r.has(case, "ctx") {
        learner.ctx = Some(Param::from_tensor(r.tensor::<3>(case, "ctx", device)));
    }
    if let Some(meta) = learner.meta_net.as_mut() {
        meta.linear1.weight = p("meta_net.linear1.weight");
        meta.linear1.bias = Some(p1("meta_net.linear1.bias"));
        meta.linear2.weight = p("meta_net.linear2.weight");
        meta.linear2.bias = Some(p1("meta_net.linear2.bias"));
    }
    if r.has(case, "residual_mean") {
        learner.residual_mean = Some(p1("residual_mean"));
        learner.residual_log_var = Some(p1("residual_log_var"));
    }
    for (i, v) in learner.visual.iter_mut().enumerate() {
        *v = p(&format!("visual.{i}"));
    }
    for (i, v) in learner.text_deep.iter_mut().enumerate() {
        *v = p(&format!("text_deep.{i}"));
    }
    for (i, layer) in learner.coupling.iter_mut().enumerate() {
        layer.weight = p(&format!("coupling.{i}.weight"));
        layer.bias = Some(p1(&format!("coupling.{i}.bias")));
    }
    if r.has(case, "text_bias") {
        learner.text_bias = Some(p1("text_bias"));
    }
}

fn grads_of(
    learner: &PromptLearner,
    grads: &burn::tensor::Gradients,
) -> BTreeMap<String, Vec<f32>> {
    let mut out = BTreeMap::new();
    let v = |t: Option<Tensor<1>>| t.map(|t| t.into_data().try_to_vec::<f32>().unwrap());
    let flat3 = |p: &Param<Tensor<3>>| v(p.val().grad(grads).map(|g| g.flatten(0, 2)));
    let flat2 = |p: &Param<Tensor<2>>| v(p.val().grad(grads).map(|g| g.flatten(0, 1)));
    let flat1 = |p: &Param<Tensor<1>>| v(p.val().grad(grads));
    if let Some(g) = learner.ctx.as_ref().and_then(flat3) {
        out.insert("ctx".into(), g);
    }
    if let Some(meta) = &learner.meta_net {
        for (name, layer) in [("linear1", &meta.linear1), ("linear2", &meta.linear2)] {
            if let Some(g) = flat2(&layer.weight) {
                out.insert(format!("meta_net.{name}.weight"), g);
            }
            if let Some(g) = layer.bias.as_ref().and_then(flat1) {
                out.insert(format!("meta_net.{name}.bias"), g);
            }
        }
    }
    if let Some(g) = learner.residual_mean.as_ref().and_then(flat1) {
        out.insert("residual_mean".into(), g);
    }
    if let Some(g) = learner.residual_log_var.as_ref().and_then(flat1) {
        out.insert("residual_log_var".into(), g);
    }
    for (i, p) in learner.visual.iter().enumerate() {
        if let Some(g) = flat2(p) {
            out.insert(format!("visual.{i}"), g);
        }
    }
    for (i, p) in learner.text_deep.iter().enumerate() {
        if let Some(g) = flat2(p) {
            out.insert(format!("text_deep.{i}"), g);
        }
    }
    for (i, layer) in learner.coupling.iter().enumerate() {
        if let Some(g) = flat2(&layer.weight) {
            out.insert(format!("coupling.{i}.weight"), g);
        }
        if let Some(g) = layer.bias.as_ref().and_then(flat1) {
            out.insert(format!("coupling.{i}.bias"), g);
        }
    }
    if let Some(g) = learner.text_bias.as_ref().and_then(flat1) {
        out.insert("text_bias".into(), g);
    }
    out
}

#[test]
fn every_prompt_learner_matches_pytorch_loss_and_gradients() {
    let r = Reference::open();
    let device = Device::flex().autodiff();
    let (clip, tokenizer) = setup(&device);
    let classes: Vec<String> = serde_json::from_value(r.json["classes"].clone()).unwrap();
    let templates = TaskTemplates {
        classifier: Templates::imagenet_select(),
        kgcoop: Templates::new([r.json["kgcoop_template"].as_str().unwrap()]).unwrap(),
        lasp: Templates::new(
            r.json["lasp_templates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string()),
        )
        .unwrap(),
        virtual_classes: serde_json::from_value(r.json["virtual_classes"].clone()).unwrap(),
    };
    let cases = r.json["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 11, "every method has a case");
    for (case, spec) in cases {
        let mut cfg = spec["config"].clone();
        let objective: ObjectiveConfig = cfg
            .as_object_mut()
            .unwrap()
            .remove("objective")
            .map(|o| serde_json::from_value(o).unwrap())
            .unwrap_or_default();
        let config: PromptConfig = serde_json::from_value(cfg).unwrap();
        let mut learner = config
            .init(&clip, &tokenizer, classes.len(), 0, &device)
            .unwrap();
        if case == "coop_init_front" {
            // The phrase initialisation is the phrase's token embeddings.
            let (_, want) = r.values(case, "ctx");
            let got = learner.ctx.as_ref().unwrap().val().into_data();
            close(
                "ctx init from \"a photo of a\"",
                got.try_to_vec().unwrap(),
                &want,
            );
        }
        set_params(&mut learner, &r, case, &device);
        let task = PromptTask::new(
            &clip, &tokenizer, &learner, &classes, &objective, &templates,
        )
        .unwrap();
        let noise: Vec<Tensor<2>> = (0..)
            .map_while(|k| {
                let name = format!("noise.{k}");
                r.has(case, &name)
                    .then(|| r.tensor::<2>(case, &name, &device))
            })
            .collect();
        let terms = loss(
            &clip,
            &learner,
            &task,
            &objective,
            r.tensor(case, "pixel_values", &device),
            r.targets(case, &device),
            &noise,
        );
        let scalar = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap();
        let mut report = vec![];
        report.push(close(
            &format!("{case} loss"),
            scalar(terms.total.clone()),
            &r.values(case, "loss").1,
        ));
        report.push(close(
            &format!("{case} ce"),
            scalar(terms.ce.clone()),
            &r.values(case, "ce").1,
        ));
        for (name, term) in [
            ("kgcoop", &terms.kgcoop),
            ("lasp", &terms.lasp),
            ("kl", &terms.kl),
        ] {
            assert_eq!(term.is_some(), r.has(case, name), "{case}: term {name}");
            if let Some(t) = term {
                report.push(close(
                    &format!("{case} {name}"),
                    scalar(t.clone()),
                    &r.values(case, name).1,
                ));
            }
        }
        let grads = terms.total.backward();
        let got = grads_of(&learner, &grads);
        let want: Vec<String> = serde_json::from_value(spec["params"].clone()).unwrap();
        assert_eq!(
            got.keys().cloned().collect::<Vec<_>>(),
            want,
            "{case}: trainable parameters"
        );
        for (name, g) in got {
            report.push(close(
                &format!("{case} grad {name}"),
                g,
                &r.values(case, &format!("grad.{name}")).1,
            ));
        }
        // The frozen encoders receive no gradient.
        let frozen = clip
            .text_model
            .embeddings
            .token_embedding
            .weight
            .val()
            .grad(&grads);
        assert!(frozen.is_none(), "{case}: the frozen CLIP got a gradient");
        println!(
            "{case}: max relative difference {:.2e}",
            report.iter().cloned().fold(0.0f32, f32::max)
        );
    }
}

fn max_abs_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

#[test]
fn grouped_prompts_from_one_phrase_and_a_zero_bias_classify_as_one_context() {
    let device = Device::flex();
    let (clip, tokenizer) = setup(&device);
    let names: Vec<String> = ["cat", "golden retriever"].map(String::from).to_vec();
    let text = |groups, bias| {
        let config: PromptConfig = serde_json::from_value(serde_json::json!({
            "text": {"n_ctx": 4, "ctx_init": "a photo of a", "groups": groups, "bias": bias}
        }))
        .unwrap();
        let learner = config.init(&clip, &tokenizer, 2, 0, &device).unwrap();
        let classes = learner.class_prompts(&clip, &tokenizer, &names).unwrap();
        learner.text_features(&clip, &classes, None)
    };
    let one = text(1, false);
    let grouped = text(3, true);
    assert_eq!(grouped.dims(), one.dims());
    let diff = max_abs_diff(grouped, one);
    assert!(
        diff < 1e-6,
        "3 equal groups + zero bias vs one context: {diff}"
    );
}

#[test]
fn bad_prompt_configs_are_errors_naming_the_field() {
    let device = Device::flex();
    let (clip, tokenizer) = setup(&device);
    let error = |json: serde_json::Value| {
        let config: PromptConfig = serde_json::from_value(json).unwrap();
        config
            .init(&clip, &tokenizer, 3, 0, &device)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let cases = [
        (
            serde_json::json!({"visual": {"n_tokens": 2, "coupled": true}}),
            "visual.coupled",
        ),
        (
            serde_json::json!({"text": {"n_ctx": 4}, "visual": {"n_tokens": 2, "coupled": true}}),
            "n_tokens = text.n_ctx",
        ),
        (
            serde_json::json!({"text": {"n_ctx": 2, "groups": 2},
                               "visual": {"n_tokens": 2, "coupled": true}}),
            "groups = 2",
        ),
        (
            serde_json::json!({"text": {"n_ctx": 2, "depth": 99}}),
            "text.depth",
        ),
        (
            serde_json::json!({"text": {"n_ctx": 2, "depth": 2, "class_token_position": "middle"}}),
            "text.class_token_position",
        ),
        (
            serde_json::json!({"text": {"n_ctx": 2, "groups": 0}}),
            "text.groups",
        ),
    ];
    for (json, want) in cases {
        let got = error(json.clone());
        assert!(got.contains(want), "{json}: {got:?} does not name {want:?}");
    }
    // More context groups than LASP templates.
    let config: PromptConfig =
        serde_json::from_value(serde_json::json!({"text": {"n_ctx": 2, "groups": 3}})).unwrap();
    let learner = config.init(&clip, &tokenizer, 1, 0, &device).unwrap();
    let objective = ObjectiveConfig {
        lasp_weight: 1.0,
        ..ObjectiveConfig::default()
    };
    let templates = TaskTemplates {
        lasp: Templates::new(["a photo of a {}.", "itap of a {}."]).unwrap(),
        ..TaskTemplates::default()
    };
    let got = PromptTask::new(
        &clip,
        &tokenizer,
        &learner,
        &["cat".to_string()],
        &objective,
        &templates,
    )
    .unwrap_err()
    .to_string();
    assert!(
        got.contains("templates") && got.contains("2 templates"),
        "{got}"
    );
}
