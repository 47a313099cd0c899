//! Drains in progress: started by plans, cloud events or a mark an earlier leader left on the
//! node, moved forward every tick, and ended by termination, by abandoning a voluntary drain,
//! or by the instance leaving.

use super::{
    ClusterView, Controller, DrainProgress, DrainState, Metrics, TickReport, error_chain, metrics,
};
use crate::model::{Instance, InstanceId, Reason, Snapshot, Timestamp};
use crate::planner::rules::drain_step::{self, DrainStep, DrainTerms};
use gpupool_provider::ProviderError;

/// How long past its notice's deadline an instance left to the cloud's reclaim may still run
/// before the sweep terminates it. AWS interrupts at the two-minute mark ("Spot Instance
/// interruption notices"); five minutes leaves room for a late interruption and clock skew
/// without paying long for one that never comes.
pub const RELEASE_GRACE: std::time::Duration = std::time::Duration::from_secs(300);

impl Controller {
    /// Drains marked on nodes by an earlier leader (failover, restart) that this one does not
    /// know: carry them on with their deadline rather than leave a cordoned node behind.
    pub(super) fn adopt_marked_drains(
        &mut self,
        view: &ClusterView,
        instances: &[Instance],
        now: Timestamp,
    ) {
        for node in &view.nodes {
            if let (Some(d), Some(mark)) = (
                self.drains.get_mut(&node.instance),
                node.drain_deadline.filter(|_| node.cordoned),
            ) {
                // Known from the saved state too: the earlier deadline wins (persist.rs).
                d.deadline = crate::state::resumed_deadline(d.deadline, mark);
            }
            let known = self.drains.contains_key(&node.instance)
                || self.terminating.contains(&node.instance);
            let Some(terms) =
                drain_step::resume_marked(node.drain_deadline, node.cordoned, known, now)
            else {
                continue;
            };
            let Some(inst) = instances.iter().find(|i| i.id == node.instance) else {
                continue;
            };
            tracing::warn!(instance = %inst.id, node = %node.name, deadline = %terms.deadline, "resuming a drain marked on the node by an earlier leader");
            self.start_drain(inst, terms.deadline, terms.start_at, terms.reason);
        }
    }

    pub(super) fn start_drain(
        &mut self,
        inst: &Instance,
        deadline: Timestamp,
        start_at: Timestamp,
        reason: Reason,
    ) {
        let pool = self.pool_of_group(&inst.group).cloned().unwrap_or_default();
        self.drains
            .entry(inst.id.clone())
            .and_modify(|d| {
                let current = DrainTerms {
                    deadline: d.deadline,
                    start_at: d.start_at,
                    reason: d.reason.clone(),
                };
                let notice = DrainTerms {
                    deadline,
                    start_at,
                    reason: reason.clone(),
                };
                let merged = drain_step::merge(current, notice);
                d.deadline = merged.deadline;
                d.start_at = merged.start_at;
                d.reason = merged.reason;
            })
            .or_insert(DrainState {
                pool,
                group: inst.group.clone(),
                deadline,
                reason,
                start_at,
                counted: false,
            });
    }

