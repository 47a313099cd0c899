//! Cloud events: polled, de-duplicated, turned into drains, deadlines, risk and backoff, and
//! queued for acknowledgement once the tick's state is saved (`persist.rs`).

use super::{Controller, SEEN_EVENTS_MAX, metrics, persist};
use crate::model::{Instance, InstanceId, OfferingKey, ProviderEventKind, Reason, Timestamp};

impl Controller {
    /// Poll the provider's events, handle each, acknowledge it. Returns how many were handled.
    pub(super) async fn handle_events(&mut self, instances: &[Instance], now: Timestamp) -> usize {
        let events = match self.provider.poll_events().await {
            Ok(e) => e,
            Err(e) => {
                self.count_error("poll_events", &e);
                tracing::warn!(error = %e, "cannot poll cloud events; will retry next tick");
                return 0;
            }
        };
        let mut handled = 0;
        // Acknowledged at the end of the tick (`persist.rs`); a tick that holds before then
        // leaves them to be redelivered.
        self.pending_acks.clear();
        for ev in events {
            let duplicate = self.seen_events.contains(&ev.id);
            if !duplicate {
                self.handle_event(&ev.kind, &ev.id, instances, now);
                self.seen_events.push_back(ev.id.clone());
                if self.seen_events.len() > SEEN_EVENTS_MAX {
                    self.seen_events.pop_front();
                }
                handled += 1;
            }
            if let Some(ack) = &ev.ack {
                let pool = persist::event_instance(&ev.kind)
                    .and_then(|id| instances.iter().find(|i| &i.id == id))
                    .and_then(|i| self.pool_of_group(&i.group).cloned());
                self.pending_acks.push(persist::PendingAck {
                    event: ev.id.clone(),
                    ack: ack.clone(),
                    pool,
                });
            }
        }
        handled
    }

    fn handle_event(
        &mut self,
        kind: &ProviderEventKind,
        id: &str,
        instances: &[Instance],
        now: Timestamp,
    ) {
        let find = |iid: &InstanceId| instances.iter().find(|i| &i.id == iid);
        let offering_of = |i: &Instance| OfferingKey {
            instance_type: i.instance_type.clone(),
            capacity_type: i.capacity_type,
            zone: i.zone.clone(),
        };
        match kind {
            ProviderEventKind::SpotInterruption { instance, deadline } => {
                let Some(inst) = find(instance) else {
                    tracing::info!(event = id, %instance, "interruption for an instance not in a managed group; ignored");
                    return;
                };
                self.history.record_interruption(&offering_of(inst));
                self.count_interruption(inst, "spot_interruption");
                // Serve until `interruption_drain_s` before the reclaim when configured.
                let start_at = match self.disruption_of(&inst.group).interruption_drain_s {
                    Some(lead) => deadline.plus_secs(-(lead as f64)).max(now),
                    None => now,
                };
                tracing::warn!(%instance, group = %inst.group, deadline = %deadline, drain_from = %start_at, "spot interruption: replacing now, draining before the reclaim");
                self.start_drain(
                    inst,
                    *deadline,
                    start_at,
                    Reason::SpotInterruption {
                        deadline: *deadline,
                    },
                );
            }
            ProviderEventKind::ScheduledChange { instance, at } => {
                let Some(inst) = find(instance) else { return };
                self.count_interruption(inst, "scheduled_change");
                // Drain well before the maintenance so in-flight work finishes.
                let deadline = (*at).min(now.plus_secs(self.drain_timeout(inst) as f64));
                tracing::warn!(%instance, at = %at, "scheduled change: draining and replacing");
                self.start_drain(
                    inst,
                    deadline,
                    now,
                    Reason::Unhealthy {
                        condition: "scheduled maintenance".into(),
                    },
                );
            }
            ProviderEventKind::RebalanceRecommendation { instance } => {
                let Some(inst) = find(instance) else { return };
                // Advice, not a notice: new capacity should go elsewhere (risk raised). With
                // `rebalance: prelaunch` the instance also stops counting as capacity, so the
                // planner launches its replacement now and drains it once that serves.
                self.history.record_interruption(&offering_of(inst));
                self.count_interruption(inst, "rebalance_recommendation");
                match self.disruption_of(&inst.group).rebalance {
                    crate::config::RebalancePolicy::Prelaunch => {
                        self.history.record_at_risk(instance, now);
                        tracing::info!(%instance, "rebalance recommendation: replacing ahead of an interruption");
                    }
                    crate::config::RebalancePolicy::Ignore => {
                        tracing::info!(%instance, "rebalance recommendation: offering risk raised");
                    }
                }
            }
            ProviderEventKind::InstanceStateChange { instance, state } => {
                if matches!(
                    state.as_str(),
                    "stopping" | "stopped" | "shutting-down" | "terminated"
                ) && self.drains.remove(instance).is_some()
                {
                    tracing::info!(%instance, state, "drained instance left; drain closed");
                }
            }
            ProviderEventKind::LaunchFailed {
                group,
                offering,
                error,
                message,
            } => {
                tracing::warn!(%group, %offering, ?error, message, "launch failed; offering backs off");
                self.history.record_launch_failure(offering, message, now);
            }
        }
    }

    pub(super) fn count_interruption(&self, inst: &Instance, kind: &str) {
        let pool = self
            .pool_of_group(&inst.group)
            .map(|p| p.to_string())
            .unwrap_or_default();
        self.metrics
            .interruptions
            .get_or_create(&metrics::InterruptionLabels {
                pool,
                kind: kind.into(),
            })
            .inc();
    }
}
