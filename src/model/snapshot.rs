use super::{
    Instance, InstanceId, LifecycleState, Node, NodeGroup, NodeGroupId, OfferingKey, PendingPod,
    PoolName, Timestamp,
};

/// A map with non-string keys as a JSON list of `[key, value]` pairs (JSON object keys must be
/// strings, so `gpupool plan --history` could not read the history the controller wrote).
mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything the planner knows about the world at one tick. Built by the controller from the
/// provider, the Kubernetes cache and the signals; also read from a JSON file by `gpupool plan`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub taken_at: Timestamp,
    #[serde(default)]
    pub groups: Vec<NodeGroup>,
    #[serde(default)]
    pub instances: Vec<Instance>,
    /// Kubernetes nodes (or VMs in VM-only mode) of managed pools, linked to instances.
    #[serde(default)]
    pub nodes: Vec<Node>,
    /// Unschedulable pods that request GPU resources (Kubernetes mode).
    #[serde(default)]
    pub pending_pods: Vec<PendingPod>,
    /// Signal-driven demand per pool (queue metrics, schedules, forecast).
    #[serde(default)]
    pub demand: BTreeMap<PoolName, PoolDemand>,
    /// Groups whose instances could not be listed this tick and are shown as last observed
    /// (at the given time). Good enough not to launch the same capacity twice; never a reason
    /// to remove any: their pools hold scale-down.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stale_groups: BTreeMap<NodeGroupId, Timestamp>,
    /// How current the cluster cache behind `nodes` and `pending_pods` is. While a watch is
    /// relisting after an error the cache may miss pods bound or nodes added meanwhile: good
    /// enough to add capacity, never a reason to remove any (every pool holds scale-down).
    #[serde(default, skip_serializing_if = "CacheState::is_current")]
    pub cache: CacheState,
    /// The scheduler's last word on each pending pod (`namespace/name` → the message of its
    /// `PodScheduled=False, reason Unschedulable` condition), where it gave one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scheduler_messages: BTreeMap<String, String>,
}

/// The state of the cluster watches behind a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum CacheState {
    /// Every watch has listed and streams without error since.
    #[default]
    Current,
    /// A watch failed at `since` (first seen by the controller) and has not listed again yet.
    Relisting {
        since: Timestamp,
        resources: Vec<WatchedResource>,
    },
}

impl CacheState {
    pub fn is_current(&self) -> bool {
        matches!(self, CacheState::Current)
    }
}

/// A resource kind gpupool keeps a watch cache of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WatchedResource {
    Pods,
    Nodes,
}

impl WatchedResource {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchedResource::Pods => "pods",
            WatchedResource::Nodes => "nodes",
        }
    }
}

impl Snapshot {
    pub fn group(&self, id: &NodeGroupId) -> Option<&NodeGroup> {
        self.groups.iter().find(|g| &g.id == id)
    }
    pub fn instances_of<'a>(
        &'a self,
        group: &'a NodeGroupId,
    ) -> impl Iterator<Item = &'a Instance> {
        self.instances.iter().filter(move |i| &i.group == group)
    }
    pub fn node_of(&self, instance: &InstanceId) -> Option<&Node> {
        self.nodes.iter().find(|n| &n.instance == instance)
    }
    /// Instances that count as capacity now or soon (not warm, not leaving).
    pub fn live_instances_of<'a>(
        &'a self,
        group: &'a NodeGroupId,
    ) -> impl Iterator<Item = &'a Instance> {
        self.instances_of(group).filter(|i| {
            matches!(
                i.state,
                LifecycleState::Launching | LifecycleState::Starting | LifecycleState::Ready
            )
        })
    }
}

