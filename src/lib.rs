//! gpupool: a GPU node-pool autoscaler.
//!
//! - [`model`]: the domain (pools, groups, offerings, instances, pods, snapshot, plan).
//! - [`config`]: the YAML configuration, validated as a whole.
//! - [`planner`]: the pure decision core, `plan(snapshot, config, history, now) -> Plan`.
//! - [`contract`]: names shared with Terraform, IAM and Kubernetes.
//! - `testkit` (unit tests, and feature `testkit` for `tests/` and `benches/`): builders and
//!   synthetic fleets; not in a release build.

pub mod config;
pub mod contract;
pub mod controller;
#[cfg(feature = "kube")]
pub mod kube;
pub mod model;
pub mod planner;
pub mod server;
pub mod signals;
pub mod sim;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod vmonly;
