//! A drain's progress as the serving side reports it (Kubernetes: evictions; VM-only:
//! deregistration and in-flight requests), judged by `planner::rules::drain_step`.

/// Where one drain stands after a drain step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainProgress {
    Drained,
    InProgress {
        remaining: u32,
    },
    /// Routing to the instance could not be stopped yet (VM-only: its deregister command
    /// failed `attempts` times). It still receives requests, so it is never terminated in this
    /// state, whatever the drain deadline says.
    StillRegistered {
        attempts: u32,
    },
    /// The drain was given up and the instance kept, still serving (VM-only: deregistration
    /// kept failing for `disruption.deregister_give_up_s`). The controller forgets the drain.
    Abandoned {
        attempts: u32,
        failing_for_s: u64,
    },
}
