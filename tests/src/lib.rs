//! Support for the end-to-end suites: a counting HTTP origin and a local cluster of real
//! processes (scheduler, peer daemons, dfget); rendering of deploy/'s kustomize trees and
//! reading of its systemd units.

pub mod cluster;
pub mod kustomize;
pub mod origin_server;
pub mod registry;
pub mod systemd_unit;