/// One reading of one demand signal, as the controller saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalReading {
    /// The signal's name from config (`prometheus:waiting`, `cron:business-hours`).
    pub name: String,
    /// The raw metric value, if there is one.
    pub value: Option<f64>,
    /// Replicas this signal asks for (KEDA arithmetic already applied); `None` when missing.
    pub replicas: Option<u32>,
    /// Missing, stale, NaN, empty or errored: the planner must not scale down on it.
    pub stale: bool,
    /// When the value was observed (the metric's own timestamp when it has one).
    pub observed_at: Option<Timestamp>,
}

/// Demand for one pool from its signals (the largest wins, as with KEDA triggers).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolDemand {
    /// Replicas wanted now: the max over fresh signals. `None` when the pool has no signals or
    /// all of them are stale.
    pub replicas_now: Option<u32>,
    /// Replicas forecast to be wanted within the cold-start horizon (≥ `replicas_now` when set).
    #[serde(default)]
    pub replicas_forecast: Option<u32>,
    /// Each signal's reading, for reasons and metrics.
    #[serde(default)]
    pub readings: Vec<SignalReading>,
    /// Fraction of recent requests that met the pool's `slo.queue_wait_s`, as measured
    /// (`slo.attainment_query` live, the simulated queue waits in the simulator). `None`:
    /// unknown — no SLO, no query, no answer, or too few requests to tell.
    #[serde(default)]
    pub slo_attainment: Option<super::Attainment>,
    /// The longest request recently served, as measured (`disruption.request_duration_query`
    /// live, the simulated completions in the simulator). `None`: unknown — no query, no
    /// answer, nothing completed yet, or a value that is not a plausible duration. A spot
    /// drain serves on until this (plus a tick) before the reclaim only when it is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_duration: Option<RequestDuration>,
}

/// The longest request served over the last `window_s` seconds, as measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestDuration {
    pub longest_s: f64,
    pub window_s: u64,
}

impl RequestDuration {
    /// Longest request duration taken as plausible: an hour. A longer answer is more likely
    /// a broken query (a sum, a counter, a histogram's `+Inf`) than a request, and serving on
    /// for it would never fit a spot notice anyway.
    pub const MAX_S: f64 = 3600.0;

    /// A measurement, when `longest_s` is a duration one can act on: finite, not negative
    /// and at most [`Self::MAX_S`]. Anything else is unknown (`None`), never zero.
    pub fn measured(longest_s: f64, window_s: u64) -> Option<RequestDuration> {
        (longest_s.is_finite() && (0.0..=Self::MAX_S).contains(&longest_s)).then_some(
            RequestDuration {
                longest_s,
                window_s,
            },
        )
    }
}

impl PoolDemand {
    /// Names of signals that are missing or stale: while any is, scale-down holds.
    pub fn stale_signals(&self) -> Vec<&str> {
        self.readings
            .iter()
            .filter(|r| r.stale)
            .map(|r| r.name.as_str())
            .collect()
    }
}

