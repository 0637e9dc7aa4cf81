//! Linear probe: multinomial logistic regression with an L2 penalty on frozen image features, the
//! linear-probe protocol of the CLIP paper (Radford et al. 2021, "Learning Transferable Visual
//! Models From Natural Language Supervision", <https://arxiv.org/abs/2103.00020>, §3.2 and
//! Appendix A.3) and of CoOp's `lpclip`. The objective is exactly that of scikit-learn's
//! [`LogisticRegression(C=c, solver="lbfgs", fit_intercept=True)`](https://scikit-learn.org/stable/modules/generated/sklearn.linear_model.LogisticRegression.html)
//! with more than two classes:
//!
//! ```text
//! minimise over W [K, D], b [K]:   C · Σᵢ CE(softmax(W xᵢ + b), yᵢ) + ½ ‖W‖²_F
//! ```
//!
//! (the intercept `b` is not penalised, as in scikit-learn's `LinearModelLoss`). It is solved
//! in `f64` in the form scikit-learn hands to L-BFGS, divided by `n`:
//! `mean CE + ‖W‖²_F / (2 C n)`, which has the same minimiser and makes
//! [`LinearProbeConfig::tol`] mean what scikit-learn's `tol` means (the largest gradient entry
//! allowed at the solution). The solver is a deterministic L-BFGS (history 10, strong-Wolfe line
//! search with safeguarded cubic interpolation, at most 50 evaluations per line search) started
//! from zero, stopping when the largest gradient entry is at most `tol`, when an iteration
//! lowers the objective by less than `64 ε` relatively (scikit-learn's `ftol`), or after
//! `max_iter` iterations. The log-sum-exp is shifted by the row maximum, so no logit overflows.
//! Large problems split the samples into a number of partitions that depends only on the
//! problem's size, evaluate them on threads and add the partial sums in partition order, so a
//! fit gives bit-identical results with any number of cores.
//!
//! [`fit_with_validation`] chooses `C` as the CLIP paper does: a log-spaced sweep, then a
//! "parametric binary search" around the best value on a validation split, then a refit with
//! the chosen `C` on train ∪ validation.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The L-BFGS history length (pairs of steps and gradient changes kept).
const HISTORY: usize = 10;
/// The most objective evaluations one line search may make (scikit-learn passes `maxls=50`).
const MAX_LINE_SEARCH: usize = 50;
/// Sufficient-decrease constant of the Wolfe conditions.
const WOLFE_C1: f64 = 1e-4;
/// Curvature constant of the (strong) Wolfe conditions.
const WOLFE_C2: f64 = 0.9;
/// Relative-reduction stopping threshold, scikit-learn's `ftol = 64 ε`.
const FTOL: f64 = 64.0 * f64::EPSILON;
/// Below this many multiply-adds per pass (`n · K · D`) the objective runs on one thread.
const PARALLEL_WORK: usize = 1 << 22;
/// At least this many samples per partition when the objective is split.
const MIN_PARTITION: usize = 64;
/// At most this many partitions (independent of the machine, for determinism).
const MAX_PARTITIONS: usize = 16;
/// Memory budget for the per-partition gradients, in `f64`s.
const PARTITION_BUDGET: usize = 1 << 25;

/// Settings of [`LinearProbe::fit`] and [`fit_with_validation`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearProbeConfig {
    /// The most L-BFGS iterations of one fit. Default: `1000` (CoOp's `lpclip` uses 1000).
    pub max_iter: usize,
    /// Stop when the largest entry of the gradient of the `n`-scaled objective is at most this
    /// (scikit-learn's `tol` for `solver="lbfgs"`). Default: `1e-8`, much tighter than
    /// scikit-learn's `1e-4`, so that weights agree with a tightly converged reference.
    pub tol: f64,
    /// The values of `C` that [`fit_with_validation`] sweeps first; all finite and positive.
    /// Default: 13 values log-spaced from `1e-3` to `1e3` (`10^-3, 10^-2.5, …, 10^3`).
    pub c_grid: Vec<f64>,
    /// How many refinement steps [`fit_with_validation`] takes after the sweep, each trying the
    /// best `C` so far times and divided by a factor whose log halves every step (the CLIP
    /// paper's parametric binary search); `0` keeps the best grid value. Default: `8`.
    pub refine_steps: usize,
    /// Whether [`fit_with_validation`] refits the chosen `C` on train ∪ validation (`true`) or
    /// returns the probe fitted on train alone, as scored during the search (`false`, what
    /// CoOp's `lpclip` does). Default: `true`, since few-shot training data is scarce.
    pub refit_on_train_and_val: bool,
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        Self {
            max_iter: 1000,
            tol: 1e-8,
            c_grid: (0..13).map(|i| 10f64.powf(-3.0 + 0.5 * i as f64)).collect(),
            refine_steps: 8,
            refit_on_train_and_val: true,
        }
    }
}

/// A fitted linear probe: `logits = W x + b` over `n_classes` classes.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearProbe {
    /// The number of classes `K`.
    pub n_classes: usize,
    /// The feature dimension `D`.
    pub dim: usize,
    /// `W`, `[n_classes * dim]`, row-major by class (scikit-learn's `coef_`). A class with no
    /// training sample has a zero row.
    pub weights: Vec<f64>,
    /// `b`, `[n_classes]` (scikit-learn's `intercept_`), centred to mean zero over the classes
    /// seen in training (the unpenalised intercept is unique only up to a constant). A class with
    /// no training sample gets `-inf`, the limit the objective drives it to: it is never
    /// predicted.
    pub bias: Vec<f64>,
    /// The inverse regularisation strength `C` it was fitted with.
    pub c: f64,
    /// L-BFGS iterations taken.
    pub iterations: usize,
    /// Whether a stopping criterion other than `max_iter` was met (the gradient tolerance or the
    /// relative reduction `64 ε`); `false` also when the line search could not make progress.
    pub converged: bool,
}

