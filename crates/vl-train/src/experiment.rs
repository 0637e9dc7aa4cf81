//! Experiment files and sweeps: one TOML file names the checkpoint, the data set(s), the
//! methods (each a prompt-learning / PEFT / probe run config of [`crate::prompt`]), the
//! protocol, the shots and the seeds; [`run_experiment`] runs every (data set, method, shots,
//! seed) cell into its own directory and [`report`] turns the cells into Markdown and CSV
//! tables and SVG/PNG plots in the style of the CoOp papers (mean ± std over seeds; base /
//! novel / HM; few-shot curves).
//!
//! Layout of an experiment's output directory (default `runs/<name>`):
//!
//! ```text
//! experiment.json                     the resolved experiment (refuses a different one)
//! <data set>/<method>/<k>shot-seed<s>/
//!     run.json report.json manifest.json log.txt history.json checkpoints/ (prompt.*, adapter/)
//! results.md results.csv results.json
//! b2n-<data set>.svg|png   or   few-shot-<data set>.svg|png
//! ```
//!
//! A finished cell (its `report.json` exists with the same config) is skipped on a re-run; an
//! unfinished one (`run.json` without `report.json`, e.g. after a kill) resumes from its last
//! epoch checkpoint, so an interrupted sweep ends with the same table as an uninterrupted one.
//! A cell directory holding another config is an error, never overwritten.
//!
//! Method configs are merged key by key: the method's file (or the defaults), then the
//! experiment's `[overrides]`, then the method's own `set` table; finally the experiment fixes
//! `model`, `task`, `protocol`, `shots`, `seed` and `method`. Unknown keys and wrong types are
//! errors naming the file and the key's path (`methods[2].set.optim.epoch`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vl_data::synthetic::Task;
use vl_eval::plot::{BarChart, LineChart, Series, write_svg_png};
use vl_eval::table::{Table, mean_std_cell};

use crate::atomic::{read_json, write_atomic, write_json_atomic};
use crate::prompt::{
    ClassProtocol, ProbeConfig, PromptOptions, PromptReport, PromptRunConfig, run_prompt,
};
use crate::retrieval::{RetrievalConfig, RetrievalReport, run_retrieval};
use crate::selfsup::{
    ProbeScores, SelfSupConfig, SelfSupOptions, SelfSupReport, read_selfsup_config, run_selfsup,
};
use crate::{Error, Result};

/// The protocol of an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Train on base classes, test on base and novel separately, harmonic mean (CoCoOp).
    BaseToNovel,
    /// Train and test on all classes at each number of shots (CoOp's few-shot curves).
    FewShot,
    /// Zero-shot image-text retrieval with the checkpoint itself (`[retrieval]`; synthetic
    /// data sets; `methods`, `shots` and `seeds` are unused).
    Retrieval,
    /// Self-supervised training from scratch (`vl_train::selfsup`): each method's `config` is a
    /// self-supervised run config, run once per seed; `model`, `shots` and `datasets` are
    /// unused.
    SelfSupervised,
}

/// One data set of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DatasetSpec {
    /// A classification task of the synthetic world the model was pretrained on.
    Synthetic {
        /// The task. Default: `shape_colour`.
        #[serde(default = "default_task")]
        task: Task,
    },
    /// A CoOp-suite data set in CoOp's folder layout (`docs/datasets.md`); the experiment's
    /// `model` is then any CLIP checkpoint directory.
    Coop {
        /// CoOp's data root (`$DATA`).
        root: PathBuf,
        /// The CoOp name, e.g. `"OxfordPets"` (see `vl_train::prompt::COOP_DATASETS`).
        dataset: String,
    },
}

fn default_task() -> Task {
    Task::ShapeColour
}

impl DatasetSpec {
    /// The directory name and table label.
    pub fn name(&self) -> String {
        match self {
            DatasetSpec::Synthetic { task } => {
                let t = serde_json::to_value(task)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("{task:?}"));
                format!("synthetic-{t}")
            }
            DatasetSpec::Coop { dataset, .. } => dataset.clone(),
        }
    }
}

