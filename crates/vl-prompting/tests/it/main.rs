//! The integration tests of `vl-prompting`, compiled as one test binary: every module below used to be
//! its own binary, each linking Burn again (slow to link and gigabytes of disk in CI); see
//! <https://matklad.github.io/2021/02/27/delete-cargo-integration-tests.html>.

mod lafter;
mod lfa;
mod parity;
