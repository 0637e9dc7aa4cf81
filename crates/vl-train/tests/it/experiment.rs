//! Experiment files and sweeps end to end on a very small pretrained model: errors name the
//! key, an interrupted sweep resumes to the same table as an uninterrupted one, a re-run reuses
//! every finished cell, and the few-shot protocol writes its curve.

use std::path::Path;

use burn::prelude::*;
use vl_train::experiment::{Experiment, ExperimentOptions, Protocol, report, run_experiment};
use vl_train::prompt::PromptOptions;

use crate::common::pretrained;

fn write_experiment(dir: &Path, model: &Path, protocol: &str, shots: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("prompt")).unwrap();
    std::fs::write(
        dir.join("prompt/coop.toml"),
        "method = \"coop\"\n[prompt.text]\nn_ctx = 2\n[optim]\nepochs = 2\nbatch_size = 4\n",
    )
    .unwrap();
    let text = format!(
        r#"
name = "tiny"
protocol = "{protocol}"
model = "{}"
seeds = [1, 2]
shots = {shots}
datasets = [{{ kind = "synthetic", task = "colour" }}]
[overrides]
test_per_class = 2
[[methods]]
name = "zero-shot"
set = {{ probe = {{ kind = "zero_shot" }} }}
[[methods]]
name = "linear-probe"
set = {{ probe = {{ kind = "linear", c_grid = [0.1, 10.0] }} }}
[[methods]]
config = "prompt/coop.toml"
[[methods]]
name = "knn"
set = {{ probe = {{ kind = "knn", k = 3 }} }}
"#,
        model.display()
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn options(out: &Path, interrupt: Option<(usize, usize)>) -> ExperimentOptions {
    ExperimentOptions {
        out_dir: out.to_path_buf(),
        run: PromptOptions {
            out_dir: out.to_path_buf(),
            resume: false,
            device: Device::flex(),
            backend: "flex".into(),
            git_revision: "test".into(),
            stop_after_epochs: None,
            verbose: false,
            feature_cache: Some(out.join("cache")),
        },
        interrupt,
    }
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

#[test]
fn experiment_file_errors_name_the_file_and_the_key() {
    let _serial = crate::common::serial();
    let dir = tempfile::tempdir().unwrap();
    let path = write_experiment(dir.path(), Path::new("model"), "base_to_novel", "[2]");
    let good = read(&path);
    let cases = [
        // An unknown top-level key.
        (good.replace("seeds = [1, 2]", "seed = [1, 2]"), "seed"),
        // A wrong type.
        (good.replace("shots = [2]", "shots = \"2\""), "shots"),
        // An unknown key inside a method's `set`, reported with its path.
        (
            good.replace("kind = \"knn\", k = 3", "kind = \"knn\", kk = 3"),
            "methods[3].probe",
        ),
        // An unknown protocol.
        (good.replace("base_to_novel", "base_to_nouvel"), "protocol"),
    ];
    for (text, key) in cases {
        std::fs::write(&path, &text).unwrap();
        let err = Experiment::from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("exp.toml") && err.contains(key),
            "{key}: {err}"
        );
    }
    // A bad key in a method's own config file names that file.
    std::fs::write(&path, &good).unwrap();
    std::fs::write(dir.path().join("prompt/coop.toml"), "[optim]\nepoch = 3\n").unwrap();
    let err = Experiment::from_file(&path).unwrap_err().to_string();
    assert!(
        err.contains("coop.toml") && err.contains("optim.epoch"),
        "{err}"
    );
}

#[test]
fn interrupted_sweep_resumes_to_the_same_table_and_reruns_reuse_cells() {
    let _serial = crate::common::serial();
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    pretrained(&model);
    let path = write_experiment(root.path(), &model, "base_to_novel", "[2]");
    let exp = Experiment::from_file(&path).unwrap();
    // Cells: zero-shot (1), linear probe (2 seeds), coop (2), knn (2).
    assert_eq!(exp.cells().unwrap().len(), 7);

    let a = root.path().join("a");
    run_experiment(&exp, &options(&a, None)).unwrap();

    // Killed in the middle of the first CoOp cell (cell 3, after one of its two epochs).
    let b = root.path().join("b");
    let err = run_experiment(&exp, &options(&b, Some((3, 1)))).unwrap_err();
    assert!(err.to_string().contains("stopped after epoch 1"), "{err}");
    assert!(!b.join("results.md").exists());
    run_experiment(&exp, &options(&b, None)).unwrap();

    for file in ["results.md", "results.csv"] {
        assert_eq!(read(a.join(file)), read(b.join(file)), "{file}");
    }
    let md = read(a.join("results.md"));
    for method in ["zero-shot", "linear-probe", "coop", "knn"] {
        assert!(md.contains(&format!("| {method} |")), "{md}");
    }
    assert!(a.join("b2n-synthetic-colour.svg").is_file());
    assert!(a.join("b2n-synthetic-colour.png").is_file());
    // Every cell records its manifest, log and provenance.
    let cell = a.join("synthetic-colour/coop/2shot-seed1");
    for f in ["manifest.json", "log.txt", "report.json", "run.json"] {
        assert!(cell.join(f).is_file(), "{f}");
    }

    // A re-run reuses every finished cell: reports are untouched.
    let before = read(cell.join("report.json"));
    run_experiment(&exp, &options(&a, None)).unwrap();
    assert_eq!(before, read(cell.join("report.json")));
    assert_eq!(report(&a).unwrap(), read(a.join("results.md")));
}

#[test]
fn few_shot_protocol_trains_on_all_classes_and_plots_the_curve() {
    let _serial = crate::common::serial();
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    pretrained(&model);
    let path = write_experiment(root.path(), &model, "few_shot", "[1, 2]");
    let mut exp = Experiment::from_file(&path).unwrap();
    exp.seeds = vec![1];
    exp.methods.truncate(3);
    let out = root.path().join("fs");
    let cells = run_experiment(&exp, &options(&out, None)).unwrap();
    for c in &cells {
        assert!(c.report.learned.novel.is_none());
    }
    let md = read(out.join("results.md"));
    assert!(
        md.contains("1 shots (%)") && md.contains("2 shots (%)"),
        "{md}"
    );
    assert!(out.join("few-shot-synthetic-colour.svg").is_file());
    assert!(out.join("few-shot-synthetic-colour.png").is_file());
}

#[test]
fn retrieval_protocol_reports_recall_both_ways_and_reuses_its_result() {
    let _serial = crate::common::serial();
    let root = tempfile::tempdir().unwrap();
    let model = root.path().join("model");
    pretrained(&model);
    let path = root.path().join("retrieval.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"r\"\nprotocol = \"retrieval\"\nmodel = \"{}\"\n\
             [retrieval]\nimages = 12\ncaptions_per_image = 3\nrecall_at = [1, 5]\n",
            model.display()
        ),
    )
    .unwrap();
    let exp = Experiment::from_file(&path).unwrap();
    let out = root.path().join("out");
    run_experiment(&exp, &options(&out, None)).unwrap();
    let md = read(out.join("results.md"));
    for h in ["I→T R@1", "I→T R@5", "T→I R@1", "T→I R@5", "12 x 3"] {
        assert!(md.contains(h), "{h}: {md}");
    }
    let json = out.join("synthetic-shape_colour/retrieval/retrieval.json");
    let before = read(&json);
    run_experiment(&exp, &options(&out, None)).unwrap();
    assert_eq!(before, read(&json));
    assert_eq!(report(&out).unwrap(), md);
}

