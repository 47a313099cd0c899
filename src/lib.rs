//! gpupool: a GPU node-pool autoscaler.
//!
//! - [`model`]: the domain (pools, groups, offerings, instances, pods, snapshot, plan).
//! - [`config`]: the YAML configuration, validated as a whole.
//! - [`planner`]: the pure decision core, `plan(snapshot, config, history, now) -> Plan`.
//! - [`contract`]: names shared with Terraform, IAM and Kubernetes.

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
pub mod state;
pub mod vmonly;
