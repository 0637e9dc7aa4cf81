//! [`ProgressRenderer`]: a compact burn-train renderer for terminals and logs alike. During a split
//! it prints a progress bar with the running metrics (redrawn in place on a terminal, every tenth
//! of the split otherwise); after every epoch it prints one summary line and appends the epoch's
//! final metric values to the run's `history.json` (written atomically), which the report and
//! the plot are made from. burn-train's own full-screen dashboard stays available behind the
//! `tui` feature.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};
use serde::{Deserialize, Serialize};

use crate::atomic::write_json_atomic;

/// The final metric values of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Training metrics by name (`Loss`, `Accuracy` = in-batch image-to-text, `Learning Rate`).
    pub train: BTreeMap<String, f64>,
    /// Evaluation metrics by name (held-out zero-shot accuracies, %).
    pub valid: BTreeMap<String, f64>,
    /// Wall-clock seconds of the epoch (training and evaluation).
    pub seconds: f64,
}

/// Called with every finished epoch's record.
pub type EpochHook = Box<dyn FnMut(&EpochRecord) + Send + Sync>;

/// Prints progress and records [`EpochRecord`]s into `history_path`.
pub struct ProgressRenderer {
    quiet: bool,
    on_epoch: Option<EpochHook>,
    names: HashMap<MetricId, String>,
    history: Vec<EpochRecord>,
    history_path: PathBuf,
    train: BTreeMap<String, f64>,
    valid: BTreeMap<String, f64>,
    split: String,
    total_items: usize,
    total_epochs: usize,
    epoch: usize,
    last_printed_tenth: usize,
    epoch_started: Instant,
    split_started: Instant,
    tty: bool,
}

impl ProgressRenderer {
    /// A renderer continuing `history` (the records of epochs before the resumed one).
    pub fn new(history_path: PathBuf, history: Vec<EpochRecord>) -> Self {
        Self {
            quiet: false,
            on_epoch: None,
            names: HashMap::new(),
            history,
            history_path,
            train: BTreeMap::new(),
            valid: BTreeMap::new(),
            split: String::new(),
            total_items: 0,
            total_epochs: 0,
            epoch: 1,
            last_printed_tenth: 0,
            epoch_started: Instant::now(),
            split_started: Instant::now(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Prints nothing itself (no progress bars, no epoch lines); the history is still written
    /// and the epoch hook still called. For short runs that log through [`Self::on_epoch`].
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Calls `hook` with every finished epoch's record (after the history is written).
    pub fn on_epoch(mut self, hook: EpochHook) -> Self {
        self.on_epoch = Some(hook);
        self
    }

    fn record(&mut self, state: &MetricState, valid: bool) {
        if let MetricState::Numeric(entry, Some(value)) = state
            && let Some(name) = self.names.get(&entry.metric_id)
        {
            let map = if valid {
                &mut self.valid
            } else {
                &mut self.train
            };
            map.insert(name.clone(), value.current());
        }
    }

    fn metrics_line(map: &BTreeMap<String, f64>) -> String {
        map.iter()
            .map(|(name, value)| format!("{name} {}", format_value(name, *value)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn format_value(name: &str, value: f64) -> String {
    if name.contains("Learning Rate") {
        format!("{value:.2e}")
    } else if name.contains("Loss") {
        format!("{value:.4}")
    } else {
        format!("{value:.1}%")
    }
}

impl MetricsRendererTraining for ProgressRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.record(&state, false);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.record(&state, true);
    }
}

impl MetricsRendererEvaluation for ProgressRenderer {
    fn update_test(&mut self, _name: EvaluationName, state: MetricState) {
        self.record(&state, true);
    }
}

impl TrainingProgressLogger for ProgressRenderer {
    fn start(
        &mut self,
        total_epochs: usize,
        starting_epoch: usize,
        _total_items: Option<usize>,
        label: Option<&str>,
    ) {
        self.total_epochs = total_epochs;
        self.epoch = starting_epoch;
        self.epoch_started = Instant::now();
        let what = label.unwrap_or("training");
        if self.quiet {
            return;
        }
        if starting_epoch > 1 {
            eprintln!("{what}: resuming at epoch {starting_epoch}/{total_epochs}");
        } else {
            eprintln!("{what}: {total_epochs} epochs");
        }
    }

    fn update_epoch(&mut self, epoch: usize) {
        let record = EpochRecord {
            epoch,
            train: std::mem::take(&mut self.train),
            valid: std::mem::take(&mut self.valid),
            seconds: self.epoch_started.elapsed().as_secs_f64(),
        };
        if !self.quiet {
            eprintln!(
                "epoch {epoch}/{} ({:.0} s) | train: {} | held-out: {}",
                self.total_epochs,
                record.seconds,
                Self::metrics_line(&record.train),
                Self::metrics_line(&record.valid)
            );
        }
        self.history.retain(|r| r.epoch < epoch);
        self.history.push(record.clone());
        if let Err(e) = write_json_atomic(&self.history_path, &self.history) {
            eprintln!("warning: could not write the epoch history: {e}");
        }
        if let Some(hook) = self.on_epoch.as_mut() {
            hook(&record);
        }
        self.epoch = epoch + 1;
        self.epoch_started = Instant::now();
    }

    fn start_split(&mut self, split: &str, total_items: usize) {
        split.clone_into(&mut self.split);
        self.total_items = total_items;
        self.last_printed_tenth = 0;
        self.split_started = Instant::now();
    }

    fn update_split(&mut self, items_processed: usize) {
        if self.quiet {
            return;
        }
        let total = self.total_items.max(1);
        let tenth = items_processed * 10 / total;
        if !self.tty && tenth == self.last_printed_tenth {
            return;
        }
        self.last_printed_tenth = tenth;
        let width = 24;
        let filled = items_processed * width / total;
        let rate = items_processed as f64 / self.split_started.elapsed().as_secs_f64().max(1e-9);
        let map = if self.split == "valid" {
            &self.valid
        } else {
            &self.train
        };
        let line = format!(
            "epoch {}/{} {:<5} [{}{}] {items_processed}/{total} ({rate:.0} items/s) {}",
            self.epoch,
            self.total_epochs,
            self.split,
            "#".repeat(filled),
            ".".repeat(width - filled),
            Self::metrics_line(map)
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            // Redraw in place; cleared by the next full line.
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        } else {
            let _ = writeln!(err, "{line}");
        }
    }

    fn end_split(&mut self) {
        if self.tty && !self.quiet {
            eprint!("\r\x1b[2K");
        }
    }

    fn end(&mut self) {}

    fn log_event_training(&mut self, _event: String) {}
}

impl EvaluationProgressLogger for ProgressRenderer {
    fn start_global_progress(&mut self, _total_tests: usize) {}

    fn start_test(&mut self, name: &str, total_items: usize) {
        self.start_split(name, total_items);
    }

    fn update_test_progress(&mut self, items_processed: usize) {
        self.update_split(items_processed);
    }

    fn end_test(&mut self) {
        self.end_split();
    }

    fn end_global_progress(&mut self) {}

    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRenderer for ProgressRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id.clone(), definition.name.to_string());
    }
}