/// One value of `C` tried by [`fit_with_validation`] and its validation accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CSearch {
    /// The inverse regularisation strength.
    pub c: f64,
    /// Accuracy (%) on the validation split of the probe fitted on train with this `C`.
    pub val_accuracy: f64,
}

impl LinearProbe {
    /// Fits a probe on `features` (row-major `[n, dim]`, `n = labels.len()`) and `labels`
    /// (each below `n_classes`) with inverse regularisation strength `c`, minimising
    /// `c · Σ CE + ½ ‖W‖²` (see the [module documentation](self)).
    ///
    /// Errors if the inputs are empty, their lengths disagree, a feature is not finite, a label
    /// is out of range, `c` is not finite and positive or `config.tol` is negative or NaN.
    pub fn fit(
        features: &[f32],
        labels: &[usize],
        dim: usize,
        n_classes: usize,
        c: f64,
        config: &LinearProbeConfig,
    ) -> Result<Self> {
        check_config(config)?;
        check_c("linear probe: C", c)?;
        let data = Dataset::new(
            "linear probe: features",
            "linear probe: labels",
            features,
            labels,
            dim,
            n_classes,
        )?;
        Ok(fit_dataset(&data, n_classes, c, config))
    }

    /// The logits `W x + b` of each row of `features` (row-major `[n, dim]`), row-major
    /// `[n, n_classes]`. Empty features give empty logits; a class that had no training sample
    /// scores `-inf`.
    ///
    /// Errors if `features.len()` is not a multiple of `dim`, a feature is not finite, or the
    /// probe's own fields disagree in size.
    pub fn logits(&self, features: &[f32]) -> Result<Vec<f64>> {
        self.check_shape()?;
        let x = to_f64("linear probe: features", features, self.dim)?;
        let mut out = vec![0.0; x.len() / self.dim * self.n_classes];
        self.logits_into(&x, &mut out);
        Ok(out)
    }

    /// The predicted class of each row of `features` (row-major `[n, dim]`): the largest logit,
    /// the lowest class index among equal ones.
    ///
    /// Errors as [`LinearProbe::logits`].
    pub fn predict(&self, features: &[f32]) -> Result<Vec<usize>> {
        self.check_shape()?;
        let x = to_f64("linear probe: features", features, self.dim)?;
        Ok(self.predict_f64(&x))
    }

    fn check_shape(&self) -> Result<()> {
        if self.dim == 0 || self.n_classes == 0 {
            return Err(Error::input(
                "linear probe: shape",
                "dim >= 1 and n_classes >= 1",
                format!("dim {}, n_classes {}", self.dim, self.n_classes),
            ));
        }
        if self.weights.len() != self.n_classes * self.dim {
            return Err(Error::input(
                "linear probe: weights",
                format!("n_classes * dim = {} values", self.n_classes * self.dim),
                format!("{} values", self.weights.len()),
            ));
        }
        if self.bias.len() != self.n_classes {
            return Err(Error::input(
                "linear probe: bias",
                format!("n_classes = {} values", self.n_classes),
                format!("{} values", self.bias.len()),
            ));
        }
        Ok(())
    }

    /// Logits of `x` (`[n, dim]`, already checked) into `out` (`[n, n_classes]`).
    fn logits_into(&self, x: &[f64], out: &mut [f64]) {
        for (xi, row) in x
            .chunks_exact(self.dim)
            .zip(out.chunks_exact_mut(self.n_classes))
        {
            for ((o, w), b) in row
                .iter_mut()
                .zip(self.weights.chunks_exact(self.dim))
                .zip(&self.bias)
            {
                *o = b + dot(w, xi);
            }
        }
    }

    fn predict_f64(&self, x: &[f64]) -> Vec<usize> {
        let mut row = vec![0.0; self.n_classes];
        x.chunks_exact(self.dim)
            .map(|xi| {
                self.logits_into(xi, &mut row);
                argmax(&row)
            })
            .collect()
    }
}

