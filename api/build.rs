//! Compiles proto/scheduler.proto and proto/daemon.proto without a `protoc` binary: protox parses it into a file
//! descriptor set, and madsim-tonic-build generates from that set (`skip_protoc_run`)
//! both the real tonic code and the madsim code.

use prost::Message;
use std::path::PathBuf;

const PROTOS: [&str; 2] = ["proto/scheduler.proto", "proto/daemon.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let fds_path = PathBuf::from(std::env::var("OUT_DIR")?).join("api.fds.bin");
    std::fs::write(&fds_path, fds.encode_to_vec())?;
    tonic_build::configure()
        .file_descriptor_set_path(&fds_path)
        .skip_protoc_run()
        .compile_protos(&PROTOS, &["proto"])?;
    Ok(())
}
