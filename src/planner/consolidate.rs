//! Consolidation by replacement: a busy node whose work would fit one node of a cheaper
//! offering gets that cheaper node launched (`ScaleUp`, `Reason::Consolidate`). Nothing is cut:
//! once the replacement serves, the old node is unneeded and scale-down drains it within the
//! disruption budget. Empty nodes are scale-down's business, not this module's.
//!
//! Worth it only when the saving over the next hour beats the cold-start cost of the new node:
//! (old − new effective price) × 1 h > new price × cold_start_s / 3600. Every node worth it
//! gets its replacement in the same tick: launching one disrupts nothing (the old node serves
//! until its replacement does, and is not cordoned before), so the disruption budget bounds
//! the drains that follow, not the launches — the pool's limits and cost ceiling bound those
//! (`Chooser::check_specific`). (Karpenter counts a node against its budget from the moment it
//! decides to replace it, because it taints the node then; gpupool does not take the node out
//! of service until the replacement serves.) One replacement at a time took s2-spot 25 minutes
//! to move its 9 starting on-demand nodes to spot, one cold start each.
//! The replacement keeps the old node's capacity type, so the spot/on-demand split holds —
//! except that an on-demand node may be replaced by spot while the pool runs more on-demand
//! nodes than its split wants (`on_demand_base` + `1 − spot_share` of the rest): that is how a
//! pool returns to spot after a spot outage made it fall back to on-demand. Without it, the
//! fallback on-demand nodes stay until demand falls, long after spot is back.

use super::PoolCtx;
use super::capacity::{Chooser, on_demand_target};
use super::fit::{PodSpec, Room, static_fit};
use super::scaledown::Serving;
use crate::config::{Mode, PoolConfig};
use crate::model::{
    Action, CapacityType, Decision, InstanceId, Money, Outcome, Price, Reason, Subject,
};
use std::collections::{BTreeSet, HashMap};

