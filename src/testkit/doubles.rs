//! Controller test doubles for integration tests that drive a real provider (moto, the fake
//! Compute API) in VM-only mode: a serving side on which every Ready instance serves and is
//! idle, and a demand source the test sets between ticks.

use crate::config::Config;
use crate::controller::{Cluster, ClusterError, ClusterView, DemandSource, DrainProgress};
use crate::model::{
    InFlight, Instance, InstanceId, LifecycleState, Node, PoolDemand, PoolName, SignalReading,
    Timestamp,
};
use async_trait::async_trait;
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
                name: i.id.to_string(),
                instance: i.id.clone(),
                pool: self.pool.clone(),
                capacity_type: i.capacity_type,
                labels: BTreeMap::new(),
                taints: Vec::new(),
                serving_ready: true,
                cordoned: false,
                scale_down_disabled: false,
                pods: Vec::new(),
                in_flight_requests: InFlight::Known(0),
                idle_since: Some(i.launched_at),
                unhealthy: None,
                drain_deadline: None,
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
            },
        )]
        .into()
    }
}
