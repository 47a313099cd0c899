//! Controller test doubles, written once for every test:
//! - for integration tests that drive a real provider (moto, the fake Compute API) in VM-only
//!   mode: a serving side on which every Ready instance serves and is idle
//!   ([`ServeEveryReady`]), and a demand source the test sets between ticks ([`FixedDemand`]);
//! - for tests of the shell itself: an in-memory provider ([`MemProvider`]) whose calls are
//!   logged and whose failures the test switches on, a serving side on which every Ready
//!   instance serves and drains take a set number of calls ([`MemCluster`]), and no demand
//!   signals ([`NoDemand`]).

use crate::config::Config;
use crate::controller::{Cluster, ClusterError, ClusterView, DemandSource, DrainProgress};
use crate::model::{
    InFlight, Instance, InstanceId, LifecycleState, Node, NodeGroup, NodeGroupId, PoolDemand,
    PoolName, ProviderEvent, SignalReading, Timestamp,
};
use async_trait::async_trait;
use gpupool_provider::{NodeGroupProvider, ProviderError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// VM-only serving side: every Ready (or draining) instance serves and is idle; drains finish
/// at once and are logged in `drained`.
pub struct ServeEveryReady {
    pool: PoolName,
    drained: Arc<Mutex<Vec<InstanceId>>>,
}

impl ServeEveryReady {
    pub fn new(pool: &str) -> Self {
        ServeEveryReady {
            pool: PoolName::from(pool),
            drained: Arc::default(),
        }
    }

    /// The instances drained so far, in order (shared with the controller's copy).
    pub fn drained(&self) -> Arc<Mutex<Vec<InstanceId>>> {
        self.drained.clone()
    }
}

/// The node of an instance that serves: serving-ready, not cordoned, no pods, `in_flight`
/// requests known, in `pool`. The always-ready clusters of the tests build their views from it.
pub fn serving_node(i: &Instance, pool: &str, in_flight: u32) -> Node {
    Node::vm(i, pool, InFlight::Known(in_flight))
}

#[async_trait]
impl Cluster for ServeEveryReady {
    async fn observe(
        &mut self,
        instances: &[Instance],
        _now: Timestamp,
    ) -> Result<ClusterView, ClusterError> {
        let nodes = instances
            .iter()
            .filter(|i| matches!(i.state, LifecycleState::Ready | LifecycleState::Draining))
            .map(|i| Node {
                idle_since: Some(i.launched_at),
                ..serving_node(i, self.pool.as_str(), 0)
            })
            .collect();
        Ok(ClusterView {
            nodes,
            pending_pods: Vec::new(),
        })
    }

    async fn drain(
        &mut self,
        instance: &Instance,
        _deadline: Timestamp,
        _now: Timestamp,
    ) -> Result<DrainProgress, ClusterError> {
        self.drained.lock().unwrap().push(instance.id.clone());
        Ok(DrainProgress::Drained)
    }
}

/// A fixed, fresh demand of `replicas` for one pool, which the test changes between ticks.
pub struct FixedDemand {
    pool: PoolName,
    replicas: Arc<Mutex<u32>>,
}

impl FixedDemand {
    pub fn new(pool: &str, replicas: Arc<Mutex<u32>>) -> Self {
        FixedDemand {
            pool: PoolName::from(pool),
            replicas,
        }
    }
}

#[async_trait]
impl DemandSource for FixedDemand {
    async fn read(&mut self, _config: &Config, now: Timestamp) -> BTreeMap<PoolName, PoolDemand> {
        let n = *self.replicas.lock().unwrap();
        let reading = SignalReading {
            name: "queue".into(),
            value: Some(f64::from(n)),
            replicas: Some(n),
            stale: false,
            observed_at: Some(now),
        };
        [(
            self.pool.clone(),
            PoolDemand {
                replicas_now: Some(n),
                replicas_forecast: Some(n),
                readings: vec![reading],
                slo_attainment: None,
                request_duration: None,
            },
        )]
        .into()
    }
}

/// The in-memory cloud behind [`MemProvider`]: what it lists, the events it delivers, the
/// calls made to it, and the failures the test switches on.
#[derive(Default)]
pub struct MemWorld {
    pub groups: Vec<NodeGroup>,
    pub instances: Vec<Instance>,
    pub events: Vec<ProviderEvent>,
    pub acked: Vec<String>,
    pub calls: Vec<String>,
    pub fail_observe: bool,
    /// Groups whose instance listing fails (throttled).
    pub fail_instances_of: Vec<NodeGroupId>,
    pub no_capacity_in: Vec<NodeGroupId>,
    /// When set, `increase` also launches that many instances like this one (ids `i-0001`…,
    /// in the increased group, launched at `now`): a cloud that accepts and fulfils at once.
    /// Otherwise only the group's desired size moves, as an ASG's does before its activity.
    pub launch_template: Option<Instance>,
    /// The cloud's clock, for the launch times of `launch_template` instances.
    pub now: Timestamp,
    /// Instances launched from the template so far (their ids count on from it).
    pub launched: u32,
    /// `terminate` removes the instances and lowers the desired size (the cloud acts at
    /// once); otherwise the call is only logged and the instance stays listed until the test
    /// removes it.
    pub terminate_removes: bool,
    /// What `reclaim_refund_window` answers (`None`: releasing is not offered, as on GCP).
    pub refund_window: Option<std::time::Duration>,
    /// `release_to_reclaim` refuses (`InvalidConfig`), as a group at its min size does.
    pub refuse_release: bool,
    /// Instances released to the reclaim and not yet reclaimed, with their marked deadline:
    /// out of every group listing, found by `sweep_released` once overdue.
    pub released: Vec<(InstanceId, Timestamp)>,
    /// `sweep_released` fails (as it does without its IAM permissions).
    pub fail_sweep: bool,
}

/// An in-memory provider over a shared [`MemWorld`].
#[derive(Clone, Default)]
pub struct MemProvider(pub Arc<Mutex<MemWorld>>);

impl MemProvider {
    pub fn w(&self) -> std::sync::MutexGuard<'_, MemWorld> {
        self.0.lock().unwrap()
    }

    /// The mutating calls so far, in order (`increase g 1`, `terminate g i-1`, …).
    pub fn calls(&self) -> Vec<String> {
        self.w().calls.clone()
    }

    pub fn instances(&self) -> Vec<Instance> {
        self.w().instances.clone()
    }

    pub fn set_now(&self, now: Timestamp) {
        self.w().now = now;
    }
}

