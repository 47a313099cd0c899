//! Per-group figures of one plan, for metrics published per node group (the CloudWatch
//! `AutoScalingGroupName` series): pure, from the snapshot the plan was made from.
//!
//! - `desired`: the group's desired capacity once the plan's actions are applied (launches and
//!   warm starts raise it, scale-downs and released unfulfilled requests lower it), clamped to
//!   the group's min and max size.
//! - `ready`: instances serving (`Ready`).
//! - `pending`: capacity on its way: instances launching or starting, plus desired capacity the
//!   cloud has not listed an instance for yet (an unfulfilled request counts until released).
//! - `warm`: stopped, cache-warm instances in the group's warm / standby pool.

use super::{Action, LifecycleState, NodeGroupId, Plan, PoolName, Snapshot};
use std::collections::BTreeMap;

/// At most this many groups get per-group series in one publish, the groups sorted by name:
/// bounds the number of CloudWatch custom metrics (each metric name × dimension set is one
/// billed metric) and the size of one tick's publish, whatever the account holds. gpupool's
/// groups are those tagged for its pools, normally a handful per pool.
pub const MAX_GROUP_SERIES: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupFigures {
    pub group: NodeGroupId,
    pub pool: PoolName,
    pub desired: u32,
    pub ready: u32,
    pub pending: u32,
    pub warm: u32,
}

/// The figures of every group of `snapshot` after `plan`, sorted by group, at most
/// [`MAX_GROUP_SERIES`].
pub fn group_figures(snapshot: &Snapshot, plan: &Plan) -> Vec<GroupFigures> {
    let mut delta: BTreeMap<&NodeGroupId, i64> = BTreeMap::new();
    for a in &plan.actions {
        let (g, d) = match a {
            Action::ScaleUp { group, count, .. } | Action::StartWarm { group, count, .. } => {
                (group, i64::from(*count))
            }
            Action::ScaleDown {
                group, instances, ..
            } => (group, -(instances.len() as i64)),
            Action::ReleaseUnfulfilled { group, count, .. } => (group, -i64::from(*count)),
            _ => continue,
        };
        *delta.entry(g).or_default() += d;
    }
    let mut out: Vec<GroupFigures> = snapshot
        .groups
        .iter()
        .map(|g| {
            let mut ready = 0u32;
            let mut in_flight = 0u32;
            let mut listed = 0u32;
            for i in snapshot.instances.iter().filter(|i| i.group == g.id) {
                match i.state {
                    LifecycleState::Ready => ready += 1,
                    s if s.is_in_flight() => in_flight += 1,
                    _ => {}
                }
                if i.state.counts_in_desired() {
                    listed += 1;
                }
            }
            let unlisted = g.desired.saturating_sub(listed);
            let d = i64::from(g.desired) + delta.get(&g.id).copied().unwrap_or(0);
            let desired = d.clamp(i64::from(g.min_size), i64::from(g.max_size.max(g.min_size)));
            GroupFigures {
                group: g.id.clone(),
                pool: g.pool.clone(),
                desired: u32::try_from(desired).unwrap_or(0),
                ready,
                pending: in_flight + unlisted,
                warm: g.warm_pool.as_ref().map_or(0, |w| w.ready),
            }
        })
        .collect();
    out.sort_by(|a, b| a.group.cmp(&b.group));
    out.truncate(MAX_GROUP_SERIES);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CapacityType, OfferingKey, Reason};
    use crate::planner::fixtures::*;

    fn key() -> OfferingKey {
        offering("g5.xlarge", CapacityType::OnDemand, "us-east-1a", 1.0).key()
    }

    #[test]
    fn figures_per_group_after_the_plan() {
        use LifecycleState::*;
        let snap = snapshot()
            // The builder raises desired by one per live instance: 1 + 3 = 4, and 0 + 1.
            .group(g5_od().desired(1).min(1).max(5))
            .group(g5_spot())
            .instance(instance("i-1", "g5-od", "g5.xlarge", CapacityType::OnDemand).state(Ready))
            .instance(instance("i-2", "g5-od", "g5.xlarge", CapacityType::OnDemand).state(Ready))
            .instance(
                instance("i-3", "g5-od", "g5.xlarge", CapacityType::OnDemand).state(Launching),
            )
            .instance(instance("i-4", "g5-spot", "g5.xlarge", CapacityType::Spot).state(Ready))
            .build();
        let pool = PoolName::from("llm");
        let up = |group: &str, count| Action::ScaleUp {
            pool: pool.clone(),
            group: group.into(),
            offering: key(),
            count,
            reason: Reason::CoveredByCapacity,
        };
        let down = |group: &str, n: usize| Action::ScaleDown {
            pool: pool.clone(),
            group: group.into(),
            instances: (0..n).map(|i| format!("i-{i}").as_str().into()).collect(),
            reason: Reason::CoveredByCapacity,
        };
        // (actions, g5-od (desired, ready, pending), g5-spot (desired, ready, pending))
        let cases = [
            // 4 desired, 3 listed: 1 launching + 1 not listed yet are pending.
            (vec![], (4, 2, 2), (1, 1, 0)),
            (vec![up("g5-spot", 2)], (4, 2, 2), (3, 1, 0)),
            // Clamped to the group's max size (5) and min size (1).
            (vec![up("g5-od", 3)], (5, 2, 2), (1, 1, 0)),
            (vec![down("g5-od", 5)], (1, 2, 2), (1, 1, 0)),
        ];
        for (actions, od, spot) in cases {
            let plan = Plan {
                actions: actions.clone(),
                ..Plan::default()
            };
            let f = group_figures(&snap, &plan);
            let got: Vec<_> = f
                .iter()
                .map(|g| (g.group.as_str(), (g.desired, g.ready, g.pending)))
                .collect();
            assert_eq!(got, [("g5-od", od), ("g5-spot", spot)], "{actions:?}");
        }
    }

    #[test]
    fn series_are_bounded() {
        let mut b = snapshot();
        for i in 0..(MAX_GROUP_SERIES + 20) {
            b = b.group(group(&format!("g-{i:03}"), "llm"));
        }
        let f = group_figures(&b.build(), &Plan::default());
        assert_eq!(f.len(), MAX_GROUP_SERIES);
        assert_eq!(
            f[0].group.as_str(),
            "g-000",
            "sorted by name, first ones kept"
        );
    }
}
