//! Few-shot prompt-learning runs end to end on a very small pretrained model: the frozen CLIP is
//! bit-identical after training, same seed gives the same numbers, an interrupted run resumed
//! gives the same learned prompts, the prompt file loads back and refuses another base model,
//! and LFA runs.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use vl_data::ClipTokenizer;
use vl_prompting::{Error as PromptError, load_prompts, model_fingerprint};
use vl_train::prompt::{PromptOptions, PromptRunConfig, run_prompt};

use crate::common::pretrained;

fn config(model: &Path, method: &str) -> PromptRunConfig {
    let mut c = PromptRunConfig {
        method: method.into(),
        model: model.to_path_buf(),
        task: vl_data::synthetic::Task::Colour,
        shots: 2,
        test_per_class: 2,
        ..PromptRunConfig::default()
    };
    c.optim.epochs = 3;
    c.optim.batch_size = 4;
    c
}

fn options(dir: &Path) -> PromptOptions {
    PromptOptions {
        out_dir: dir.to_path_buf(),
        resume: false,
        device: Device::flex(),
        backend: "flex".into(),
        git_revision: "test".into(),
        stop_after_epochs: None,
        verbose: false,
        feature_cache: None,
    }
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

#[test]
fn prompt_runs_are_reproducible_resumable_and_leave_the_encoders_untouched() {
    let _serial = crate::common::serial();
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    pretrained(&model);
    let weights_before = read(model.join("model.safetensors"));
    let device = Device::flex();
    let clip_before = vl_train::pretrain::load_exported(&model, &device).unwrap();
    let fingerprint_before = model_fingerprint(&clip_before);

    let mut c = config(&model, "cocoop+kg");
    let text = c.prompt.text.as_mut().unwrap();
    text.conditional = true;
    text.n_ctx = 2;
    c.objective.kgcoop_weight = 1.0;
    let (a, b, r) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("r"),
    );
    let report_a = run_prompt(&c, &options(&a)).unwrap();
    let report_b = run_prompt(&c, &options(&b)).unwrap();
    assert_eq!(report_a.learned, report_b.learned);
    assert_eq!(report_a.history, report_b.history);
    assert_eq!(
        read(a.join("prompt.safetensors")),
        read(b.join("prompt.safetensors"))
    );
    assert_eq!(report_a.history.len(), 3);
    assert!(report_a.trainable_parameters > 0);

    // Interrupted after one epoch, then resumed: the same prompts as an uninterrupted run.
    let mut first = options(&r);
    first.stop_after_epochs = Some(1);
    assert!(run_prompt(&c, &first).is_err());
    let err = run_prompt(&c, &options(&r)).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");
    let mut again = options(&r);
    again.resume = true;
    let report_r = run_prompt(&c, &again).unwrap();
    assert_eq!(report_r.learned, report_a.learned);
    assert_eq!(report_r.history, report_a.history);
    assert_eq!(
        read(r.join("prompt.safetensors")),
        read(a.join("prompt.safetensors"))
    );

    // burn-train's checkpoints hold the trainable parameters only, never the frozen CLIP.
    let model_bytes = read(model.join("model.safetensors")).len();
    let checkpoints: Vec<_> = std::fs::read_dir(r.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("model-")
        })
        .collect();
    assert!(
        !checkpoints.is_empty(),
        "burn-train wrote model checkpoints"
    );
    for path in checkpoints {
        let bytes = read(&path).len();
        assert!(
            bytes * 20 < model_bytes,
            "{path:?}: {bytes} bytes, the CLIP has {model_bytes}"
        );
    }

    // The frozen encoders: the checkpoint file and the weights are unchanged.
    assert_eq!(read(model.join("model.safetensors")), weights_before);
    let clip_after = vl_train::pretrain::load_exported(&model, &device).unwrap();
    assert_eq!(model_fingerprint(&clip_after), fingerprint_before);
    assert_eq!(report_a.base_model, fingerprint_before);

    // The prompt file loads back onto its model and not onto another one.
    let tokenizer = ClipTokenizer::from_dir(&model).unwrap();
    let (learner, info) = load_prompts(&clip_after, &tokenizer, a.join("prompt")).unwrap();
    assert_eq!(info.base_model, fingerprint_before);
    assert_eq!(learner.config, c.prompt);
    let other = clip_after.clone().map(&mut Perturb);
    let err = load_prompts(&other, &tokenizer, a.join("prompt")).unwrap_err();
    assert!(matches!(err, PromptError::WrongBaseModel { .. }), "{err}");
    assert!(err.to_string().contains("trained on base model"), "{err}");

    // A finished run with another config is refused, not overwritten.
    let mut other_config = c.clone();
    other_config.seed = 99;
    let err = run_prompt(&other_config, &options(&a))
        .unwrap_err()
        .to_string();
    assert!(err.contains("another config"), "{err}");
}

