//! Observing the cloud under partial failure: every group is listed on its own, a failed read
//! is retried from a small per-tick budget, and a group that still cannot be read stands in
//! with its last good view for at most [`LAST_GOOD_MAX_AGE_S`] — counted as capacity (so the
//! same capacity is never launched twice) but never used for scale-down (the planner holds
//! its pool's scale-down while any of its groups is stale).
//!
//! Only reads are retried here. A write that failed may still have been applied (a 5xx after
//! the cloud acted, a timeout after the request left): retrying `increase` would launch twice,
//! so a failed action waits for the next tick's fresh view instead.

use super::{Controller, ControllerError, LAST_GOOD_MAX_AGE_S, Observed, error_chain};
use crate::model::{
    Instance, InstanceId, LifecycleState, NodeGroup, NodeGroupId, Snapshot, Timestamp,
};
use gpupool_provider::ProviderError;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Extra attempts at failed *reads* per tick, on top of the SDK's own retries. Bounded so a
/// throttled account is not hammered harder by the controller the more it is throttled: with
/// 30 % throttling and 20 % server errors a read fails all of the SDK's 4 attempts about 4 %
/// of the time, and a tick makes about a dozen reads for two groups, so 4 retries cover a bad
/// tick with room to spare while adding at most 4 calls.
pub const READ_RETRY_BUDGET_PER_TICK: u32 = 4;

/// Retries left in this tick, and how long the tick may have run for one to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryBudget {
    left: u32,
    /// No retry starts once the tick has run this long: against an API that hangs, each retry
    /// would add a whole call timeout and the loop would stop ticking (liveness).
    within: Duration,
}

impl RetryBudget {
    pub fn new(retries: u32, within: Duration) -> Self {
        RetryBudget {
            left: retries,
            within,
        }
    }

    /// Whether a read that failed with `e`, `elapsed` into the tick, is retried now (and the
    /// budget spent). Only errors that can pass on their own are: throttling and transient
    /// (5xx, timeout, connection) errors; a missing object or a bad configuration does not
    /// change by asking again.
    pub fn retry(&mut self, e: &ProviderError, elapsed: Duration) -> bool {
        let retryable = matches!(
            e,
            ProviderError::Throttled { .. } | ProviderError::Transient { .. }
        );
        if retryable && self.left > 0 && elapsed < self.within {
            self.left -= 1;
            true
        } else {
            false
        }
    }

    pub fn left(&self) -> u32 {
        self.left
    }
}

/// The last good view `(at, view)` if it may stand in at `now`.
pub fn stand_in<T>(last: Option<&(Timestamp, T)>, now: Timestamp) -> Option<&(Timestamp, T)> {
    last.filter(|(at, _)| {
        let age = now.secs_since(*at);
        (0.0..=LAST_GOOD_MAX_AGE_S).contains(&age)
    })
}

/// Desired capacity of a group shown from its listing at `at`, with the increases this
/// controller requested since added (capped at the group's max size): that listing predates
/// them, and planning on it as it was would request the same capacity again. Terminations
/// since are not subtracted — over-counting delays a launch by a tick; under-counting doubles
/// one.
pub fn desired_with_requests(
    group: &NodeGroup,
    at: Timestamp,
    increases: &[(Timestamp, u32)],
) -> u32 {
    let since: u32 = increases
        .iter()
        .filter(|(t, _)| *t >= at)
        .fold(0u32, |acc, (_, n)| acc.saturating_add(*n));
    group
        .desired
        .saturating_add(since)
        .min(group.max_size.max(group.desired))
}

impl Controller {
    /// Groups, their instances, and the groups shown from a last good view (with its time).
    pub(super) async fn observe_provider(
        &mut self,
        now: Timestamp,
    ) -> Result<Observed, ControllerError> {
        let mut budget = RetryBudget::new(READ_RETRY_BUDGET_PER_TICK, self.config.tick_interval);
        // Elapsed time only bounds retries (liveness); it is never a planning input.
        let started = gpupool_provider::clock::monotonic();
        let mut stale: BTreeMap<NodeGroupId, Timestamp> = BTreeMap::new();
        let groups = match self.list_groups(&mut budget, started).await {
            Ok(groups) => {
                // Only groups of configured pools are ours to touch.
                let groups: Vec<NodeGroup> = groups
                    .into_iter()
                    .filter(|g| self.config.pool(&g.pool).is_some())
                    .collect();
                self.last_good_groups = groups
                    .iter()
                    .map(|g| (g.id.clone(), (now, g.clone())))
                    .collect();
                groups
            }
            Err(source) => self.groups_from_last_good(source, now, &mut stale)?,
        };
        let mut instances = Vec::new();
        for g in &groups {
            match self.list_instances(&g.id, &mut budget, started).await {
                Ok(list) => {
                    self.last_good.insert(g.id.clone(), (now, list.clone()));
                    instances.extend(list);
                }
                Err(source) => {
                    // One group that cannot be listed does not stop the others: its last
                    // good view stands in while it is recent.
                    let Some((at, list)) = stand_in(self.last_good.get(&g.id), now) else {
                        return Err(ControllerError::ListInstances {
                            group: g.id.clone(),
                            source,
                        });
                    };
                    tracing::warn!(group = %g.id, error = %error_chain(&source), age_s = now.secs_since(*at), "cannot list instances; using the last good listing (scale-down held for its pool)");
                    let at = stale.get(&g.id).map_or(*at, |s| (*s).min(*at));
                    stale.insert(g.id.clone(), at);
                    instances.extend(list.iter().cloned());
                }
            }
        }
        self.last_good
            .retain(|id, _| groups.iter().any(|g| &g.id == id));
        let oldest = now.plus_secs(-LAST_GOOD_MAX_AGE_S);
        for v in self.increases.values_mut() {
            v.retain(|(t, _)| *t >= oldest);
        }
        self.increases.retain(|_, v| !v.is_empty());
        Ok((groups, instances, stale))
    }

