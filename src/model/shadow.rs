//! Shadow mode's ledger: what gpupool would have done, next to what the groups' current
//! manager (Cluster Autoscaler, an ASG policy, a person) actually did, and what each fleet
//! costs. Pure: the controller feeds it one observation and one plan per tick.
//!
//! "What actually happened" is read from consecutive observations of the managed groups:
//! desired capacity before and after, instances that appeared and instances that went. In
//! shadow mode gpupool makes no mutating call, so every change is someone else's.

use super::{
    Action, Instance, InstanceId, LifecycleState, Money, NodeGroupId, Plan, PoolName, Snapshot,
    Timestamp,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Group changes kept per pool (the newest), so the ledger stays bounded.
pub const MAX_CHANGES_PER_POOL: usize = 20;

/// A would-be action's kind, for counts and the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowAction {
    ScaleUp,
    StartWarm,
    SetWarmPool,
    Drain,
    ScaleDown,
    ReleaseUnfulfilled,
    CompleteWarmup,
}

impl ShadowAction {
    pub fn of(a: &Action) -> Self {
        match a {
            Action::ScaleUp { .. } => ShadowAction::ScaleUp,
            Action::StartWarm { .. } => ShadowAction::StartWarm,
            Action::SetWarmPool { .. } => ShadowAction::SetWarmPool,
            Action::Drain { .. } => ShadowAction::Drain,
            Action::ScaleDown { .. } => ShadowAction::ScaleDown,
            Action::ReleaseUnfulfilled { .. } => ShadowAction::ReleaseUnfulfilled,
            Action::CompleteWarmup { .. } => ShadowAction::CompleteWarmup,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowAction::ScaleUp => "scale_up",
            ShadowAction::StartWarm => "start_warm",
            ShadowAction::SetWarmPool => "set_warm_pool",
            ShadowAction::Drain => "drain",
            ShadowAction::ScaleDown => "scale_down",
            ShadowAction::ReleaseUnfulfilled => "release_unfulfilled",
            ShadowAction::CompleteWarmup => "complete_warmup",
        }
    }
}

/// One group as last observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Seen {
    desired: u32,
    instances: BTreeSet<InstanceId>,
}

/// A change to a managed group between two observations, made by whoever manages it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupChange {
    pub at: Timestamp,
    pub group: NodeGroupId,
    pub desired_before: u32,
    pub desired_after: u32,
    pub added: Vec<InstanceId>,
    pub removed: Vec<InstanceId>,
}

/// One pool in shadow mode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowPool {
    /// Actions the last plan would have taken.
    pub would_now: Vec<Action>,
    /// Every would-be action since the start, by kind (a wish the real manager does not
    /// fulfil is planned again, and counted again, every tick).
    pub would_total: BTreeMap<ShadowAction, u64>,
    /// Instances that appeared in / left the pool's groups since the start (someone else's
    /// doing in shadow mode).
    pub observed_added: u64,
    pub observed_removed: u64,
    /// The newest group changes (at most [`MAX_CHANGES_PER_POOL`]).
    pub changes: Vec<GroupChange>,
    /// What the pool's live instances cost now, and what the fleet gpupool would have after
    /// the last plan would cost.
    pub actual_cost_per_hour: Money,
    pub would_cost_per_hour: Money,
    /// `would_cost_per_hour − actual_cost_per_hour`: negative when gpupool would be cheaper.
    pub cost_difference_per_hour: Money,
    /// The difference integrated over the ticks observed (dollars), the cost gpupool would
    /// have saved (negative) or added (positive) so far.
    pub cost_difference_total: Money,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowLedger {
    pub pools: BTreeMap<PoolName, ShadowPool>,
    seen: BTreeMap<NodeGroupId, Seen>,
    last_at: Option<Timestamp>,
}

/// What a live instance costs per hour: its group's price for its offering (unknown
/// offerings, e.g. a type the group no longer lists, count nothing rather than a guess).
pub fn live_cost(snapshot: &Snapshot, pool: &PoolName) -> Money {
    snapshot
        .instances
        .iter()
        .filter(|i| is_live(i))
        .filter_map(|i| {
            let g = snapshot.group(&i.group).filter(|g| &g.pool == pool)?;
            g.offerings
                .iter()
                .find(|o| {
                    o.instance_type.name == i.instance_type
                        && o.capacity_type == i.capacity_type
                        && o.zone == i.zone
                })
                // The known prices only: an unpriced instance is left out, not counted as $0
                // (the plan's summary counts it in `unpriced_nodes`).
                .and_then(|o| o.price_per_hour.known())
        })
        .sum()
}

fn is_live(i: &Instance) -> bool {
    matches!(
        i.state,
        LifecycleState::Launching
            | LifecycleState::Starting
            | LifecycleState::Ready
            | LifecycleState::Draining
    )
}

