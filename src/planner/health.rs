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
use crate::config::PoolConfig;
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
    for &i in &ctx.instances {
        if ctx.lost.contains(&i.id) {
            // Stuck for good and taken back by `launches` in this plan already.
            continue;
        }
        let node = nodes.get(&i.id).copied();
        let held = |reason| Decision {
            subject: Subject::Instance(i.id.clone()),
            outcome: Outcome::Held,
            reason,
        };
        match verdict(pool, i, node, ctx.held_back.get(&i.id).copied(), now) {
            Verdict::Keep => {}
            Verdict::Terminate(reason) => {
                actions.push(Action::ScaleDown {
                    pool: pool.name.clone(),
                    group: i.group.clone(),
                    instances: vec![i.id.clone()],
                    reason,
                });
                gone.insert(&i.id);
            }
            Verdict::Drain(reason) if budget.take() => {
                actions.push(Action::Drain {
                    pool: pool.name.clone(),
                    group: i.group.clone(),
                    instance: i.id.clone(),
                    node: node.map(|n| n.name.clone()),
                    deadline: Some(now.plus_secs(pool.disruption.drain_timeout_s as f64)),
                    reason,
                });
                gone.insert(&i.id);
            }
            Verdict::Drain(_) => decisions.push(held(budget.exhausted())),
            Verdict::Held(reason) => decisions.push(held(reason)),
            Verdict::CompleteWarmup => actions.push(Action::CompleteWarmup {
                pool: pool.name.clone(),
                group: i.group.clone(),
                instance: i.id.clone(),
            }),
        }
    }
    gone
}

/// What health and drift ask of one instance.
#[derive(Debug, PartialEq)]
enum Verdict {
    Keep,
    /// Terminate at once: it serves nothing, or never will.
    Terminate(Reason),
    /// Drain and replace, within the disruption budget.
    Drain(Reason),
    /// Drift, but the node may not be disrupted now: kept, and said why.
    Held(Reason),
    /// Release it from the lifecycle hook: its cache is warm.
    CompleteWarmup,
}

/// The health and drift rules of the module doc for instance `i` (its Kubernetes node or VM
/// record `node`; `held_back`: since when its voluntary drain was given up, if recently).
fn verdict(
    pool: &PoolConfig,
    i: &Instance,
    node: Option<&Node>,
    held_back: Option<Timestamp>,
    now: Timestamp,
) -> Verdict {
    // A node whose GPUs are unusable is drained and replaced within the budget; it stops
    // counting as capacity at once so the same plan launches the replacement.
    if i.state == LifecycleState::Ready
        && let Some(why) = node.and_then(|n| n.unhealthy.as_ref())
    {
        return Verdict::Drain(Reason::Unhealthy {
            condition: why.clone(),
        });
    }
    let max_s = pool.disruption.max_provision_time_s;
    let waited = now.secs_since(i.launched_at);
    if i.state == LifecycleState::Launching && waited > max_s as f64 {
        return Verdict::Terminate(Reason::NotServingReady {
            waited_s: waited as u64,
            max_s,
        });
    }
    let drift = match (&i.model_cache, &pool.model_cache) {
        (Some(have), Some(want)) if have != want => Some(Reason::Drift {
            have: have.clone(),
            want: want.clone(),
        }),
        _ => None,
    };
    if i.awaiting_lifecycle_hook {
        return match drift {
            Some(r) => Verdict::Terminate(r),
            None if i.model_cache.is_some() => Verdict::CompleteWarmup,
            // Cache still loading: the hook keeps holding it.
            None => Verdict::Keep,
        };
    }
    let Some(reason) = drift else {
        return Verdict::Keep;
    };
    match i.state {
        LifecycleState::Warm | LifecycleState::Warming => Verdict::Terminate(reason),
        LifecycleState::Ready => match protection(node, held_back) {
            Some(r) => Verdict::Held(r),
            None => Verdict::Drain(reason),
        },
        // Launching/Starting instances are drained once they serve; Draining/Terminating
        // ones are leaving anyway.
        _ => Verdict::Keep,
    }
}

/// Drift is a voluntary disruption: a recently abandoned drain, pods or nodes marked
/// do-not-disrupt (gpupool's, Karpenter's, CA's safe-to-evict=false / scale-down-disabled) keep
/// the node until they go.
fn protection(node: Option<&Node>, held_back: Option<Timestamp>) -> Option<Reason> {
    if let Some(since) = held_back {
        return Some(Reason::DrainAbandoned { since });
    }
    let n = node?;
    n.pods
        .iter()
        .find(|p| p.do_not_disrupt)
        .map(|p| Reason::DoNotDisrupt {
            pod: format!("{}/{}", p.namespace, p.name),
        })
        .or_else(|| n.scale_down_disabled.then_some(Reason::ScaleDownDisabled))
}

