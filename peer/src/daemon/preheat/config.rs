//! `[preheat]` of peerd.toml: what a seed peer needs to preheat images for the scheduler.

use crate::core::PreheatLimits;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreheatSection {
    /// Registry credentials in Docker's config.json format (`{"auths": {"HOST": {"auth":
    /// base64(user:password)}}}`, or `username` and `password`), as a Kubernetes pull
    /// secret of type `kubernetes.io/dockerconfigjson` holds them (its `.dockerconfigjson`
    /// key, mounted as a file). Checked at load, read again for each job (a rotated secret
    /// is seen). Unset, or a file that does not exist (an optional Secret not created yet):
    /// the registries are read anonymously; a file that exists must parse.
    pub docker_config: Option<PathBuf>,
    /// Preheat jobs this seed runs at once; more wait their turn (and report meanwhile).
    pub jobs_in_flight: usize,
    /// Blobs of one job fetched at once (containerd pulls 3 at a time by default).
    pub blobs_in_flight: usize,
}

impl Default for PreheatSection {
    fn default() -> Self {
        let limits = PreheatLimits::default();
        PreheatSection {
            docker_config: None,
            jobs_in_flight: limits.jobs_in_flight,
            blobs_in_flight: limits.blobs_in_flight,
        }
    }
}

impl PreheatSection {
    /// The limits the core states (and the simulator reads).
    pub fn limits(&self) -> PreheatLimits {
        PreheatLimits { jobs_in_flight: self.jobs_in_flight, blobs_in_flight: self.blobs_in_flight }
    }
}

/// (key, what is wrong) for the first key that breaks a rule.
pub fn check(p: &PreheatSection) -> Result<(), (&'static str, String)> {
    p.limits().check()?;
    if let Some(path) = &p.docker_config {
        super::credentials::load_optional(path).map_err(|e| ("docker_config", e))?;
    }
    Ok(())
}