/// Adds 1e-3 to every float parameter.
struct Perturb;

impl burn::module::ModuleMapper for Perturb {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        param.map(|t| t.add_scalar(1e-3))
    }
}

#[test]
fn lfa_and_visual_prompts_run_and_report_base_and_novel() {
    let _serial = crate::common::serial();
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    pretrained(&model);
    let mut lfa = config(&model, "lfa");
    lfa.lfa = Some(vl_prompting::LfaConfig {
        beta: 0.1,
        refine_epochs: 2,
        refine_lr: 1e-3,
    });
    let report = run_prompt(&lfa, &options(&root.path().join("lfa"))).unwrap();
    assert_eq!(report.history.len(), 2);
    assert_eq!(report.trainable_parameters, 16 * 16);
    for v in [
        report.learned.base,
        report.learned.novel.unwrap(),
        report.zero_shot.hm.unwrap(),
    ] {
        assert!((0.0..=100.0).contains(&v));
    }

    let mut vpt = config(&model, "vpt");
    vpt.prompt.text = None;
    vpt.prompt.visual = Some(vl_prompting::VisualPromptConfig {
        n_tokens: 2,
        depth: 2,
        ..Default::default()
    });
    let report = run_prompt(&vpt, &options(&root.path().join("vpt"))).unwrap();
    assert_eq!(report.trainable_parameters, 2 * 2 * 32);
}

#[test]
fn peft_composes_with_prompts_and_its_adapter_file_reloads() {
    let _serial = crate::common::serial();
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    pretrained(&model);
    let mut c = config(&model, "lora+coop");
    c.optim.epochs = 2;
    c.peft = Some(vl_peft::PeftConfig {
        method: vl_peft::PeftMethod::Lora {
            r: 2,
            alpha: 4.0,
            rslora: false,
        },
        target_modules: vec!["self_attn.(q|v)_proj".into()],
        tower: vl_peft::Tower::Vision,
    });
    let out = root.path().join("run");
    let report = run_prompt(&c, &options(&out)).unwrap();
    // CoOp context (4 x 32) plus LoRA on q and v of 2 vision layers (2 * 2 * 2 * (32 + 32)).
    assert_eq!(report.trainable_parameters, 4 * 32 + 2 * 2 * 2 * 64);
    let base = vl_train::pretrain::load_exported(&model, &Device::flex()).unwrap();
    let (_, state) = vl_peft::load_peft_adapter(base, out.join("adapter")).unwrap();
    assert_eq!(state.targets.len(), 4);

    // Without a text prompt the text tower cannot be adapted: a clear error.
    let mut bad = config(&model, "lora-text");
    bad.prompt.text = None;
    bad.peft = c.peft.clone();
    bad.peft.as_mut().unwrap().tower = vl_peft::Tower::Text;
    let err = run_prompt(&bad, &options(&root.path().join("bad")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("peft.tower"), "{err}");

    // The shipped experiment configs parse.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    for sub in ["prompt", "peft"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed: Result<PromptRunConfig, _> = toml::from_str(&text);
            assert!(parsed.is_ok(), "{}: {:?}", path.display(), parsed.err());
        }
    }
}