/// One method of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSpec {
    /// The name in tables and directories. Default: the config's `method`.
    #[serde(default)]
    pub name: Option<String>,
    /// A run config file (see [`PromptRunConfig`]), relative to the experiment file. Default:
    /// none (the defaults, i.e. CoOp, changed by `set`).
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// Start from a method's paper preset instead (`PromptRunConfig::paper_preset`: coop,
    /// cocoop, kgcoop, lasp, variational, vpt, maple). Default: none.
    #[serde(default)]
    pub preset: Option<String>,
    /// Keys set on this method only, e.g. `set = { probe = { kind = "linear" } }`.
    #[serde(default)]
    pub set: toml::Table,
}

/// An experiment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Name; the default output directory is `runs/<name>`.
    pub name: String,
    /// Free text for the reader. Default: empty.
    #[serde(default)]
    pub description: String,
    /// The protocol.
    pub protocol: Protocol,
    /// The pretrained model directory (relative to the working directory; unused by
    /// `self_supervised`). Default: none.
    #[serde(default)]
    pub model: PathBuf,
    /// Seeds. Default: `[1, 2, 3]`.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Training shots per class. Default: `[16]` (`[1, 2, 4, 8, 16]` is CoOp's curve).
    #[serde(default = "default_shots")]
    pub shots: Vec<usize>,
    /// Data sets. Default: the synthetic world's shape-colour task.
    #[serde(default = "default_datasets")]
    pub datasets: Vec<DatasetSpec>,
    /// Methods, in table order (none for `retrieval`). Default: none.
    #[serde(default)]
    pub methods: Vec<MethodSpec>,
    /// The retrieval protocol's settings. Default: see [`RetrievalConfig`].
    #[serde(default)]
    pub retrieval: RetrievalConfig,
    /// Keys set in every method's config (e.g. `test_per_class`, `optim.epochs`). Default:
    /// none.
    #[serde(default)]
    pub overrides: toml::Table,
    /// Where the experiment file lives (method config paths are relative to it); not read from
    /// the file.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The experiment file itself (for error messages); not read from the file.
    #[serde(skip)]
    pub file: PathBuf,
}

fn default_seeds() -> Vec<u64> {
    vec![1, 2, 3]
}

fn default_shots() -> Vec<usize> {
    vec![16]
}

fn default_datasets() -> Vec<DatasetSpec> {
    vec![DatasetSpec::Synthetic {
        task: Task::ShapeColour,
    }]
}

fn toml_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::InvalidConfig {
        field: path.display().to_string(),
        expected: "a valid file".into(),
        found: e.to_string(),
    }
}

/// Deserializes with the failing key's path in the error.
fn from_toml<'de, T: Deserialize<'de>>(
    file: &Path,
    what: &str,
    de: impl serde::Deserializer<'de, Error = toml::de::Error>,
) -> Result<T> {
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let what = if key == "." {
            what.trim_end_matches('.')
        } else {
            what
        };
        Error::InvalidConfig {
            field: format!("{}: {what}{key}", file.display()),
            expected: "a known key with a value of the right type".into(),
            found: e.into_inner().message().trim().to_string(),
        }
    })
}

