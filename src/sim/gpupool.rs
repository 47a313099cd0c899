//! The `gpupool` policy: the production `Controller` driven on the virtual clock, with the
//! simulator's cluster view and demand source.
//!
//! - [`SimCluster`] is VM-only style: one node per Ready instance, with its in-flight requests;
//!   draining stops routing to the instance and completes when its in-flight requests finish.
//! - [`SimDemand`] turns each pool's `sim_queue` signal into `PoolDemand` with KEDA arithmetic
//!   (`replicas = ceil(value / target_per_replica)` once `value > activation`), reading the
//!   value of the last Prometheus scrape (`signals.scrape_interval_s`), so the controller sees
//!   what it would see live. It also reports the waiting, in-flight and p95 queue-wait readings
//!   (no replicas: guard-rail information). `replicas_forecast` is left `None`: the forecaster in
//!   `src/signals/forecast.rs` is not wired into the simulator yet.

use super::provider::{SharedWorld, lock};
use super::world::{Serve, is_running};
use crate::config::Config;
use crate::controller::{Cluster, ClusterError, ClusterView, DemandSource, DrainProgress};
use crate::model::{
    Instance, LifecycleState, Node, PoolDemand, PoolName, SignalReading, Timestamp,
};
use async_trait::async_trait;
use std::collections::BTreeMap;

pub struct SimCluster {
    world: SharedWorld,
    pool: PoolName,
}

impl SimCluster {
    pub fn new(world: SharedWorld, pool: PoolName) -> Self {
        SimCluster { world, pool }
    }
}

#[async_trait]
impl Cluster for SimCluster {
    async fn observe(
        &mut self,
        instances: &[Instance],
        _now: Timestamp,
    ) -> Result<ClusterView, ClusterError> {
        let w = lock(&self.world);
        let mut nodes = Vec::new();
        for inst in instances {
            let Some(i) = w.inst_by_id(&inst.id) else {
                continue;
            };
            if !is_running(i.state) || i.state.is_warm_pool() {
                continue;
            }
            let ready = i.state == LifecycleState::Ready;
            let spec = &w.groups[i.group];
            nodes.push(Node {
                name: format!("sim-{}", i.id),
                instance: i.id.clone(),
                pool: self.pool.clone(),
                capacity_type: spec.capacity_type,
                labels: BTreeMap::new(),
                taints: Vec::new(),
                serving_ready: ready && matches!(i.serve, Serve::On | Serve::Draining),
                cordoned: matches!(i.serve, Serve::Draining) || (ready && i.serve == Serve::Off),
                scale_down_disabled: false,
                pods: Vec::new(),
                in_flight_requests: Some(i.in_flight.len() as u32),
                idle_since: None,
            });
        }
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
        let mut w = lock(&self.world);
        match w.stop_routing(&instance.id) {
            // Gone already: nothing left to drain.
            None | Some(0) => Ok(DrainProgress::Drained),
            Some(n) => Ok(DrainProgress::InProgress { remaining: n }),
        }
    }
}

pub struct SimDemand {
    world: SharedWorld,
    scrape_ms: i64,
}

impl SimDemand {
    pub fn new(world: SharedWorld, scrape_interval_s: f64) -> Self {
        SimDemand {
            world,
            scrape_ms: (scrape_interval_s * 1000.0).max(1.0) as i64,
        }
    }
}

/// KEDA arithmetic: 0 replicas at or below the activation threshold, else ceil(value/target).
pub fn keda_replicas(value: f64, target: f64, activation: f64) -> u32 {
    if value <= activation || target <= 0.0 {
        0
    } else {
        (value / target).ceil() as u32
    }
}

#[async_trait]
impl DemandSource for SimDemand {
    async fn read(&mut self, config: &Config, now: Timestamp) -> BTreeMap<PoolName, PoolDemand> {
        let w = lock(&self.world);
        // The last scrape at or before now.
        let scrape_at = (now.millis() / self.scrape_ms) * self.scrape_ms;
        let sample = w.sample_at(scrape_at).cloned();
        let mut out = BTreeMap::new();
        for pool in &config.pools {
            let mut demand = PoolDemand::default();
            for (j, s) in pool.signals.iter().enumerate() {
                let Some(q) = &s.sim_queue else { continue };
                let reading = match &sample {
                    Some(smp) => {
                        let v = f64::from(smp.waiting)
                            + if q.include_in_flight {
                                f64::from(smp.in_flight)
                            } else {
                                0.0
                            };
                        let r = keda_replicas(v, q.target_per_replica, q.activation);
                        demand.replicas_now = Some(demand.replicas_now.unwrap_or(0).max(r));
                        SignalReading {
                            name: s.display_name(j),
                            value: Some(v),
                            replicas: Some(r),
                            stale: false,
                            observed_at: Some(Timestamp::from_secs_f64(smp.t_s)),
                        }
                    }
                    None => SignalReading {
                        name: s.display_name(j),
                        value: None,
                        replicas: None,
                        stale: true,
                        observed_at: None,
                    },
                };
                demand.readings.push(reading);
            }
            if let Some(smp) = &sample {
                for (name, v) in [
                    ("sim:waiting", f64::from(smp.waiting)),
                    ("sim:in_flight", f64::from(smp.in_flight)),
                    ("sim:queue_wait_p95_s", smp.queue_wait_p95_s),
                ] {
                    demand.readings.push(SignalReading {
                        name: name.into(),
                        value: Some(v),
                        replicas: None,
                        stale: false,
                        observed_at: Some(Timestamp::from_secs_f64(smp.t_s)),
                    });
                }
            }
            out.insert(pool.name.clone(), demand);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keda_arithmetic() {
        assert_eq!(keda_replicas(0.0, 4.0, 0.0), 0);
        assert_eq!(keda_replicas(1.0, 4.0, 0.0), 1);
        assert_eq!(keda_replicas(9.0, 4.0, 0.0), 3);
        assert_eq!(keda_replicas(2.0, 4.0, 2.0), 0);
    }
}
