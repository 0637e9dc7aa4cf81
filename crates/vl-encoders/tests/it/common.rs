//! Shared helpers of the integration tests: fixture paths, reading reference tensors, and
//! comparing outputs.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use burn::prelude::*;
use safetensors::{Dtype, SafeTensors};

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Tensors of a reference file.
pub struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    pub fn open(dir: &str) -> Self {
        let path = fixture(dir).join("reference.safetensors");
        Self {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }

    fn view(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("reference file parses")
    }

    pub fn has(&self, name: &str) -> bool {
        self.view().names().contains(&name)
    }

    pub fn f32(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = self.view();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("reference lacks {name}"));
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        let data = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (t.shape().to_vec(), data)
    }

    pub fn i64(&self, name: &str) -> (Vec<usize>, Vec<i64>) {
        let st = self.view();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("reference lacks {name}"));
        assert_eq!(t.dtype(), Dtype::I64, "{name}");
        let data = t
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (t.shape().to_vec(), data)
    }

    pub fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Tensor<D> {
        let (shape, data) = self.f32(name);
        Tensor::from_data(TensorData::new(data, shape), device)
    }

    pub fn ids(&self, name: &str, device: &Device) -> Tensor<2, Int> {
        let (shape, data) = self.i64(name);
        Tensor::from_data(TensorData::new(data, shape), device)
    }
}

/// Values of a tensor as f32.
pub fn values<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f32>) {
    let data = t.into_data();
    let shape = data.shape().to_vec();
    (
        shape,
        data.convert::<f32>().try_to_vec::<f32>().expect("f32 data"),
    )
}

/// Max |a - b|, asserting equal shapes.
pub fn max_abs_diff<const D: usize>(ours: Tensor<D>, reference: (Vec<usize>, Vec<f32>)) -> f32 {
    let (shape, ours) = values(ours);
    assert_eq!(shape, reference.0, "shape");
    ours.iter()
        .zip(&reference.1)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}
