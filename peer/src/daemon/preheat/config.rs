//! `[preheat]` of peerd.toml: what a seed peer needs to preheat images for the scheduler.

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
        PreheatSection { docker_config: None, jobs_in_flight: 2, blobs_in_flight: 4 }
    }
}

/// The most of either: a seed's piece slots and its link bound it long before this.
const MAX_IN_FLIGHT: usize = 64;

/// (key, what is wrong) for the first key that breaks a rule.
pub fn check(p: &PreheatSection) -> Result<(), (&'static str, String)> {
    for (key, value) in [("jobs_in_flight", p.jobs_in_flight), ("blobs_in_flight", p.blobs_in_flight)] {
        if !(1..=MAX_IN_FLIGHT).contains(&value) {
            return Err((key, format!("is {value}; must be between 1 and {MAX_IN_FLIGHT}")));
        }
    }
    if let Some(path) = &p.docker_config {
        super::credentials::load_optional(path).map_err(|e| ("docker_config", e))?;
    }
    Ok(())
}