/// What the controller remembers between ticks, for the planner. Updated only through the
/// pure `record_*` methods, so a replayed sequence of plans and events gives the same history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Since when each instance has been unneeded (scale-down waits `unneeded_time_s`).
    #[serde(default)]
    pub unneeded_since: BTreeMap<InstanceId, Timestamp>,
    /// Voluntary disruptions (drain / scale-down / replace) for the per-window budget.
    #[serde(default)]
    pub disruptions: Vec<DisruptionRecord>,
    /// Offerings that failed to launch recently, skipped until `until`. (In JSON a list of
    /// `[offering, backoff]` pairs: an offering is not a string.)
    #[serde(default, with = "pairs")]
    pub backoff: BTreeMap<OfferingKey, Backoff>,
    /// Extra hourly interruption risk learned from interruptions seen per offering.
    #[serde(default, with = "pairs")]
    pub risk_boost: BTreeMap<OfferingKey, f64>,
    /// Spot offerings whose instance got an interruption warning, until when they are kept
    /// aside ([`SPOT_INTERRUPTED_ASIDE_S`] after the warning).
    #[serde(default, with = "pairs", skip_serializing_if = "BTreeMap::is_empty")]
    pub interrupted_until: BTreeMap<OfferingKey, Timestamp>,
    /// Groups whose desired count is above the instances they list, since when.
    #[serde(default)]
    pub unbacked_since: BTreeMap<NodeGroupId, Timestamp>,
    /// Spot instances the cloud recommended rebalancing away from, since when: with
    /// `disruption.rebalance: prelaunch` they stop counting as capacity (the replacement is
    /// launched) and are drained once the replacement serves.
    #[serde(default)]
    pub at_risk: BTreeMap<InstanceId, Timestamp>,
    /// Voluntary drains given up (evictions refused past the deadline), since when: the node
    /// is not chosen for another voluntary disruption for the larger of
    /// `disruption.unneeded_time_s` and `drain_timeout_s`.
    #[serde(default)]
    pub drain_abandoned: BTreeMap<InstanceId, Timestamp>,
    /// Last scale-up per pool (scale-down waits a cool-down after it).
    #[serde(default)]
    pub last_scale_up: BTreeMap<PoolName, Timestamp>,
    /// Last time each warm pool was wanted at (at least) its current size: it shrinks only
    /// `unneeded_time_s` after that, because every regrowth launches and warms instances again.
    #[serde(default)]
    pub warm_needed_at: BTreeMap<NodeGroupId, Timestamp>,
    /// Pending pods (`namespace/name`) that fit the free room of a serving node by every
    /// constraint gpupool models: which node's instance, and since when.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fits_serving: BTreeMap<String, (InstanceId, Timestamp)>,
    /// Pending pods the scheduler kept off a node that fits them by gpupool's model: no node
    /// is launched for them until `until` (`planner::rejects`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scheduler_rejects: BTreeMap<String, Rejection>,
    /// Per pool with an `slo`: what its headroom learner has learnt (`planner::headroom`).
    #[serde(default)]
    pub slo: BTreeMap<PoolName, super::SloLearner>,
}

/// A pod the scheduler rejects for a constraint gpupool does not model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// The node that fits it by gpupool's model and did not receive it.
    pub node: String,
    /// The scheduler's message.
    pub message: String,
    pub at: Timestamp,
    /// No launch for the pod before this.
    pub until: Timestamp,
    /// Rejections in a row (the backoff doubles with each).
    pub count: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DisruptionRecord {
    pub at: Timestamp,
    pub pool: PoolName,
    pub instance: InstanceId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    pub until: Timestamp,
    pub failures: u32,
    pub last_error: String,
    /// When the cloud reported the newest failure counted here (a failed scaling activity's
    /// start, a stuck VM's error; the call's time for an immediate error). The same failure
    /// seen again — every tick until it is taken back — is not counted twice, and only an
    /// instance launched after it that becomes Ready ends the backoff.
    #[serde(default)]
    pub last_failure_at: Option<Timestamp>,
}

/// Base and cap of the exponential launch-failure backoff (Cluster Autoscaler starts at 5 min
/// and caps at 30 min, `InitialNodeGroupBackoffDuration`/`MaxNodeGroupBackoffDuration`;
/// Karpenter keeps an unavailable offering aside for 3 min. gpupool starts lower because it
/// falls back per offering, not per node group).
pub const BACKOFF_BASE_S: f64 = 60.0;
pub const BACKOFF_MAX_S: f64 = 1800.0;
/// A failure this long after the previous one starts the doubling over (Cluster Autoscaler's
/// `NodeGroupBackoffResetTimeout` is 3 h).
pub const BACKOFF_RESET_S: f64 = 3.0 * 3600.0;
/// How much one observed interruption raises an offering's hourly risk, and how fast the
/// boost fades (halves every `RISK_BOOST_HALF_LIFE_S`).
pub const RISK_BOOST_PER_INTERRUPTION: f64 = 0.05;
pub const RISK_BOOST_HALF_LIFE_S: f64 = 3600.0;
/// How long a spot offering (instance type, zone) is kept aside after one of its instances
/// got an interruption warning: the cloud is reclaiming that capacity, so a replacement
/// launched into it now would most likely fail — late, as a failed scaling activity or a VM
/// stuck creating — or be reclaimed in turn. Karpenter does the same: its interruption
/// controller marks the offering unavailable in its unavailable-offerings cache on every
/// `SpotInterruptionKind` message (aws/karpenter-provider-aws, `pkg/controllers/interruption/
/// controller.go`, "Mark the offering as unavailable in the ICE cache since we got a spot
/// interruption warning"), whose entries expire after 3 minutes (its log line
/// `"unavailable-offerings-ttl": "3m0s"`). The same three minutes here; a launch-failure
/// backoff of the offering, if any, is unaffected and may last longer.
pub const SPOT_INTERRUPTED_ASIDE_S: f64 = 180.0;

