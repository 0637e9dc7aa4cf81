//! The integration tests of `vl-encoders`, compiled as one test binary: every module below used to be
//! its own binary, each linking Burn again (slow to link and gigabytes of disk in CI); see
//! <https://matklad.github.io/2021/02/27/delete-cargo-integration-tests.html>.

mod backends;
mod common;
mod errors;
mod parity;
mod save;
