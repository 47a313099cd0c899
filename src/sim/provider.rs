//! `SimProvider`: the simulated cloud behind the same `NodeGroupProvider` trait the AWS and GCP
//! crates implement. Every call completes immediately against the shared [`World`] at the
//! world's virtual `now`; faults (stockouts, throttling) are drawn from the world's seeded RNG.
//! A stockout is late, as on the real clouds: `increase` is accepted and the group reports the
//! launch as unfulfilled later (`NodeGroup::unfulfilled`, AWS- or GCP-like per scenario), until
//! `release_unfulfilled` takes it back or the cloud's own retry succeeds.
//!
//! Drain marks (`mark_draining`) are kept beside the world, per group and instance, and laid
//! over the instances it lists, like an EC2 tag read back by `DescribeInstances`; a mark goes
//! with its instance.

use super::world::World;
use crate::model::{Instance, InstanceId, NodeGroup, NodeGroupId, ProviderEvent, Timestamp};
use async_trait::async_trait;
use gpupool_provider::{NodeGroupProvider, ProviderError, Result};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Drain marks per group and instance (shared by the provider's clones).
type Marks = Arc<Mutex<BTreeMap<(NodeGroupId, InstanceId), Timestamp>>>;

/// The world shared by the provider, the cluster view, the demand source and the event loop.
pub type SharedWorld = Arc<Mutex<World>>;

/// Lock the world. A poisoned lock means a panic already happened on this single-threaded
/// event loop; the world is still a consistent value, so carry on with it.
pub fn lock(w: &SharedWorld) -> MutexGuard<'_, World> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone)]
pub struct SimProvider {
    world: SharedWorld,
    /// Launches are instant fleet requests (see [`SimProvider::instant`]).
    instant: bool,
    marks: Marks,
}

impl SimProvider {
    pub fn new(world: SharedWorld) -> Self {
        SimProvider {
            world,
            instant: false,
            marks: Marks::default(),
        }
    }

    /// A provider whose `increase` is an EC2 `CreateFleet` request of `Type: instant` (what
    /// Karpenter launches with): its response carries the capacity errors, so a stockout fails
    /// the call itself ([`World::increase_instant`]). Source: the EC2 API reference,
    /// `CreateFleet` response `errors` ("information about the instances that could not be
    /// launched by the fleet. Supported only for fleets of type instant", `CreateFleetError`
    /// with `errorCode` such as `InsufficientInstanceCapacity`).
    pub fn instant(world: SharedWorld) -> Self {
        SimProvider {
            world,
            instant: true,
            marks: Marks::default(),
        }
    }
}

#[async_trait]
impl NodeGroupProvider for SimProvider {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn node_groups(&self) -> Result<Vec<NodeGroup>> {
        Ok(lock(&self.world).node_groups())
    }

    async fn instances(&self, group: &NodeGroupId) -> Result<Vec<Instance>> {
        let mut listed = lock(&self.world).instances(group)?;
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        // A mark goes with its instance.
        marks.retain(|(g, id), _| g != group || listed.iter().any(|i| &i.id == id));
        for i in &mut listed {
            i.drain_deadline = marks.get(&(group.clone(), i.id.clone())).copied();
        }
        Ok(listed)
    }

    async fn increase(&self, group: &NodeGroupId, delta: u32) -> Result<()> {
        if delta == 0 {
            return Ok(());
        }
        let mut w = lock(&self.world);
        if self.instant {
            w.increase_instant(group, delta)
        } else {
            w.increase(group, delta)
        }
    }

    async fn terminate(&self, group: &NodeGroupId, instances: &[InstanceId]) -> Result<()> {
        lock(&self.world).terminate(group, instances)
    }

    async fn release_unfulfilled(
        &self,
        group: &NodeGroupId,
        count: u32,
        instances: &[InstanceId],
    ) -> Result<u32> {
        lock(&self.world).release_unfulfilled(group, count, instances)
    }

    async fn set_warm_pool_size(&self, group: &NodeGroupId, size: u32) -> Result<()> {
        lock(&self.world).set_warm_pool_size(group, size)
    }

    async fn complete_warmup(&self, group: &NodeGroupId, _instance: &InstanceId) -> Result<()> {
        // No lifecycle hooks in the simulated cloud: an instance serves once its cache is warm.
        lock(&self.world).group_index(group).map(|_| ())
    }

    async fn poll_events(&self) -> Result<Vec<ProviderEvent>> {
        Ok(lock(&self.world).poll_events())
    }

    async fn ack_event(&self, _ack: &str) -> Result<()> {
        // Sim events carry no ack token; unknown tokens are not an error by contract.
        Ok(())
    }

    async fn mark_draining(
        &self,
        group: &NodeGroupId,
        instance: &InstanceId,
        deadline: Timestamp,
    ) -> Result<()> {
        let listed = lock(&self.world).instances(group)?;
        if !listed.iter().any(|i| &i.id == instance) {
            return Err(ProviderError::NotFound {
                what: format!("instance {instance}"),
            });
        }
        self.marks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((group.clone(), instance.clone()), deadline);
        Ok(())
    }

    async fn clear_draining(&self, group: &NodeGroupId, instance: &InstanceId) -> Result<()> {
        self.marks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(group.clone(), instance.clone()));
        Ok(())
    }

    /// The scenario's cloud's rule (`world::refund_window`): AWS an hour, GCP none.
    fn reclaim_refund_window(&self) -> Option<std::time::Duration> {
        super::world::refund_window(lock(&self.world).params.cloud)
    }

    async fn release_to_reclaim(&self, group: &NodeGroupId, instance: &InstanceId) -> Result<()> {
        lock(&self.world).release_to_reclaim(group, instance)
    }

    async fn sweep_released(
        &self,
        now: Timestamp,
        grace: std::time::Duration,
    ) -> Result<Vec<InstanceId>> {
        Ok(lock(&self.world).sweep_released(now, grace))
    }
}