#[async_trait]
impl NodeGroupProvider for MemProvider {
    fn name(&self) -> &'static str {
        "mem"
    }
    async fn node_groups(&self) -> gpupool_provider::Result<Vec<NodeGroup>> {
        let w = self.w();
        if w.fail_observe {
            return Err(ProviderError::Transient {
                call: "DescribeAutoScalingGroups",
                target: "*".into(),
                source: "connection refused".into(),
            });
        }
        Ok(w.groups.clone())
    }
    async fn instances(&self, group: &NodeGroupId) -> gpupool_provider::Result<Vec<Instance>> {
        if self.w().fail_instances_of.contains(group) {
            return Err(ProviderError::Throttled { retry_after_ms: 0 });
        }
        Ok(self
            .w()
            .instances
            .iter()
            .filter(|i| &i.group == group)
            .cloned()
            .collect())
    }
    async fn increase(&self, group: &NodeGroupId, delta: u32) -> gpupool_provider::Result<()> {
        let mut w = self.w();
        w.calls.push(format!("increase {group} {delta}"));
        if w.no_capacity_in.contains(group) {
            let offering = w.groups.iter().find(|g| &g.id == group).unwrap().offerings[0].key();
            return Err(ProviderError::InsufficientCapacity { offering });
        }
        let g = w.groups.iter_mut().find(|g| &g.id == group).unwrap();
        g.desired += delta;
        if let Some(template) = w.launch_template.clone() {
            for _ in 0..delta {
                w.launched += 1;
                let id = InstanceId::new(format!("i-{:04}", w.launched));
                let now = w.now;
                w.instances.push(Instance {
                    provider_id: template.provider_id.as_ref().map(|p| {
                        // The template's provider ID with its own instance id.
                        p.replace(template.id.as_str(), id.as_str())
                    }),
                    id,
                    group: group.clone(),
                    launched_at: now,
                    ..template.clone()
                });
            }
        }
        Ok(())
    }
    async fn terminate(
        &self,
        group: &NodeGroupId,
        instances: &[InstanceId],
    ) -> gpupool_provider::Result<()> {
        let mut w = self.w();
        for id in instances {
            w.calls.push(format!("terminate {group} {id}"));
        }
        if w.terminate_removes {
            let before = w.instances.len();
            w.instances.retain(|i| !instances.contains(&i.id));
            let removed = (before - w.instances.len()) as u32;
            if let Some(g) = w.groups.iter_mut().find(|g| &g.id == group) {
                g.desired = g.desired.saturating_sub(removed);
            }
        }
        Ok(())
    }
    async fn release_unfulfilled(
        &self,
        group: &NodeGroupId,
        count: u32,
        _instances: &[InstanceId],
    ) -> gpupool_provider::Result<u32> {
        let mut w = self.w();
        w.calls.push(format!("release {group} {count}"));
        let listed = w.instances.iter().filter(|i| &i.group == group).count() as u32;
        let g = w.groups.iter_mut().find(|g| &g.id == group).unwrap();
        let floor = listed.max(g.min_size);
        let to = g.desired.saturating_sub(count).max(floor).min(g.desired);
        let released = g.desired - to;
        g.desired = to;
        g.unfulfilled.clear();
        Ok(released)
    }
    async fn set_warm_pool_size(
        &self,
        group: &NodeGroupId,
        size: u32,
    ) -> gpupool_provider::Result<()> {
        self.w().calls.push(format!("warm {group} {size}"));
        Ok(())
    }
    async fn complete_warmup(
        &self,
        _group: &NodeGroupId,
        instance: &InstanceId,
    ) -> gpupool_provider::Result<()> {
        self.w().calls.push(format!("complete {instance}"));
        Ok(())
    }
    async fn poll_events(&self) -> gpupool_provider::Result<Vec<ProviderEvent>> {
        // Like SQS: delivered until acknowledged.
        let w = self.w();
        Ok(w.events
            .iter()
            .filter(|e| e.ack.as_ref().is_none_or(|a| !w.acked.contains(a)))
            .cloned()
            .collect())
    }
    async fn ack_event(&self, ack: &str) -> gpupool_provider::Result<()> {
        self.w().acked.push(ack.to_owned());
        Ok(())
    }
    async fn mark_draining(
        &self,
        _group: &NodeGroupId,
        instance: &InstanceId,
        deadline: Timestamp,
    ) -> gpupool_provider::Result<()> {
        let mut w = self.w();
        w.calls
            .push(format!("mark {instance} {}", deadline.millis()));
        for i in w.instances.iter_mut().filter(|i| &i.id == instance) {
            i.drain_deadline = Some(deadline);
        }
        Ok(())
    }
    async fn clear_draining(
        &self,
        _group: &NodeGroupId,
        instance: &InstanceId,
    ) -> gpupool_provider::Result<()> {
        let mut w = self.w();
        w.calls.push(format!("clear {instance}"));
        for i in w.instances.iter_mut().filter(|i| &i.id == instance) {
            i.drain_deadline = None;
        }
        Ok(())
    }
    fn reclaim_refund_window(&self) -> Option<std::time::Duration> {
        self.w().refund_window
    }
    async fn release_to_reclaim(
        &self,
        group: &NodeGroupId,
        instance: &InstanceId,
    ) -> gpupool_provider::Result<()> {
        let mut w = self.w();
        w.calls
            .push(format!("release-to-reclaim {group} {instance}"));
        if w.refuse_release {
            return Err(ProviderError::InvalidConfig(format!(
                "{group} is at its min size"
            )));
        }
        let Some(k) = w.instances.iter().position(|i| &i.id == instance) else {
            return Err(ProviderError::NotFound {
                what: format!("instance {instance}"),
            });
        };
        let i = w.instances.remove(k);
        let deadline = i.drain_deadline.unwrap_or(w.now);
        w.released.push((i.id, deadline));
        if let Some(g) = w.groups.iter_mut().find(|g| &g.id == group) {
            g.desired = g.desired.saturating_sub(1);
        }
        Ok(())
    }
    async fn sweep_released(
        &self,
        now: Timestamp,
        grace: std::time::Duration,
    ) -> gpupool_provider::Result<Vec<InstanceId>> {
        let mut w = self.w();
        w.calls.push(format!("sweep {}", now.millis() / 1000));
        if w.fail_sweep {
            return Err(ProviderError::Transient {
                call: "DescribeInstances",
                target: "released spot instances".into(),
                source: "AccessDenied".into(),
            });
        }
        let (overdue, kept) = std::mem::take(&mut w.released)
            .into_iter()
            .partition(|(_, d)| now.secs_since(*d) > grace.as_secs_f64());
        w.released = kept;
        Ok(overdue.into_iter().map(|(id, _)| id).collect())
    }
}