impl Experiment {
    /// Reads an experiment file; unknown keys and wrong types are errors naming the key.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let de = toml::de::Deserializer::parse(&text).map_err(|e| toml_error(path, e))?;
        let mut exp: Experiment = from_toml(path, "", de)?;
        exp.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        exp.file = path.to_path_buf();
        exp.validate(path)?;
        Ok(exp)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, expected: &str, found: String| Error::InvalidConfig {
            field: format!("{}: {field}", path.display()),
            expected: expected.into(),
            found,
        };
        if self.seeds.is_empty() || self.shots.is_empty() || self.datasets.is_empty() {
            return Err(bad(
                "seeds, shots, datasets",
                "at least one of each",
                format!(
                    "{} seeds, {} shots, {} data sets",
                    self.seeds.len(),
                    self.shots.len(),
                    self.datasets.len()
                ),
            ));
        }
        if self.protocol == Protocol::SelfSupervised {
            if self.methods.is_empty() {
                return Err(bad("methods", "at least one [[methods]]", "none".into()));
            }
            for i in 0..self.methods.len() {
                self.selfsup_config(i, self.seeds[0])?;
            }
            return Ok(());
        }
        if self.model.as_os_str().is_empty() {
            return Err(bad("model", "a pretrained model directory", "none".into()));
        }
        if self.protocol == Protocol::Retrieval {
            if let Some(d) = self
                .datasets
                .iter()
                .find(|d| !matches!(d, DatasetSpec::Synthetic { .. }))
            {
                return Err(bad(
                    "datasets",
                    "synthetic data sets for the retrieval protocol",
                    d.name(),
                ));
            }
            return Ok(());
        }
        if self.methods.is_empty() {
            return Err(bad("methods", "at least one [[methods]]", "none".into()));
        }
        let names: Vec<String> = (0..self.methods.len())
            .map(|i| {
                self.method_config(i, &self.datasets[0], 1, 1)
                    .map(|c| c.method)
            })
            .collect::<Result<_>>()?;
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(bad(
                    &format!("methods[{i}]"),
                    "a method name used once (set `name`)",
                    format!("{n:?} again"),
                ));
            }
        }
        Ok(())
    }

    /// The self-supervised run config and the name of method `i` with `seed`.
    pub fn selfsup_config(&self, i: usize, seed: u64) -> Result<(String, SelfSupConfig)> {
        let spec = &self.methods[i];
        let rel = spec.config.as_ref().ok_or_else(|| Error::InvalidConfig {
            field: format!("{}: methods[{i}].config", self.file.display()),
            expected: "a self-supervised run config file (e.g. selfsup/simclr.toml)".into(),
            found: "none".into(),
        })?;
        let path = self.base_dir.join(rel);
        let mut config = read_selfsup_config(&path)?;
        config.seed = seed;
        let name = spec.name.clone().unwrap_or_else(|| {
            rel.file_stem().map_or_else(
                || format!("method{i}"),
                |s| s.to_string_lossy().into_owned(),
            )
        });
        Ok((name, config))
    }

    /// The run config of method `i` for one cell.
    pub fn method_config(
        &self,
        i: usize,
        dataset: &DatasetSpec,
        shots: usize,
        seed: u64,
    ) -> Result<PromptRunConfig> {
        let spec = &self.methods[i];
        let mut table = match (&spec.config, &spec.preset) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidConfig {
                    field: format!("{}: methods[{i}]", self.file.display()),
                    expected: "`config` or `preset`, not both".into(),
                    found: "both".into(),
                });
            }
            (None, Some(preset)) => {
                let c = PromptRunConfig::paper_preset(preset)?;
                toml::Table::try_from(&c).map_err(|e| toml_error(&self.file, e))?
            }
            (Some(rel), None) => {
                let path = self.base_dir.join(rel);
                let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| toml_error(&path, e))?
            }
            (None, None) => toml::Table::new(),
        };
        merge(&mut table, &self.overrides);
        merge(&mut table, &spec.set);
        let file = self.file.clone();
        let what = match &spec.config {
            Some(c) => format!("methods[{i}] (with {}).", self.base_dir.join(c).display()),
            None => format!("methods[{i}]."),
        };
        let mut config: PromptRunConfig =
            from_toml(&file, &what, toml::Value::Table(table.clone()))?;
        if let Some(name) = &spec.name {
            config.method.clone_from(name);
        }
        config.model.clone_from(&self.model);
        config.seed = seed;
        config.shots = shots;
        config.protocol = match self.protocol {
            Protocol::BaseToNovel => ClassProtocol::BaseToNovel,
            Protocol::FewShot | Protocol::Retrieval | Protocol::SelfSupervised => {
                ClassProtocol::AllClasses
            }
        };
        match dataset {
            DatasetSpec::Synthetic { task } => config.task = *task,
            DatasetSpec::Coop { root, dataset } => {
                config.data = Some(crate::prompt::CoopData {
                    root: root.clone(),
                    dataset: dataset.clone(),
                });
            }
        }
        Ok(config)
    }

    /// Every cell: (data set, method index, shots, seed), in table order. The zero-shot
    /// baseline does not depend on shots or seed: it is one cell per data set.
    pub fn cells(&self) -> Result<Vec<Cell>> {
        let mut cells = Vec::new();
        if matches!(
            self.protocol,
            Protocol::Retrieval | Protocol::SelfSupervised
        ) {
            return Ok(cells);
        }
        for dataset in &self.datasets {
            for m in 0..self.methods.len() {
                let zero_shot = matches!(
                    self.method_config(m, dataset, 1, 1)?.probe,
                    Some(ProbeConfig::ZeroShot)
                );
                for (si, &shots) in self.shots.iter().enumerate() {
                    for (ki, &seed) in self.seeds.iter().enumerate() {
                        if zero_shot && (si > 0 || ki > 0) {
                            continue;
                        }
                        let config = self.method_config(m, dataset, shots, seed)?;
                        cells.push(Cell {
                            dir: PathBuf::from(dataset.name())
                                .join(&config.method)
                                .join(format!("{shots}shot-seed{seed}")),
                            dataset: dataset.name(),
                            config,
                        });
                    }
                }
            }
        }
        Ok(cells)
    }
}

