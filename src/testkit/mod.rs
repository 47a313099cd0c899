//! The test kit: one set of builders (and, as they are unified, fakes) for every test and
//! benchmark.
//!
//! Compiled for this crate's unit tests and, with the `testkit` cargo feature, for `tests/` and
//! `benches/` (the crate's dev-dependency on itself turns the feature on there; `cargo build
//! --release` never does, so nothing here ships).
//!
//! - [`planner`]: snapshot, group, offering, instance, node, pod and config builders
//!   (`snapshot().pending(gpu_pod(8).model("H100")).group(p5_od())`).
//! - [`fleet`]: deterministic synthetic fleets at scale (400 offerings, thousands of nodes, tens
//!   of thousands of pending pods) for the planner benchmarks.
//!
//! - [`doubles`]: the controller's test doubles — the in-memory provider ([`doubles::MemProvider`])
//!   that the shell's unit tests and the Kubernetes controller tests drive, the always-ready
//!   cluster and empty demand source of the shell's tests, and the VM-only serving side and
//!   fixed demand source that the AWS, GCP and fault-matrix integration tests use.
//!
//! Test doubles still written per test file: the always-ready cluster of
//! `tests/gcp_controller.rs` (it also serves pending pods). The fake Compute API is the dev-only
//! crate `gpupool-gcp-fake` (`providers/gcp-fake`), shared by the GCP crate's tests and the root
//! package's.

pub mod doubles;
pub mod fleet;

/// The planner input builders (they live beside the planner, whose unit tests use them).
pub use crate::planner::fixtures as planner;

/// A TCP port on 127.0.0.1 that was free a moment ago, for a service an integration test starts
/// (Prometheus, moto, a fake API). The OS picks it; it is released for the service right after,
/// a tiny race a loopback test can live with.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port on 127.0.0.1")
        .port()
}