/// Chooses `C` on a validation split and fits the probe, as in the CLIP paper (Appendix A.3):
/// fits on `train` for every value of `config.c_grid`, then takes `config.refine_steps` steps
/// of a parametric binary search around the best value (trying it times and divided by
/// `10^s`, where `s` starts at half the log10 distance to its nearest grid neighbour, or 0.5 for
/// a one-value grid, and halves every step), scoring each fit by its accuracy on `val`. The
/// best accuracy wins, ties going to the smaller `C`. Returns the probe fitted with that `C` on
/// train ∪ val (or on train alone when `config.refit_on_train_and_val` is `false`) and every
/// tried value in the order tried. Each fit starts from zero, so a tried `C` gives exactly the
/// probe [`LinearProbe::fit`] gives, and the whole search is deterministic.
///
/// `C` multiplies the *summed* loss, as in scikit-learn, so refitting on more samples with the
/// same `C` regularises slightly less; this is what refitting a scikit-learn model does.
///
/// Errors as [`LinearProbe::fit`] for either split (naming it), or if `config.c_grid` is empty
/// or holds a value that is not finite and positive.
pub fn fit_with_validation(
    train: (&[f32], &[usize]),
    val: (&[f32], &[usize]),
    dim: usize,
    n_classes: usize,
    config: &LinearProbeConfig,
) -> Result<(LinearProbe, Vec<CSearch>)> {
    check_config(config)?;
    if config.c_grid.is_empty() {
        return Err(Error::input(
            "linear probe: config.c_grid",
            "at least one value",
            "none",
        ));
    }
    for (i, &c) in config.c_grid.iter().enumerate() {
        check_c(&format!("linear probe: config.c_grid[{i}]"), c)?;
    }
    let train = Dataset::new(
        "linear probe: train features",
        "linear probe: train labels",
        train.0,
        train.1,
        dim,
        n_classes,
    )?;
    let val = Dataset::new(
        "linear probe: validation features",
        "linear probe: validation labels",
        val.0,
        val.1,
        dim,
        n_classes,
    )?;

    let mut search = Search {
        train: &train,
        val: &val,
        n_classes,
        config,
        log: Vec::new(),
        best: None,
    };
    for &c in &config.c_grid {
        search.try_c(c);
    }
    let mut sorted: Vec<f64> = config.c_grid.iter().map(|c| c.log10()).collect();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    let mut best_c = search.best_c().unwrap_or(config.c_grid[0]);
    let centre = best_c.log10();
    let mut step = sorted
        .iter()
        .map(|l| (l - centre).abs())
        .filter(|d| *d > 0.0)
        .min_by(f64::total_cmp)
        .map_or(0.5, |d| d / 2.0);
    for _ in 0..config.refine_steps {
        let factor = 10f64.powf(step);
        for c in [best_c / factor, best_c * factor] {
            if c.is_finite() && c > 0.0 {
                search.try_c(c);
            }
        }
        best_c = search.best_c().unwrap_or(best_c);
        step /= 2.0;
    }

    let Search { log, best, .. } = search;
    let (chosen, probe) = best
        .ok_or_else(|| Error::input("linear probe: config.c_grid", "at least one value", "none"))?;
    if !config.refit_on_train_and_val {
        return Ok((probe, log));
    }
    let both = Dataset {
        x: [train.x, val.x].concat(),
        y: [train.y, val.y].concat(),
        dim,
    };
    Ok((fit_dataset(&both, n_classes, chosen.c, config), log))
}

/// The state of [`fit_with_validation`]'s search: the values tried and the best so far.
struct Search<'a> {
    train: &'a Dataset,
    val: &'a Dataset,
    n_classes: usize,
    config: &'a LinearProbeConfig,
    log: Vec<CSearch>,
    /// The best value so far and its probe fitted on train.
    best: Option<(CSearch, LinearProbe)>,
}

impl Search<'_> {
    /// Fits on train with `c` (unless tried already), scores it on val, logs it and keeps it if
    /// it beats the best so far (a higher accuracy, or the same with a smaller `C`).
    fn try_c(&mut self, c: f64) {
        if self.log.iter().any(|t| t.c == c) {
            return;
        }
        let probe = fit_dataset(self.train, self.n_classes, c, self.config);
        let hits = probe
            .predict_f64(&self.val.x)
            .iter()
            .zip(&self.val.y)
            .filter(|(p, y)| p == y)
            .count();
        let tried = CSearch {
            c,
            val_accuracy: 100.0 * hits as f64 / self.val.y.len() as f64,
        };
        self.log.push(tried);
        let better = self.best.as_ref().is_none_or(|(b, _)| {
            tried.val_accuracy > b.val_accuracy
                || (tried.val_accuracy == b.val_accuracy && tried.c < b.c)
        });
        if better {
            self.best = Some((tried, probe));
        }
    }

    fn best_c(&self) -> Option<f64> {
        self.best.as_ref().map(|(b, _)| b.c)
    }
}

/// Checked inputs in `f64`.
struct Dataset {
    /// `[n, dim]`, row-major.
    x: Vec<f64>,
    /// `[n]`, each below the number of classes.
    y: Vec<usize>,
    dim: usize,
}

impl Dataset {
    fn new(
        what_x: &str,
        what_y: &str,
        features: &[f32],
        labels: &[usize],
        dim: usize,
        n_classes: usize,
    ) -> Result<Self> {
        if n_classes == 0 {
            return Err(Error::input("linear probe: n_classes", "at least 1", "0"));
        }
        if labels.is_empty() {
            return Err(Error::input(what_y, "at least one sample", "none"));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, l)| **l >= n_classes) {
            return Err(Error::input(
                format!("{what_y}[{i}]"),
                format!("a class index below {n_classes}"),
                l.to_string(),
            ));
        }
        if dim == 0 {
            return Err(Error::input("linear probe: dim", "at least 1", "0"));
        }
        let expected = labels.len().checked_mul(dim);
        if expected != Some(features.len()) {
            return Err(Error::input(
                what_x,
                format!(
                    "{} labels x dim {dim} = {} values",
                    labels.len(),
                    expected.map_or_else(|| "too many".into(), |e| e.to_string())
                ),
                format!("{} values", features.len()),
            ));
        }
        Ok(Self {
            x: to_f64(what_x, features, dim)?,
            y: labels.to_vec(),
            dim,
        })
    }
}

/// `features` in `f64`, checking that they are finite and a whole number of rows.
fn to_f64(what: &str, features: &[f32], dim: usize) -> Result<Vec<f64>> {
    if dim == 0 || !features.len().is_multiple_of(dim) {
        return Err(Error::input(
            what,
            format!("a multiple of dim {dim} values"),
            format!("{} values", features.len()),
        ));
    }
    if let Some((i, v)) = features.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::input(
            format!("{what}[{i}] (row {}, column {})", i / dim, i % dim),
            "a finite value",
            v.to_string(),
        ));
    }
    Ok(features.iter().map(|&v| f64::from(v)).collect())
}