/// Deep merge: tables merge key by key, anything else is replaced.
fn merge(into: &mut toml::Table, from: &toml::Table) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// One run of a sweep.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Its directory, relative to the experiment's output directory.
    pub dir: PathBuf,
    /// The data set's name.
    pub dataset: String,
    /// The resolved run config.
    pub config: PromptRunConfig,
}

/// How to run an experiment.
#[derive(Debug, Clone)]
pub struct ExperimentOptions {
    /// Output directory.
    pub out_dir: PathBuf,
    /// Everything of [`PromptOptions`] but the directory, `resume` and `stop_after_epochs`
    /// (set per cell).
    pub run: PromptOptions,
    /// Stop cell number `.0` (0-based) after `.1` epochs, as a kill would (for tests).
    pub interrupt: Option<(usize, usize)>,
}

/// Runs (or continues) every cell, then writes the report. Returns the reports of all cells.
pub fn run_experiment(exp: &Experiment, opts: &ExperimentOptions) -> Result<Vec<CellReport>> {
    let out = &opts.out_dir;
    if exp.protocol == Protocol::SelfSupervised {
        write_json_atomic(
            &out.join("experiment.json"),
            &Resolved {
                experiment: exp.clone(),
                cells: Vec::new(),
            },
        )?;
        let mut done = Vec::new();
        for i in 0..exp.methods.len() {
            for &seed in &exp.seeds {
                let (name, config) = exp.selfsup_config(i, seed)?;
                let dir = out.join(&name).join(format!("seed{seed}"));
                if opts.run.verbose {
                    eprintln!("== self-supervised: {name} seed {seed}");
                }
                let report = run_selfsup(
                    &config,
                    &SelfSupOptions {
                        out_dir: dir.clone(),
                        resume: dir.join("run.json").is_file()
                            && !dir.join("report.json").is_file(),
                        device: opts.run.device.clone(),
                        backend: opts.run.backend.clone(),
                        git_revision: opts.run.git_revision.clone(),
                        stop_after_epochs: None,
                        verbose: opts.run.verbose,
                    },
                )?;
                done.push((name, report));
            }
        }
        let md = selfsup_table(&done);
        write_atomic(&out.join("results.md"), md.as_bytes())?;
        return Ok(Vec::new());
    }
    if exp.protocol == Protocol::Retrieval {
        write_json_atomic(
            &out.join("experiment.json"),
            &Resolved {
                experiment: exp.clone(),
                cells: Vec::new(),
            },
        )?;
        let mut done = Vec::new();
        for d in &exp.datasets {
            if opts.run.verbose {
                eprintln!("== retrieval: {}", d.name());
            }
            let report = run_retrieval(
                &exp.model,
                &exp.retrieval,
                &out.join(d.name()).join("retrieval"),
                &opts.run.device,
                &opts.run.backend,
                &opts.run.git_revision,
            )?;
            done.push((d.name(), report));
        }
        let md = retrieval_markdown(&done);
        write_atomic(&out.join("results.md"), md.as_bytes())?;
        return Ok(Vec::new());
    }
    let cells = exp.cells()?;
    // The resolved experiment: what `report` aggregates. A cell whose directory holds another
    // config is refused by `run_prompt`, so growing an experiment (more seeds, another method)
    // reuses every finished cell and never overwrites one.
    write_json_atomic(
        &out.join("experiment.json"),
        &Resolved {
            experiment: exp.clone(),
            cells: cells
                .iter()
                .map(|c| (c.dir.clone(), c.dataset.clone()))
                .collect(),
        },
    )?;
    let mut reports = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        let dir = out.join(&cell.dir);
        let mut run = opts.run.clone();
        run.out_dir.clone_from(&dir);
        run.resume = dir.join("run.json").is_file() && !dir.join("report.json").is_file();
        run.stop_after_epochs = opts.interrupt.filter(|&(c, _)| c == i).map(|(_, e)| e);
        if opts.run.verbose {
            eprintln!(
                "== cell {}/{}: {} {}",
                i + 1,
                cells.len(),
                cell.dir.display(),
                if dir.join("report.json").is_file() {
                    "(finished, reused)"
                } else if run.resume {
                    "(resuming)"
                } else {
                    ""
                }
            );
        }
        let report = run_prompt(&cell.config, &run)?;
        reports.push(CellReport {
            dataset: cell.dataset.clone(),
            report,
        });
    }
    write_report(exp.protocol, &reports, out)?;
    Ok(reports)
}