/// Every Ready instance is a serving node; drains finish after `drain_ticks` calls.
pub struct MemCluster {
    pub drain_ticks: u32,
    pub drain_calls: BTreeMap<InstanceId, u32>,
}

#[async_trait]
impl Cluster for MemCluster {
    async fn uncordon(&mut self, _instance: &Instance) -> Result<bool, ClusterError> {
        Ok(true)
    }
    async fn observe(
        &mut self,
        instances: &[Instance],
        _now: Timestamp,
    ) -> Result<ClusterView, ClusterError> {
        let nodes = instances
            .iter()
            .filter(|i| i.state == LifecycleState::Ready)
            .map(|i| serving_node(i, "p", 1))
            .collect();
        Ok(ClusterView {
            nodes,
            pending_pods: vec![],
        })
    }
    async fn drain(
        &mut self,
        instance: &Instance,
        _d: Timestamp,
        _now: Timestamp,
    ) -> Result<DrainProgress, ClusterError> {
        let n = self.drain_calls.entry(instance.id.clone()).or_default();
        *n += 1;
        Ok(if *n >= self.drain_ticks {
            DrainProgress::Drained
        } else {
            DrainProgress::InProgress { remaining: 1 }
        })
    }
}

pub struct NoDemand;

#[async_trait]
impl DemandSource for NoDemand {
    async fn read(&mut self, _c: &Config, _now: Timestamp) -> BTreeMap<PoolName, PoolDemand> {
        BTreeMap::new()
    }
}
