//! Choosing the Burn device from `--device`: the names are the backend features (`flex`,
//! `wgpu`, `cuda`); a backend that was not compiled in is an error saying which feature to
//! build with.

use anyhow::{Result, bail};
use burn::prelude::Device;

/// The backends compiled into this binary, preferred first.
pub(crate) fn compiled() -> Vec<&'static str> {
    let mut names = Vec::new();
    if cfg!(feature = "cuda") {
        names.push("cuda");
    }
    if cfg!(feature = "wgpu") {
        names.push("wgpu");
    }
    if cfg!(feature = "flex") {
        names.push("flex");
    }
    if cfg!(feature = "ndarray") {
        names.push("ndarray");
    }
    names
}

/// The device called `name`, or the preferred compiled-in one for `None`.
pub(crate) fn select(name: Option<&str>) -> Result<(String, Device)> {
    let available = compiled();
    let name = match name {
        Some(n) => n.to_string(),
        None => match available.first() {
            Some(n) => (*n).to_string(),
            None => {
                bail!("this `vl` was built without a backend; build with --features flex|wgpu|cuda")
            }
        },
    };
    let device = match name.as_str() {
        #[cfg(feature = "flex")]
        "flex" => Device::flex(),
        #[cfg(feature = "wgpu")]
        "wgpu" => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        #[cfg(feature = "cuda")]
        "cuda" => Device::cuda(0),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => Device::ndarray(),
        other if ["flex", "wgpu", "cuda", "ndarray"].contains(&other) => bail!(
            "backend `{other}` is not compiled into this binary (it has {available:?}); \
             rebuild with `--features {other}`, e.g. `cargo xtask embed --device {other} ...`"
        ),
        other => bail!("unknown device `{other}`; expected one of flex, wgpu, cuda"),
    };
    Ok((name, device))
}