/// `experiment.json`: the experiment and its cells (directory, data set) in table order.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Resolved {
    experiment: Experiment,
    cells: Vec<(PathBuf, String)>,
}

/// A finished cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellReport {
    /// The data set.
    pub dataset: String,
    /// The run's report.
    pub report: PromptReport,
}

/// Collects the finished cells under an experiment's output directory (in the experiment's
/// order when its `experiment.json` is there, else in path order).
pub fn collect(out: &Path) -> Result<(Protocol, Vec<CellReport>)> {
    let resolved: Resolved = read_json(&out.join("experiment.json"))?;
    let mut found = Vec::new();
    for (dir, dataset) in resolved.cells {
        let path = out.join(&dir).join("report.json");
        if path.is_file() {
            found.push(CellReport {
                dataset,
                report: read_json(&path)?,
            });
        }
    }
    Ok((resolved.experiment.protocol, found))
}

/// An aggregated row: one (data set, method, shots) over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Data set.
    pub dataset: String,
    /// Method.
    pub method: String,
    /// Shots (0 for zero-shot).
    pub shots: usize,
    /// Seeds aggregated.
    pub seeds: Vec<u64>,
    /// Base (or all-class) accuracies, one per seed.
    pub base: Vec<f64>,
    /// Novel accuracies (empty when the method has none).
    pub novel: Vec<f64>,
    /// Harmonic means.
    pub hm: Vec<f64>,
    /// Trainable parameters.
    pub trainable_parameters: usize,
    /// Backends, dtypes and git revisions of the runs (deduplicated).
    pub provenance: Vec<String>,
}

/// Groups cells into rows, in order of first appearance.
pub fn rows(cells: &[CellReport]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for c in cells {
        let r = &c.report;
        let zero_shot = matches!(r.config.probe, Some(ProbeConfig::ZeroShot));
        let shots = if zero_shot { 0 } else { r.config.shots };
        let i = match rows
            .iter()
            .position(|x| x.dataset == c.dataset && x.method == r.config.method && x.shots == shots)
        {
            Some(i) => i,
            None => {
                rows.push(Row {
                    dataset: c.dataset.clone(),
                    method: r.config.method.clone(),
                    shots,
                    seeds: Vec::new(),
                    base: Vec::new(),
                    novel: Vec::new(),
                    hm: Vec::new(),
                    trainable_parameters: r.trainable_parameters,
                    provenance: Vec::new(),
                });
                rows.len() - 1
            }
        };
        let row = &mut rows[i];
        row.seeds.push(r.config.seed);
        row.base.push(r.learned.base);
        row.novel.extend(r.learned.novel);
        row.hm.extend(r.learned.hm);
        let p = format!("{} {} {}", r.backend, r.dtype, r.git_revision);
        if !row.provenance.contains(&p) {
            row.provenance.push(p);
        }
    }
    rows
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| vl_eval::metrics::mean_std(v).0)
}

