//! Consolidation by replacement: a busy node whose work would fit one node of a cheaper
//! offering gets that cheaper node launched (`ScaleUp`, `Reason::Consolidate`). Nothing is cut:
//! once the replacement serves, the old node is unneeded and scale-down drains it within the
//! disruption budget. Empty nodes are scale-down's business, not this module's.
//!
//! Worth it only when the saving over the next hour beats the cold-start cost of the new node:
//! (old − new effective price) × 1 h > new price × cold_start_s / 3600. At most as many
//! replacements are in flight per pool as the budget allows, counting nodes already launching.
//! The replacement keeps the old node's capacity type, so the spot/on-demand split holds —
//! except that an on-demand node may be replaced by spot while the pool runs more on-demand
//! nodes than its split wants (`on_demand_base` + `1 − spot_share` of the rest): that is how a
//! pool returns to spot after a spot outage made it fall back to on-demand. Without it, the
//! fallback on-demand nodes stay until demand falls, long after spot is back.

use super::PoolCtx;
use super::capacity::{Chooser, on_demand_target};
use super::eligible::Template;
use super::fit::{PodSpec, Room, static_fit};
use super::scaledown::{Budget, Serving};
use crate::config::{Mode, PoolConfig};
use crate::model::{Action, CapacityType, Decision, InstanceId, Money, Outcome, Reason, Subject};
use std::collections::{BTreeSet, HashMap};

struct Candidate {
    serving: usize,
    tpl: usize,
    saving: Money,
}

/// Whether one node of template `t` (index `ti`) takes everything `s` serves: all its workload
/// pods together (Kubernetes), or as many replicas (VM-only).
fn holds<'a>(
    mode: Mode,
    s: &Serving<'a>,
    t: &Template<'a>,
    ti: usize,
    fit_cache: &mut HashMap<(PodSpec<'a>, usize), u32>,
) -> bool {
    match (mode, s.node) {
        (Mode::Kubernetes, Some(node)) => {
            let mut room = Room::EMPTY;
            node.workload_pods().all(|p| {
                let spec = PodSpec::running(p);
                let fits = *fit_cache.entry((spec, ti)).or_insert_with(|| {
                    static_fit(&spec, &t.labels, &t.taints, &t.caps).unwrap_or(0)
                });
                if fits == 0 || room.fit_count(&t.caps, &spec, 1) == 0 {
                    return false;
                }
                room.take(&t.caps, &spec, 1);
                true
            })
        }
        // VM-only: the new node must serve as many replicas as the old one.
        _ => t.rpn >= s.rpn && s.rpn > 0,
    }
}