struct Candidate {
    serving: usize,
    tpl: usize,
    saving: Money,
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
    chooser: &mut Chooser<'_, 'a>,
    actions: &mut Vec<Action>,
    decisions: &mut Vec<Decision>,
) -> u32 {
    let worth = candidates(ctx, mode, serving, unneeded, in_flight_nodes, decisions);
    let mut launched = 0;
    for (rank, c) in worth.into_iter().enumerate() {
        let s = &serving[c.serving];
        let t = &ctx.tpls[c.tpl];
        // The best candidates are assumed to be the ones in-flight nodes already replace (the
        // ranking is deterministic, so last tick's choice ranks first again): never launch a
        // second replacement for the same node.
        let hold = if rank < in_flight_nodes as usize {
            Some((
                Outcome::Satisfied,
                Reason::CoveredByInFlight { in_flight_nodes },
            ))
        } else {
            chooser.check_specific(c.tpl).map(|r| (Outcome::Blocked, r))
        };
        if let Some((outcome, reason)) = hold {
            decisions.push(Decision {
                subject: Subject::Instance(s.inst.id.clone()),
                outcome,
                reason,
            });
            continue;
        }
        chooser.open(c.tpl, false, super::capacity::Cause::Consolidate, None);
        launched += 1;
        actions.push(Action::ScaleUp {
            pool: ctx.cfg.name.clone(),
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

/// The busy nodes worth replacing, best saving first (then by instance id). A node a cheaper
/// offering could hold but whose saving does not pay for the cold start gets a decision.
fn candidates<'a>(
    ctx: &PoolCtx<'a>,
    mode: Mode,
    serving: &[Serving<'a>],
    unneeded: &BTreeSet<&InstanceId>,
    in_flight_nodes: u32,
    decisions: &mut Vec<Decision>,
) -> Vec<Candidate> {
    let pool = ctx.cfg;
    let mut fit_cache: HashMap<(PodSpec<'a>, usize), u32> = HashMap::new();
    let mut worth = Vec::new();
    let mut od_excess = on_demand_excess(pool, serving, in_flight_nodes);
    for (si, s) in serving.iter().enumerate() {
        // An unknown-priced node shows no saving: never consolidated for money (and
        // unknown-priced templates sort last, so they are never a target either).
        let unknown = s.eff_price.is_unknown();
        if s.tpl.is_none()
            || unknown
            || s.empty
            || s.protected.is_some()
            || unneeded.contains(&s.inst.id)
        {
            continue;
        }
        let Some(ti) = cheaper_holder(ctx, mode, s, od_excess > 0, &mut fit_cache) else {
            continue;
        };
        let t = &ctx.tpls[ti];
        if t.capacity_type() != s.inst.capacity_type {
            od_excess -= 1;
        }
        let Some(saving) = Saving::new(
            s.eff_price,
            t.eff_price,
            t.price,
            pool.scale_up.cold_start.as_secs(),
        ) else {
            continue;
        };
        match saving.not_worth_it() {
            None => worth.push(Candidate {
                serving: si,
                tpl: ti,
                saving: saving.per_hour,
            }),
            Some(reason) => decisions.push(Decision {
                subject: Subject::Instance(s.inst.id.clone()),
                outcome: Outcome::Held,
                reason,
            }),
        }
    }
    worth.sort_by(|a, b| {
        b.saving
            .cmp(&a.saving)
            .then_with(|| serving[a.serving].inst.id.cmp(&serving[b.serving].inst.id))
    });
    worth
}

/// The cheapest template, cheaper than `s`'s, that one node of could hold `s`'s work: its
/// workload pods (Kubernetes), or as many replicas (VM-only). `to_spot`: the pool runs more
/// on-demand nodes than its split wants, so an on-demand node may be replaced by spot.
fn cheaper_holder<'a>(
    ctx: &PoolCtx<'a>,
    mode: Mode,
    s: &Serving<'a>,
    to_spot: bool,
    fit_cache: &mut HashMap<(PodSpec<'a>, usize), u32>,
) -> Option<usize> {
    let old = s.tpl?;
    // Templates are sorted by effective price: scan the cheaper ones, cheapest first.
    for (ti, t) in ctx.tpls.iter().enumerate() {
        if t.eff_price >= s.eff_price {
            break;
        }
        let same_type = may_replace(s.inst.capacity_type, t.capacity_type(), to_spot);
        if !t.usable() || !same_type || ti == old {
            continue;
        }
        let holds = match (mode, s.node) {
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
        };
        if holds {
            return Some(ti);
        }
    }
    None
}

/// Whether a node of capacity type `old` may be replaced by one of type `new`: the same type,
/// or on-demand by spot while the pool runs more on-demand nodes than its split wants
/// (`od_excess`).
fn may_replace(old: CapacityType, new: CapacityType, od_excess: bool) -> bool {
    new == old || (old == CapacityType::OnDemand && new == CapacityType::Spot && od_excess)
}

/// What replacing a node saves, against what its replacement costs while it cold-starts.
#[derive(Debug, PartialEq)]
struct Saving {
    per_hour: Money,
    cold_start_cost: Money,
}

impl Saving {
    /// Replacing a node at effective price `old_eff` by one at `new_eff` (list price
    /// `new_price`, `cold_start_s` before it serves). `None` when a price is unknown: no saving
    /// can be shown (unknown is not zero).
    fn new(old_eff: Price, new_eff: Price, new_price: Price, cold_start_s: u64) -> Option<Self> {
        Some(Saving {
            per_hour: old_eff.minus(new_eff)?,
            cold_start_cost: new_price.known()?.scale(cold_start_s as f64 / 3600.0),
        })
    }

    /// Why the replacement is not worth it: the saving over the next hour does not beat the
    /// cold start's cost. `None`: it is worth it.
    fn not_worth_it(&self) -> Option<Reason> {
        (self.per_hour <= self.cold_start_cost).then_some(Reason::ConsolidationNotWorthIt {
            saving_per_hour: self.per_hour,
            cold_start_cost: self.cold_start_cost,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{CapacityType, History, Subject};
    use crate::planner::fixtures::*;
    use crate::planner::plan;

    /// `b` with the cheaper offerings a node may be replaced by: g5.xlarge on-demand and spot.
    fn with_g5_xlarge(b: GroupBuilder) -> GroupBuilder {
        b.offering(offering(
            "g5.xlarge",
            CapacityType::OnDemand,
            "us-east-1a",
            1.006,
        ))
        .offering(offering("g5.xlarge", CapacityType::Spot, "us-east-1a", 0.3))
    }

    fn world(old_type: &str, old_price: f64, pods: u32) -> crate::model::Snapshot {
        let mut n = node("i-old", "llm", CapacityType::OnDemand);
        for k in 0..pods {
            n = n.pod(running_pod(&format!("w{k}"), 1));
        }
        snapshot()
            .group(with_g5_xlarge(group("g", "llm").offering(offering(
                old_type,
                CapacityType::OnDemand,
                "us-east-1a",
                old_price,
            ))))
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
    fn capacity_type_of_a_replacement_table() {
        use super::may_replace;
        use CapacityType::{OnDemand, Spot};
        // (old, new, on-demand above the split, want)
        let cases = [
            (OnDemand, OnDemand, false, true),
            (Spot, Spot, false, true),
            (OnDemand, Spot, false, false),
            (OnDemand, Spot, true, true),
            (Spot, OnDemand, true, false),
        ];
        for (old, new, excess, want) in cases {
            assert_eq!(
                may_replace(old, new, excess),
                want,
                "{old:?} {new:?} {excess}"
            );
        }
    }

    #[test]
    fn worth_it_table() {
        use super::Saving;
        use crate::model::Money;
        let d = Money::from_dollars;
        // (old effective, new effective, new price, cold start s, worth it)
        let cases = [
            // $4.67/h saved beats 5 min of a $1.006 node ($0.08).
            (5.672, 1.006, 1.006, 300, true),
            // $0.006/h does not.
            (1.012, 1.006, 1.006, 300, false),
            // Equal is not worth it: the saving must beat the cold start.
            (2.0, 1.0, 12.0, 300, false),
            (2.0, 1.0, 12.0, 299, true),
        ];
        for (old, new, price, cold_s, worth) in cases {
            let s = Saving::new(d(old).into(), d(new).into(), d(price).into(), cold_s).unwrap();
            assert_eq!(s.per_hour, d(old) - d(new));
            assert_eq!(s.cold_start_cost, d(price).scale(cold_s as f64 / 3600.0));
            let why = s.not_worth_it();
            assert_eq!(why.is_none(), worth, "{old} {new}");
            assert!(why.is_none_or(|r| r.code() == "consolidation_not_worth_it"));
        }
        // Unknown is not zero: any unknown price means no saving can be shown.
        use crate::model::Price::{self, Unknown};
        let k = |x: f64| Price::from_dollars(x);
        for (old, new, price) in [
            (Unknown, k(1.0), k(1.0)),
            (k(9.0), Unknown, k(1.0)),
            (k(9.0), k(1.0), Unknown),
        ] {
            assert_eq!(
                Saving::new(old, new, price, 300),
                None,
                "{old} {new} {price}"
            );
        }
    }

    #[test]
    fn every_node_worth_it_is_replaced_in_one_tick_whatever_the_budget() {
        // Three busy on-demand g5.xlarge nodes (one 1-GPU pod each: nothing packs) in a pool
        // that wants all spot, and the default budget of one disruption at once: three spot
        // replacements launch now. The old nodes keep serving; only their drains, once the
        // replacements serve, are bounded by the budget.
        let mut b = snapshot().group(with_g5_xlarge(group("g", "llm")));
        for id in ["i-1", "i-2", "i-3"] {
            b = b
                .instance(instance(id, "g", "g5.xlarge", CapacityType::OnDemand))
                .node(
                    node(id, "llm", CapacityType::OnDemand).pod(running_pod(&format!("{id}-w"), 1)),
                );
        }
        let snap = b.build();
        let mut pool = pool_cfg("llm");
        pool.capacity.spot_share = crate::config::Share::new(1.0).unwrap();
        let cfg = config(vec![pool]);
        assert_eq!(cfg.pools[0].disruption.budget.max_disrupted_at_once, 1);
        let p = plan(&snap, &cfg, &History::default(), T0);
        let replaced: Vec<_> = p
            .actions
            .iter()
            .filter(|a| a.reason().is_some_and(|r| r.code() == "consolidate"))
            .map(|a| a.to_string())
            .collect();
        assert_eq!(replaced.len(), 3, "{:?}\n{:#?}", p.actions, p.decisions);
        assert!(
            replaced.iter().all(|a| a.contains("g5.xlarge/spot")),
            "{replaced:?}"
        );
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
