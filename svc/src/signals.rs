//! SIGINT and SIGTERM as one future, for a graceful shutdown.

/// Waits for SIGINT or SIGTERM; returns the signal's name.
pub struct Signals {
    term: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> std::io::Result<Signals> {
        Ok(Signals { term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())? })
    }

    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}