/// A tiny data set in CoOp's layout (`eurosat/2750/<class>/<i>.png` and
/// `eurosat/split_zhou_EuroSAT.json`), drawn from the model's synthetic world and labelled by
/// colour: `per_split` images of each class in train, val and test.
fn coop_layout(root: &Path, model: &Path, per_split: usize) {
    let pretrain = vl_train::PretrainConfig::from_toml_file(model.join("run.toml")).unwrap();
    let world = vl_data::synthetic::SyntheticWorld::new(pretrain.world_config()).unwrap();
    let task = vl_data::synthetic::Task::Colour;
    let names = world.class_names(task);
    let dir = root.join("eurosat");
    let mut split = serde_json::Map::new();
    let mut index = 0u64;
    for key in ["train", "val", "test"] {
        let mut counts = vec![0usize; names.len()];
        let mut entries = Vec::new();
        while counts.iter().any(|&c| c < per_split) {
            let sample = world.sample_in(vl_data::synthetic::Split::Eval, index);
            index += 1;
            let Some(label) = world.label(task, &sample) else {
                continue;
            };
            if counts[label] == per_split {
                continue;
            }
            counts[label] += 1;
            let rel = format!("{}/{key}{index}.png", names[label]);
            let path = dir.join("2750").join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            sample.image.save(&path).unwrap();
            entries.push(serde_json::json!([rel, label, names[label]]));
        }
        split.insert(key.into(), serde_json::Value::Array(entries));
    }
    std::fs::write(
        dir.join("split_zhou_EuroSAT.json"),
        serde_json::to_string(&split).unwrap(),
    )
    .unwrap();
}

