//! Acting: each action of a plan applied through the provider, its error counted and turned
//! into backoff, its result kept for the tick's report.

use super::{ActionFailure, ActionResult, Controller, TickReport, error_chain, metrics};
use crate::model::{Action, InstanceId, NodeGroupId, Plan, PoolName, Snapshot, Timestamp};
use crate::planner::rules::{action_error, drain_step};
use gpupool_provider::ProviderError;
use std::collections::BTreeSet;

impl Controller {
    /// Execute a plan. Returns true when a launch hit a capacity or quota error (re-plan).
    pub(super) async fn act(
        &mut self,
        plan: &Plan,
        snapshot: &Snapshot,
        now: Timestamp,
        report: &mut TickReport,
    ) -> bool {
        if self.config.dry_run {
            self.shadow_record(plan, snapshot, now);
            return false;
        }
        let mut capacity_failed = false;
        // Groups that threw a throttling error: skip their remaining actions this tick.
        let mut throttled: BTreeSet<NodeGroupId> = BTreeSet::new();
        for action in &plan.actions {
            if throttled.contains(action.group()) {
                continue;
            }
            if !self.may_act() {
                tracing::warn!(action = %action, "leadership lost during the tick: not acting");
                break;
            }
            let result = self.execute(action, snapshot, now).await;
            let error = match result {
                Ok(()) => {
                    self.count_action(action);
                    None
                }
                Err(e) => {
                    let response = action_error::respond(action, &e);
                    if let Some(offering) = &response.back_off {
                        self.history
                            .record_launch_failure(offering, &e.to_string(), now);
                    }
                    capacity_failed |= response.replan;
                    if response.skip_group {
                        throttled.insert(action.group().clone());
                    }
                    tracing::warn!(action = %action, error = %error_chain(&e), "action failed");
                    Some(ActionFailure {
                        kind: e.kind(),
                        message: error_chain(&e),
                    })
                }
            };
            report.results.push(ActionResult {
                action: action.clone(),
                error,
            });
        }
        capacity_failed
    }

    async fn execute(
        &mut self,
        action: &Action,
        snapshot: &Snapshot,
        now: Timestamp,
    ) -> Result<(), ProviderError> {
        tracing::info!(action = %action, "executing");
        match action {
            // A warm start raises desired the same way: the ASG or MIG takes stopped warm
            // instances first.
            Action::ScaleUp {
                pool, group, count, ..
            }
            | Action::StartWarm {
                pool, group, count, ..
            } => {
                // An accepted call is not a launched instance (both clouds accept launches
                // they later fail to fulfil): the offering's backoff ends only when one of its
                // instances serves (`History::record_ready`).
                self.provider.increase(group, *count).await?;
                self.note_increase(group, *count, now);
                self.history.last_scale_up.insert(pool.clone(), now);
                Ok(())
            }
            Action::ReleaseUnfulfilled {
                group,
                count,
                instances,
                ..
            } => {
                let released = self
                    .provider
                    .release_unfulfilled(group, *count, instances)
                    .await?;
                if released < *count {
                    tracing::warn!(%group, asked = count, released, "could not take back every unfulfilled launch (the group's min size or a launch that appeared meanwhile); not counted as capacity either way");
                }
                Ok(())
            }
            Action::SetWarmPool { group, size, .. } => {
                self.provider.set_warm_pool_size(group, *size).await
            }
            Action::CompleteWarmup {
                group, instance, ..
            } => match self.provider.complete_warmup(group, instance).await {
                Err(ProviderError::NotFound { .. }) => Ok(()),
                other => other,
            },
            Action::Drain {
                pool,
                group,
                instance,
                deadline,
                reason,
                ..
            } => {
                let Some(inst) = snapshot.instances.iter().find(|i| &i.id == instance) else {
                    return Ok(());
                };
                let timeout = self.disruption_of(group).drain_timeout;
                let deadline = drain_step::deadline(*deadline, timeout, now);
                self.history.record_disruption(pool, instance, now);
                self.start_drain(inst, deadline, now, reason.clone());
                if let Some(d) = self.drains.get_mut(instance) {
                    d.counted = true;
                }
                Ok(())
            }
            Action::ScaleDown {
                pool,
                group,
                instances,
                ..
            } => self.scale_down(pool, group, instances, now).await,
        }
    }

    /// Terminate (with decrement) the instances of a scale-down not already asked for.
    async fn scale_down(
        &mut self,
        pool: &PoolName,
        group: &NodeGroupId,
        instances: &[InstanceId],
        now: Timestamp,
    ) -> Result<(), ProviderError> {
        let fresh: Vec<InstanceId> = instances
            .iter()
            .filter(|i| !self.terminating.contains(*i))
            .cloned()
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        match self.provider.terminate(group, &fresh).await {
            Ok(()) | Err(ProviderError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        for id in &fresh {
            // Replacements of unhealthy nodes are not voluntary disruptions of serving
            // capacity, but they still count against the budget: be conservative.
            self.history.record_disruption(pool, id, now);
            self.history.unneeded_since.remove(id);
            self.terminating.insert(id.clone());
        }
        Ok(())
    }

    fn count_action(&self, action: &Action) {
        let direction = match action {
            Action::ScaleUp { .. } | Action::StartWarm { .. } => "up",
            Action::Drain { .. } | Action::ScaleDown { .. } => "down",
            Action::ReleaseUnfulfilled { .. } => "release",
            Action::SetWarmPool { .. } => "warm_pool",
            Action::CompleteWarmup { .. } => "warmup",
        };
        let reason = action.reason().map_or("model_cache_warm", |r| r.code());
        self.metrics
            .scale_actions
            .get_or_create(&metrics::ActionLabels {
                pool: action.pool().to_string(),
                direction: direction.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Back off the offerings of launches the planner found unfulfilled, with the rule it
    /// applied to its own plan (`History::record_launch_failure_at`: once per failure).
    pub(super) fn record_launch_failures(&mut self, plan: &Plan, now: Timestamp) {
        for f in &plan.launch_failures {
            let error = crate::planner::launches::describe(f);
            if self
                .history
                .record_launch_failure_at(&f.offering, &error, f.at, now)
            {
                tracing::warn!(pool = %f.pool, group = %f.group, offering = %f.offering, failure = %f.failure, count = f.count, message = %f.message, "launch accepted but not fulfilled; taking it back and falling back");
                self.metrics
                    .launch_failures
                    .get_or_create(&metrics::LaunchFailureLabels {
                        pool: f.pool.to_string(),
                        failure: f.failure.as_str().into(),
                    })
                    .inc();
            }
        }
    }
}