#[test]
fn presets_and_coop_data_sets_resolve_into_run_configs() {
    let _serial = crate::common::serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("suite.toml");
    std::fs::write(
        &path,
        "name = \"s\"\nprotocol = \"base_to_novel\"\nmodel = \"models/clip\"\nseeds = [2]\n\
         datasets = [{ kind = \"coop\", root = \"data\", dataset = \"OxfordPets\" }]\n\
         [[methods]]\npreset = \"cocoop\"\nset = { optim = { epochs = 3 } }\n",
    )
    .unwrap();
    let exp = Experiment::from_file(&path).unwrap();
    let cells = exp.cells().unwrap();
    assert_eq!(cells.len(), 1);
    let c = &cells[0].config;
    let mut want = vl_train::prompt::PromptRunConfig::paper_preset("cocoop").unwrap();
    want.optim.epochs = 3;
    want.seed = 2;
    want.model = "models/clip".into();
    want.data = Some(vl_train::prompt::CoopData {
        root: "data".into(),
        dataset: "OxfordPets".into(),
    });
    assert_eq!(c, &want);
    assert_eq!(cells[0].dir, Path::new("OxfordPets/cocoop/16shot-seed2"));
    // `config` and `preset` together are an error.
    std::fs::write(
        &path,
        "name = \"s\"\nprotocol = \"few_shot\"\nmodel = \"m\"\n\
         [[methods]]\npreset = \"coop\"\nconfig = \"x.toml\"\n",
    )
    .unwrap();
    let err = Experiment::from_file(&path).unwrap_err().to_string();
    assert!(err.contains("not both"), "{err}");
}