/// The Markdown of the report (also what `results.md` holds).
pub fn report_markdown(protocol: Protocol, rows: &[Row]) -> String {
    let datasets = unique(rows.iter().map(|r| r.dataset.clone()));
    let mut md = String::new();
    match protocol {
        Protocol::Retrieval | Protocol::SelfSupervised => {}
        Protocol::BaseToNovel => {
            for d in &datasets {
                let mut t = Table::new([
                    "method",
                    "base (%)",
                    "novel (%)",
                    "HM (%)",
                    "seeds",
                    "trainable params",
                ]);
                for r in rows.iter().filter(|r| &r.dataset == d) {
                    t.push([
                        r.method.clone(),
                        mean_std_cell(&r.base),
                        mean_std_cell(&r.novel),
                        mean_std_cell(&r.hm),
                        r.seeds.len().to_string(),
                        r.trainable_parameters.to_string(),
                    ]);
                }
                md += &format!("### {d}: base-to-novel, mean ± std over seeds\n\n");
                md += &t.to_markdown();
                md.push('\n');
            }
            if datasets.len() > 1 {
                // CoOp-style average: HM of the averaged base and novel accuracies.
                let mut t = Table::new(["method", "base (%)", "novel (%)", "HM (%)"]);
                for m in unique(rows.iter().map(|r| r.method.clone())) {
                    let per: Vec<(f64, f64)> = rows
                        .iter()
                        .filter(|r| r.method == m)
                        .filter_map(|r| Some((mean(&r.base)?, mean(&r.novel)?)))
                        .collect();
                    if per.len() == datasets.len()
                        && let Ok((b, n, h)) = vl_eval::metrics::base_novel_average(&per)
                    {
                        t.push([m, format!("{b:.1}"), format!("{n:.1}"), format!("{h:.1}")]);
                    }
                }
                md += &format!(
                    "### Average over {} data sets (HM of the averages)\n\n",
                    datasets.len()
                );
                md += &t.to_markdown();
                md.push('\n');
            }
        }
        Protocol::FewShot => {
            for d in &datasets {
                let shots = {
                    let mut s = unique(rows.iter().filter(|r| &r.dataset == d).map(|r| r.shots));
                    s.retain(|&s| s > 0);
                    s.sort_unstable();
                    s
                };
                let mut headers = vec!["method".to_string()];
                headers.extend(shots.iter().map(|s| format!("{s} shots (%)")));
                let mut t = Table::new(headers);
                for m in unique(
                    rows.iter()
                        .filter(|r| &r.dataset == d)
                        .map(|r| r.method.clone()),
                ) {
                    let mut line = vec![m.clone()];
                    for s in &shots {
                        let row = rows.iter().find(|r| {
                            &r.dataset == d && r.method == m && (r.shots == *s || r.shots == 0)
                        });
                        line.push(row.map_or("—".into(), |r| mean_std_cell(&r.base)));
                    }
                    t.push(line);
                }
                md += &format!("### {d}: few-shot accuracy (all classes), mean ± std\n\n");
                md += &t.to_markdown();
                md.push('\n');
            }
        }
    }
    let prov = unique(rows.iter().flat_map(|r| r.provenance.clone()));
    md += &format!("Runs: backend, dtype, git revision: {}.\n", prov.join("; "));
    md
}

fn unique<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// The long-format CSV: one line per (data set, method, shots).
pub fn report_csv(rows: &[Row]) -> String {
    let mut t = Table::new([
        "dataset",
        "method",
        "shots",
        "seeds",
        "base_mean",
        "base_std",
        "novel_mean",
        "novel_std",
        "hm_mean",
        "hm_std",
        "trainable_params",
    ]);
    let ms = |v: &[f64]| {
        if v.is_empty() {
            (String::new(), String::new())
        } else {
            let (m, s) = vl_eval::metrics::mean_std(v);
            (format!("{m:.4}"), format!("{s:.4}"))
        }
    };
    for r in rows {
        let (bm, bs) = ms(&r.base);
        let (nm, ns) = ms(&r.novel);
        let (hm, hs) = ms(&r.hm);
        t.push([
            r.dataset.clone(),
            r.method.clone(),
            r.shots.to_string(),
            r.seeds.len().to_string(),
            bm,
            bs,
            nm,
            ns,
            hm,
            hs,
            r.trainable_parameters.to_string(),
        ]);
    }
    t.to_csv()
}

pub(crate) fn plot_error(e: vl_eval::Error) -> Error {
    Error::Training(format!("plot: {e}"))
}

