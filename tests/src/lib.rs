//! Support for the end-to-end suites: a counting HTTP origin and a local cluster of real
//! processes (scheduler, peer daemons, dfget).

pub mod cluster;
pub mod origin_server;
pub mod registry;