#[test]
fn shipped_experiment_files_parse_and_resolve() {
    let _serial = crate::common::serial();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let mut files = vec![
        root.join("quickstart.toml"),
        root.join("retrieval-tiny.toml"),
        root.join("label-free.toml"),
        root.join("label-free-lafter.toml"),
        root.join("selfsup.toml"),
        root.join("selfsup-grid.toml"),
    ];
    for f in std::fs::read_dir(root.join("coop-suite")).unwrap() {
        files.push(f.unwrap().path());
    }
    assert!(files.len() >= 6);
    for f in files {
        let exp = Experiment::from_file(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        exp.cells()
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        // Self-supervised experiments name run configs: each must read and validate.
        for i in 0..exp.methods.len() {
            if exp.protocol == Protocol::SelfSupervised {
                exp.selfsup_config(i, 0)
                    .unwrap_or_else(|e| panic!("{} method {i}: {e}", f.display()));
            }
        }
    }
}

#[test]
fn self_supervised_protocol_runs_each_config_per_seed_into_one_table() {
    let _serial = crate::common::serial();
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("arch.toml"),
        "[world]\nimage_size = 16\n[model]\npatch_size = 8\nvision_width = 32\nvision_layers = 1\n\
         vision_heads = 2\ntext_width = 32\ntext_layers = 1\ntext_heads = 2\nprojection_dim = 16\n",
    )
    .unwrap();
    std::fs::write(
        root.path().join("ss.toml"),
        format!(
            "method = \"simclr\"\narchitecture = \"{}\"\nepochs = 1\nsteps_per_epoch = 1\n\
             batch_size = 8\nwarmup_steps = 1\nhidden_dim = 16\nprojection_dim = 8\n\
             [eval]\ntasks = [\"colour\"]\ntrain_images = 16\nval_images = 8\ntest_images = 16\nknn_k = 3\n",
            root.path().join("arch.toml").display()
        ),
    )
    .unwrap();
    let path = root.path().join("exp.toml");
    std::fs::write(
        &path,
        "name = \"ss\"\nprotocol = \"self_supervised\"\nseeds = [4]\n[[methods]]\nconfig = \"ss.toml\"\n",
    )
    .unwrap();
    let exp = Experiment::from_file(&path).unwrap();
    let out = root.path().join("out");
    run_experiment(&exp, &options(&out, None)).unwrap();
    let md = read(out.join("results.md"));
    assert!(md.contains("| ss | colour |"), "{md}");
    let report_json = out.join("ss/seed4/report.json");
    let before = read(&report_json);
    run_experiment(&exp, &options(&out, None)).unwrap();
    assert_eq!(before, read(&report_json));
    assert_eq!(report(&out).unwrap(), md);
}
