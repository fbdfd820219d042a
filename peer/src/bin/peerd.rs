//! `peerd --config FILE`: the peer daemon (or a seed peer: `host.kind = "seed"`).
//!
//! Exits 0 after a graceful shutdown on SIGINT or SIGTERM, 2 on a bad command line or
//! configuration, 1 when it cannot start, 101 on a panic.
#![deny(unsafe_code)]

use std::process::ExitCode;

#[cfg(madsim)]
fn main() -> ExitCode {
    eprintln!("peerd: this binary does not run under madsim");
    ExitCode::FAILURE
}

#[cfg(not(madsim))]
fn main() -> ExitCode {
    real::main()
}

#[cfg(not(madsim))]
mod real {
    use peer::daemon;
    use std::path::PathBuf;
    use std::process::ExitCode;
    use svc::signals::Signals;

    const USAGE: &str = "\
usage: peerd --config FILE [--check]

  --config FILE   the TOML configuration (see peer/peerd.example.toml)
  --check         check the configuration and exit
";

    /// Piece buffers (4 MiB by default) come and go at the network's rate. glibc gives
    /// blocks this large back to the kernel when they are freed (its mmap threshold and heap
    /// trimming), so each new buffer is fresh memory: a page fault and zeroing per page, and
    /// on VMs that hand freed memory back to their host (virtio-balloon free page reporting)
    /// a host fault too: touching fresh memory cost 1.6 s per GB on the CI machines. Kept
    /// in the heap, freed buffers are reused; the daemon's footprint is then its peak.
    /// (Piece buffers of 2 MiB or more are mappings of their own, kept in the store's
    /// buffer pool and made before the daemon serves: `storage.prefault_buffer_bytes`.)
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    fn keep_freed_memory() {
        // SAFETY: mallopt only sets allocator parameters (under glibc's own lock); first thing in main.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        }
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    fn keep_freed_memory() {}

    pub fn main() -> ExitCode {
        keep_freed_memory();
        let mut config = None;
        let mut check = false;
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--config" | "-c" => config = args.next(),
                "--check" => check = true,
                "--help" | "-h" => {
                    print!("{USAGE}");
                    return ExitCode::SUCCESS;
                }
                other => {
                    eprintln!("peerd: unknown argument {other:?}\n{USAGE}");
                    return ExitCode::from(2);
                }
            }
        }
        let Some(config) = config.map(PathBuf::from) else {
            eprintln!("peerd: --config FILE is required\n{USAGE}");
            return ExitCode::from(2);
        };
        let cfg = match daemon::load(&config) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("peerd: {e}");
                return ExitCode::from(2);
            }
        };
        if check {
            println!("peerd: {} is valid", config.display());
            return ExitCode::SUCCESS;
        }
        svc::init_logging(&cfg.log);
        svc::exit_on_panic();
        let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("peerd: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        runtime.block_on(async move {
            let running = match daemon::start(cfg).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("peerd: cannot start: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // Scripts read the bound addresses from this line (ports may be 0 in the file).
            println!(
                "peerd ready data={} local_api={} http={} mirror={} resolver={} host={}",
                running.data_addr,
                running.local_api_addr,
                running.http_addr,
                running.mirror_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
                running.resolver_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
                running.ctx.sched.host().id
            );
            let mut signals = match Signals::new() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("peerd: cannot install signal handlers: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let name = signals.recv().await;
            tracing::info!(signal = name, "shutting down");
            running.shutdown().await;
            ExitCode::SUCCESS
        })
    }
}
