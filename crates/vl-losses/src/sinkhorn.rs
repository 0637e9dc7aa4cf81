//! [`Sinkhorn`]: Sinkhorn-Knopp balanced soft assignment of `N` samples to `K` clusters
//! (Cuturi 2013, "Sinkhorn Distances", <https://arxiv.org/abs/1306.0895>), as used for
//! equal-partition pseudo-labels by SeLa (Asano et al. 2020, "Self-labelling via simultaneous
//! clustering and representation learning", <https://arxiv.org/abs/1911.05371>) and SwAV (Caron
//! et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments",
//! <https://arxiv.org/abs/2006.09882>, §3.1 and Appendix A.1).
//!
//! Reference: SwAV `main_swav.py` (`distributed_sinkhorn`),
//! <https://github.com/facebookresearch/swav/blob/main/main_swav.py>. That version works on
//! `exp(scores / ε)` directly, which overflows `f32` once a score exceeds `88.7 ε` (e.g.
//! scores in `[-1, 1]` with `ε = 0.01`: `e¹⁰⁰`) and then returns NaN. This one runs the same
//! iteration on `log Q` with log-sum-exp normalisations, so it is finite for any finite scores
//! and any `ε > 0`, and equal to SwAV's result wherever that one is finite.

use burn::prelude::*;

use crate::ops::logsumexp;

/// Configuration of a [`Sinkhorn`] assignment.
#[derive(Config, Debug)]
pub struct SinkhornConfig {
    /// The entropic regularisation `ε`: scores are divided by it, so smaller values give harder
    /// (and slower converging) assignments. Default: `0.05` (SwAV).
    #[config(default = 0.05)]
    pub epsilon: f64,
    /// Number of iterations, each normalising the columns then the rows. Default: `3` (SwAV),
    /// which leaves the column sums only roughly balanced; exact marginals need more (tens to
    /// hundreds, more for small `ε` or few samples per cluster).
    #[config(default = 3)]
    pub n_iters: usize,
}

impl SinkhornConfig {
    /// Creates the assignment operator (it has no parameters).
    ///
    /// # Panics
    /// If `epsilon` is not a positive finite number, or `n_iters` is 0.
    pub fn init(&self) -> Sinkhorn {
        assert!(
            self.epsilon.is_finite() && self.epsilon > 0.0,
            "epsilon must be positive and finite, got {}",
            self.epsilon
        );
        assert!(self.n_iters > 0, "n_iters must be at least 1");
        Sinkhorn {
            epsilon: self.epsilon,
            n_iters: self.n_iters,
        }
    }
}

/// Sinkhorn-Knopp soft assignment with prescribed row and column sums, in the log domain.
///
/// Given scores `S` `[N, K]` (e.g. cosine similarities of `N` samples to `K` prototypes), it
/// returns `Q = diag(u) exp(S / ε) diag(v)`, the entropy-regularised optimal transport plan whose
/// rows sum to `r` and columns to `c`. By default `rᵢ = 1` (each row a distribution over
/// clusters) and `cₖ = N / K` (equal partition). Starting from `log Q = S / ε`, each
/// iteration does
///
/// ```text
/// log Q ← log Q − logsumexp_rows(log Q) + log c      (column k now sums to cₖ)
/// log Q ← log Q − logsumexp_cols(log Q) + log r      (row i now sums to rᵢ)
/// ```
///
/// and the result is `exp(log Q)`. This is SwAV's `distributed_sinkhorn` (for one process)
/// written on logarithms: SwAV's extra constant factors cancel. The last step normalises rows, so
/// row sums are exact and the column sums converge to `c` as `n_iters` grows.
///
/// No gradient flows through the assignment, as in SwAV (where it runs under `torch.no_grad()`):
/// the scores are detached and made untracked (`Tensor::detach` alone would keep a leaf's
/// `require_grad` and record the iterations), so the output is a constant target for a loss.
#[derive(Module, Debug)]
pub struct Sinkhorn {
    /// The entropic regularisation `ε`.
    pub epsilon: f64,
    /// The number of iterations.
    pub n_iters: usize,
}

impl Sinkhorn {
    /// The equal-partition assignment: rows sum to 1, columns to `N / K`.
    ///
    /// # Shapes
    /// - scores: `[n_samples, n_clusters]`
    /// - output: `[n_samples, n_clusters]`
    pub fn forward(&self, scores: Tensor<2>) -> Tensor<2> {
        let [n_samples, n_clusters] = scores.dims();
        let log_col = (n_samples as f64 / n_clusters as f64).ln();
        self.iterate(scores, |log_q| log_q.add_scalar(log_col), |log_q| log_q)
    }

    /// The assignment with row sums `row_marginals` and column sums `col_marginals`, the latter
    /// rescaled to have the same total as the former (a transport plan needs equal totals).
    /// Marginals must be positive: a zero gives a NaN row or column.
    ///
    /// # Shapes
    /// - scores: `[n_samples, n_clusters]`
    /// - row_marginals: `[n_samples]`
    /// - col_marginals: `[n_clusters]`
    /// - output: `[n_samples, n_clusters]`
    pub fn forward_with_marginals(
        &self,
        scores: Tensor<2>,
        row_marginals: Tensor<1>,
        col_marginals: Tensor<1>,
    ) -> Tensor<2> {
        let [n_samples, n_clusters] = scores.dims();
        assert_shape!(row_marginals, [n_samples]);
        assert_shape!(col_marginals, [n_clusters]);
        let row_marginals = untracked(row_marginals);
        let col_marginals = untracked(col_marginals);
        let log_row = row_marginals.clone().log().reshape([n_samples, 1]);
        // log c − log Σc + log Σr
        let log_col = (col_marginals.clone().log() - col_marginals.sum().log()
            + row_marginals.sum().log())
        .reshape([1, n_clusters]);
        self.iterate(
            scores,
            |log_q| log_q + log_col.clone(),
            |log_q| log_q + log_row.clone(),
        )
    }

    /// The iteration of the type docs; `add_log_col` / `add_log_row` add `log c` / `log r`.
    fn iterate(
        &self,
        scores: Tensor<2>,
        add_log_col: impl Fn(Tensor<2>) -> Tensor<2>,
        add_log_row: impl Fn(Tensor<2>) -> Tensor<2>,
    ) -> Tensor<2> {
        let mut log_q = untracked(scores).div_scalar(self.epsilon);
        for _ in 0..self.n_iters {
            let col_lse = logsumexp(log_q.clone(), 0);
            log_q = add_log_col(log_q - col_lse);
            let row_lse = logsumexp(log_q.clone(), 1);
            log_q = add_log_row(log_q - row_lse);
        }
        log_q.exp()
    }
}

/// `x` cut from the autodiff graph and not requiring a gradient: operations on it are not
/// recorded. A no-op without autodiff.
fn untracked<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.detach().set_require_grad(false)
}
