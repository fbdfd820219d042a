//! Compiles proto/scheduler.proto without a `protoc` binary: protox parses it into a file
//! descriptor set, and madsim-tonic-build generates from that set (`skip_protoc_run`)
//! both the real tonic code and the madsim code.

use prost::Message;
use std::path::PathBuf;

const PROTO: &str = "proto/scheduler.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let fds = protox::compile([PROTO], ["proto"])?;
    let fds_path = PathBuf::from(std::env::var("OUT_DIR")?).join("scheduler.fds.bin");
    std::fs::write(&fds_path, fds.encode_to_vec())?;
    tonic_build::configure()
        .file_descriptor_set_path(&fds_path)
        .skip_protoc_run()
        .compile_protos(&[PROTO], &["proto"])?;
    Ok(())
}