#[cfg(test)]
mod tests {
    use crate::model::{Action, CapacityType, History, LifecycleState};
    use crate::planner::fixtures::*;
    use crate::planner::plan;

    /// A pool caching `llama@v2`, launches stuck after 900 s.
    fn verdict_pool() -> crate::config::PoolConfig {
        let mut pool = pool_cfg("llm");
        pool.model_cache = Some("llama@v2".into());
        pool.disruption.max_provision_time_s = 900;
        pool
    }

    fn inst() -> InstanceBuilder {
        instance("i", "g", "g5.xlarge", CapacityType::OnDemand)
    }

    fn drift() -> crate::model::Reason {
        crate::model::Reason::Drift {
            have: "llama@v1".into(),
            want: "llama@v2".into(),
        }
    }

    type VerdictCase = (
        &'static str,
        crate::model::Instance,
        Option<crate::model::Node>,
        Option<crate::model::Timestamp>,
        super::Verdict,
    );

    fn check_verdicts(cases: Vec<VerdictCase>) {
        let pool = verdict_pool();
        for (name, i, n, held_back, want) in cases {
            assert_eq!(
                super::verdict(&pool, &i, n.as_ref(), held_back, T0),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn health_verdict_table() {
        use super::Verdict;
        use crate::model::Reason;
        let mut sick = node("i", "llm", CapacityType::OnDemand).build();
        sick.unhealthy = Some("GPU count 0".into());
        let launching = |ago_s: f64| {
            inst()
                .state(LifecycleState::Launching)
                .launched(T0.plus_secs(-ago_s))
                .build()
        };
        // (name, instance, node, held back since, want)
        check_verdicts(vec![
            (
                "healthy, no drift",
                inst().build(),
                None,
                None,
                Verdict::Keep,
            ),
            (
                "unhealthy ready node drains, drift, abandoned drain or not",
                inst().cache("llama@v1").build(),
                Some(sick.clone()),
                Some(T0.plus_secs(-60.0)),
                Verdict::Drain(Reason::Unhealthy {
                    condition: "GPU count 0".into(),
                }),
            ),
            (
                "a node not serving yet is not judged by its health",
                inst().state(LifecycleState::Starting).build(),
                Some(sick),
                None,
                Verdict::Keep,
            ),
            (
                "launching past max_provision_time_s",
                launching(901.0),
                None,
                None,
                Verdict::Terminate(Reason::NotServingReady {
                    waited_s: 901,
                    max_s: 900,
                }),
            ),
            (
                "launching within max_provision_time_s",
                launching(900.0),
                None,
                None,
                Verdict::Keep,
            ),
        ]);
    }

    #[test]
    fn drift_verdict_table() {
        use super::Verdict;
        use crate::model::Reason;
        let v1 = || inst().cache("llama@v1");
        let n = || node("i", "llm", CapacityType::OnDemand);
        let abandoned = T0.plus_secs(-60.0);
        // (name, instance, node, held back since, want)
        check_verdicts(vec![
            (
                "hook with a stale cache",
                v1().hook().build(),
                None,
                None,
                Verdict::Terminate(drift()),
            ),
            (
                "hook with the pool's cache",
                inst().hook().cache("llama@v2").build(),
                None,
                None,
                Verdict::CompleteWarmup,
            ),
            (
                "hook, cache loading",
                inst().hook().build(),
                None,
                None,
                Verdict::Keep,
            ),
            (
                "warm with a stale cache",
                v1().state(LifecycleState::Warm).build(),
                None,
                None,
                Verdict::Terminate(drift()),
            ),
            (
                "ready with a stale cache",
                v1().build(),
                None,
                None,
                Verdict::Drain(drift()),
            ),
            (
                "drift waits for an abandoned drain",
                v1().build(),
                None,
                Some(abandoned),
                Verdict::Held(Reason::DrainAbandoned { since: abandoned }),
            ),
            (
                "drift waits for a do-not-disrupt pod",
                v1().build(),
                Some(n().do_not_disrupt("train").build()),
                None,
                Verdict::Held(Reason::DoNotDisrupt {
                    pod: "default/train".into(),
                }),
            ),
            (
                "drift waits for scale-down-disabled",
                v1().build(),
                Some(n().scale_down_disabled().build()),
                None,
                Verdict::Held(Reason::ScaleDownDisabled),
            ),
            (
                "starting with a stale cache is drained once it serves",
                v1().state(LifecycleState::Starting).build(),
                None,
                None,
                Verdict::Keep,
            ),
        ]);
    }

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
        pool.disruption.max_provision_time_s = 900;
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