    /// The groups' last good views, when `node_groups` failed and every one of them is recent
    /// enough; otherwise the tick holds with `source`.
    fn groups_from_last_good(
        &self,
        source: ProviderError,
        now: Timestamp,
        stale: &mut BTreeMap<NodeGroupId, Timestamp>,
    ) -> Result<Vec<NodeGroup>, ControllerError> {
        let usable = !self.last_good_groups.is_empty()
            && self
                .last_good_groups
                .values()
                .all(|v| stand_in(Some(v), now).is_some());
        if !usable {
            return Err(ControllerError::ListGroups {
                provider: self.provider.name(),
                source,
            });
        }
        tracing::warn!(error = %error_chain(&source), groups = self.last_good_groups.len(), "cannot list node groups; using their last good view (scale-down held, launches counted against it)");
        let mut groups = Vec::with_capacity(self.last_good_groups.len());
        for (id, (at, g)) in &self.last_good_groups {
            let mut g = g.clone();
            let increases = self.increases.get(id).map_or(&[][..], Vec::as_slice);
            g.desired = desired_with_requests(&g, *at, increases);
            stale.insert(id.clone(), *at);
            groups.push(g);
        }
        Ok(groups)
    }

    async fn list_groups(
        &self,
        budget: &mut RetryBudget,
        started: Instant,
    ) -> Result<Vec<NodeGroup>, ProviderError> {
        loop {
            match self.provider.node_groups().await {
                Ok(g) => return Ok(g),
                Err(e) => {
                    if !budget.retry(&e, started.elapsed()) {
                        return Err(e);
                    }
                    tracing::debug!(error = %error_chain(&e), left = budget.left(), "listing node groups failed; retrying within the tick's budget");
                }
            }
        }
    }

    async fn list_instances(
        &self,
        group: &NodeGroupId,
        budget: &mut RetryBudget,
        started: Instant,
    ) -> Result<Vec<Instance>, ProviderError> {
        loop {
            match self.provider.instances(group).await {
                Ok(list) => return Ok(list),
                Err(e) => {
                    if !budget.retry(&e, started.elapsed()) {
                        return Err(e);
                    }
                    tracing::debug!(%group, error = %error_chain(&e), left = budget.left(), "listing instances failed; retrying within the tick's budget");
                }
            }
        }
    }

    /// An increase of `group` by `count` was accepted at `now` (see [`desired_with_requests`]).
    pub(super) fn note_increase(&mut self, group: &NodeGroupId, count: u32, now: Timestamp) {
        self.increases
            .entry(group.clone())
            .or_default()
            .push((now, count));
    }

    /// Overlay what only the controller knows: drains in progress and requested terminations.
    /// What only the controller knows, laid over the observed snapshot before planning.
    pub(super) fn overlay(&mut self, snapshot: &mut Snapshot, now: Timestamp) {
        self.config.pricing.apply(&mut snapshot.groups);
        self.apply_own_state(snapshot);
        self.apply_serving_readiness(snapshot, now);
    }

    fn apply_own_state(&self, snapshot: &mut Snapshot) {
        for inst in &mut snapshot.instances {
            if self.terminating.contains(&inst.id) {
                inst.state = LifecycleState::Terminating;
            } else if self.drains.contains_key(&inst.id)
                && inst.state != LifecycleState::Terminating
            {
                inst.state = LifecycleState::Draining;
            }
        }
        for node in &mut snapshot.nodes {
            if self.drains.contains_key(&node.instance) {
                node.cordoned = true;
            }
        }
    }

