//! [`HostRng`]: the seeded generator of the random draws of training code (prompt learning's
//! initial context, meta-network and visual-prompt weights and Monte Carlo noise; PEFT's adapter
//! initialisation and VeRA's shared projections). Draws are made on the host and
//! uploaded, so a run depends on its seed only, never on the device's global generator (which
//! other threads, e.g. parallel tests or data loaders, may advance).

use burn::prelude::*;

/// SplitMix64 (Steele, Lea & Flood 2014) with Box-Muller normals.
#[derive(Debug, Clone)]
pub struct HostRng(u64);

impl HostRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x6A09_E667_F3BC_C908)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `(0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// A tensor of `N(0, std^2)` draws.
    pub fn normal_tensor<const D: usize>(
        &mut self,
        shape: [usize; D],
        std: f64,
        device: &Device,
    ) -> Tensor<D> {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| (self.normal() * std) as f32).collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// A tensor of `U(-bound, bound)` draws.
    pub fn uniform_tensor<const D: usize>(
        &mut self,
        shape: [usize; D],
        bound: f64,
        device: &Device,
    ) -> Tensor<D> {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| ((2.0 * self.uniform() - 1.0) * bound) as f32)
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_draws_have_unit_variance_and_repeat_with_the_seed() {
        let mut a = HostRng::new(5);
        let xs: Vec<f64> = (0..20_000).map(|_| a.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        let mut b = HostRng::new(5);
        assert_eq!(xs[0], b.normal());
    }
}
