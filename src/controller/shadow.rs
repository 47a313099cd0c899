//! The shell's additions for the live "why" and shadow mode: the last plan with the snapshot
//! and history it was made from (for `/status` and `gpupool run --dump-snapshot`), the
//! cluster cache's state, and shadow mode's ledger (`dry_run: true`: plan, never act).

use super::{Controller, metrics};
use crate::model::shadow::{ShadowAction, ShadowLedger};
use crate::model::{CacheState, History, Plan, Snapshot, Timestamp};

/// A plan with exactly the inputs it was made from: `planner::plan(&snapshot, config,
/// &history, snapshot.taken_at)` gives `plan` again.
#[derive(Clone, Debug)]
pub struct Planned {
    pub snapshot: Snapshot,
    pub history: History,
    pub plan: Plan,
}

#[derive(Default)]
pub(super) struct Extras {
    capture: bool,
    last: Option<Box<Planned>>,
    shadow: ShadowLedger,
    relisting_since: Option<Timestamp>,
}

impl Controller {
    /// Keep the last plan with its inputs (`last_planned`): one clone of the snapshot and
    /// history per plan, so it is off unless asked for (the simulator never asks).
    pub fn with_capture(mut self) -> Self {
        self.extras.capture = true;
        self
    }

    /// The last plan and the snapshot and history it was made from (with `with_capture`).
    pub fn last_planned(&self) -> Option<&Planned> {
        self.extras.last.as_deref()
    }

    /// Shadow mode's ledger: what gpupool would have done and what others did.
    pub fn shadow(&self) -> Option<&ShadowLedger> {
        self.config.dry_run.then_some(&self.extras.shadow)
    }

    pub(super) fn capture(&mut self, snapshot: &Snapshot, plan: &Plan) {
        if self.extras.capture {
            self.extras.last = Some(Box::new(Planned {
                snapshot: snapshot.clone(),
                history: self.history.clone(),
                plan: plan.clone(),
            }));
        }
    }

    /// The cluster cache's state at `now`, since when the controller first saw a watch
    /// relisting (the watch task has no clock of its own).
    pub(super) fn cache_state(&mut self, now: Timestamp) -> CacheState {
        let resources = self.cluster.relisting();
        if resources.is_empty() {
            if self.extras.relisting_since.take().is_some() {
                tracing::info!("cluster watches listed again: scale-down may resume");
            }
            return CacheState::Current;
        }
        let since = *self.extras.relisting_since.get_or_insert_with(|| {
            tracing::warn!(
                ?resources,
                "cluster watch failed: holding scale-down until it lists again"
            );
            now
        });
        CacheState::Relisting { since, resources }
    }

    /// Shadow mode's stand-in for acting: log, count and record what would have been done.
    pub(super) fn shadow_record(&mut self, plan: &Plan, snapshot: &Snapshot, now: Timestamp) {
        for a in self.extras.shadow.record(snapshot, plan, now) {
            tracing::info!(action = %a, "shadow mode: would have acted");
            self.metrics
                .shadow_actions
                .get_or_create(&metrics::ShadowLabels {
                    pool: a.pool().to_string(),
                    action: ShadowAction::of(&a).as_str().into(),
                })
                .inc();
        }
    }
}
