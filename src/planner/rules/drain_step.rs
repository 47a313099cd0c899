//! A drain's next step, from its progress against its window and deadline. A drained instance
//! is terminated; one with work left is terminated at the deadline when the disruption is
//! involuntary (a spot reclaim or a broken node goes anyway), while a voluntary drain whose
//! evictions stayed refused (a PodDisruptionBudget, a do-not-disrupt pod) is abandoned and the
//! node given back — Cluster Autoscaler and Karpenter give up the same way rather than
//! override a PDB. A VM still registered behind a load balancer is never terminated, whatever
//! the deadline: it still receives requests.

use crate::model::{DrainProgress, Timestamp};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainStep {
    /// More to drain: step again next tick.
    Wait,
    /// Routing could not be stopped (VM-only): keep the instance; `past_deadline` is worth a
    /// warning.
    KeepRegistered { past_deadline: bool },
    /// The serving side gave the drain up (VM-only: deregistration kept failing): forget it,
    /// the instance stays in service.
    Forget,
    /// A voluntary drain blocked at its deadline: give the node back to service. When the
    /// serving side cannot take it back, terminate it as `Terminate { forced: true }`.
    Abandon,
    /// Terminate the instance; `forced` when work remained at the deadline.
    Terminate { forced: bool },
}

/// Whether the drain itself has started at `now` (before `start_at` the instance keeps
/// serving and only new work is kept off it).
pub fn started(start_at: Timestamp, now: Timestamp) -> bool {
    now >= start_at
}

/// The deadline of a drain a plan starts: the plan's own (a notice's reclaim time), or the
/// pool's drain timeout from now.
pub fn deadline(planned: Option<Timestamp>, drain_timeout: Duration, now: Timestamp) -> Timestamp {
    planned.unwrap_or(now.plus_secs(drain_timeout.as_secs_f64()))
}

/// The step after a drain call reported `progress` at `now`.
pub fn step(
    progress: DrainProgress,
    deadline: Timestamp,
    voluntary: bool,
    now: Timestamp,
) -> DrainStep {
    let timed_out = now >= deadline;
    match progress {
        DrainProgress::StillRegistered { .. } => DrainStep::KeepRegistered {
            past_deadline: timed_out,
        },
        DrainProgress::Abandoned { .. } => DrainStep::Forget,
        DrainProgress::InProgress { .. } if !timed_out => DrainStep::Wait,
        DrainProgress::Drained => DrainStep::Terminate { forced: false },
        DrainProgress::InProgress { .. } if voluntary => DrainStep::Abandon,
        DrainProgress::InProgress { .. } => DrainStep::Terminate { forced: true },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_waits_terminates_abandons_or_keeps_by_progress_deadline_and_cause() {
        let t = Timestamp::from_secs;
        let left = DrainProgress::InProgress { remaining: 2 };
        let done = DrainProgress::Drained;
        let registered = DrainProgress::StillRegistered { attempts: 3 };
        let given_up = DrainProgress::Abandoned {
            attempts: 9,
            failing_for_s: 900,
        };
        #[rustfmt::skip]
        let cases: &[(&str, DrainProgress, bool, i64, DrainStep)] = &[
            ("work left before the deadline", left, false, 99, DrainStep::Wait),
            ("voluntary, work left before the deadline", left, true, 99, DrainStep::Wait),
            ("drained early", done, false, 50, DrainStep::Terminate { forced: false }),
            ("drained at the deadline is not forced", done, true, 100, DrainStep::Terminate { forced: false }),
            ("involuntary, work left at the deadline: forced", left, false, 100, DrainStep::Terminate { forced: true }),
            ("voluntary, work left at the deadline: abandoned", left, true, 100, DrainStep::Abandon),
            ("still registered before the deadline", registered, false, 50, DrainStep::KeepRegistered { past_deadline: false }),
            ("still registered past the deadline: kept", registered, false, 500, DrainStep::KeepRegistered { past_deadline: true }),
            ("deregistration given up", given_up, false, 500, DrainStep::Forget),
        ];
        for (name, progress, voluntary, now, want) in cases {
            assert_eq!(
                step(*progress, t(100), *voluntary, t(*now)),
                *want,
                "{name}"
            );
        }
    }

    #[test]
    fn a_drain_starts_at_its_window_and_a_plan_without_deadline_gets_the_timeout() {
        let t = Timestamp::from_secs;
        assert!(!started(t(100), t(99)));
        assert!(started(t(100), t(100)));
        let timeout = Duration::from_secs(600);
        assert_eq!(deadline(None, timeout, t(1000)), t(1600));
        assert_eq!(deadline(Some(t(1120)), timeout, t(1000)), t(1120));
    }
}