fn check_c(what: &str, c: f64) -> Result<()> {
    if c.is_finite() && c > 0.0 {
        Ok(())
    } else {
        Err(Error::input(what, "a finite value > 0", c.to_string()))
    }
}

fn check_config(config: &LinearProbeConfig) -> Result<()> {
    if config.tol >= 0.0 {
        Ok(())
    } else {
        Err(Error::input(
            "linear probe: config.tol",
            "a value >= 0",
            config.tol.to_string(),
        ))
    }
}

/// Fits on checked data: L-BFGS on the classes present in `data`, then expanded to `n_classes`.
fn fit_dataset(
    data: &Dataset,
    n_classes: usize,
    c: f64,
    config: &LinearProbeConfig,
) -> LinearProbe {
    let dim = data.dim;
    // Classes without a sample would have their intercept driven to -inf; solve the problem on
    // the classes present (its minimiser is the limit) and expand afterwards.
    let mut compact = vec![usize::MAX; n_classes];
    let mut present = Vec::new();
    for &l in &data.y {
        if compact[l] == usize::MAX {
            compact[l] = 0;
        }
    }
    for (class, slot) in compact.iter_mut().enumerate() {
        if *slot == 0 {
            *slot = present.len();
            present.push(class);
        }
    }
    let k = present.len();
    let y: Vec<usize> = data.y.iter().map(|&l| compact[l]).collect();

    let mut weights = vec![0.0; n_classes * dim];
    let mut bias = vec![f64::NEG_INFINITY; n_classes];
    let (params, iterations, converged) = if k == 1 {
        // One class: every probability is 1, the loss is 0 and the penalty wants W = 0.
        (vec![0.0; dim + 1], 0, true)
    } else {
        let mut objective = Objective::new(&data.x, &y, dim, k, c);
        let mut params = vec![0.0; k * (dim + 1)];
        let (iterations, converged) = lbfgs(&mut objective, &mut params, config);
        (params, iterations, converged)
    };
    let (w, b) = params.split_at(k * dim);
    let mean_b = b.iter().sum::<f64>() / k as f64;
    for (i, &class) in present.iter().enumerate() {
        weights[class * dim..(class + 1) * dim].copy_from_slice(&w[i * dim..(i + 1) * dim]);
        bias[class] = b[i] - mean_b;
    }
    LinearProbe {
        n_classes,
        dim,
        weights,
        bias,
        c,
        iterations,
        converged,
    }
}

/// One partition of the samples and its scratch: partial gradient, partial loss, logits.
struct Partition {
    start: usize,
    end: usize,
    grad: Vec<f64>,
    loss: f64,
    z: Vec<f64>,
}

/// The `n`-scaled objective `mean CE + ‖W‖² / (2 C n)` over parameters `[W (k·dim) | b (k)]`.
struct Objective<'a> {
    x: &'a [f64],
    y: &'a [usize],
    dim: usize,
    k: usize,
    /// `1 / (C n)`.
    l2: f64,
    parts: Vec<Partition>,
    threads: usize,
}

impl<'a> Objective<'a> {
    fn new(x: &'a [f64], y: &'a [usize], dim: usize, k: usize, c: f64) -> Self {
        let n = y.len();
        let n_params = k * (dim + 1);
        // The partitioning depends only on the problem's size, never on the machine.
        let n_parts = if n.saturating_mul(k).saturating_mul(dim) < PARALLEL_WORK {
            1
        } else {
            (n / MIN_PARTITION)
                .min(MAX_PARTITIONS)
                .min(PARTITION_BUDGET / n_params)
                .max(1)
        };
        let parts = (0..n_parts)
            .map(|p| Partition {
                start: p * n / n_parts,
                end: (p + 1) * n / n_parts,
                grad: vec![0.0; n_params],
                loss: 0.0,
                z: vec![0.0; k],
            })
            .collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(n_parts);
        Self {
            x,
            y,
            dim,
            k,
            l2: 1.0 / (c * n as f64),
            parts,
            threads,
        }
    }

    /// The objective at `params`; its gradient into `grad`.
    fn eval(&mut self, params: &[f64], grad: &mut [f64]) -> f64 {
        let (x, y, dim, k) = (self.x, self.y, self.dim, self.k);
        if self.threads <= 1 {
            for part in &mut self.parts {
                accumulate(x, y, dim, k, params, part);
            }
        } else {
            let threads = self.threads;
            let mut groups: Vec<Vec<&mut Partition>> = (0..threads).map(|_| Vec::new()).collect();
            for (p, part) in self.parts.iter_mut().enumerate() {
                groups[p % threads].push(part);
            }
            std::thread::scope(|scope| {
                for group in groups {
                    scope.spawn(move || {
                        for part in group {
                            accumulate(x, y, dim, k, params, part);
                        }
                    });
                }
            });
        }
        // Add the partial sums in partition order: the same result with any thread count.
        let inv_n = 1.0 / y.len() as f64;
        grad.copy_from_slice(&self.parts[0].grad);
        let mut loss = self.parts[0].loss;
        for part in &self.parts[1..] {
            for (g, p) in grad.iter_mut().zip(&part.grad) {
                *g += p;
            }
            loss += part.loss;
        }
        loss *= inv_n;
        let (w, _) = params.split_at(k * dim);
        let (gw, gb) = grad.split_at_mut(k * dim);
        let mut sq = 0.0;
        for (g, &wi) in gw.iter_mut().zip(w) {
            *g = *g * inv_n + self.l2 * wi;
            sq += wi * wi;
        }
        for g in gb {
            *g *= inv_n;
        }
        loss + 0.5 * self.l2 * sq
    }
}

