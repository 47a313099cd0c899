//! Health and drift: instances that will never serve, or serve the wrong model.
//!
//! - A `Launching` instance older than `max_provision_time_s` is terminated; it no longer
//!   counts as in-flight capacity, so the same plan launches a replacement if demand needs one.
//! - An instance whose model cache differs from the pool's is replaced: warm-pool members and
//!   instances held by a lifecycle hook are terminated (they serve nothing); serving instances
//!   are drained within the disruption budget and stop counting as capacity, so the plan
//!   launches their replacement at once.
//! - An instance held by a lifecycle hook whose cache is warm (matches the pool's, or is set
//!   when the pool names none) is released with `CompleteWarmup`.

use super::PoolCtx;
use super::scaledown::Budget;
use crate::model::{
    Action, Decision, Instance, InstanceId, LifecycleState, Node, Outcome, Reason, Subject,
    Timestamp,
};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) fn check<'a>(
    ctx: &PoolCtx<'a>,
    nodes: &BTreeMap<&InstanceId, &'a Node>,
    now: Timestamp,
    budget: &mut Budget,
    actions: &mut Vec<Action>,
    decisions: &mut Vec<Decision>,
) -> BTreeSet<&'a InstanceId> {
    let pool = ctx.cfg;
    let mut gone = BTreeSet::new();
    let max_s = pool.disruption.max_provision_time.as_secs();
    let terminate = |i: &Instance, reason: Reason| Action::ScaleDown {
        pool: pool.name.clone(),
        group: i.group.clone(),
        instances: vec![i.id.clone()],
        reason,
    };
    for &i in &ctx.instances {
        if ctx.lost.contains(&i.id) {
            // Stuck for good and taken back by `launches` in this plan already.
            continue;
        }
        // A node whose GPUs are unusable is drained and replaced within the budget; it stops
        // counting as capacity at once so the same plan launches the replacement.
        if i.state == LifecycleState::Ready
            && let Some(why) = nodes.get(&i.id).and_then(|n| n.unhealthy.as_ref())
        {
            let reason = Reason::Unhealthy {
                condition: why.clone(),
            };
            if budget.take() {
                actions.push(Action::Drain {
                    pool: pool.name.clone(),
                    group: i.group.clone(),
                    instance: i.id.clone(),
                    node: nodes.get(&i.id).map(|n| n.name.clone()),
                    deadline: Some(now.plus_secs(pool.disruption.drain_timeout.as_secs_f64())),
                    reason,
                });
                gone.insert(&i.id);
            } else {
                decisions.push(Decision {
                    subject: Subject::Instance(i.id.clone()),
                    outcome: Outcome::Held,
                    reason: budget.exhausted(),
                });
            }
            continue;
        }
        let waited = now.secs_since(i.launched_at);
        if i.state == LifecycleState::Launching && waited > max_s as f64 {
            actions.push(terminate(
                i,
                Reason::NotServingReady {
                    waited_s: waited as u64,
                    max_s,
                },
            ));
            gone.insert(&i.id);
            continue;
        }
        let drift = match (&i.model_cache, &pool.model_cache) {
            (Some(have), Some(want)) if have != want => Some(Reason::Drift {
                have: have.clone(),
                want: want.clone(),
            }),
            _ => None,
        };
        if i.awaiting_lifecycle_hook {
            match drift {
                Some(r) => {
                    actions.push(terminate(i, r));
                    gone.insert(&i.id);
                }
                None if i.model_cache.is_some() => actions.push(Action::CompleteWarmup {
                    pool: pool.name.clone(),
                    group: i.group.clone(),
                    instance: i.id.clone(),
                }),
                // Cache still loading: the hook keeps holding it.
                None => {}
            }
            continue;
        }
        let Some(reason) = drift else { continue };
        match i.state {
            LifecycleState::Warm | LifecycleState::Warming => {
                actions.push(terminate(i, reason));
                gone.insert(&i.id);
            }
            LifecycleState::Ready => {
                // Drift is a voluntary disruption: pods or nodes marked do-not-disrupt
                // (gpupool's, Karpenter's, CA's safe-to-evict=false / scale-down-disabled)
                // keep the node until they go.
                let node = nodes.get(&i.id);
                let abandoned = ctx
                    .held_back
                    .get(&i.id)
                    .map(|&since| Reason::DrainAbandoned { since });
                let protected = abandoned.or_else(|| {
                    node.and_then(|n| {
                        n.pods
                            .iter()
                            .find(|p| p.do_not_disrupt)
                            .map(|p| Reason::DoNotDisrupt {
                                pod: format!("{}/{}", p.namespace, p.name),
                            })
                            .or_else(|| n.scale_down_disabled.then_some(Reason::ScaleDownDisabled))
                    })
                });
                if let Some(r) = protected {
                    decisions.push(Decision {
                        subject: Subject::Instance(i.id.clone()),
                        outcome: Outcome::Held,
                        reason: r,
                    });
                } else if budget.take() {
                    actions.push(Action::Drain {
                        pool: pool.name.clone(),
                        group: i.group.clone(),
                        instance: i.id.clone(),
                        node: nodes.get(&i.id).map(|n| n.name.clone()),
                        deadline: Some(now.plus_secs(pool.disruption.drain_timeout.as_secs_f64())),
                        reason,
                    });
                    gone.insert(&i.id);
                } else {
                    decisions.push(Decision {
                        subject: Subject::Instance(i.id.clone()),
                        outcome: Outcome::Held,
                        reason: budget.exhausted(),
                    });
                }
            }
            // Launching/Starting instances are drained once they serve; Draining/Terminating
            // ones are leaving anyway.
            _ => {}
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use crate::model::{Action, CapacityType, History, LifecycleState};
    use crate::planner::fixtures::*;
    use crate::planner::plan;

    #[test]
    fn unhealthy_node_is_drained_and_replaced() {
        let pool = pool_cfg("llm");
        let mut snap = snapshot()
            .group(g5_od())
            .instance(instance(
                "i-bad",
                "g5-od",
                "g5.xlarge",
                CapacityType::OnDemand,
            ))
            .demand("llm", 1, None)
            .build();
        for n in &mut snap.nodes {
            n.unhealthy = Some("GPU count 0 below expected 1".into());
        }
        if snap.nodes.is_empty() {
            // The fixture builds no node for this instance: give it one.
            snap.nodes.push(crate::model::Node {
                name: "n-bad".into(),
                instance: "i-bad".into(),
                pool: "llm".into(),
                capacity_type: CapacityType::OnDemand,
                labels: Default::default(),
                taints: vec![],
                serving_ready: false,
                cordoned: false,
                scale_down_disabled: false,
                pods: vec![],
                in_flight_requests: crate::model::InFlight::NotMeasured,
                idle_since: None,
                unhealthy: Some("GPU count 0 below expected 1".into()),
                drain_deadline: None,
            });
        }
        let p = plan(&snap, &config(vec![pool]), &History::default(), T0);
        let codes: Vec<_> = p
            .actions
            .iter()
            .map(|a| (a.kind(), a.reason().map(|r| r.code())))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("drain", Some("unhealthy")),
                ("scale_up", Some("signal_demand"))
            ]
        );
    }

    #[test]
    fn stuck_launch_is_terminated_and_replanned() {
        let mut pool = pool_cfg("llm");
        pool.disruption.max_provision_time = std::time::Duration::from_secs(900);
        let snap = snapshot()
            .group(g5_od())
            .instance(
                instance("i-stuck", "g5-od", "g5.xlarge", CapacityType::OnDemand)
                    .state(LifecycleState::Launching)
                    .launched(T0.plus_secs(-1000.0)),
            )
            .demand("llm", 1, None)
            .build();
        let p = plan(&snap, &config(vec![pool]), &History::default(), T0);
        let codes: Vec<_> = p
            .actions
            .iter()
            .map(|a| (a.kind(), a.reason().map(|r| r.code())))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("scale_down", Some("not_serving_ready")),
                ("scale_up", Some("signal_demand"))
            ]
        );
    }

    #[test]
    fn drift_and_warmup_table() {
        let mut pool = pool_cfg("llm");
        pool.model_cache = Some("llama@v2".into());
        let snap = snapshot()
            .group(g5_od().warm(1, 1))
            .instance(
                instance("i-old", "g5-od", "g5.xlarge", CapacityType::OnDemand).cache("llama@v1"),
            )
            .instance(
                instance("i-old2", "g5-od", "g5.xlarge", CapacityType::OnDemand).cache("llama@v1"),
            )
            .instance(
                instance("i-warm-old", "g5-od", "g5.xlarge", CapacityType::OnDemand)
                    .state(LifecycleState::Warm)
                    .cache("llama@v1"),
            )
            .instance(
                instance("i-hook", "g5-od", "g5.xlarge", CapacityType::OnDemand)
                    .state(LifecycleState::Launching)
                    .launched(T0)
                    .hook()
                    .cache("llama@v2"),
            )
            .instance(
                instance(
                    "i-hook-loading",
                    "g5-od",
                    "g5.xlarge",
                    CapacityType::OnDemand,
                )
                .state(LifecycleState::Launching)
                .launched(T0)
                .hook(),
            )
            .build();
        let p = plan(&snap, &config(vec![pool]), &History::default(), T0);
        let acts: Vec<_> = p
            .actions
            .iter()
            .map(|a| format!("{} {}", a.kind(), a.reason().map_or("", |r| r.code())))
            .collect();
        assert!(acts.contains(&"drain drift".to_string()), "{acts:?}");
        assert!(acts.contains(&"scale_down drift".to_string()), "{acts:?}");
        assert!(acts.contains(&"complete_warmup ".to_string()), "{acts:?}");
        // Budget 1 at once: only one serving instance drained, the other held.
        assert_eq!(acts.iter().filter(|a| *a == "drain drift").count(), 1);
        assert!(
            p.decisions
                .iter()
                .any(|d| d.reason.code() == "budget_exhausted"
                    && d.subject == crate::model::Subject::Instance("i-old2".into()))
        );
    }

    #[test]
    fn drift_waits_for_do_not_disrupt_pods() {
        let mut pool = pool_cfg("llm");
        pool.model_cache = Some("llama@v2".into());
        let snap = snapshot()
            .group(g5_od())
            .instance(
                instance("i-old", "g5-od", "g5.xlarge", CapacityType::OnDemand).cache("llama@v1"),
            )
            .node(node("i-old", "llm", CapacityType::OnDemand).do_not_disrupt("training"))
            .build();
        let p = plan(&snap, &config(vec![pool]), &History::default(), T0);
        assert!(
            !p.actions.iter().any(|a| matches!(a, Action::Drain { .. })),
            "{:?}",
            p.actions
        );
        assert!(
            p.decisions
                .iter()
                .any(|d| d.reason.code() == "do_not_disrupt"
                    && d.subject == crate::model::Subject::Instance("i-old".into()))
        );
    }
}
