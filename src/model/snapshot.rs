use super::{
    Instance, InstanceId, LifecycleState, Node, NodeGroup, NodeGroupId, OfferingKey, PendingPod,
    PoolName, Timestamp,
};
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
    /// Offerings that failed to launch recently, skipped until `until`.
    #[serde(default)]
    pub backoff: BTreeMap<OfferingKey, Backoff>,
    /// Extra hourly interruption risk learned from interruptions seen per offering.
    #[serde(default)]
    pub risk_boost: BTreeMap<OfferingKey, f64>,
    /// Last scale-up per pool (scale-down waits a cool-down after it).
    #[serde(default)]
    pub last_scale_up: BTreeMap<PoolName, Timestamp>,
    /// Last time each warm pool was wanted at (at least) its current size: it shrinks only
    /// `unneeded_time_s` after that, because every regrowth launches and warms instances again.
    #[serde(default)]
    pub warm_needed_at: BTreeMap<NodeGroupId, Timestamp>,
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
}

/// Base and cap of the exponential launch-failure backoff.
pub const BACKOFF_BASE_S: f64 = 60.0;
pub const BACKOFF_MAX_S: f64 = 1800.0;
/// How much one observed interruption raises an offering's hourly risk, and how fast the
/// boost fades (halves every `RISK_BOOST_HALF_LIFE_S`).
pub const RISK_BOOST_PER_INTERRUPTION: f64 = 0.05;
pub const RISK_BOOST_HALF_LIFE_S: f64 = 3600.0;

impl History {
    /// An offering failed to launch: back off exponentially (60 s, 120 s, … 30 min).
    pub fn record_launch_failure(&mut self, offering: &OfferingKey, error: &str, now: Timestamp) {
        let failures = self.backoff.get(offering).map_or(0, |b| b.failures) + 1;
        let secs = (BACKOFF_BASE_S * 2f64.powi(failures as i32 - 1)).min(BACKOFF_MAX_S);
        self.backoff.insert(
            offering.clone(),
            Backoff {
                until: now.plus_secs(secs),
                failures,
                last_error: error.to_owned(),
            },
        );
    }

    /// A launch for the offering succeeded: forget its failures.
    pub fn record_launch_success(&mut self, offering: &OfferingKey) {
        self.backoff.remove(offering);
    }

    pub fn in_backoff(&self, offering: &OfferingKey, now: Timestamp) -> Option<&Backoff> {
        self.backoff.get(offering).filter(|b| b.until > now)
    }

    /// A spot instance of this offering was interrupted: raise its learned risk.
    pub fn record_interruption(&mut self, offering: &OfferingKey) {
        *self.risk_boost.entry(offering.clone()).or_default() += RISK_BOOST_PER_INTERRUPTION;
    }

    /// Let learned risk fade and expired bookkeeping go, so history stays bounded.
    pub fn decay(&mut self, now: Timestamp, elapsed_s: f64, budget_window_s: f64) {
        let f = 0.5f64.powf(elapsed_s / RISK_BOOST_HALF_LIFE_S);
        self.risk_boost.retain(|_, v| {
            *v *= f;
            *v > 1e-4
        });
        self.backoff
            .retain(|_, b| now.secs_since(b.until) < BACKOFF_MAX_S);
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
    fn backoff_doubles_and_caps() {
        let mut h = History::default();
        let t0 = Timestamp::from_secs(0);
        h.record_launch_failure(&key(), "ICE", t0);
        assert_eq!(h.backoff[&key()].until, Timestamp::from_secs(60));
        h.record_launch_failure(&key(), "ICE", t0);
        assert_eq!(h.backoff[&key()].until, Timestamp::from_secs(120));
        for _ in 0..10 {
            h.record_launch_failure(&key(), "ICE", t0);
        }
        assert_eq!(h.backoff[&key()].until, Timestamp::from_secs(1800));
        assert!(h.in_backoff(&key(), Timestamp::from_secs(1799)).is_some());
        assert!(h.in_backoff(&key(), Timestamp::from_secs(1800)).is_none());
        h.record_launch_success(&key());
        assert!(h.backoff.is_empty());
    }

    #[test]
    fn risk_boost_fades() {
        let mut h = History::default();
        h.record_interruption(&key());
        h.decay(Timestamp::from_secs(3600), 3600.0, 3600.0);
        assert!((h.risk_boost[&key()] - 0.025).abs() < 1e-9);
    }
}