    /// An instance the cloud calls running serves only once its node is serving-ready (GPUs
    /// allocatable, model cache warm, health URL answering). Until then it is in flight —
    /// counted once, neither as capacity nor as missing — from the moment the controller first
    /// saw it not serving. Past the pool's `max_provision_time_s` a node that exists is marked
    /// unhealthy (the planner drains and replaces it); an instance with no node at all stays
    /// `Launching` and the planner's stuck-launch rule replaces it.
    fn apply_serving_readiness(&mut self, snapshot: &mut Snapshot, now: Timestamp) {
        use crate::planner::rules::readiness::{NodeSeen, Readiness, readiness};
        let nodes: BTreeMap<InstanceId, NodeSeen> = snapshot
            .nodes
            .iter()
            .map(|n| {
                let seen = NodeSeen {
                    serving_ready: n.serving_ready,
                    unhealthy: n.unhealthy.is_some(),
                };
                (n.instance.clone(), seen)
            })
            .collect();
        let mut not_serving_since = BTreeMap::new();
        let mut mark_unhealthy = Vec::new();
        let mut max_of: BTreeMap<NodeGroupId, Duration> = BTreeMap::new();
        for inst in &mut snapshot.instances {
            let max = *max_of
                .entry(inst.group.clone())
                .or_insert_with(|| self.disruption_of(&inst.group).max_provision_time);
            let since = self.not_serving_since.get(&inst.id).copied();
            match readiness(inst.state, nodes.get(&inst.id).copied(), since, max, now) {
                Readiness::Settled => {}
                Readiness::InFlight { since } => {
                    not_serving_since.insert(inst.id.clone(), since);
                    inst.state = LifecycleState::Launching;
                    inst.launched_at = inst.launched_at.max(since);
                }
                Readiness::TimedOut { since, waited_s } => {
                    not_serving_since.insert(inst.id.clone(), since);
                    mark_unhealthy.push((inst.id.clone(), waited_s));
                }
            }
        }
        self.not_serving_since = not_serving_since;
        for (id, waited) in mark_unhealthy {
            if let Some(n) = snapshot.nodes.iter_mut().find(|n| n.instance == id) {
                n.unhealthy = Some(format!(
                    "not serving-ready {waited} s after the cloud reported the instance running"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Offering;

    fn throttled() -> ProviderError {
        ProviderError::Throttled { retry_after_ms: 0 }
    }

    #[test]
    fn the_budget_retries_only_what_can_pass_and_only_so_often() {
        let transient = || ProviderError::Transient {
            call: "DescribeAutoScalingGroups",
            target: "*".into(),
            source: "500".into(),
        };
        let table: Vec<(ProviderError, bool)> = vec![
            (throttled(), true),
            (transient(), true),
            (ProviderError::NotFound { what: "g".into() }, false),
            (ProviderError::InvalidConfig("x".into()), false),
            (
                ProviderError::QuotaExceeded {
                    what: "vcpu".into(),
                },
                false,
            ),
        ];
        let s = Duration::from_secs;
        for (e, want) in table {
            let mut b = RetryBudget::new(1, s(10));
            assert_eq!(b.retry(&e, s(0)), want, "{e}");
        }
        let mut b = RetryBudget::new(3, s(10));
        assert!(b.retry(&throttled(), s(1)));
        assert!(b.retry(&throttled(), s(9)));
        assert!(!b.retry(&throttled(), s(10)), "the tick ran too long");
        assert_eq!(b.left(), 1);
        assert!(b.retry(&throttled(), s(2)));
        assert!(!b.retry(&throttled(), s(2)), "spent");
        assert_eq!(b.left(), 0);
    }

    #[test]
    fn a_last_good_view_stands_in_only_while_recent() {
        let t = Timestamp::from_secs;
        let table = [
            (None, 100, false),
            (Some(100), 100, true),
            (Some(100), 220, true),
            (Some(100), 221, false),
            // From the future (a clock step back): not trusted.
            (Some(300), 100, false),
        ];
        for (at, now, want) in table {
            let last = at.map(|a| (t(a), ()));
            assert_eq!(
                stand_in(last.as_ref(), t(now)).is_some(),
                want,
                "last good at {at:?}, now {now}"
            );
        }
    }

    #[test]
    fn a_stale_desired_counts_the_increases_requested_since() {
        let t = Timestamp::from_secs;
        let g = NodeGroup {
            id: "a".into(),
            pool: "p".into(),
            offerings: Vec::<Offering>::new(),
            min_size: 0,
            max_size: 5,
            desired: 1,
            labels: Default::default(),
            taints: Vec::new(),
            warm_pool: None,
            activity_in_progress: false,
            unfulfilled: Vec::new(),
        };
        // (listing at, increases (at, count), desired shown)
        type Case = (i64, Vec<(i64, u32)>, u32);
        let table: Vec<Case> = vec![
            (100, vec![], 1),
            // Before the listing: already in its desired.
            (100, vec![(90, 2)], 1),
            (100, vec![(100, 2)], 3),
            (100, vec![(110, 2), (120, 1)], 4),
            // Capped at the group's max size.
            (100, vec![(110, 3), (120, 3)], 5),
            (100, vec![(110, u32::MAX), (120, u32::MAX)], 5),
        ];
        for (at, inc, want) in table {
            let inc: Vec<(Timestamp, u32)> = inc.into_iter().map(|(s, n)| (t(s), n)).collect();
            assert_eq!(desired_with_requests(&g, t(at), &inc), want, "{inc:?}");
        }
    }
}
