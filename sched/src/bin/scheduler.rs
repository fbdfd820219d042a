//! `scheduler --config FILE`: the production scheduler service.
//!
//! Exits 0 after a graceful shutdown on SIGINT or SIGTERM, 2 on a bad command line or
//! configuration, 1 when the service cannot start or fails, 101 on a panic.
#![forbid(unsafe_code)]

use std::process::ExitCode;

#[cfg(not(madsim))]
fn main() -> ExitCode {
    real::main()
}

/// Under madsim, tests start `sched::service` on simulated nodes; there is no process.
#[cfg(madsim)]
fn main() -> ExitCode {
    eprintln!("scheduler: this binary does not run under madsim; start sched::service in a madsim test");
    ExitCode::FAILURE
}

#[cfg(not(madsim))]
mod real {
    use anyhow::Context;
    use sched::service;
    use std::path::PathBuf;
    use std::process::ExitCode;
    use svc::init_logging;
    use svc::signals::Signals;

    const USAGE: &str = "\
usage: scheduler --config FILE [--check]

  --config FILE   the TOML configuration (see sched/scheduler.example.toml)
  --check         check the configuration, print the scheduler settings it resolves to, exit
";

    struct Args {
        config: PathBuf,
        check: bool,
    }

    fn parse_args() -> Result<Args, String> {
        let mut config = None;
        let mut check = false;
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            match a.as_str() {
                "--config" | "-c" => config = Some(args.next().ok_or("--config needs a file")?),
                "--check" => check = true,
                "--help" | "-h" => return Err(String::new()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        let config = config.ok_or("--config FILE is required")?;
        Ok(Args { config: PathBuf::from(config), check })
    }

    pub fn main() -> ExitCode {
        let args = match parse_args() {
            Ok(a) => a,
            Err(e) => {
                if !e.is_empty() {
                    eprintln!("scheduler: {e}");
                }
                eprint!("{USAGE}");
                return ExitCode::from(2);
            }
        };
        let cfg = match service::load(&args.config) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("scheduler: {e}");
                return ExitCode::from(2);
            }
        };
        if args.check {
            println!("{}", toml::to_string(&cfg.scheduler).unwrap_or_default().trim_end());
            return ExitCode::SUCCESS;
        }
        init_logging(&cfg.log);
        svc::exit_on_panic();
        let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("scheduler: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(run(cfg)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "scheduler stopped");
                eprintln!("scheduler: {e:#}");
                ExitCode::FAILURE
            }
        }
    }

    async fn run(cfg: service::ServiceConfig) -> anyhow::Result<()> {
        let running = service::start(cfg).await.context("cannot start")?;
        let mut signals = Signals::new().context("cannot install signal handlers")?;
        running
            .run_until(async move {
                let name = signals.recv().await;
                tracing::info!(signal = name, "shutting down");
            })
            .await?;
        tracing::info!("scheduler stopped");
        Ok(())
    }
}
