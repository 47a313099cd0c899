//! A drain's next step, from its progress against its window and deadline. A drained instance
//! is terminated; one with work left is terminated at the deadline when the disruption is
//! involuntary (a spot reclaim or a broken node goes anyway), while a voluntary drain whose
//! evictions stayed refused (a PodDisruptionBudget, a do-not-disrupt pod) is abandoned and the
//! node given back — Cluster Autoscaler and Karpenter give up the same way rather than
//! override a PDB. A VM still registered behind a load balancer is never terminated, whatever
//! the deadline: it still receives requests.

use crate::model::{DrainProgress, Reason, Timestamp};
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

/// When a drain runs and why.
#[derive(Clone, Debug, PartialEq)]
pub struct DrainTerms {
    pub deadline: Timestamp,
    pub start_at: Timestamp,
    pub reason: Reason,
}

/// A second notice (or plan) for an instance already draining can only bring the deadline —
/// with its reason — and the start forward: a later one never buys the instance more time.
pub fn merge(current: DrainTerms, notice: DrainTerms) -> DrainTerms {
    let start_at = current.start_at.min(notice.start_at);
    if notice.deadline < current.deadline {
        DrainTerms { start_at, ..notice }
    } else {
        DrainTerms {
            start_at,
            ..current
        }
    }
}

/// A drain deadline an earlier leader marked on a node (failover, restart) is carried on —
/// rather than a cordoned node left behind — while the node is still cordoned (uncordoned by
/// hand: the operator took it back) and this controller does not already drain or terminate
/// it. The drain step resumes at once.
pub fn resume_marked(
    mark: Option<Timestamp>,
    cordoned: bool,
    known: bool,
    now: Timestamp,
) -> Option<DrainTerms> {
    let deadline = mark.filter(|_| cordoned && !known)?;
    Some(DrainTerms {
        deadline,
        start_at: now,
        reason: Reason::DrainResumed { deadline },
    })
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

/// How much sooner than the end of the refund window the reclaim must be due for a drained
/// instance to be left to it: the cloud may carry the interruption out a little after the
/// notice's deadline, and an instance reclaimed after the window is billed for every second
/// (so waiting for it would cost more than terminating now).
pub const RECLAIM_SLACK: Duration = Duration::from_secs(60);

/// Whether a drained instance is left to the cloud's spot reclaim instead of terminated: the
/// drain is a spot reclaim's (the instance goes at `deadline` whatever gpupool does), and the
/// cloud bills nothing for an instance it reclaims within `refund_window` of its launch (AWS:
/// the first hour, EC2 User Guide "Billing for interrupted Spot Instances" — one the user
/// terminates is charged for the seconds used), with [`RECLAIM_SLACK`] to spare. Terminating
/// it would turn a free hour into a paid one. `None`: the cloud refunds nothing (GCP) or the
/// provider cannot leave an instance to the reclaim.
pub fn leave_to_reclaim(
    reason: &Reason,
    launched_at: Timestamp,
    deadline: Timestamp,
    refund_window: Option<Duration>,
) -> bool {
    let Some(window) = refund_window else {
        return false;
    };
    matches!(reason, Reason::SpotInterruption { .. })
        && deadline.secs_since(launched_at) + RECLAIM_SLACK.as_secs_f64() < window.as_secs_f64()
        && deadline >= launched_at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_spot_reclaim_due_within_the_refund_window_is_left_to_the_cloud() {
        let t = Timestamp::from_secs;
        let hour = Some(Duration::from_secs(3600));
        let spot = |d| Reason::SpotInterruption {
            deadline: t(d),
            start: crate::model::SpotDrainStart::AtNoticeUnknown,
        };
        #[rustfmt::skip]
        let cases = [
            ("reclaimed 20 min after launch: free, left to the cloud", spot(1200), t(0), 1200, hour, true),
            ("due 59:30 after launch: inside the window but not by the slack", spot(3570), t(0), 3570, hour, false),
            ("due 58:59 after launch: left", spot(3539), t(0), 3539, hour, true),
            ("after the first hour: billed either way, terminate now", spot(5000), t(0), 5000, hour, false),
            ("a cloud without the refund (GCP)", spot(1200), t(0), 1200, None, false),
            ("a voluntary drain goes on being terminated", Reason::Empty, t(0), 1200, hour, false),
            ("a launch time after the deadline is not sane", spot(1200), t(2000), 1200, hour, false),
        ];
        for (name, reason, launched, deadline, window, want) in cases {
            assert_eq!(
                leave_to_reclaim(&reason, launched, t(deadline), window),
                want,
                "{name}"
            );
        }
    }

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
    fn a_second_notice_only_brings_the_deadline_and_the_start_forward() {
        let t = Timestamp::from_secs;
        let terms = |deadline, start, reason: &Reason| DrainTerms {
            deadline: t(deadline),
            start_at: t(start),
            reason: reason.clone(),
        };
        let plan = Reason::Empty;
        let spot = Reason::SpotInterruption {
            deadline: t(120),
            start: crate::model::SpotDrainStart::AtNoticeUnknown,
        };
        #[rustfmt::skip]
        let cases = [
            ("a sooner deadline wins with its reason", terms(600, 0, &plan), terms(120, 70, &spot), terms(120, 0, &spot)),
            ("a later deadline buys no time", terms(120, 70, &spot), terms(600, 0, &plan), terms(120, 0, &spot)),
            ("an equal deadline keeps the first reason", terms(120, 70, &spot), terms(120, 100, &plan), terms(120, 70, &spot)),
        ];
        for (name, current, notice, want) in cases {
            assert_eq!(merge(current, notice), want, "{name}");
        }
    }

    #[test]
    fn a_drain_marked_by_an_earlier_leader_resumes_only_on_a_cordoned_unknown_node() {
        let t = Timestamp::from_secs;
        let resumed = Some(DrainTerms {
            deadline: t(500),
            start_at: t(100),
            reason: Reason::DrainResumed { deadline: t(500) },
        });
        #[rustfmt::skip]
        let cases = [
            ("marked and cordoned: resumed now", Some(t(500)), true, false, resumed),
            ("uncordoned by hand: the operator took it back", Some(t(500)), false, false, None),
            ("already draining or terminating here", Some(t(500)), true, true, None),
            ("no mark", None, true, false, None),
        ];
        for (name, mark, cordoned, known, want) in cases {
            assert_eq!(resume_marked(mark, cordoned, known, t(100)), want, "{name}");
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
