//! Spot instances the cloud recommended rebalancing away from (`disruption.rebalance:
//! prelaunch`, the default).
//!
//! An EC2 *rebalance recommendation* says a spot instance is at elevated risk of interruption;
//! it usually arrives well before the 2-minute interruption notice, sometimes with no notice
//! following at all (AWS EC2 User Guide, "EC2 instance rebalance recommendations"). Karpenter
//! and the AWS Node Termination Handler treat it as a signal to replace early; AWS's own ASG
//! *capacity rebalancing* launches a replacement and then terminates the old instance without
//! any drain gpupool could apply, which is why the Terraform module leaves that off and gpupool
//! does it here:
//!
//! - an at-risk instance stops counting as capacity at once (`PoolCtx::account`), and on
//!   Kubernetes its GPU pods count as displaced, so this plan launches the replacement within
//!   the pool's limits;
//! - it is drained once nothing the pool launched is still on its way — the replacement serves
//!   — within the disruption budget ([`drains`]). An interruption notice drains it earlier
//!   through the controller's notice path.

use super::PoolCtx;
use super::scaledown::Budget;
use crate::model::{Action, Decision, InstanceId, Node, Outcome, Reason, Subject, Timestamp};
use std::collections::{BTreeMap, BTreeSet};

/// Drain at-risk instances once nothing the pool launched (`in_flight`: still booting or
/// launched by this plan) is on its way; hold them with a reason before that.
pub(crate) fn drains<'a>(
    ctx: &PoolCtx<'a>,
    nodes: &BTreeMap<&InstanceId, &'a Node>,
    in_flight: u32,
    now: Timestamp,
    budget: &mut Budget,
    actions: &mut Vec<Action>,
    decisions: &mut Vec<Decision>,
) -> BTreeSet<&'a InstanceId> {
    let pool = ctx.cfg;
    let mut drained = BTreeSet::new();
    for &i in ctx.instances.iter().filter(|i| ctx.at_risk.contains(&i.id)) {
        if let Some(&since) = ctx.held_back.get(&i.id) {
            decisions.push(Decision {
                subject: Subject::Instance(i.id.clone()),
                outcome: Outcome::Held,
                reason: Reason::DrainAbandoned { since },
            });
            continue;
        }
        if in_flight > 0 {
            decisions.push(Decision {
                subject: Subject::Instance(i.id.clone()),
                outcome: Outcome::Held,
                reason: Reason::RebalanceWaiting {
                    in_flight_nodes: in_flight,
                },
            });
            continue;
        }
        if !budget.take() {
            decisions.push(Decision {
                subject: Subject::Instance(i.id.clone()),
                outcome: Outcome::Held,
                reason: budget.exhausted(),
            });
            continue;
        }
        actions.push(Action::Drain {
            pool: pool.name.clone(),
            group: i.group.clone(),
            instance: i.id.clone(),
            node: nodes.get(&i.id).map(|n| n.name.clone()),
            deadline: Some(now.plus_secs(pool.disruption.drain_timeout.as_secs_f64())),
            reason: Reason::Rebalance,
        });
        drained.insert(&i.id);
    }
    drained
}

#[cfg(test)]
mod tests {
    use crate::config::RebalancePolicy;
    use crate::model::{Action, CapacityType, History, LifecycleState, Plan, Timestamp};
    use crate::planner::fixtures::*;
    use crate::planner::plan;

    fn summary(p: &Plan) -> Vec<String> {
        let mut v: Vec<String> = p.actions.iter().map(|a| a.to_string()).collect();
        v.extend(
            p.decisions
                .iter()
                .filter(|d| d.reason.code().starts_with("rebalance"))
                .map(|d| format!("{:?}: {}", d.outcome, d.reason)),
        );
        v
    }

    /// Two serving spot nodes for a demand of 2; `i-1` gets a rebalance recommendation.
    fn world(replacement: Option<LifecycleState>) -> crate::model::Snapshot {
        let mut s = snapshot()
            .group(g5_spot())
            .instance(instance("i-1", "g5-spot", "g5.xlarge", CapacityType::Spot))
            .instance(instance("i-2", "g5-spot", "g5.xlarge", CapacityType::Spot))
            .node(node("i-1", "llm", CapacityType::Spot))
            .node(node("i-2", "llm", CapacityType::Spot))
            .demand("llm", 2, None);
        if let Some(state) = replacement {
            s = s.instance(
                instance("i-3", "g5-spot", "g5.xlarge", CapacityType::Spot)
                    .state(state)
                    .launched(T0),
            );
            if state == LifecycleState::Ready {
                s = s.node(node("i-3", "llm", CapacityType::Spot));
            }
        }
        s.build()
    }

    #[test]
    fn prelaunch_replaces_then_drains_once_the_replacement_serves() {
        let mut pool = pool_cfg("llm");
        pool.capacity.spot_share = crate::config::Share::ONE;
        let cfg = config(vec![pool.clone()]);
        let mut h = History::default();
        h.record_at_risk(&"i-1".into(), T0);
        // Recommendation seen: launch the replacement, keep i-1 serving.
        let p = plan(&world(None), &cfg, &h, T0);
        let s = summary(&p);
        assert!(
            p.actions
                .iter()
                .any(|a| matches!(a, Action::ScaleUp { count: 1, .. })),
            "{s:?}"
        );
        assert!(
            !p.actions.iter().any(|a| matches!(a, Action::Drain { .. })),
            "{s:?}"
        );
        assert!(
            s.iter().any(|l| l.starts_with(
                "Held: rebalance recommended: waiting for the replacement (1 node(s)"
            )),
            "{s:?}"
        );
        // Replacement booting: nothing new, still waiting.
        let p = plan(&world(Some(LifecycleState::Launching)), &cfg, &h, T0);
        assert!(p.actions.is_empty(), "{:?}", summary(&p));
        // Replacement serving: drain i-1 (reason rebalance), no further launch.
        let p = plan(&world(Some(LifecycleState::Ready)), &cfg, &h, T0);
        let drains: Vec<_> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Drain {
                    instance, reason, ..
                } => Some((instance.to_string(), reason.code())),
                _ => None,
            })
            .collect();
        assert_eq!(
            drains,
            vec![("i-1".to_string(), "rebalance")],
            "{:?}",
            summary(&p)
        );
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::ScaleUp { .. }))
        );

        // `ignore`: the recommendation changes nothing.
        pool.disruption.rebalance = RebalancePolicy::Ignore;
        let p = plan(&world(None), &config(vec![pool]), &h, Timestamp(T0.0));
        assert!(p.actions.is_empty(), "{:?}", summary(&p));
    }
}