/// On-demand nodes above the split's target: each may be swapped for spot.
fn on_demand_excess(pool: &PoolConfig, serving: &[Serving<'_>], in_flight_nodes: u32) -> u32 {
    let on_demand = serving
        .iter()
        .filter(|s| s.inst.capacity_type == CapacityType::OnDemand)
        .count() as u32;
    on_demand.saturating_sub(on_demand_target(
        pool,
        serving.len() as u32 + in_flight_nodes,
    ))
}

/// Find replacements; returns how many were launched.
#[allow(clippy::too_many_arguments)]
pub(crate) fn consolidate<'a>(
    ctx: &PoolCtx<'a>,
    mode: Mode,
    serving: &[Serving<'a>],
    unneeded: &BTreeSet<&InstanceId>,
    in_flight_nodes: u32,
    budget: &Budget,
    chooser: &mut Chooser<'_, 'a>,
    actions: &mut Vec<Action>,
    decisions: &mut Vec<Decision>,
) -> u32 {
    let pool = ctx.cfg;
    let cold_h = pool.scale_up.cold_start_s as f64 / 3600.0;
    let mut fit_cache: HashMap<(PodSpec<'a>, usize), u32> = HashMap::new();
    let mut worth = Vec::new();
    let mut od_excess = on_demand_excess(pool, serving, in_flight_nodes);
    for (si, s) in serving.iter().enumerate() {
        let Some(old) = s.tpl else { continue };
        if s.empty || s.protected.is_some() || unneeded.contains(&s.inst.id) {
            continue;
        }
        let ct = s.inst.capacity_type;
        // Templates are sorted by effective price: scan the cheaper ones, cheapest first.
        let mut found = None;
        for (ti, t) in ctx.tpls.iter().enumerate() {
            if t.eff_price >= s.eff_price {
                break;
            }
            let to_spot = ct == CapacityType::OnDemand
                && t.capacity_type() == CapacityType::Spot
                && od_excess > 0;
            if !t.usable() || (t.capacity_type() != ct && !to_spot) || ti == old {
                continue;
            }
            if holds(mode, s, t, ti, &mut fit_cache) {
                found = Some(ti);
                break;
            }
        }
        let Some(ti) = found else { continue };
        let t = &ctx.tpls[ti];
        if t.capacity_type() != ct {
            od_excess -= 1;
        }
        let saving = s.eff_price - t.eff_price;
        let cold_cost = t.price.scale(cold_h);
        if saving > cold_cost {
            worth.push(Candidate {
                serving: si,
                tpl: ti,
                saving,
            });
        } else {
            decisions.push(Decision {
                subject: Subject::Instance(s.inst.id.clone()),
                outcome: Outcome::Held,
                reason: Reason::ConsolidationNotWorthIt {
                    saving_per_hour: saving,
                    cold_start_cost: cold_cost,
                },
            });
        }
    }
    worth.sort_by(|a, b| {
        b.saving
            .cmp(&a.saving)
            .then_with(|| serving[a.serving].inst.id.cmp(&serving[b.serving].inst.id))
    });
    let mut allowed = budget.left().saturating_sub(in_flight_nodes);
    let mut launched = 0;
    for (rank, c) in worth.into_iter().enumerate() {
        let s = &serving[c.serving];
        let t = &ctx.tpls[c.tpl];
        // The best candidates are assumed to be the ones in-flight nodes already replace (the
        // ranking is deterministic, so last tick's choice ranks first again): never launch a
        // second replacement for the same node.
        if rank < in_flight_nodes as usize {
            decisions.push(Decision {
                subject: Subject::Instance(s.inst.id.clone()),
                outcome: Outcome::Satisfied,
                reason: Reason::CoveredByInFlight { in_flight_nodes },
            });
            continue;
        }
        if allowed == 0 {
            decisions.push(Decision {
                subject: Subject::Instance(s.inst.id.clone()),
                outcome: Outcome::Held,
                reason: budget.exhausted(),
            });
            continue;
        }
        if let Some(r) = chooser.check_specific(c.tpl) {
            decisions.push(Decision {
                subject: Subject::Instance(s.inst.id.clone()),
                outcome: Outcome::Blocked,
                reason: r,
            });
            continue;
        }
        chooser.open(c.tpl, false, super::capacity::Cause::Consolidate, None);
        allowed -= 1;
        launched += 1;
        actions.push(Action::ScaleUp {
            pool: pool.name.clone(),
            group: t.group_ref.id.clone(),
            offering: t.key.clone(),
            count: 1,
            reason: Reason::Consolidate {
                saving_per_hour: c.saving,
                replacement: t.key.clone(),
                replaces: s.inst.id.clone(),
            },
        });
    }
    launched
}

#[cfg(test)]
mod tests {
    use crate::model::{CapacityType, History, Subject};
    use crate::planner::fixtures::*;
    use crate::planner::plan;

    fn world(old_type: &str, old_price: f64, pods: u32) -> crate::model::Snapshot {
        let mut n = node("i-old", "llm", CapacityType::OnDemand);
        for k in 0..pods {
            n = n.pod(running_pod(&format!("w{k}"), 1));
        }
        snapshot()
            .group(
                group("g", "llm")
                    .offering(offering(
                        old_type,
                        CapacityType::OnDemand,
                        "us-east-1a",
                        old_price,
                    ))
                    .offering(offering(
                        "g5.xlarge",
                        CapacityType::OnDemand,
                        "us-east-1a",
                        1.006,
                    ))
                    .offering(offering("g5.xlarge", CapacityType::Spot, "us-east-1a", 0.3)),
            )
            .instance(instance("i-old", "g", old_type, CapacityType::OnDemand))
            .node(n)
            .build()
    }

    #[test]
    fn table() {
        // (old type, old price, pods on it, expected action reason or decision code)
        let cases = [
            // One 1-GPU pod on a 4-GPU node: a g5.xlarge on-demand takes it, saves $4.67/h.
            ("g5.12xlarge", 5.672, 1, "consolidate"),
            // Two pods do not fit a 1-GPU node: nothing cheaper holds them, no decision.
            ("g5.12xlarge", 5.672, 2, "none"),
            // Saving 0.1/h does not beat 5 min of a $1.006 node.
            ("g5.2xlarge", 1.012, 1, "consolidation_not_worth_it"),
        ];
        for (t, price, pods, want) in cases {
            let p = plan(
                &world(t, price, pods),
                &config(vec![pool_cfg("llm")]),
                &History::default(),
                T0,
            );
            let got = p
                .actions
                .iter()
                .filter_map(|a| a.reason().map(|r| r.code()))
                .chain(
                    p.decisions
                        .iter()
                        .filter(|d| matches!(d.subject, Subject::Instance(_)))
                        .map(|d| d.reason.code()),
                )
                .next()
                .unwrap_or("none");
            assert_eq!(got, want, "{t} {pods}");
            if want == "consolidate" {
                let a = p.actions[0].to_string();
                assert!(a.contains("g5.xlarge/on-demand/us-east-1a"), "{a}");
                assert!(a.contains("replacing i-old"), "{a}");
            }
        }
    }

    #[test]
    fn in_flight_replacement_is_not_launched_twice() {
        let snap = {
            let mut s = world("g5.12xlarge", 5.672, 1);
            let extra = instance("i-new", "g", "g5.xlarge", CapacityType::OnDemand)
                .state(crate::model::LifecycleState::Launching)
                .launched(T0)
                .build();
            s.groups[0].desired += 1;
            s.instances.push(extra);
            s
        };
        let p = plan(
            &snap,
            &config(vec![pool_cfg("llm")]),
            &History::default(),
            T0,
        );
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert!(
            p.decisions
                .iter()
                .any(|d| d.reason.code() == "covered_by_in_flight")
        );
    }
}
