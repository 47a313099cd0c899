//! Cloud events: polled, de-duplicated, turned into drains, deadlines, risk and backoff, and
//! queued for acknowledgement once the tick's state is saved (`persist.rs`).

use super::{Controller, SEEN_EVENTS_MAX, metrics, persist};
use crate::model::{Instance, NodeGroupId, OfferingKey, ProviderEventKind, Timestamp};
use crate::planner::rules::cloud_event::{self, EventPolicy, EventResponse};

/// The offering an instance was launched from (its risk goes up on a notice).
fn offering_of(i: &Instance) -> OfferingKey {
    OfferingKey {
        instance_type: i.instance_type.clone(),
        capacity_type: i.capacity_type,
        zone: i.zone.clone(),
    }
}

impl Controller {
    /// Poll the provider's events, handle each, acknowledge it. Returns how many were handled.
    pub(super) async fn handle_events(&mut self, instances: &[Instance], now: Timestamp) -> usize {
        let events = match self.provider.poll_events().await {
            Ok(e) => e,
            Err(e) => {
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

    /// Carry out the response `planner::rules::cloud_event` gives to one event.
    fn handle_event(
        &mut self,
        kind: &ProviderEventKind,
        id: &str,
        instances: &[Instance],
        now: Timestamp,
    ) {
        let inst =
            persist::event_instance(kind).and_then(|iid| instances.iter().find(|i| &i.id == iid));
        let policy = inst.map(|i| self.event_policy(&i.group));
        let response = cloud_event::respond(kind, policy.as_ref(), now);
        match (response, inst) {
            (EventResponse::Unmanaged, _) => {
                tracing::info!(
                    event = id,
                    kind = kind.kind(),
                    "event for an instance not in a managed group; ignored"
                );
            }
            (
                EventResponse::Drain {
                    deadline,
                    start_at,
                    reason,
                    spot_reclaim,
                },
                Some(inst),
            ) => {
                if spot_reclaim {
                    self.history
                        .record_spot_interruption(&offering_of(inst), now);
                }
                self.count_interruption(inst, kind);
                // The reason says when the drain starts and why (which lead, or why at once).
                tracing::warn!(instance = %inst.id, group = %inst.group, %deadline, drain_from = %start_at, %reason, "cloud notice: replacing now, draining before the deadline");
                self.start_drain(inst, deadline, start_at, reason);
            }
            (EventResponse::Rebalance { prelaunch }, Some(inst)) => {
                self.history.record_interruption(&offering_of(inst));
                self.count_interruption(inst, kind);
                if prelaunch {
                    self.history.record_at_risk(&inst.id, now);
                    tracing::info!(instance = %inst.id, "rebalance recommendation: replacing ahead of an interruption");
                } else {
                    tracing::info!(instance = %inst.id, "rebalance recommendation: offering risk raised");
                }
            }
            (EventResponse::CloseDrain, _) => {
                if let Some(instance) = persist::event_instance(kind)
                    && self.drains.remove(instance).is_some()
                {
                    tracing::info!(%instance, "drained instance left; drain closed");
                }
            }
            (EventResponse::BackOff { offering, message }, _) => {
                tracing::warn!(%offering, message, "launch failed; offering backs off");
                self.history.record_launch_failure(&offering, &message, now);
            }
            // A drain or a rebalance always names an instance that was found (the rule gives
            // `Unmanaged` otherwise); a state change that ends nothing is nothing.
            (EventResponse::Drain { .. } | EventResponse::Rebalance { .. }, None)
            | (EventResponse::Ignore, _) => {}
        }
    }

    /// The policy a cloud event about an instance of `group` is judged by, with the latest
    /// request duration its pool's demand reported (the rule decides whether it is fresh).
    fn event_policy(&self, group: &NodeGroupId) -> EventPolicy {
        let d = self.disruption_of(group);
        EventPolicy {
            drain_timeout: d.drain_timeout,
            interruption_drain: d.interruption_drain,
            rebalance: d.rebalance,
            tick: self.config.tick_interval,
            request_duration: self
                .pool_of_group(group)
                .and_then(|p| self.request_durations.get(p))
                .copied(),
        }
    }

    /// Counts a notice or advice about `inst`, labelled with the event's kind.
    pub(super) fn count_interruption(&self, inst: &Instance, kind: &ProviderEventKind) {
        let pool = self
            .pool_of_group(&inst.group)
            .map(|p| p.to_string())
            .unwrap_or_default();
        self.metrics
            .interruptions
            .get_or_create(&metrics::InterruptionLabels {
                pool,
                kind: kind.kind().into(),
            })
            .inc();
    }
}
