//! Support for the end-to-end suites: a counting HTTP origin, a local cluster of real
//! processes (scheduler, peer daemons, dfget), the real docker-registry, a deterministic OCI
//! image generator, the real OCI clients containerd (ctr) and skopeo; rendering of deploy/'s
//! kustomize trees and reading of its systemd units.
#![forbid(unsafe_code)]

pub mod bounded_cmd;
pub mod cluster;
pub mod containerd;
pub mod kustomize;
pub mod oci_image;
pub mod origin_server;
pub mod registry;
pub mod skopeo;
pub mod swarm;
pub mod systemd_unit;