impl History {
    /// The instances the plan found unneeded: keep since when each has been (the scale-down
    /// timer), forget the others — an instance needed again starts over.
    pub fn record_unneeded(&mut self, unneeded: &[InstanceId], now: Timestamp) {
        let unneeded: std::collections::BTreeSet<&InstanceId> = unneeded.iter().collect();
        self.unneeded_since.retain(|id, _| unneeded.contains(id));
        for id in unneeded {
            self.unneeded_since.entry(id.clone()).or_insert(now);
        }
    }

    /// The groups whose warm pool the plan still needs, as of `now`.
    pub fn record_warm_needed(&mut self, groups: &[NodeGroupId], now: Timestamp) {
        for g in groups {
            self.warm_needed_at.insert(g.clone(), now);
        }
    }

    /// The pods the plan found fitting a serving node: keep since when each has fit the same
    /// node (a pod that moves to another node starts over), forget the others.
    pub fn record_fits(&mut self, fits: &[(String, InstanceId)], now: Timestamp) {
        let mut next = BTreeMap::new();
        for (pod, inst) in fits {
            let since = match self.fits_serving.get(pod) {
                Some((was, since)) if was == inst => *since,
                _ => now,
            };
            next.insert(pod.clone(), (inst.clone(), since));
        }
        self.fits_serving = next;
    }

    /// Keep the plan's new rejections, and forget pods that are no longer pending (bound,
    /// deleted): their backoff ends with them.
    pub fn record_scheduler_rejects(
        &mut self,
        new: &[(String, Rejection)],
        pending: &[super::PendingPod],
    ) {
        for (pod, r) in new {
            self.scheduler_rejects.insert(pod.clone(), r.clone());
        }
        let live: std::collections::BTreeSet<String> = pending.iter().map(|p| p.key()).collect();
        self.scheduler_rejects.retain(|k, _| live.contains(k));
    }

    /// An offering failed to launch (an immediate error from the call at `now`): back off
    /// exponentially (60 s, 120 s, … 30 min).
    pub fn record_launch_failure(&mut self, offering: &OfferingKey, error: &str, now: Timestamp) {
        self.record_launch_failure_at(offering, error, now, now);
    }

    /// The cloud reported at `at` that a launch of `offering` failed; seen at `now`. A failure
    /// already counted (same or older `at`) changes nothing, so a failure reported on every tick
    /// until it is taken back escalates the backoff once. The backoff runs from `now`: from when
    /// gpupool learnt of it, since the cloud may report it minutes late.
    pub fn record_launch_failure_at(
        &mut self,
        offering: &OfferingKey,
        error: &str,
        at: Timestamp,
        now: Timestamp,
    ) -> bool {
        let prev = self.backoff.get(offering);
        if prev
            .and_then(|b| b.last_failure_at)
            .is_some_and(|t| t >= at)
        {
            return false;
        }
        let failures = match prev {
            Some(b)
                if b.last_failure_at
                    .is_none_or(|t| at.secs_since(t) < BACKOFF_RESET_S) =>
            {
                b.failures.saturating_add(1)
            }
            _ => 1,
        };
        let secs = (BACKOFF_BASE_S * 2f64.powi(failures.min(32) as i32 - 1)).min(BACKOFF_MAX_S);
        self.backoff.insert(
            offering.clone(),
            Backoff {
                until: now.plus_secs(secs),
                failures,
                last_error: error.to_owned(),
                last_failure_at: Some(at),
            },
        );
        true
    }

