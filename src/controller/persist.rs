//! The controller's durable state (see [`crate::state`]): restored once before the first tick
//! it acts in, saved after every tick that acted, and the tick's cloud events acknowledged only
//! after that save — and only when their pool's replacement was requested without error.
//! The demand source's forecast history travels with it ([`super::DemandSource::
//! forecast_history`]), bounded by [`crate::state::fit`] before each save.

use super::{Controller, DrainState, error_chain};
use crate::model::{Action, InstanceId, PoolName, ProviderEventKind, Timestamp};
use crate::state::{
    MAX_SAVED_BYTES, STATE_VERSION, SavedDrain, SavedForecast, SavedState, StateError, StateStore,
    fit, restore,
};
use std::sync::Arc;

/// Saved again at least this often even when nothing changed, so the saved time stays close to
/// the truth (restore drops continuous timers after a gap of [`crate::state::TIMERS_MAX_GAP_S`]).
const RESAVE_EVERY_S: f64 = crate::state::TIMERS_MAX_GAP_S / 2.0;

/// An event handled this tick, waiting for its acknowledgement.
#[derive(Clone, Debug)]
pub(super) struct PendingAck {
    pub event: String,
    pub ack: String,
    /// Pool of the instance it concerns (its replacement must have been requested).
    pub pool: Option<PoolName>,
}

/// The instance an event concerns, if any.
pub(super) fn event_instance(kind: &ProviderEventKind) -> Option<&InstanceId> {
    match kind {
        ProviderEventKind::SpotInterruption { instance, .. }
        | ProviderEventKind::RebalanceRecommendation { instance }
        | ProviderEventKind::ScheduledChange { instance, .. }
        | ProviderEventKind::InstanceStateChange { instance, .. } => Some(instance),
        ProviderEventKind::LaunchFailed { .. } => None,
    }
}

/// Durable-state bookkeeping of a controller.
#[derive(Default)]
pub(super) struct Persistence {
    pub store: Option<Arc<dyn StateStore>>,
    pub restored: bool,
    /// Set when the saved state cannot be used and must not be overwritten (a newer format).
    pub refused: Option<String>,
    /// What was saved last (with `saved_at` zeroed), and when.
    pub last: Option<(SavedState, Timestamp)>,
}