impl ShadowLedger {
    /// Record one tick: the observation, and the plan gpupool did not execute.
    pub fn record(&mut self, snapshot: &Snapshot, plan: &Plan, now: Timestamp) -> Vec<Action> {
        let elapsed_h = self
            .last_at
            .map_or(0.0, |t| (now.secs_since(t) / 3600.0).max(0.0));
        self.last_at = Some(now);
        self.observe_groups(snapshot, now);
        for s in &plan.pools {
            let entry = self.pools.entry(s.pool.clone()).or_default();
            // Integrate the difference as it stood since the previous tick.
            entry.cost_difference_total += entry.cost_difference_per_hour.scale(elapsed_h);
            entry.actual_cost_per_hour = live_cost(snapshot, &s.pool);
            entry.would_cost_per_hour = s.cost_per_hour;
            entry.cost_difference_per_hour = s.cost_per_hour - entry.actual_cost_per_hour;
            entry.would_now = plan
                .actions
                .iter()
                .filter(|a| a.pool() == &s.pool)
                .cloned()
                .collect();
            for a in &entry.would_now {
                *entry.would_total.entry(ShadowAction::of(a)).or_default() += 1;
            }
        }
        plan.actions.clone()
    }

    fn observe_groups(&mut self, snapshot: &Snapshot, now: Timestamp) {
        let mut next: BTreeMap<NodeGroupId, Seen> = BTreeMap::new();
        for g in &snapshot.groups {
            let instances: BTreeSet<InstanceId> = snapshot
                .instances_of(&g.id)
                .filter(|i| is_live(i))
                .map(|i| i.id.clone())
                .collect();
            let seen = Seen {
                desired: g.desired,
                instances,
            };
            if let Some(before) = self.seen.get(&g.id)
                && before != &seen
            {
                let change = GroupChange {
                    at: now,
                    group: g.id.clone(),
                    desired_before: before.desired,
                    desired_after: seen.desired,
                    added: seen
                        .instances
                        .difference(&before.instances)
                        .cloned()
                        .collect(),
                    removed: before
                        .instances
                        .difference(&seen.instances)
                        .cloned()
                        .collect(),
                };
                let p = self.pools.entry(g.pool.clone()).or_default();
                p.observed_added += change.added.len() as u64;
                p.observed_removed += change.removed.len() as u64;
                p.changes.push(change);
                if p.changes.len() > MAX_CHANGES_PER_POOL {
                    p.changes.remove(0);
                }
            }
            next.insert(g.id.clone(), seen);
        }
        self.seen = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CapacityType, PoolSummary};
    use crate::planner::fixtures::*;

    fn spot(id: &str) -> Instance {
        instance(id, "g5-spot", "g5.xlarge", CapacityType::Spot).build()
    }

    #[test]
    fn changes_made_by_someone_else_and_the_cost_difference_are_recorded() {
        let mut ledger = ShadowLedger::default();
        let s1: Snapshot = snapshot()
            .group(g5_spot().desired(0))
            .instance(spot("i-1"))
            .build();
        let one_node = live_cost(&s1, &"llm".into());
        assert!(one_node > Money::ZERO);
        let plan = |cost: Money, actions: Vec<Action>| Plan {
            actions,
            pools: vec![PoolSummary {
                pool: "llm".into(),
                cost_per_hour: cost,
                ..PoolSummary::default()
            }],
            ..Plan::default()
        };
        assert_eq!(
            s1.groups[0].desired, 1,
            "the fixture counts each instance in desired"
        );
        // gpupool would remove the node; the first observation only sets the baseline.
        let drain = Action::ScaleDown {
            pool: "llm".into(),
            group: "g5-spot".into(),
            instances: vec!["i-1".into()],
            reason: crate::model::Reason::Empty,
        };
        ledger.record(
            &s1,
            &plan(Money::ZERO, vec![drain.clone()]),
            Timestamp::from_secs(0),
        );
        let p = &ledger.pools[&PoolName::from("llm")];
        assert!(p.changes.is_empty());
        assert_eq!(p.cost_difference_per_hour, Money::ZERO - one_node);
        assert_eq!(p.would_total[&ShadowAction::ScaleDown], 1);

        // Someone else adds a second node instead; an hour passes.
        let mut s2: Snapshot = snapshot()
            .group(g5_spot().desired(0))
            .instance(spot("i-1"))
            .instance(spot("i-2"))
            .build();
        s2.taken_at = Timestamp::from_secs(3600);
        ledger.record(
            &s2,
            &plan(Money::ZERO, vec![drain]),
            Timestamp::from_secs(3600),
        );
        let p = &ledger.pools[&PoolName::from("llm")];
        assert_eq!(p.changes.len(), 1);
        let c = &p.changes[0];
        assert_eq!((c.desired_before, c.desired_after), (1, 2));
        assert_eq!(c.added, vec![InstanceId::from("i-2")]);
        assert!(c.removed.is_empty());
        assert_eq!((p.observed_added, p.observed_removed), (1, 0));
        assert_eq!(p.actual_cost_per_hour, one_node + one_node);
        // The first hour's difference (one node) is in the total.
        assert_eq!(p.cost_difference_total, Money::ZERO - one_node);
        assert_eq!(p.would_total[&ShadowAction::ScaleDown], 2);
    }
}