    /// Instances serving now end the backoff of their offering when they were launched after its
    /// newest failure: the cloud has capacity again. An accepted API call never does — the
    /// clouds accept launches they then fail to fulfil.
    pub fn record_ready(&mut self, instances: &[Instance]) {
        if self.backoff.is_empty() {
            return;
        }
        for i in instances {
            if i.state != LifecycleState::Ready {
                continue;
            }
            let key = OfferingKey {
                instance_type: i.instance_type.clone(),
                capacity_type: i.capacity_type,
                zone: i.zone.clone(),
            };
            if let Some(b) = self.backoff.get(&key)
                && b.last_failure_at.is_none_or(|t| i.launched_at > t)
            {
                self.backoff.remove(&key);
            }
        }
    }

    /// A voluntary drain of this instance was given up at `now`.
    pub fn record_drain_abandoned(&mut self, instance: &InstanceId, now: Timestamp) {
        self.drain_abandoned.insert(instance.clone(), now);
    }

    /// The cloud recommended rebalancing away from this instance (kept from the first one).
    pub fn record_at_risk(&mut self, instance: &InstanceId, now: Timestamp) {
        self.at_risk.entry(instance.clone()).or_insert(now);
    }

    /// Forget per-instance bookkeeping of instances the cloud no longer lists.
    pub fn forget_gone(&mut self, instances: &[Instance]) {
        if self.at_risk.is_empty() && self.drain_abandoned.is_empty() {
            return;
        }
        let listed: std::collections::BTreeSet<&InstanceId> =
            instances.iter().map(|i| &i.id).collect();
        self.at_risk.retain(|id, _| listed.contains(id));
        self.drain_abandoned.retain(|id, _| listed.contains(id));
    }

    /// Since when each group's desired count has been above the instances it lists (launches
    /// requested, nothing there yet): a launch showing neither progress nor an error for
    /// `scale_up.launch_timeout_s` is taken for failed.
    pub fn record_unbacked(&mut self, snapshot: &Snapshot, now: Timestamp) {
        let mut unbacked = BTreeMap::new();
        for g in &snapshot.groups {
            let listed = snapshot
                .instances_of(&g.id)
                .filter(|i| i.state.counts_in_desired())
                .count();
            if (g.desired as usize) > listed {
                let since = self.unbacked_since.get(&g.id).copied().unwrap_or(now);
                unbacked.insert(g.id.clone(), since);
            }
        }
        self.unbacked_since = unbacked;
    }

    pub fn in_backoff(&self, offering: &OfferingKey, now: Timestamp) -> Option<&Backoff> {
        self.backoff.get(offering).filter(|b| b.until > now)
    }

    /// A spot instance of this offering was interrupted: raise its learned risk.
    pub fn record_interruption(&mut self, offering: &OfferingKey) {
        *self.risk_boost.entry(offering.clone()).or_default() += RISK_BOOST_PER_INTERRUPTION;
    }

    /// A spot instance of this offering got an interruption warning at `now`: raise its
    /// learned risk and keep the offering aside for [`SPOT_INTERRUPTED_ASIDE_S`], so its
    /// replacement goes to the next offering in the fallback order at once instead of into
    /// the capacity being reclaimed (see the constant for the source).
    pub fn record_spot_interruption(&mut self, offering: &OfferingKey, now: Timestamp) {
        self.record_interruption(offering);
        let until = now.plus_secs(SPOT_INTERRUPTED_ASIDE_S);
        let e = self
            .interrupted_until
            .entry(offering.clone())
            .or_insert(until);
        *e = (*e).max(until);
    }