/// The summed cross-entropy of a partition's samples and its gradient (unscaled, unpenalised).
fn accumulate(x: &[f64], y: &[usize], dim: usize, k: usize, params: &[f64], part: &mut Partition) {
    let (w, b) = params.split_at(k * dim);
    part.grad.fill(0.0);
    let (gw, gb) = part.grad.split_at_mut(k * dim);
    let z = &mut part.z;
    let mut loss = 0.0;
    for i in part.start..part.end {
        let xi = &x[i * dim..(i + 1) * dim];
        let mut max = f64::NEG_INFINITY;
        for ((zc, wc), bc) in z.iter_mut().zip(w.chunks_exact(dim)).zip(b) {
            *zc = bc + dot(wc, xi);
            max = max.max(*zc);
        }
        let yi = y[i];
        let target = z[yi] - max;
        let mut sum = 0.0;
        for zc in z.iter_mut() {
            *zc = (*zc - max).exp();
            sum += *zc;
        }
        loss += sum.ln() - target;
        let inv = 1.0 / sum;
        for (c, ((zc, gwc), gbc)) in z
            .iter()
            .zip(gw.chunks_exact_mut(dim))
            .zip(gb.iter_mut())
            .enumerate()
        {
            let r = zc * inv - if c == yi { 1.0 } else { 0.0 };
            *gbc += r;
            axpy(gwc, r, xi);
        }
    }
    part.loss = loss;
}

/// L-BFGS from `params` (updated in place); returns the iterations taken and whether it met a
/// stopping criterion other than `max_iter`.
fn lbfgs(
    objective: &mut Objective<'_>,
    params: &mut [f64],
    config: &LinearProbeConfig,
) -> (usize, bool) {
    let n = params.len();
    let mut grad = vec![0.0; n];
    let mut f = objective.eval(params, &mut grad);
    let mut dir = vec![0.0; n];
    let mut trial = vec![0.0; n];
    let mut trial_grad = vec![0.0; n];
    // Ring buffer of (s, y, 1 / y·s), oldest first from `head`.
    let mut s_hist = vec![vec![0.0; n]; HISTORY];
    let mut y_hist = vec![vec![0.0; n]; HISTORY];
    let mut rho = [0.0; HISTORY];
    let mut alpha = [0.0; HISTORY];
    let (mut head, mut len) = (0usize, 0usize);

    let mut iterations = 0;
    let mut converged = max_abs(&grad) <= config.tol;
    while !converged && iterations < config.max_iter {
        // Two-loop recursion: dir = -H grad.
        dir.copy_from_slice(&grad);
        for j in (0..len).rev() {
            let slot = (head + j) % HISTORY;
            alpha[slot] = rho[slot] * dot(&s_hist[slot], &dir);
            axpy(&mut dir, -alpha[slot], &y_hist[slot]);
        }
        if len > 0 {
            let last = (head + len - 1) % HISTORY;
            let gamma = 1.0 / (rho[last] * dot(&y_hist[last], &y_hist[last]));
            dir.iter_mut().for_each(|d| *d *= gamma);
        }
        for j in 0..len {
            let slot = (head + j) % HISTORY;
            let beta = rho[slot] * dot(&y_hist[slot], &dir);
            axpy(&mut dir, alpha[slot] - beta, &s_hist[slot]);
        }
        dir.iter_mut().for_each(|d| *d = -*d);
        let mut slope = dot(&grad, &dir);
        if slope.is_nan() || slope >= 0.0 {
            // Not a descent direction (rounding): restart from steepest descent.
            len = 0;
            dir.iter_mut().zip(&grad).for_each(|(d, g)| *d = -g);
            slope = dot(&grad, &dir);
        }
        let step0 = if len == 0 {
            1.0 / dot(&dir, &dir).sqrt()
        } else {
            1.0
        };
        let search = LineSearch {
            x: params,
            dir: &dir,
            f0: f,
            slope0: slope,
        };
        let Some(f_new) = search.run(objective, step0, &mut trial, &mut trial_grad) else {
            if len == 0 {
                break;
            }
            // Forget the curvature pairs and try steepest descent once more.
            len = 0;
            continue;
        };
        iterations += 1;
        // Keep the pair s = trial - x, y = trial_grad - grad if it has positive curvature
        // (always, with a Wolfe step, up to rounding), overwriting the oldest when full.
        let (mut ys, mut yy) = (0.0, 0.0);
        for i in 0..n {
            let (s, y) = (trial[i] - params[i], trial_grad[i] - grad[i]);
            ys += y * s;
            yy += y * y;
        }
        if ys > f64::EPSILON * yy && ys > 0.0 {
            let slot = (head + len) % HISTORY;
            for i in 0..n {
                s_hist[slot][i] = trial[i] - params[i];
                y_hist[slot][i] = trial_grad[i] - grad[i];
            }
            rho[slot] = 1.0 / ys;
            if len < HISTORY {
                len += 1;
            } else {
                head = (head + 1) % HISTORY;
            }
        }
        params.copy_from_slice(&trial);
        grad.copy_from_slice(&trial_grad);
        let reduction = f - f_new;
        let scale = f.abs().max(f_new.abs()).max(1.0);
        f = f_new;
        converged = max_abs(&grad) <= config.tol || reduction <= FTOL * scale;
    }
    (iterations, converged)
}

/// A strong-Wolfe line search along `dir` from `x` (Nocedal & Wright, *Numerical Optimization*,
/// Algorithms 3.5 and 3.6, with safeguarded cubic interpolation).
struct LineSearch<'s> {
    x: &'s [f64],
    dir: &'s [f64],
    f0: f64,
    slope0: f64,
}

