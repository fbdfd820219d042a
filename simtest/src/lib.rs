//! Deterministic fault tests of the real scheduler service and peer daemon under madsim.
//! Everything here is built only with `RUSTFLAGS="--cfg madsim"`; in a normal build the
//! crate is empty, so `cargo test --workspace` compiles it to nothing. See README.md.
#![cfg(madsim)]
#![forbid(unsafe_code)]

pub mod checks;
pub mod cluster;
pub mod origin;
pub mod scenario;