impl Controller {
    /// Keep the durable state in `store`.
    pub fn with_state_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.persist.store = Some(store);
        self
    }

    /// Restore again before the next tick that acts: leadership was lost, and whoever led
    /// meanwhile saved a newer state.
    pub fn restore_before_next_tick(&mut self) {
        if self.persist.store.is_some() && self.persist.refused.is_none() {
            self.persist.restored = false;
        }
    }

    /// Restore the saved state, once. A corrupt or unreadable state is a WARN and a fresh
    /// start; a state of an unknown format version is an error, and nothing is saved over it.
    pub async fn restore_state(&mut self, now: Timestamp) -> Result<(), StateError> {
        if self.persist.restored {
            return Ok(());
        }
        let Some(store) = self.persist.store.clone() else {
            self.persist.restored = true;
            return Ok(());
        };
        match store.load().await {
            Ok(None) => {
                tracing::info!(store = %store.describe(), "no saved state: starting fresh");
            }
            Ok(Some(saved)) => self.apply_saved(saved, now, &store.describe()),
            // Out of reach for now: neither fresh (the next save would overwrite it) nor
            // refused; this tick holds and the next one asks again.
            Err(e) if e.retry_later() => return Err(e),
            Err(e) if e.start_fresh() => {
                tracing::warn!(store = %store.describe(), error = %error_chain(&e), "saved state unusable: starting fresh (backoffs, learned risk and timers start over; drains marked on nodes are still resumed)");
            }
            Err(e) => {
                self.persist.refused = Some(error_chain(&e));
                return Err(e);
            }
        }
        self.persist.restored = true;
        Ok(())
    }

    fn apply_saved(&mut self, saved: SavedState, now: Timestamp, from: &str) {
        let window = self.budget_window_s();
        let age_s = now.secs_since(saved.saved_at);
        let r = restore(saved, now, window);
        let drains = r.drains.len();
        let forecasts = r.forecasts.len();
        self.history = r.history;
        self.demand
            .restore_forecast_history(&self.config, r.forecasts);
        for d in r.drains {
            self.drains.entry(d.instance.clone()).or_insert(DrainState {
                pool: d.pool,
                group: d.group,
                deadline: d.deadline,
                reason: d.reason,
                start_at: d.start_at,
                counted: d.counted,
            });
        }
        tracing::info!(
            store = from,
            age_s,
            drains,
            forecasts,
            dropped = r.dropped,
            "restored saved state"
        );
    }

    /// The longest disruption-budget window of the configured pools.
    pub(super) fn budget_window_s(&self) -> f64 {
        self.config
            .pools
            .iter()
            .map(|p| p.disruption.budget.window.as_secs())
            .max()
            .unwrap_or(3600) as f64
    }

    fn saved_state(&self, now: Timestamp) -> SavedState {
        let mut state = SavedState {
            version: STATE_VERSION,
            saved_at: now,
            history: self.history.clone(),
            drains: self
                .drains
                .iter()
                .map(|(id, d)| SavedDrain {
                    instance: id.clone(),
                    pool: d.pool.clone(),
                    group: d.group.clone(),
                    deadline: d.deadline,
                    start_at: d.start_at,
                    reason: d.reason.clone(),
                    counted: d.counted,
                })
                .collect(),
            forecasts: self
                .demand
                .forecast_history()
                .iter()
                .filter_map(|(p, f)| Some((p.clone(), SavedForecast::from_steps(f)?)))
                .collect(),
        };
        fit(&mut state, MAX_SAVED_BYTES);
        state
    }

    /// Save when something changed (or every [`RESAVE_EVERY_S`]). False when the state could
    /// not be saved (or must not be): the tick's events then stay unacknowledged.
    pub(super) async fn save_state(&mut self, now: Timestamp) -> bool {
        let Some(store) = self.persist.store.clone() else {
            return true;
        };
        // Shadow mode acts on nothing, so it has nothing to remember (and must not overwrite
        // the state of the controller that acts).
        if self.persist.refused.is_some() || !self.persist.restored || self.config.dry_run {
            return false;
        }
        let state = self.saved_state(now);
        let unchanged = SavedState {
            saved_at: Timestamp::default(),
            ..state.clone()
        };
        if let Some((last, at)) = &self.persist.last
            && *last == unchanged
            && now.secs_since(*at) < RESAVE_EVERY_S
        {
            return true;
        }
        match store.save(&state).await {
            Ok(()) => {
                self.persist.last = Some((unchanged, now));
                true
            }
            Err(e) => {
                tracing::warn!(store = %store.describe(), error = %error_chain(&e), "cannot save state; this tick's cloud events stay unacknowledged (redelivered)");
                false
            }
        }
    }

    /// Acknowledge the tick's handled events, after the state was saved (`saved`) and only
    /// those whose pool had no failed launch this tick (the replacement was requested).
    pub(super) async fn flush_acks(&mut self, saved: bool, report: &super::TickReport) {
        let pending = std::mem::take(&mut self.pending_acks);
        // Shadow mode never acknowledges: the controller that acts owns the queue.
        if !saved || self.config.dry_run {
            return;
        }
        // The pool's last launch of the tick decides (a capacity error re-plans and may fall
        // back to another offering in the same tick).
        let failed_launch = |pool: &PoolName| {
            report
                .results
                .iter()
                .rev()
                .find(|r| matches!(&r.action, Action::ScaleUp { pool: p, .. } | Action::StartWarm { pool: p, .. } if p == pool))
                .is_some_and(|r| r.error.is_some())
        };
        for p in pending {
            if p.pool.as_ref().is_some_and(failed_launch) {
                tracing::warn!(event = %p.event, "replacement launch failed this tick: event left unacknowledged (redelivered, handled once)");
                continue;
            }
            // A replica that is no longer leader leaves the event for the next leader.
            if !self.may_act() {
                break;
            }
            if let Err(e) = self.provider.ack_event(&p.ack).await {
                // Not fatal: the event is re-delivered and recognised as a duplicate.
                tracing::warn!(event = %p.event, error = %e, "cannot acknowledge event");
            }
        }
    }
}
