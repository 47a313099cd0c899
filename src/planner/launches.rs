//! Launches the cloud accepted but will not fulfil.
//!
//! Neither cloud refuses a launch for want of capacity when it is asked: AWS accepts
//! `SetDesiredCapacity` and reports the stockout minutes later as a failed scaling activity,
//! with desired left raised; GCP accepts the resize and leaves the VMs `CREATING` with
//! `lastAttempt.errors` (see `gpupool_provider::UnfulfilledLaunch`). Counting such requests as
//! capacity on its way would make a pool wait forever instead of falling back, so this step
//! runs before anything is counted:
//!
//! - every launch the provider reports unfulfilled is a failure, as soon as it is reported;
//! - desired above the instances a group lists for longer than the pool's
//!   `scale_up.launch_timeout_s`, with no report, is a failure too (the silent case);
//! - each failure is taken back (`Action::ReleaseUnfulfilled`), no longer counted in flight,
//!   and its offering backs off in this very plan ([`backed_off`]) so the pool falls back now.
//!
//! The plan lists the failures (`Plan::launch_failures`); the controller applies the same
//! [`History::record_launch_failure_at`] to its history, so what this plan assumed is what the
//! next one remembers.

use crate::config::Config;
use crate::model::{
    Action, Decision, History, LaunchFailure, LaunchFailureRecord, Outcome, Reason, Snapshot,
    Subject, Timestamp,
};

/// The launches of configured pools' groups that will not come, in group order.
pub(crate) fn failed(
    snapshot: &Snapshot,
    config: &Config,
    history: &History,
    now: Timestamp,
) -> Vec<LaunchFailureRecord> {
    let mut out = Vec::new();
    for g in &snapshot.groups {
        let Some(pool) = config.pool(&g.pool) else {
            continue;
        };
        let listed = snapshot
            .instances_of(&g.id)
            .filter(|i| i.state.counts_in_desired())
            .count() as u32;
        let mut unseen = g.desired.saturating_sub(listed);
        for u in &g.unfulfilled {
            let count = if u.instances.is_empty() {
                // Only what desired holds above the listed instances can be unfulfilled.
                let c = u.count.min(unseen);
                unseen -= c;
                c
            } else {
                u.instances.len() as u32
            };
            if count == 0 {
                continue;
            }
            out.push(LaunchFailureRecord {
                pool: pool.name.clone(),
                group: g.id.clone(),
                offering: u.offering.clone(),
                failure: u.failure,
                count,
                message: u.message.clone(),
                at: u.at,
                instances: u.instances.clone(),
            });
        }
        if !g.unfulfilled.is_empty() || unseen == 0 {
            continue;
        }
        let timeout = pool.scale_up.launch_timeout.as_secs();
        let Some(since) = history.unbacked_since.get(&g.id) else {
            continue;
        };
        let waited = now.secs_since(*since);
        if waited < timeout as f64 {
            continue;
        }
        // Which offering the cloud was trying is unknown when it says nothing: the group's
        // first, the one the planner assumes for capacity it cannot see yet.
        let Some(offering) = g.offerings.first().map(|o| o.key()) else {
            continue;
        };
        out.push(LaunchFailureRecord {
            pool: pool.name.clone(),
            group: g.id.clone(),
            offering,
            failure: LaunchFailure::TimedOut,
            count: unseen,
            message: format!(
                "desired {} but {listed} instance(s) listed for {} s, and no error from the cloud \
                 (scale_up.launch_timeout_s {timeout})",
                g.desired, waited as u64
            ),
            at: since.plus_secs(timeout as f64),
            instances: Vec::new(),
        });
    }
    out
}

/// `history` with this tick's failures backed off, as the controller will record them.
pub(crate) fn backed_off(
    history: &History,
    failures: &[LaunchFailureRecord],
    now: Timestamp,
) -> History {
    let mut h = history.clone();
    for f in failures {
        h.record_launch_failure_at(&f.offering, &describe(f), f.at, now);
    }
    h
}

/// The error text remembered with the backoff.
pub(crate) fn describe(f: &LaunchFailureRecord) -> String {
    format!("{} in {}: {}", f.failure, f.group, f.message)
}