/// Writes `results.md`, `results.csv`, `results.json` and the plots into `out`; returns the
/// Markdown.
pub fn write_report(protocol: Protocol, cells: &[CellReport], out: &Path) -> Result<String> {
    let rows = rows(cells);
    let mut md = report_markdown(protocol, &rows);
    // Zero-shot top-1 / top-5, and per-class accuracies as CSV (one file per data set).
    let mut zs = Table::new(["data set", "classes", "top-1 (%)", "top-5 (%)"]);
    for c in cells
        .iter()
        .filter(|c| matches!(c.report.config.probe, Some(ProbeConfig::ZeroShot)))
    {
        let mut per_class = Table::new(["class", "set", "accuracy (%)"]);
        for d in &c.report.zero_shot_detail {
            zs.push([
                c.dataset.clone(),
                format!("{} ({})", d.per_class.len(), d.set),
                format!("{:.1}", d.top1),
                format!("{:.1}", d.top5),
            ]);
            for (class, acc) in &d.per_class {
                per_class.push([class.clone(), d.set.clone(), format!("{acc:.2}")]);
            }
        }
        write_atomic(
            &out.join(format!("zero-shot-per-class-{}.csv", c.dataset)),
            per_class.to_csv().as_bytes(),
        )?;
    }
    if !zs.rows.is_empty() {
        md += &format!(
            "\n### Zero-shot top-1 / top-5 (per-class accuracies: zero-shot-per-class-<data set>.csv)\n\n{}",
            zs.to_markdown()
        );
    }
    write_atomic(&out.join("results.md"), md.as_bytes())?;
    write_atomic(&out.join("results.csv"), report_csv(&rows).as_bytes())?;
    write_json_atomic(&out.join("results.json"), &rows)?;
    let ms = |v: &[f64]| -> Option<(f64, f64)> {
        (!v.is_empty()).then(|| vl_eval::metrics::mean_std(v))
    };
    for d in unique(rows.iter().map(|r| r.dataset.clone())) {
        let here: Vec<&Row> = rows.iter().filter(|r| r.dataset == d).collect();
        match protocol {
            Protocol::Retrieval | Protocol::SelfSupervised => {}
            Protocol::BaseToNovel => {
                let chart = BarChart {
                    title: format!("{d}: base-to-novel"),
                    y_label: "accuracy (%)".into(),
                    groups: here.iter().map(|r| r.method.clone()).collect(),
                    bars: vec!["base".into(), "novel".into(), "HM".into()],
                    values: here
                        .iter()
                        .map(|r| vec![ms(&r.base), ms(&r.novel), ms(&r.hm)])
                        .collect(),
                };
                write_svg_png(
                    &out.join(format!("b2n-{d}")),
                    &chart.to_svg().map_err(plot_error)?,
                    &chart.to_png().map_err(plot_error)?,
                )
                .map_err(plot_error)?;
            }
            Protocol::FewShot => {
                let shots: Vec<usize> = {
                    let mut s = unique(here.iter().map(|r| r.shots).filter(|&s| s > 0));
                    s.sort_unstable();
                    s
                };
                let mut series: Vec<Series> = Vec::new();
                for m in unique(here.iter().map(|r| r.method.clone())) {
                    let mut points = Vec::new();
                    for r in here.iter().filter(|r| r.method == m) {
                        let (mean, std) = ms(&r.base).unwrap_or((f64::NAN, 0.0));
                        if r.shots == 0 {
                            // Zero-shot: a flat line across the shots.
                            points.extend(shots.iter().map(|&s| (s as f64, mean, 0.0)));
                        } else {
                            points.push((r.shots as f64, mean, std));
                        }
                    }
                    series.push(Series { name: m, points });
                }
                let chart = LineChart {
                    title: format!("{d}: few-shot"),
                    x_label: "shots per class".into(),
                    y_label: "accuracy (%)".into(),
                    series,
                    log2_x: true,
                };
                write_svg_png(
                    &out.join(format!("few-shot-{d}")),
                    &chart.to_svg().map_err(plot_error)?,
                    &chart.to_png().map_err(plot_error)?,
                )
                .map_err(plot_error)?;
            }
        }
    }
    Ok(md)
}

