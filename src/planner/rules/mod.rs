//! The controller's own decisions as pure rules. Each rule takes what the shell observed (an
//! instance's readiness, a cloud event, a provider error, a drain's progress) and returns what
//! to do as a value; the shell (`src/controller/`) only carries it out, logs it and counts it.
//!
//! One rule per module, its table test beside it — the shape of Cluster Autoscaler's
//! drainability rules (`cluster-autoscaler/simulator/drainability/rules/<rule>/rule.go` with
//! `rule_test.go`, each returning a `drainability.Status` the caller acts on) and of
//! Karpenter's disruption methods, which compute a `Command` that only the controller executes
//! (`pkg/controllers/disruption/types.go`).
//!
//! - [`readiness`]: a running instance that does not serve is in flight, and unhealthy past
//!   the pool's `max_provision_time_s`.
//! - [`cloud_event`]: a spot notice, a scheduled change, a rebalance recommendation, a state
//!   change or a launch failure → drain (with its start and deadline), risk, or backoff.
//! - [`action_error`]: a provider error on an action → offering backoff, re-plan, or skipping
//!   the group's remaining actions.
//! - [`drain_step`]: a drain's progress against its window and deadline → wait, terminate
//!   (forced or not), abandon a voluntary drain, or keep a still-registered VM.

pub mod action_error;
pub mod cloud_event;
pub mod drain_step;
pub mod readiness;