impl LineSearch<'_> {
    /// The objective and its slope at `x + step · dir`, writing the point and its gradient.
    fn phi(
        &self,
        objective: &mut Objective<'_>,
        step: f64,
        point: &mut [f64],
        grad: &mut [f64],
    ) -> (f64, f64) {
        for ((p, x), d) in point.iter_mut().zip(self.x).zip(self.dir) {
            *p = x + step * d;
        }
        let f = objective.eval(point, grad);
        (f, dot(grad, self.dir))
    }

    /// Returns the objective at an accepted step, with `point` and `grad` holding that step's
    /// point and gradient, or `None` if no step lowered the objective.
    fn run(
        &self,
        objective: &mut Objective<'_>,
        step0: f64,
        point: &mut [f64],
        grad: &mut [f64],
    ) -> Option<f64> {
        let mut evals = 0;
        let mut prev = (0.0, self.f0, self.slope0);
        let mut step = step0;
        let (lo, hi) = loop {
            let (f, slope) = self.phi(objective, step, point, grad);
            evals += 1;
            let cur = (step, f, slope);
            if !f.is_finite()
                || f > self.f0 + WOLFE_C1 * step * self.slope0
                || (evals > 1 && f >= prev.1)
            {
                break (prev, cur);
            }
            if slope.abs() <= -WOLFE_C2 * self.slope0 {
                return Some(f);
            }
            if slope >= 0.0 {
                break (cur, prev);
            }
            if evals >= MAX_LINE_SEARCH {
                return Some(f);
            }
            prev = cur;
            step *= 4.0;
        };
        self.zoom(objective, lo, hi, evals, point, grad)
    }

    /// Algorithm 3.6: `lo` satisfies sufficient decrease with the lower objective, the minimiser
    /// lies between `lo` and `hi`. Each triple is `(step, objective, slope)`.
    fn zoom(
        &self,
        objective: &mut Objective<'_>,
        mut lo: (f64, f64, f64),
        mut hi: (f64, f64, f64),
        mut evals: usize,
        point: &mut [f64],
        grad: &mut [f64],
    ) -> Option<f64> {
        while evals < MAX_LINE_SEARCH {
            let width = hi.0 - lo.0;
            if width.abs() <= f64::EPSILON * lo.0.abs().max(hi.0.abs()) {
                break;
            }
            let mut step = cubic_min(lo, hi).unwrap_or(lo.0 + 0.5 * width);
            // Keep the trial well inside the interval.
            let (a, b) = (lo.0 + 0.1 * width, hi.0 - 0.1 * width);
            let (min, max) = if a < b { (a, b) } else { (b, a) };
            if step < min || step > max {
                step = lo.0 + 0.5 * width;
            }
            let (f, slope) = self.phi(objective, step, point, grad);
            evals += 1;
            if !f.is_finite() || f > self.f0 + WOLFE_C1 * step * self.slope0 || f >= lo.1 {
                hi = (step, f, slope);
            } else {
                if slope.abs() <= -WOLFE_C2 * self.slope0 {
                    return Some(f);
                }
                if slope * width >= 0.0 {
                    hi = lo;
                }
                lo = (step, f, slope);
            }
        }
        // Out of evaluations: take the best point found if it lowered the objective.
        if lo.0 > 0.0 && lo.1 < self.f0 {
            let (f, _) = self.phi(objective, lo.0, point, grad);
            return Some(f);
        }
        None
    }
}

/// The minimiser of the cubic through two `(step, value, slope)` points, if it exists.
fn cubic_min(a: (f64, f64, f64), b: (f64, f64, f64)) -> Option<f64> {
    let d1 = a.2 + b.2 - 3.0 * (a.1 - b.1) / (a.0 - b.0);
    let disc = d1 * d1 - a.2 * b.2;
    if disc.is_nan() || disc < 0.0 {
        return None;
    }
    let d2 = (b.0 - a.0).signum() * disc.sqrt();
    let step = b.0 - (b.0 - a.0) * (b.2 + d2 - d1) / (b.2 - a.2 + 2.0 * d2);
    step.is_finite().then_some(step)
}