/// `report`: re-aggregates an experiment's output directory; returns the Markdown.
pub fn report(out: &Path) -> Result<String> {
    let resolved: Resolved = read_json(&out.join("experiment.json"))?;
    if resolved.experiment.protocol == Protocol::SelfSupervised {
        let exp = &resolved.experiment;
        let mut done = Vec::new();
        for (i, spec) in exp.methods.iter().enumerate() {
            let name = spec.name.clone().unwrap_or_else(|| {
                spec.config
                    .as_ref()
                    .and_then(|c| c.file_stem())
                    .map_or_else(
                        || format!("method{i}"),
                        |s| s.to_string_lossy().into_owned(),
                    )
            });
            for &seed in &exp.seeds {
                let path = out.join(&name).join(format!("seed{seed}/report.json"));
                if path.is_file() {
                    done.push((name.clone(), read_json(&path)?));
                }
            }
        }
        let md = selfsup_table(&done);
        write_atomic(&out.join("results.md"), md.as_bytes())?;
        return Ok(md);
    }
    if resolved.experiment.protocol == Protocol::Retrieval {
        let mut done = Vec::new();
        for d in &resolved.experiment.datasets {
            let path = out.join(d.name()).join("retrieval/retrieval.json");
            if path.is_file() {
                done.push((d.name(), read_json(&path)?));
            }
        }
        let md = retrieval_markdown(&done);
        write_atomic(&out.join("results.md"), md.as_bytes())?;
        return Ok(md);
    }
    let (protocol, cells) = collect(out)?;
    if cells.is_empty() {
        return Err(Error::RunDir {
            path: out.to_path_buf(),
            message: "holds no finished cell (no <data set>/<method>/<cell>/report.json)".into(),
        });
    }
    write_report(protocol, &cells, out)
}

/// The retrieval table: recall@K both ways, mean and median ranks.
pub fn retrieval_markdown(done: &[(String, RetrievalReport)]) -> String {
    let Some((_, first)) = done.first() else {
        return "no retrieval result\n".into();
    };
    let ks: Vec<usize> = first
        .metrics
        .image_to_text
        .recall
        .iter()
        .map(|r| r.0)
        .collect();
    let mut headers = vec!["data set".to_string(), "images x captions".to_string()];
    for dir in ["I→T", "T→I"] {
        headers.extend(ks.iter().map(|k| format!("{dir} R@{k}")));
        headers.push(format!("{dir} mean / median rank"));
    }
    let mut t = Table::new(headers);
    for (name, r) in done {
        let mut row = vec![
            name.clone(),
            format!("{} x {}", r.config.images, r.config.captions_per_image),
        ];
        for m in [&r.metrics.image_to_text, &r.metrics.text_to_image] {
            row.extend(m.recall.iter().map(|(_, v)| format!("{v:.1}")));
            row.push(format!("{:.1} / {:.1}", m.mean_rank, m.median_rank));
        }
        t.push(row);
    }
    format!(
        "### Zero-shot retrieval (recall in %, several captions per image)\n\n{}\nModel {}; backend, dtype, git revision: {} {} {}.\n",
        t.to_markdown(),
        first.model.display(),
        first.backend,
        first.dtype,
        first.git_revision
    )
}

/// The self-supervised table: per method and task, linear probe and kNN of the random-init and
/// trained encoders, mean ± std over seeds.
pub fn selfsup_table(done: &[(String, SelfSupReport)]) -> String {
    let mut t = Table::new([
        "method",
        "task",
        "random-init linear probe (%)",
        "random-init kNN (%)",
        "trained linear probe (%)",
        "trained kNN (%)",
        "seeds",
    ]);
    let methods = unique(done.iter().map(|d| d.0.clone()));
    for m in &methods {
        let runs: Vec<&SelfSupReport> = done.iter().filter(|d| &d.0 == m).map(|d| &d.1).collect();
        let Some(first) = runs.first() else { continue };
        for (k, (task, _, _)) in first.eval.iter().enumerate() {
            let col = |f: &dyn Fn(&(Task, ProbeScores, ProbeScores)) -> f64| {
                mean_std_cell(
                    &runs
                        .iter()
                        .filter_map(|r| r.eval.get(k).map(f))
                        .collect::<Vec<_>>(),
                )
            };
            t.push([
                m.clone(),
                format!("{task:?}").to_lowercase(),
                col(&|e| e.1.linear_probe),
                col(&|e| e.1.knn),
                col(&|e| e.2.linear_probe),
                col(&|e| e.2.knn),
                runs.len().to_string(),
            ]);
        }
    }
    let prov = unique(
        done.iter()
            .map(|d| format!("{} {} {}", d.1.backend, d.1.dtype, d.1.git_revision)),
    );
    format!(
        "### Self-supervised from scratch: probes of the encoder, mean ± std over seeds\n\n{}\nRuns: backend, dtype, git revision: {}.\n",
        t.to_markdown(),
        prov.join("; ")
    )
}