    /// Until when this offering is kept aside after an interruption warning, if it is now.
    pub fn interrupted_aside(&self, offering: &OfferingKey, now: Timestamp) -> Option<Timestamp> {
        self.interrupted_until
            .get(offering)
            .copied()
            .filter(|until| *until > now)
    }

    /// Let learned risk fade and expired bookkeeping go, so history stays bounded.
    pub fn decay(&mut self, now: Timestamp, elapsed_s: f64, budget_window_s: f64) {
        let f = 0.5f64.powf(elapsed_s / RISK_BOOST_HALF_LIFE_S);
        self.risk_boost.retain(|_, v| {
            *v *= f;
            *v > 1e-4
        });
        self.interrupted_until.retain(|_, until| *until > now);
        // Kept past `until` so a repeated failure escalates; forgotten once a new failure
        // would start over anyway.
        self.backoff.retain(|_, b| {
            b.last_failure_at
                .is_some_and(|t| now.secs_since(t) < BACKOFF_RESET_S)
                || now.secs_since(b.until) < BACKOFF_MAX_S
        });
        self.disruptions
            .retain(|d| now.secs_since(d.at) <= budget_window_s);
    }

    pub fn record_disruption(&mut self, pool: &PoolName, instance: &InstanceId, now: Timestamp) {
        self.disruptions.push(DisruptionRecord {
            at: now,
            pool: pool.clone(),
            instance: instance.clone(),
        });
    }

    pub fn disruptions_in_window(&self, pool: &PoolName, now: Timestamp, window_s: f64) -> usize {
        self.disruptions
            .iter()
            .filter(|d| &d.pool == pool && now.secs_since(d.at) < window_s)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CapacityType, InstanceTypeName, Zone};

    fn key() -> OfferingKey {
        OfferingKey {
            instance_type: InstanceTypeName::from("g5.xlarge"),
            capacity_type: CapacityType::Spot,
            zone: Zone::from("us-east-1a"),
        }
    }

    #[test]
    fn the_unneeded_timer_keeps_its_start_and_restarts_after_a_needed_tick() {
        let mut h = History::default();
        let t = Timestamp::from_secs;
        let (a, b) = (InstanceId::new("i-a"), InstanceId::new("i-b"));
        h.record_unneeded(std::slice::from_ref(&a), t(0));
        h.record_unneeded(&[a.clone(), b.clone()], t(10));
        assert_eq!(h.unneeded_since[&a], t(0));
        assert_eq!(h.unneeded_since[&b], t(10));
        h.record_unneeded(std::slice::from_ref(&b), t(20));
        assert!(
            !h.unneeded_since.contains_key(&a),
            "needed again: forgotten"
        );
        h.record_unneeded(&[a.clone(), b.clone()], t(30));
        assert_eq!(h.unneeded_since[&a], t(30), "starts over");
        assert_eq!(h.unneeded_since[&b], t(10));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut h = History::default();
        let t = Timestamp::from_secs;
        h.record_launch_failure(&key(), "ICE", t(0));
        assert_eq!(h.backoff[&key()].until, t(60));
        h.record_launch_failure(&key(), "ICE", t(1));
        assert_eq!(h.backoff[&key()].until, t(121));
        for s in 2..12 {
            h.record_launch_failure(&key(), "ICE", t(s));
        }
        assert_eq!(h.backoff[&key()].until, t(11 + 1800));
        assert!(h.in_backoff(&key(), t(1810)).is_some());
        assert!(h.in_backoff(&key(), t(1811)).is_none());
    }