/// One release action and one decision per failure.
pub(crate) fn release(
    failures: &[LaunchFailureRecord],
    history: &History,
    actions: &mut Vec<Action>,
    decisions: &mut Vec<Decision>,
) {
    for f in failures {
        let retry_at = history.backoff.get(&f.offering).map_or(f.at, |b| b.until);
        let reason = Reason::LaunchFailed {
            offering: f.offering.clone(),
            failure: f.failure,
            message: f.message.clone(),
            at: f.at,
            retry_at,
        };
        actions.push(Action::ReleaseUnfulfilled {
            pool: f.pool.clone(),
            group: f.group.clone(),
            offering: f.offering.clone(),
            count: f.count,
            instances: f.instances.clone(),
            reason: reason.clone(),
        });
        decisions.push(Decision {
            subject: Subject::Group(f.group.clone()),
            outcome: Outcome::Acted,
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CapacityType, InstanceId, UnfulfilledLaunch};
    use crate::planner::fixtures::{config, g5_spot, instance, pool_cfg};

    fn spot_late_failure(at: i64) -> UnfulfilledLaunch {
        UnfulfilledLaunch {
            offering: g5_spot().build().offerings[0].key(),
            failure: LaunchFailure::InsufficientCapacity,
            count: 2,
            message: "Could not launch Spot Instances. InsufficientInstanceCapacity".into(),
            at: Timestamp::from_secs(at),
            instances: vec![],
        }
    }

    type Case = (
        &'static str,
        u32,
        u32,
        bool,
        Option<i64>,
        i64,
        Option<(u32, LaunchFailure)>,
    );

    /// (desired, listed instances, reported failure, unbacked since, now) → (count, failure).
    #[test]
    fn which_launches_count_as_failed() {
        use LaunchFailure::*;
        let cfg = config(vec![pool_cfg("llm")]);
        let t = Timestamp::from_secs;
        let cases: &[Case] = &[
            (
                "reported: all of desired above listed",
                2,
                0,
                true,
                Some(0),
                10,
                Some((2, InsufficientCapacity)),
            ),
            (
                "reported, one instance did appear",
                2,
                1,
                true,
                Some(0),
                10,
                Some((1, InsufficientCapacity)),
            ),
            (
                "reported, everything listed meanwhile",
                2,
                2,
                true,
                None,
                10,
                None,
            ),
            (
                "silent, within the timeout",
                2,
                0,
                false,
                Some(0),
                299,
                None,
            ),
            (
                "silent, past the timeout",
                2,
                0,
                false,
                Some(0),
                300,
                Some((2, TimedOut)),
            ),
            ("silent, nothing unbacked", 1, 1, false, None, 1000, None),
        ];
        for (name, desired, listed, reported, since, now, want) in cases {
            let mut g = g5_spot().desired(*desired).build();
            if *reported {
                g.unfulfilled.push(spot_late_failure(5));
            }
            let mut snap = Snapshot {
                groups: vec![g],
                ..Snapshot::default()
            };
            for i in 0..*listed {
                snap.instances.push(
                    instance(
                        &format!("i-{i}"),
                        "g5-spot",
                        "g5.xlarge",
                        CapacityType::Spot,
                    )
                    .build(),
                );
            }
            let mut h = History::default();
            if let Some(s) = since {
                h.unbacked_since.insert("g5-spot".into(), t(*s));
            }
            let got: Vec<_> = failed(&snap, &cfg, &h, t(*now))
                .into_iter()
                .map(|f| (f.count, f.failure))
                .collect();
            assert_eq!(got, want.iter().copied().collect::<Vec<_>>(), "{name}");
        }
    }

    #[test]
    fn stuck_instances_are_released_by_name() {
        let cfg = config(vec![pool_cfg("llm")]);
        let mut g = g5_spot().desired(2).build();
        g.unfulfilled.push(UnfulfilledLaunch {
            instances: vec![InstanceId::from("vm-1"), InstanceId::from("vm-2")],
            ..spot_late_failure(5)
        });
        let snap = Snapshot {
            groups: vec![g],
            instances: ["vm-1", "vm-2"]
                .iter()
                .map(|id| instance(id, "g5-spot", "g5.xlarge", CapacityType::Spot).build())
                .collect(),
            ..Snapshot::default()
        };
        let f = failed(&snap, &cfg, &History::default(), Timestamp::from_secs(10));
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].count, f[0].instances.len()), (2, 2));
    }
}