/// `Σ aᵢ bᵢ` with eight independent accumulators (vectorises; a fixed summation order).
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `y += a x`.
#[inline]
fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// The index of the largest value, the lowest among equal ones.
fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (SplitMix64), so the tests need no dependency.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in [-1, 1).
        fn uniform(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
    }

    /// `n` samples of `k` classes in `dim` dimensions: class means `spread` apart plus noise.
    fn clusters(n: usize, k: usize, dim: usize, spread: f64, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = Rng(seed);
        let means: Vec<f64> = (0..k * dim).map(|_| spread * rng.uniform()).collect();
        let labels: Vec<usize> = (0..n).map(|i| i % k).collect();
        let features = labels
            .iter()
            .flat_map(|&l| (0..dim).map(move |j| (l, j)))
            .map(|(l, j)| (means[l * dim + j] + rng.uniform()) as f32)
            .collect();
        (features, labels)
    }

    fn objective_at(x: &[f64], y: &[usize], dim: usize, k: usize, c: f64, p: &[f64]) -> f64 {
        let mut grad = vec![0.0; p.len()];
        Objective::new(x, y, dim, k, c).eval(p, &mut grad)
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (dim, k) = (5, 3);
        let (features, labels) = clusters(40, k, dim, 1.0, 7);
        let x: Vec<f64> = features.iter().map(|&v| f64::from(v)).collect();
        let mut rng = Rng(3);
        let params: Vec<f64> = (0..k * (dim + 1)).map(|_| rng.uniform()).collect();
        let mut grad = vec![0.0; params.len()];
        Objective::new(&x, &labels, dim, k, 0.7).eval(&params, &mut grad);
        let h = 1e-6;
        for i in 0..params.len() {
            let mut plus = params.clone();
            plus[i] += h;
            let mut minus = params.clone();
            minus[i] -= h;
            let numeric = (objective_at(&x, &labels, dim, k, 0.7, &plus)
                - objective_at(&x, &labels, dim, k, 0.7, &minus))
                / (2.0 * h);
            assert!(
                (numeric - grad[i]).abs() < 1e-7,
                "parameter {i}: analytic {} vs numeric {numeric}",
                grad[i]
            );
        }
    }

    #[test]
    fn objective_matches_a_direct_computation() {
        // W = [[1, 0], [0, 1]], b = [0, 0.5], two samples, C = 2, n = 2:
        // objective = (CE_0 + CE_1) / 2 + (1 + 1) / (2 · 2 · 2).
        let x = [1.0, 2.0, -1.0, 0.5];
        let y = [1, 0];
        let params = [1.0, 0.0, 0.0, 1.0, 0.0, 0.5];
        let ce = |z: [f64; 2], t: usize| (z[0].exp() + z[1].exp()).ln() - z[t];
        let expected = (ce([1.0, 2.5], 1) + ce([-1.0, 1.0], 0)) / 2.0 + 2.0 / 8.0;
        let got = objective_at(&x, &y, 2, 2, 2.0, &params);
        assert!((got - expected).abs() < 1e-14, "{got} vs {expected}");
    }

    #[test]
    fn log_sum_exp_does_not_overflow_on_huge_logits() {
        let x = [1e30, -1e30];
        let y = [0];
        let params = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        let mut grad = vec![0.0; 6];
        let f = Objective::new(&x, &y, 2, 2, 1.0).eval(&params, &mut grad);
        assert!(
            f.is_finite() && grad.iter().all(|g| g.is_finite()),
            "{f} {grad:?}"
        );
    }

    #[test]
    fn fit_converges_to_a_stationary_point() {
        let (dim, k) = (6, 4);
        let (features, labels) = clusters(120, k, dim, 1.0, 11);
        let probe = LinearProbe::fit(
            &features,
            &labels,
            dim,
            k,
            3.0,
            &LinearProbeConfig::default(),
        )
        .unwrap();
        assert!(probe.converged, "{} iterations", probe.iterations);
        let x: Vec<f64> = features.iter().map(|&v| f64::from(v)).collect();
        let params = [probe.weights.clone(), probe.bias.clone()].concat();
        let mut grad = vec![0.0; params.len()];
        Objective::new(&x, &labels, dim, k, 3.0).eval(&params, &mut grad);
        assert!(max_abs(&grad) < 1e-6, "gradient {}", max_abs(&grad));
        assert!(probe.bias.iter().sum::<f64>().abs() < 1e-9);
    }

    #[test]
    fn separable_data_is_classified_perfectly() {
        let (dim, k) = (8, 5);
        let (features, labels) = clusters(100, k, dim, 10.0, 5);
        let probe = LinearProbe::fit(
            &features,
            &labels,
            dim,
            k,
            1.0,
            &LinearProbeConfig::default(),
        )
        .unwrap();
        assert_eq!(probe.predict(&features).unwrap(), labels);
        let logits = probe.logits(&features).unwrap();
        assert_eq!(logits.len(), 100 * k);
    }

    #[test]
    fn stronger_regularisation_shrinks_the_weights() {
        let (dim, k) = (6, 3);
        let (features, labels) = clusters(90, k, dim, 1.0, 13);
        let config = LinearProbeConfig::default();
        let norm = |c| {
            let p = LinearProbe::fit(&features, &labels, dim, k, c, &config).unwrap();
            p.weights.iter().map(|w| w * w).sum::<f64>()
        };
        assert!(norm(0.01) < norm(1.0) && norm(1.0) < norm(100.0));
    }

    #[test]
    fn a_class_without_samples_is_never_predicted() {
        let (dim, k) = (4, 3);
        let (features, labels) = clusters(60, k, dim, 2.0, 17);
        // Relabel class 2 as class 3 of 4: class 2 has no sample.
        let labels: Vec<usize> = labels.iter().map(|&l| if l == 2 { 3 } else { l }).collect();
        let probe = LinearProbe::fit(
            &features,
            &labels,
            dim,
            4,
            1.0,
            &LinearProbeConfig::default(),
        )
        .unwrap();
        assert_eq!(probe.bias[2], f64::NEG_INFINITY);
        assert!(probe.weights[2 * dim..3 * dim].iter().all(|&w| w == 0.0));
        assert!(!probe.predict(&features).unwrap().contains(&2));
    }

    #[test]
    fn a_single_class_is_always_predicted() {
        let features = [0.5f32, -1.0, 2.0, 0.0];
        let probe =
            LinearProbe::fit(&features, &[1, 1], 2, 3, 1.0, &LinearProbeConfig::default()).unwrap();
        assert_eq!(probe.predict(&features).unwrap(), vec![1, 1]);
    }

    #[test]
    fn bad_labels_are_an_error_naming_the_input() {
        let err = LinearProbe::fit(&[0.0; 4], &[0, 2], 2, 2, 1.0, &LinearProbeConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("linear probe: labels[1]"), "{err}");
        assert!(err.contains("below 2"), "{err}");
    }

    #[test]
    fn mismatched_lengths_are_an_error_naming_the_input() {
        let err = LinearProbe::fit(&[0.0; 5], &[0, 1], 2, 2, 1.0, &LinearProbeConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("linear probe: features"), "{err}");
        assert!(err.contains("found 5 values"), "{err}");
    }

    #[test]
    fn non_finite_features_are_an_error_naming_the_input() {
        let err = LinearProbe::fit(
            &[0.0, f32::NAN, 1.0, 1.0],
            &[0, 1],
            2,
            2,
            1.0,
            &LinearProbeConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("linear probe: features[1]"), "{err}");
        let probe = LinearProbe::fit(&[0.0, 1.0], &[0, 1], 1, 2, 1.0, &Default::default()).unwrap();
        assert!(probe.predict(&[f32::INFINITY]).is_err());
    }

    #[test]
    fn empty_inputs_and_bad_c_are_errors() {
        let config = LinearProbeConfig::default();
        let err = LinearProbe::fit(&[], &[], 2, 2, 1.0, &config)
            .unwrap_err()
            .to_string();
        assert!(err.contains("linear probe: labels"), "{err}");
        for c in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = LinearProbe::fit(&[0.0, 1.0], &[0, 1], 1, 2, c, &config)
                .unwrap_err()
                .to_string();
            assert!(err.contains("linear probe: C"), "{err}");
        }
        let empty_grid = LinearProbeConfig {
            c_grid: vec![],
            ..LinearProbeConfig::default()
        };
        let err = fit_with_validation((&[0.0, 1.0], &[0, 1]), (&[0.0], &[0]), 1, 2, &empty_grid)
            .unwrap_err()
            .to_string();
        assert!(err.contains("c_grid"), "{err}");
        let err = fit_with_validation((&[0.0, 1.0], &[0, 1]), (&[], &[]), 1, 2, &config)
            .unwrap_err()
            .to_string();
        assert!(err.contains("linear probe: validation labels"), "{err}");
    }

    #[test]
    fn predict_checks_the_feature_length() {
        let probe = LinearProbe::fit(&[0.0, 1.0], &[0, 1], 1, 2, 1.0, &Default::default()).unwrap();
        let wide = LinearProbe {
            dim: 2,
            weights: vec![0.0; 4],
            ..probe
        };
        assert!(wide.predict(&[0.0; 3]).is_err());
        assert!(wide.predict(&[]).unwrap().is_empty());
        let broken = LinearProbe {
            weights: vec![0.0; 3],
            ..wide
        };
        assert!(broken.logits(&[0.0; 2]).is_err());
    }

    #[test]
    fn validation_search_refines_around_the_grid_and_prefers_smaller_c_on_ties() {
        let (dim, k) = (6, 4);
        let (train_x, train_y) = clusters(80, k, dim, 1.0, 19);
        let (val_x, val_y) = clusters(40, k, dim, 1.0, 23);
        let config = LinearProbeConfig {
            c_grid: vec![0.01, 1.0, 100.0],
            refine_steps: 3,
            ..LinearProbeConfig::default()
        };
        let (probe, log) =
            fit_with_validation((&train_x, &train_y), (&val_x, &val_y), dim, k, &config).unwrap();
        assert_eq!(log.len(), 3 + 2 * 3);
        assert_eq!(
            &log[..3].iter().map(|t| t.c).collect::<Vec<_>>(),
            &config.c_grid
        );
        let best = log.iter().map(|t| t.val_accuracy).fold(f64::MIN, f64::max);
        let smallest_best = log
            .iter()
            .filter(|t| t.val_accuracy == best)
            .map(|t| t.c)
            .fold(f64::INFINITY, f64::min);
        assert_eq!(probe.c, smallest_best);
        // The first refinement step is half the grid's log-spacing (a factor of 10).
        let first = log[3].c / log[4].c;
        assert!((first.log10() + 2.0).abs() < 1e-9, "{first}");
    }

    #[test]
    fn search_without_refit_returns_the_train_only_probe() {
        let (dim, k) = (4, 3);
        let (train_x, train_y) = clusters(60, k, dim, 1.0, 29);
        let (val_x, val_y) = clusters(30, k, dim, 1.0, 31);
        let config = LinearProbeConfig {
            c_grid: vec![0.1, 1.0],
            refine_steps: 1,
            refit_on_train_and_val: false,
            ..LinearProbeConfig::default()
        };
        let (probe, _) =
            fit_with_validation((&train_x, &train_y), (&val_x, &val_y), dim, k, &config).unwrap();
        let direct = LinearProbe::fit(&train_x, &train_y, dim, k, probe.c, &config).unwrap();
        assert_eq!(probe, direct);
    }

    #[test]
    fn partitioned_objective_matches_the_single_partition_one() {
        // Large enough to be split: the partial sums agree with one pass to rounding.
        let (dim, k, n) = (64, 64, 1100);
        let (features, labels) = clusters(n, k, dim, 1.0, 37);
        let x: Vec<f64> = features.iter().map(|&v| f64::from(v)).collect();
        let mut rng = Rng(41);
        let params: Vec<f64> = (0..k * (dim + 1)).map(|_| 0.1 * rng.uniform()).collect();
        let mut split = Objective::new(&x, &labels, dim, k, 1.0);
        assert!(split.parts.len() > 1);
        let mut g_split = vec![0.0; params.len()];
        let f_split = split.eval(&params, &mut g_split);
        let mut whole = Objective::new(&x, &labels, dim, k, 1.0);
        whole.parts.truncate(1);
        whole.parts[0].end = n;
        whole.threads = 1;
        let mut g_whole = vec![0.0; params.len()];
        let f_whole = whole.eval(&params, &mut g_whole);
        assert!((f_split - f_whole).abs() < 1e-12);
        let diff = g_split
            .iter()
            .zip(&g_whole)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-12, "{diff}");
    }
}
