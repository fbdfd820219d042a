//! `sim`: run scenarios, write reports and charts, gate regressions (see sim/README.md).
#![forbid(unsafe_code)]

mod cli;

fn main() {
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    std::process::exit(cli::main_with_args(&args));
}