#[test]
fn coop_layout_data_sets_run_base_to_novel_with_their_template_and_manifest() {
    let _serial = crate::common::serial();
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    pretrained(&model);
    let data = root.path().join("data");
    coop_layout(&data, &model, 3);
    let mut coop = config(&model, "coop");
    coop.data = Some(vl_train::prompt::CoopData {
        root: data.clone(),
        dataset: "EuroSAT".into(),
    });
    let report = run_prompt(&coop, &options(&root.path().join("coop"))).unwrap();
    assert!(report.learned.novel.is_some() && report.zero_shot.hm.is_some());
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.path().join("coop/manifest.json")).unwrap(),
    )
    .unwrap();
    // 8 colours: 4 base classes x 2 shots; every test image of the 4 base classes.
    assert_eq!(manifest["train"].as_array().unwrap().len(), 4 * 2);
    assert_eq!(manifest["base_test"].as_array().unwrap().len(), 4 * 3);
    assert_eq!(manifest["data"]["coop_dataset"], "EuroSAT");

    // The linear probe draws its validation shots from `val`.
    let mut probe = coop.clone();
    probe.method = "linear-probe".into();
    probe.probe = Some(vl_train::prompt::ProbeConfig::Linear {
        c_grid: Some(vec![1.0]),
    });
    let report = run_prompt(&probe, &options(&root.path().join("lp"))).unwrap();
    assert!(report.learned.novel.is_none());

    // More shots than the split has: a clear error naming the class and the file.
    let mut greedy = coop.clone();
    greedy.shots = 5;
    let err = run_prompt(&greedy, &options(&root.path().join("greedy")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("split_zhou_EuroSAT.json") && err.contains("5 train images"),
        "{err}"
    );

    // A missing image is an error naming it.
    let first = data.join("eurosat/2750");
    let class_dir = std::fs::read_dir(&first)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for f in std::fs::read_dir(&class_dir).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let err = run_prompt(&coop, &options(&root.path().join("missing")))
        .unwrap_err()
        .to_string();
    assert!(err.contains(".png"), "{err}");

    // An unknown data set name lists the known ones.
    let mut unknown = coop.clone();
    unknown.data.as_mut().unwrap().dataset = "ImageNetV2".into();
    let err = run_prompt(&unknown, &options(&root.path().join("unknown")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("EuroSAT") && err.contains("data.dataset"),
        "{err}"
    );
}

#[test]
fn upl_trains_on_top_k_zero_shot_pseudo_labels_of_an_unlabeled_pool() {
    let _serial = crate::common::serial();
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    pretrained(&model);
    let mut upl = config(&model, "upl");
    upl.protocol = vl_train::prompt::ClassProtocol::AllClasses;
    upl.pseudo_labels = Some(vl_train::prompt::PseudoLabelConfig {
        pool_per_class: 4,
        top_k: 2,
    });
    let dir = root.path().join("upl");
    let report = run_prompt(&upl, &options(&dir)).unwrap();
    let acc = report.pseudo_label_accuracy.unwrap();
    assert!((0.0..=100.0).contains(&acc));
    assert!(report.learned.novel.is_none());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    // 8 colours x 4 unlabeled images; at most 2 kept per predicted class.
    assert_eq!(manifest["unlabeled_pool"].as_array().unwrap().len(), 8 * 4);
    let train = manifest["train"].as_array().unwrap();
    assert!(!train.is_empty() && train.len() <= 8 * 2);
    let mut per_class = [0usize; 8];
    for item in train {
        per_class[item[2].as_u64().unwrap() as usize] += 1;
    }
    assert!(per_class.iter().all(|&c| c <= 2), "{per_class:?}");
}

#[test]
fn lafter_trains_a_text_classifier_then_adapts_without_labels() {
    let _serial = crate::common::serial();
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    pretrained(&model);
    let mut c = config(&model, "lafter");
    c.protocol = vl_train::prompt::ClassProtocol::AllClasses;
    c.lafter = Some(vl_train::lafter::LafterConfig {
        text_epochs: 5,
        pool_per_class: 2,
        prompt_tokens: 2,
        epochs: 2,
        batch_size: 8,
        ..vl_train::lafter::LafterConfig::default()
    });
    let dir = root.path().join("lafter");
    let report = run_prompt(&c, &options(&dir)).unwrap();
    assert_eq!(report.history.len(), 2);
    assert!((0.0..=100.0).contains(&report.learned.base));
    // Prompts (2 x 32) + vision LayerNorms + classifier (8 classes x 16): a small share.
    assert!(report.trainable_parameters > 2 * 32 + 8 * 16);
    let log = std::fs::read_to_string(dir.join("log.txt")).unwrap();
    assert!(
        log.contains("LaFTer stage 1") && log.contains("trainable%"),
        "{log}"
    );

    // Stage 2 runs on burn-train: killed after one epoch and resumed, it ends where an
    // uninterrupted run does.
    let resumed = root.path().join("lafter-resumed");
    let mut first = options(&resumed);
    first.stop_after_epochs = Some(1);
    assert!(run_prompt(&c, &first).is_err());
    let mut again = options(&resumed);
    again.resume = true;
    let report_r = run_prompt(&c, &again).unwrap();
    assert_eq!(report_r.learned, report.learned);
    assert_eq!(report_r.history, report.history);

    // Descriptions from a file must cover every class.
    let path = root.path().join("descriptions.json");
    std::fs::write(&path, r#"{"a red": ["something red"]}"#).unwrap();
    c.lafter.as_mut().unwrap().descriptions = Some(path);
    let err = run_prompt(&c, &options(&root.path().join("bad")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("lafter.descriptions"), "{err}");

    // Stage 2 on the frozen teacher's most confident image per class, without prompts.
    let with_prompts = report.trainable_parameters;
    c.lafter = Some(vl_train::lafter::LafterConfig {
        text_epochs: 5,
        pool_per_class: 2,
        confident_per_class: 1,
        prompt_tokens: 0,
        epochs: 1,
        batch_size: 8,
        ..vl_train::lafter::LafterConfig::default()
    });
    let dir = root.path().join("confident");
    let report = run_prompt(&c, &options(&dir)).unwrap();
    assert_eq!(report.trainable_parameters, with_prompts - 2 * 32);
    let log = std::fs::read_to_string(dir.join("log.txt")).unwrap();
    let kept: usize = log
        .split(" of 16 pool images")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no selection line in {log}"));
    assert!(
        (1..=8).contains(&kept),
        "kept {kept} of 16 (at most 1 per class)"
    );
    // The selection ranks fixed labels: it needs the frozen teacher.
    c.lafter.as_mut().unwrap().teacher = vl_train::lafter::LafterTeacher::Student;
    let err = run_prompt(&c, &options(&root.path().join("student")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("lafter.confident_per_class"), "{err}");
}

/// `per_split` one-object images per colour class of the model's world as `(image, class name)`
/// for each of three splits.
fn colour_images(model: &Path, per_split: usize) -> Vec<Vec<(image::RgbImage, String)>> {
    let pretrain = vl_train::PretrainConfig::from_toml_file(model.join("run.toml")).unwrap();
    let world = vl_data::synthetic::SyntheticWorld::new(pretrain.world_config()).unwrap();
    let task = vl_data::synthetic::Task::Colour;
    let names = world.class_names(task);
    let mut index = 1000u64;
    (0..3)
        .map(|_| {
            let mut counts = vec![0usize; names.len()];
            let mut out = Vec::new();
            while counts.iter().any(|&c| c < per_split) {
                let sample = world.sample_in(vl_data::synthetic::Split::Eval, index);
                index += 1;
                if let Some(label) = world.label(task, &sample)
                    && counts[label] < per_split
                {
                    counts[label] += 1;
                    out.push((sample.image, names[label].clone()));
                }
            }
            out
        })
        .collect()
}

#[test]
fn fgvc_aircraft_and_imagenet_layouts_are_read_as_coop_does() {
    let _serial = crate::common::serial();
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    pretrained(&model);
    let data = root.path().join("data");
    let splits = colour_images(&model, 3);
    // FGVC-Aircraft: variants.txt, images_variant_<split>.txt, images/<id>.jpg.
    let dir = data.join("fgvc_aircraft");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let mut variants: Vec<String> = Vec::new();
    for (_, n) in &splits[0] {
        if !variants.contains(n) {
            variants.push(n.clone());
        }
    }
    std::fs::write(dir.join("variants.txt"), variants.join("\n")).unwrap();
    for (split, items) in ["train", "val", "test"].iter().zip(&splits) {
        let mut lines = String::new();
        for (i, (image, name)) in items.iter().enumerate() {
            let id = format!("{split}{i:04}");
            image
                .save(dir.join("images").join(format!("{id}.jpg")))
                .unwrap();
            lines += &format!("{id} {name}\n");
        }
        std::fs::write(dir.join(format!("images_variant_{split}.txt")), lines).unwrap();
    }
    // ImageNet: classnames.txt, images/{train,val}/<wnid>/.
    let dir = data.join("imagenet");
    let mut classnames = String::new();
    for (i, v) in variants.iter().enumerate() {
        classnames += &format!("n{i:08} {v}\n");
    }
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("classnames.txt"), classnames).unwrap();
    for (split, items) in [("train", &splits[0]), ("val", &splits[2])] {
        for (i, (image, name)) in items.iter().enumerate() {
            let wnid = format!("n{:08}", variants.iter().position(|v| v == name).unwrap());
            let folder = dir.join("images").join(split).join(&wnid);
            std::fs::create_dir_all(&folder).unwrap();
            image.save(folder.join(format!("{i}.png"))).unwrap();
        }
    }
    for dataset in ["FGVCAircraft", "ImageNet"] {
        let mut c = config(&model, "linear-probe");
        c.shots = 1;
        c.probe = Some(vl_train::prompt::ProbeConfig::Linear {
            c_grid: Some(vec![1.0]),
        });
        c.data = Some(vl_train::prompt::CoopData {
            root: data.clone(),
            dataset: dataset.into(),
        });
        let dir = root.path().join(dataset);
        run_prompt(&c, &options(&dir)).unwrap_or_else(|e| panic!("{dataset}: {e}"));
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        // 8 colours: 4 base classes, 1 shot each, 1 validation shot each, 3 test images each.
        assert_eq!(manifest["train"].as_array().unwrap().len(), 4, "{dataset}");
        assert_eq!(manifest["val"].as_array().unwrap().len(), 4, "{dataset}");
        assert_eq!(
            manifest["base_test"].as_array().unwrap().len(),
            12,
            "{dataset}"
        );
        assert_eq!(manifest["classes"]["base"][0], variants[0], "{dataset}");
    }
    // A line naming an unknown variant is an error naming the file and line.
    let file = data.join("fgvc_aircraft/images_variant_test.txt");
    std::fs::write(&file, "x0001 no such plane\n").unwrap();
    let mut c = config(&model, "zero-shot");
    c.probe = Some(vl_train::prompt::ProbeConfig::ZeroShot);
    c.data = Some(vl_train::prompt::CoopData {
        root: data.clone(),
        dataset: "FGVCAircraft".into(),
    });
    let err = run_prompt(&c, &options(&root.path().join("bad")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("images_variant_test.txt line 1"), "{err}");
}