    /// Move every drain forward; terminate the drained and the timed-out.
    pub(super) async fn progress_drains(
        &mut self,
        snapshot: &Snapshot,
        now: Timestamp,
        report: &mut TickReport,
    ) {
        if self.config.dry_run {
            // Shadow mode: nothing is drained; a drain a notice started ends with its instance.
            self.drains
                .retain(|id, _| snapshot.instances.iter().any(|i| &i.id == id));
            return;
        }
        let ids: Vec<InstanceId> = self.drains.keys().cloned().collect();
        for id in ids {
            if !self.may_act() {
                tracing::warn!("leadership lost during the tick: drains left to the next leader");
                break;
            }
            let Some(state) = self.drains.get(&id).cloned() else {
                continue;
            };
            let Some(inst) = snapshot.instances.iter().find(|i| i.id == id) else {
                // Gone (reclaimed or terminated elsewhere): nothing left to drain.
                self.drains.remove(&id);
                continue;
            };
            if !drain_step::started(state.start_at, now) {
                // Still serving until the drain window (spot notice with a drain lead); only
                // new work is kept off it. The cluster skips a node it already cordoned.
                if let Err(e) = self.cluster.cordon(inst, state.deadline).await {
                    tracing::warn!(instance = %id, error = %error_chain(&e), "cordon before the drain window failed; retrying next tick");
                }
                continue;
            }
            let progress = match self.cluster.drain(inst, state.deadline, now).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(instance = %id, error = %error_chain(&e), "drain step failed; retrying next tick");
                    DrainProgress::InProgress {
                        remaining: u32::MAX,
                    }
                }
            };
            let voluntary = state.reason.is_voluntary();
            let forced = match drain_step::step(progress, state.deadline, voluntary, now) {
                DrainStep::Wait => continue,
                DrainStep::KeepRegistered { past_deadline } => {
                    self.metrics
                        .deregister_failures
                        .get_or_create(&Metrics::pool(state.pool.as_str()))
                        .inc();
                    if past_deadline {
                        // Terminating now would cut the requests a load balancer still routes
                        // to it: keep it until deregistration succeeds or is given up.
                        tracing::warn!(instance = %id, ?progress, deadline = %state.deadline, "drain deadline passed but the VM is still registered (deregister command failing): kept, not terminated");
                    }
                    continue;
                }
                DrainStep::Forget => {
                    self.drains.remove(&id);
                    self.metrics
                        .drains_abandoned
                        .get_or_create(&Metrics::pool(state.pool.as_str()))
                        .inc();
                    tracing::warn!(instance = %id, ?progress, reason = %state.reason, "deregistration kept failing: drain given up, the VM stays registered and in service (scale-in may pick it again later)");
                    continue;
                }
                DrainStep::Abandon => {
                    if self.abandon_drain(inst, &state, now).await {
                        continue;
                    }
                    tracing::warn!(instance = %id, reason = %state.reason, "drain deadline passed with work remaining and the node cannot be given back; terminating");
                    true
                }
                DrainStep::Terminate { forced } => {
                    if forced {
                        tracing::warn!(instance = %id, reason = %state.reason, "drain deadline passed with work remaining; terminating (involuntary: the instance goes anyway)");
                    }
                    forced
                }
            };
            let refund = self.provider.reclaim_refund_window();
            if drain_step::leave_to_reclaim(&state.reason, inst.launched_at, state.deadline, refund)
                && self.release_drained(inst, &state, forced, report).await
            {
                continue;
            }
            self.terminate_drained(&id, &state, forced, report).await;
        }
    }

    /// Leave a drained spot instance to the cloud's reclaim (`drain_step::leave_to_reclaim`):
    /// mark it with the notice's deadline — what the sweep finds it by if the reclaim never
    /// comes — then take it out of its group with desired capacity lowered. False when the
    /// mark or the release fails or is refused: the caller terminates it as before, which
    /// only forfeits the refund.
    async fn release_drained(
        &mut self,
        inst: &Instance,
        state: &DrainState,
        forced: bool,
        report: &mut TickReport,
    ) -> bool {
        let id = &inst.id;
        if let Err(e) = self
            .provider
            .mark_draining(&state.group, id, state.deadline)
            .await
        {
            tracing::warn!(instance = %id, error = %error_chain(&e), "marking a drained spot instance before leaving it to the reclaim failed; terminating it instead");
            return false;
        }
        match self.provider.release_to_reclaim(&state.group, id).await {
            Ok(()) => {}
            Err(e) => {
                tracing::info!(instance = %id, error = %error_chain(&e), "could not leave the drained spot instance to the cloud's reclaim; terminating it instead");
                return false;
            }
        }
        tracing::info!(instance = %id, deadline = %state.deadline, launched_at = %inst.launched_at, "drained spot instance left to the cloud's reclaim (out of its group, desired capacity lowered): a reclaim within its first hour is not billed, a termination would be");
        self.released.insert(id.clone(), state.deadline);
        report.released_to_reclaim.push(id.clone());
        self.metrics
            .spot_left_to_reclaim
            .get_or_create(&Metrics::pool(state.pool.as_str()))
            .inc();
        self.drain_ended(id, state, forced);
        true
    }

    /// Terminate what was released to a reclaim that did not come by its deadline plus
    /// [`RELEASE_GRACE`]: once one this process released is overdue, and once at start (a
    /// restarted process does not know what its predecessor released; the provider finds
    /// them by their mark). Only with a provider that releases at all, never in shadow mode,
    /// only while leading.
    pub(super) async fn sweep_released(&mut self, now: Timestamp, report: &mut TickReport) {
        let grace = RELEASE_GRACE;
        let overdue = |d: &Timestamp| now.secs_since(*d) > grace.as_secs_f64();
        let due = !self.swept_once || self.released.values().any(overdue);
        if !due
            || self.sweep_retry_at.is_some_and(|t| now < t)
            || self.config.dry_run
            || self.provider.reclaim_refund_window().is_none()
            || !self.may_act()
        {
            return;
        }
        match self.provider.sweep_released(now, grace).await {
            Ok(ids) => {
                self.swept_once = true;
                self.sweep_retry_at = None;
                self.released.retain(|_, d| !overdue(d));
                for id in &ids {
                    self.metrics.spot_release_swept.inc();
                    tracing::warn!(instance = %id, grace_s = grace.as_secs(), "a spot instance left to the cloud's reclaim was still running past its notice's deadline plus the grace: terminated");
                }
                report.swept.extend(ids);
            }
            Err(e) => {
                self.sweep_retry_at = Some(now.plus_secs(grace.as_secs_f64()));
                tracing::warn!(error = %error_chain(&e), retry_in_s = grace.as_secs(), "sweeping instances left to the reclaim failed (throttled, or the IAM policy lacks ec2:DescribeInstances, autoscaling:DescribeAutoScalingInstances or ec2:TerminateInstances); retrying later");
            }
        }
    }

    /// Terminate a drained (or, `forced`, timed-out involuntary) instance and count it.
    async fn terminate_drained(
        &mut self,
        id: &InstanceId,
        state: &DrainState,
        forced: bool,
        report: &mut TickReport,
    ) {
        // Terminate with decrement, so the cloud does not launch a second replacement for
        // capacity the planner already replaced.
        match self
            .provider
            .terminate(&state.group, std::slice::from_ref(id))
            .await
        {
            Ok(()) | Err(ProviderError::NotFound { .. }) => {
                report.terminated_after_drain.push(id.clone());
                self.drain_ended(id, state, forced);
            }
            Err(e) => {
                tracing::warn!(instance = %id, error = %error_chain(&e), "terminate after drain failed; retrying next tick");
            }
        }
    }

    /// A drained instance left the fleet (terminated or left to the reclaim): the drain is over,
    /// the instance is never acted on again while it is still listed, and the removal counted.
    fn drain_ended(&mut self, id: &InstanceId, state: &DrainState, forced: bool) {
        self.drains.remove(id);
        self.terminating.insert(id.clone());
        // The drain itself was counted as one `down` action when it started (or when the
        // notice arrived); a removal with work left is a separate fact, counted apart so a
        // node is never counted `down` twice.
        if !state.counted {
            self.metrics
                .scale_actions
                .get_or_create(&metrics::ActionLabels {
                    pool: state.pool.to_string(),
                    direction: "down".into(),
                    reason: state.reason.code().into(),
                })
                .inc();
        }
        if forced {
            let timeout_s = self.disruption_of(&state.group).drain_timeout.as_secs();
            self.metrics
                .scale_actions
                .get_or_create(&metrics::ActionLabels {
                    pool: state.pool.to_string(),
                    direction: "forced".into(),
                    reason: Reason::DrainTimedOut { timeout_s }.code().into(),
                })
                .inc();
        }
    }

    /// Give up a voluntary drain whose evictions stayed refused past its deadline. False when
    /// the cluster cannot take the node back (the drain then ends in termination).
    async fn abandon_drain(&mut self, inst: &Instance, state: &DrainState, now: Timestamp) -> bool {
        match self.cluster.uncordon(inst).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                tracing::warn!(instance = %inst.id, error = %error_chain(&e), "uncordon after an abandoned drain failed; retrying next tick");
                return true;
            }
        }
        tracing::warn!(instance = %inst.id, reason = %state.reason, "voluntary drain abandoned: evictions still refused (PodDisruptionBudget or do-not-disrupt) at the deadline; node kept and uncordoned");
        self.drains.remove(&inst.id);
        self.history.record_drain_abandoned(&inst.id, now);
        self.metrics
            .drains_abandoned
            .get_or_create(&Metrics::pool(state.pool.as_str()))
            .inc();
        self.metrics
            .scale_actions
            .get_or_create(&metrics::ActionLabels {
                pool: state.pool.to_string(),
                direction: "abandoned".into(),
                reason: Reason::DrainAbandoned { since: now }.code().into(),
            })
            .inc();
        true
    }
}
