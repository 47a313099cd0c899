//! Reporting a tick: signal, pool and headroom gauges, decision counts with the pool they
//! concern, and the log lines when a signal goes stale or a pool's headroom changes.

use super::{Controller, Metrics, metrics};
use crate::model::{InstanceId, NodeGroupId, Plan, PoolDemand, PoolName, Snapshot};
use std::collections::BTreeMap;

/// A pool's gauge for a figure that may be unknown: set while it is known, removed while it is
/// not — absent, never a stale value or a zero that reads as a measurement.
fn set_known<G: Default, T>(
    family: &prometheus_client::metrics::family::Family<metrics::PoolLabels, G>,
    labels: &metrics::PoolLabels,
    value: Option<T>,
    set: impl FnOnce(&G, T),
) {
    match value {
        Some(v) => set(&family.get_or_create(labels), v),
        None => {
            family.remove(labels);
        }
    }
}

impl Controller {
    pub(super) fn report_signals(&mut self, demand: &BTreeMap<PoolName, PoolDemand>) {
        for (pool, d) in demand {
            for r in &d.readings {
                let labels = metrics::SignalLabels {
                    pool: pool.to_string(),
                    signal: r.name.clone(),
                };
                if let Some(v) = r.value {
                    self.metrics.signal_value.get_or_create(&labels).set(v);
                }
                self.metrics
                    .signal_stale
                    .get_or_create(&labels)
                    .set(i64::from(r.stale));
                let key = (pool.clone(), r.name.clone());
                let before = self.stale_state.insert(key, r.stale);
                if before != Some(r.stale) && (r.stale || before.is_some()) {
                    if r.stale {
                        tracing::warn!(%pool, signal = %r.name, "signal missing or stale: scale-down holds");
                    } else {
                        tracing::info!(%pool, signal = %r.name, "signal fresh again");
                    }
                }
            }
        }
    }

    /// SLO headroom gauges, and a log line when a pool's headroom changes.
    fn report_headroom(&self, s: &crate::model::PoolSummary) {
        let l = Metrics::pool(s.pool.as_str());
        set_known(
            &self.metrics.pool_slo_attainment,
            &l,
            s.slo_attainment,
            |g, a| {
                g.set(a);
            },
        );
        let long = s.headroom_running.as_ref().and_then(|h| h.attainment_long);
        set_known(&self.metrics.pool_slo_attainment_long, &l, long, |g, a| {
            g.set(a);
        });
        // The headroom's quantile is the pool's `slo.attainment`: present for every pool with
        // an `slo`, whatever was measured.
        let target = s.headroom_running.as_ref().map(|h| h.quantile);
        set_known(&self.metrics.pool_slo_target, &l, target, |g, t| {
            g.set(t);
        });
        for h in [&s.headroom_running, &s.headroom_warm]
            .into_iter()
            .flatten()
        {
            let hl = crate::controller::metrics::HeadroomLabels {
                pool: s.pool.to_string(),
                kind: h.kind.as_str().to_owned(),
            };
            let g = self.metrics.pool_headroom_replicas.get_or_create(&hl);
            let new = i64::from(h.replicas);
            if g.set(new) != new {
                tracing::info!(pool = %s.pool, kind = h.kind.as_str(), replicas = h.replicas, reason = %h, "headroom changed");
            }
        }
        let standby = crate::controller::metrics::HeadroomLabels {
            pool: s.pool.to_string(),
            kind: crate::controller::metrics::SPOT_STANDBY_KIND.to_owned(),
        };
        if s.spot_standby_replicas > 0 {
            self.metrics
                .pool_headroom_replicas
                .get_or_create(&standby)
                .set(i64::from(s.spot_standby_replicas));
        } else {
            self.metrics.pool_headroom_replicas.remove(&standby);
        }
    }

    pub(super) fn report_plan(&mut self, plan: &Plan, snapshot: &Snapshot) {
        for s in &plan.pools {
            let l = Metrics::pool(s.pool.as_str());
            self.metrics
                .pool_desired_nodes
                .get_or_create(&l)
                .set(i64::from(s.desired_nodes));
            self.metrics
                .pool_ready_nodes
                .get_or_create(&l)
                .set(i64::from(s.ready_nodes));
            self.metrics
                .pool_in_flight_nodes
                .get_or_create(&l)
                .set(i64::from(s.in_flight_nodes));
            self.metrics
                .pool_warm_instances
                .get_or_create(&l)
                .set(i64::from(s.warm_instances));
            self.metrics
                .pool_pending_pods
                .get_or_create(&l)
                .set(i64::from(s.pending_pods));
            self.metrics
                .pool_wanted_replicas
                .get_or_create(&l)
                .set(i64::from(s.wanted_replicas.unwrap_or(0)));
            set_known(
                &self.metrics.pool_forecast_replicas,
                &l,
                s.forecast_replicas,
                |g, f| {
                    g.set(i64::from(f));
                },
            );
            self.metrics
                .estimated_cost_per_hour
                .get_or_create(&l)
                .set(s.cost_per_hour.dollars());
            self.metrics
                .pool_unpriced_nodes
                .get_or_create(&l)
                .set(i64::from(s.unpriced_nodes));
            self.report_headroom(s);
            let draining = self.drains.values().filter(|d| d.pool == s.pool).count();
            self.metrics
                .drains_in_progress
                .get_or_create(&l)
                .set(draining as i64);
        }
        self.metrics.decisions.clear();
        let instance_groups = instance_groups(snapshot);
        for d in &plan.decisions {
            let pool = decision_pool(&d.subject, &instance_groups, &self.group_pools);
            self.metrics
                .decisions
                .get_or_create(&metrics::DecisionLabels {
                    pool,
                    outcome: d.outcome.as_str().into(),
                    reason: d.reason.code().into(),
                })
                .inc();
        }
    }
}

/// The pool a decision is about, for its metric label: a pool, or the pool of the group or
/// instance it names. A pending pod or an offering is not one pool's (a pod may match several
/// pools, or none): empty.
pub(super) fn decision_pool(
    subject: &crate::model::Subject,
    instance_groups: &BTreeMap<&InstanceId, &NodeGroupId>,
    group_pools: &BTreeMap<NodeGroupId, PoolName>,
) -> String {
    use crate::model::Subject;
    let group = match subject {
        Subject::Pool(p) => return p.to_string(),
        Subject::Group(g) => Some(g),
        Subject::Instance(id) => instance_groups.get(id).copied(),
        Subject::Pod(_) | Subject::Offering(_) => None,
    };
    group
        .and_then(|g| group_pools.get(g))
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// Each instance's group, looked up once per plan report (not once per decision).
pub(super) fn instance_groups(snapshot: &Snapshot) -> BTreeMap<&InstanceId, &NodeGroupId> {
    snapshot
        .instances
        .iter()
        .map(|i| (&i.id, &i.group))
        .collect()
}