    #[test]
    fn a_late_failure_seen_every_tick_counts_once_and_a_later_one_escalates() {
        let mut h = History::default();
        let at = Timestamp::from_secs(100);
        assert!(h.record_launch_failure_at(&key(), "ICE", at, Timestamp::from_secs(130)));
        // Reported again on the next ticks until it is taken back: no escalation.
        for t in [140, 150, 160] {
            assert!(!h.record_launch_failure_at(&key(), "ICE", at, Timestamp::from_secs(t)));
        }
        let b = &h.backoff[&key()];
        assert_eq!((b.failures, b.until), (1, Timestamp::from_secs(190)));
        // Retried after the backoff, failed again: 120 s from when it was seen.
        h.record_launch_failure_at(
            &key(),
            "ICE",
            Timestamp::from_secs(200),
            Timestamp::from_secs(220),
        );
        let b = &h.backoff[&key()];
        assert_eq!((b.failures, b.until), (2, Timestamp::from_secs(340)));
        // A failure more than 3 h after the previous one starts over.
        let later = Timestamp::from_secs(200 + 3 * 3600 + 1);
        h.record_launch_failure_at(&key(), "ICE", later, later);
        assert_eq!(h.backoff[&key()].failures, 1);
    }

    #[test]
    fn only_an_instance_launched_after_the_failure_and_ready_ends_the_backoff() {
        let mut h = History::default();
        h.record_launch_failure_at(
            &key(),
            "ICE",
            Timestamp::from_secs(100),
            Timestamp::from_secs(100),
        );
        let inst = |launched: i64, state| Instance {
            id: InstanceId::from("i-1"),
            group: NodeGroupId::from("g"),
            instance_type: key().instance_type,
            capacity_type: key().capacity_type,
            zone: key().zone,
            state,
            launched_at: Timestamp::from_secs(launched),
            model_cache: None,
            provider_id: None,
            protected_from_scale_in: false,
            awaiting_lifecycle_hook: false,
            private_ip: None,
            drain_deadline: None,
        };
        h.record_ready(&[inst(50, LifecycleState::Ready)]);
        assert!(
            h.backoff.contains_key(&key()),
            "launched before the failure"
        );
        h.record_ready(&[inst(150, LifecycleState::Launching)]);
        assert!(h.backoff.contains_key(&key()), "not serving yet");
        h.record_ready(&[inst(150, LifecycleState::Ready)]);
        assert!(h.backoff.is_empty());
    }

    #[test]
    fn history_with_backoffs_round_trips_through_json() {
        let mut h = History::default();
        h.record_launch_failure(&key(), "ICE", Timestamp::from_secs(5));
        h.record_interruption(&key());
        let json = serde_json::to_string(&h).unwrap();
        let back: History = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn an_interruption_warning_keeps_the_offering_aside_three_minutes_and_raises_its_risk() {
        let mut h = History::default();
        let t = Timestamp::from_secs;
        h.record_spot_interruption(&key(), t(100));
        assert_eq!(h.interrupted_aside(&key(), t(100)), Some(t(280)));
        assert!(h.risk_boost[&key()] > 0.0);
        // A second warning later extends it; an earlier one never shortens it.
        h.record_spot_interruption(&key(), t(200));
        h.record_spot_interruption(&key(), t(150));
        assert_eq!(h.interrupted_aside(&key(), t(379)), Some(t(380)));
        assert_eq!(h.interrupted_aside(&key(), t(380)), None);
        // Not a launch failure: no backoff escalates, and expired entries are forgotten.
        assert!(h.backoff.is_empty());
        h.decay(t(381), 1.0, 3600.0);
        assert!(h.interrupted_until.is_empty());
    }

    #[test]
    fn risk_boost_fades() {
        let mut h = History::default();
        h.record_interruption(&key());
        h.decay(Timestamp::from_secs(3600), 3600.0, 3600.0);
        assert!((h.risk_boost[&key()] - 0.025).abs() < 1e-9);
    }
}
