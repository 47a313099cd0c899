//! The imperative shell: observe → plan → act → report, one tick at a time.
//!
//! The controller owns everything with side effects — the provider, the cluster (Kubernetes,
//! VM health checks or the simulator), the demand signals, drains in progress and metrics — and
//! calls the pure planner in between. The same `Controller::tick` runs in production (driven by
//! the wall clock) and in the simulator (driven by the virtual clock).
//!
//! Safety rules the shell enforces, whatever the plan says:
//! - when observing the cloud or the cluster fails, the tick holds: nothing is changed — except
//!   that a group whose read failed may stand in with its last good view for up to
//!   [`LAST_GOOD_MAX_AGE_S`], never for scale-down (`observe.rs`);
//! - an instance is terminated only after its drain finished or its deadline passed, and never
//!   while it is still registered (VM-only: its deregister command has not succeeded);
//! - a cloud event is acknowledged only after it was handled (so a crash re-delivers it), and
//!   a duplicate delivery is harmless (drains are keyed by instance);
//! - capacity errors put the offering into backoff and the planner re-plans at once, falling
//!   back to the next offering in the same tick.

pub mod batcher;
pub mod dump;
pub mod metrics;
mod observe;
mod persist;
mod shadow;

pub use metrics::Metrics;
pub use observe::{READ_RETRY_BUDGET_PER_TICK, RetryBudget};
pub use shadow::Planned;

use crate::config::{Config, DisruptionPolicy};
use crate::model::{
    Action, History, Instance, InstanceId, LifecycleState, Node, NodeGroup, NodeGroupId,
    OfferingKey, PendingPod, Plan, PoolDemand, PoolName, ProviderEventKind, Reason, Snapshot,
    Timestamp,
};
use async_trait::async_trait;
use gpupool_provider::{NodeGroupProvider, ProviderError};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Where demand signals come from (Prometheus, CloudWatch, SQS, cron, the simulator's queue).
#[async_trait]
pub trait DemandSource: Send {
    /// Read every pool's signals at `now`. Never fails: a signal that cannot be read is
    /// reported as stale in its `SignalReading`, which holds scale-down.
    async fn read(&mut self, config: &Config, now: Timestamp) -> BTreeMap<PoolName, PoolDemand>;

    /// The forecasters' history, saved with the durable state (`crate::state`). Default: a
    /// source without forecasters has none.
    fn forecast_history(&self) -> BTreeMap<PoolName, crate::state::ForecastSteps> {
        BTreeMap::new()
    }

    /// Rebuild the forecasters from saved history (restart, failover). Default: a source
    /// without forecasters has nothing to rebuild.
    fn restore_forecast_history(
        &mut self,
        _config: &Config,
        _saved: BTreeMap<PoolName, crate::state::ForecastSteps>,
    ) {
    }
}

/// The serving side: Kubernetes nodes and pods, VM health checks, or the simulator.
#[async_trait]
pub trait Cluster: Send {
    /// Nodes of managed pools (linked to `instances`) and pending GPU pods.
    async fn observe(
        &mut self,
        instances: &[Instance],
        now: Timestamp,
    ) -> Result<ClusterView, ClusterError>;

    /// Start or continue draining the node of `instance` (cordon + evict, or stop routing).
    /// `Drained` once no workload remains and the instance may be terminated.
    async fn drain(
        &mut self,
        instance: &Instance,
        deadline: Timestamp,
        now: Timestamp,
    ) -> Result<DrainProgress, ClusterError>;

    /// Keep new work off `instance` without disturbing what runs there — Kubernetes: cordon.
    /// Called every tick while a spot notice's drain waits for its window
    /// (`interruption_drain_s`), so it must be cheap once done.
    /// Default: nothing (in VM-only mode stopping routing *is* the drain).
    async fn cordon(
        &mut self,
        _instance: &Instance,
        _deadline: Timestamp,
    ) -> Result<(), ClusterError> {
        Ok(())
    }

    /// Give a node back to service after a voluntary drain was abandoned — Kubernetes:
    /// uncordon and remove the drain mark. `Ok(false)`: this cluster cannot take a drained
    /// node back (VM-only: a deregistered VM has no re-register hook), so the drain finishes
    /// at its deadline as before.
    async fn uncordon(&mut self, _instance: &Instance) -> Result<bool, ClusterError> {
        Ok(false)
    }

    /// Publish the plan's decisions (Kubernetes Events). Default: nothing to publish.
    async fn publish(&mut self, _plan: &Plan, _now: Timestamp) {}

    /// Watches that failed and have not listed again: while any has, the view may miss
    /// changes, and the planner holds scale-down. Default: none (nothing is cached).
    fn relisting(&self) -> Vec<crate::model::WatchedResource> {
        Vec::new()
    }

    /// The scheduler's message on each pending pod of the last `observe` (`namespace/name`),
    /// where it gave one. Default: none.
    fn scheduler_messages(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterView {
    pub nodes: Vec<Node>,
    pub pending_pods: Vec<PendingPod>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainProgress {
    Drained,
    InProgress {
        remaining: u32,
    },
    /// Routing to the instance could not be stopped yet (VM-only: its deregister command
    /// failed `attempts` times). It still receives requests, so it is never terminated in this
    /// state, whatever the drain deadline says.
    StillRegistered {
        attempts: u32,
    },
    /// The drain was given up and the instance kept, still serving (VM-only: deregistration
    /// kept failing for `disruption.deregister_give_up_s`). The controller forgets the drain.
    Abandoned {
        attempts: u32,
        failing_for_s: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{what} failed")]
    Api {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cluster view is not synced yet ({0})")]
    NotSynced(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("listing node groups from {provider}")]
    ListGroups {
        provider: &'static str,
        #[source]
        source: ProviderError,
    },
    #[error("listing instances of group {group}")]
    ListInstances {
        group: NodeGroupId,
        #[source]
        source: ProviderError,
    },
    #[error("observing the cluster")]
    Cluster(#[source] ClusterError),
    #[error("restoring the saved state")]
    State(#[source] crate::state::StateError),
}

/// What happened to one action.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionResult {
    pub action: Action,
    /// `None` when the call succeeded; the error kind and text otherwise.
    pub error: Option<(String, String)>,
}

/// Everything one tick did, for logs, tests and the simulator's accounting.
#[derive(Clone, Debug, Default)]
pub struct TickReport {
    pub now: Timestamp,
    /// The plans of this tick (a capacity error re-plans once, so there can be two).
    pub plans: Vec<Plan>,
    pub results: Vec<ActionResult>,
    pub events_handled: usize,
    /// Instances terminated after their drain finished or timed out.
    pub terminated_after_drain: Vec<InstanceId>,
    /// Set when the tick held because observation failed.
    pub held: Option<String>,
}

impl TickReport {
    pub fn plan(&self) -> Option<&Plan> {
        self.plans.last()
    }
}

/// What one observation of the cloud returns: groups, instances, and the groups shown from
/// their last good listing (with its time).
type Observed = (
    Vec<NodeGroup>,
    Vec<Instance>,
    BTreeMap<NodeGroupId, Timestamp>,
);

/// Checked before every mutating call: false once this replica may no longer act (it lost the
/// leader Lease, or could not renew it in time). Default: always true (VM-only, simulator).
pub type Fence = Arc<dyn Fn() -> bool + Send + Sync>;

/// The planner's signature; injectable so the shell can be tested against fixed plans.
pub type PlanFn = fn(&Snapshot, &Config, &History, Timestamp) -> Plan;

#[derive(Clone, Debug)]
struct DrainState {
    pool: PoolName,
    group: NodeGroupId,
    deadline: Timestamp,
    reason: Reason,
    /// The drain itself (cordon / deregister, eviction, wait for idle) starts at this time;
    /// before it the instance keeps serving while the planner already replaces it. Later
    /// than the notice only for spot interruptions with `disruption.interruption_drain_s`.
    start_at: Timestamp,
    /// Counted in `gpupool_scale_actions_total` when it started (a plan's Drain action);
    /// drains started by cloud events are counted when their instance is terminated.
    counted: bool,
}

/// Event ids remembered to make duplicate deliveries harmless (bounded).
const SEEN_EVENTS_MAX: usize = 4096;

pub struct Controller {
    config: Arc<Config>,
    provider: Arc<dyn NodeGroupProvider>,
    cluster: Box<dyn Cluster>,
    demand: Box<dyn DemandSource>,
    metrics: Arc<Metrics>,
    planner: PlanFn,
    history: History,
    drains: BTreeMap<InstanceId, DrainState>,
    /// Terminations requested; kept until the instance disappears so it is never asked twice.
    terminating: BTreeSet<InstanceId>,
    seen_events: VecDeque<String>,
    last_tick: Option<Timestamp>,
    /// Last stale state per (pool, signal), to log changes once instead of every tick.
    stale_state: BTreeMap<(PoolName, String), bool>,
    /// Pool of each managed group, from the last observation (instances carry only a group).
    group_pools: BTreeMap<NodeGroupId, PoolName>,
    /// Since when each instance the cloud calls running has not been serving-ready.
    not_serving_since: BTreeMap<InstanceId, Timestamp>,
    /// Each group's last successful instance listing, and when: used for a group whose
    /// listing fails this tick, for at most [`LAST_GOOD_MAX_AGE_S`], and then only to avoid
    /// launching the same capacity twice — its pool holds scale-down meanwhile.
    last_good: BTreeMap<NodeGroupId, (Timestamp, Vec<Instance>)>,
    /// Each group's last good discovery, and when: stands in when `node_groups` fails (see
    /// `observe.rs`), with `increases` since added to its desired capacity.
    last_good_groups: BTreeMap<NodeGroupId, (Timestamp, NodeGroup)>,
    /// Increases accepted per group in the last [`LAST_GOOD_MAX_AGE_S`].
    increases: BTreeMap<NodeGroupId, Vec<(Timestamp, u32)>>,
    /// Durable state (`persist.rs`) and the events handled this tick, acknowledged after it.
    persist: persist::Persistence,
    pending_acks: Vec<persist::PendingAck>,
    fence: Fence,
    /// The shell's additions for `/status`, `--dump-snapshot` and shadow mode (shadow.rs).
    extras: shadow::Extras,
}

/// How old a group's last good instance listing may be to stand in for a failed one. A few
/// ticks of throttling or a 5xx burst should not stop the loop (Cluster Autoscaler keeps its
/// cloud-provider cache for minutes); older than this, the tick holds as before.
pub const LAST_GOOD_MAX_AGE_S: f64 = 120.0;

impl Controller {
    pub fn new(
        config: Arc<Config>,
        provider: Arc<dyn NodeGroupProvider>,
        cluster: Box<dyn Cluster>,
        demand: Box<dyn DemandSource>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Controller {
            config,
            provider,
            cluster,
            demand,
            metrics,
            planner: crate::planner::plan,
            history: History::default(),
            drains: BTreeMap::new(),
            terminating: BTreeSet::new(),
            seen_events: VecDeque::new(),
            last_tick: None,
            stale_state: BTreeMap::new(),
            group_pools: BTreeMap::new(),
            not_serving_since: BTreeMap::new(),
            last_good: BTreeMap::new(),
            last_good_groups: BTreeMap::new(),
            increases: BTreeMap::new(),
            persist: persist::Persistence::default(),
            pending_acks: Vec::new(),
            fence: Arc::new(|| true),
            extras: shadow::Extras::default(),
        }
    }

    /// Act only while `fence` holds: checked before every cloud or cluster mutation, so a tick
    /// that outlives this replica's leadership stops acting at its next call.
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    fn may_act(&self) -> bool {
        (self.fence)()
    }

    /// Replace the planner (tests of the shell).
    pub fn with_planner(mut self, planner: PlanFn) -> Self {
        self.planner = planner;
        self
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Instances currently being drained, with their deadlines.
    pub fn draining(&self) -> impl Iterator<Item = (&InstanceId, Timestamp)> {
        self.drains.iter().map(|(id, d)| (id, d.deadline))
    }

    /// One observe → plan → act → report step at `now`.
    #[tracing::instrument(skip(self), fields(now = now.millis()))]
    pub async fn tick(&mut self, now: Timestamp) -> Result<TickReport, ControllerError> {
        let mut report = TickReport {
            now,
            ..TickReport::default()
        };
        self.metrics.ticks.inc();
        if let Err(e) = self.restore_state(now).await {
            self.metrics.ticks_held.inc();
            let e = ControllerError::State(e);
            tracing::error!(error = %error_chain(&e), "holding: cannot restore the saved state");
            report.held = Some(error_chain(&e));
            return Err(e);
        }

        // Observe the cloud. A group that cannot be read stands in with its recent last good
        // view (scale-down held for its pool); without one the tick holds: acting on a partial
        // view could scale down capacity we simply failed to see (`observe.rs`).
        let (groups, instances, stale_groups) = match self.observe_provider(now).await {
            Ok(v) => v,
            Err(e) => {
                self.metrics.ticks_held.inc();
                tracing::warn!(error = %error_chain(&e), "holding: cannot observe the cloud");
                report.held = Some(error_chain(&e));
                return Err(e);
            }
        };
        self.terminating
            .retain(|id| instances.iter().any(|i| &i.id == id));
        self.group_pools = groups
            .iter()
            .map(|g| (g.id.clone(), g.pool.clone()))
            .collect();

        report.events_handled = self.handle_events(&instances, now).await;

        let view = match self.cluster.observe(&instances, now).await {
            Ok(v) => v,
            Err(e) => {
                self.metrics.ticks_held.inc();
                let e = ControllerError::Cluster(e);
                tracing::warn!(error = %error_chain(&e), "holding: cannot observe the cluster");
                report.held = Some(error_chain(&e));
                return Err(e);
            }
        };
        self.adopt_marked_drains(&view, &instances, now);
        let demand = self.demand.read(&self.config, now).await;
        self.report_signals(&demand);

        let mut snapshot = Snapshot {
            taken_at: now,
            groups,
            instances,
            nodes: view.nodes,
            pending_pods: view.pending_pods,
            demand,
            stale_groups,
            cache: self.cache_state(now),
            scheduler_messages: self.cluster.scheduler_messages(),
        };
        self.overlay(&mut snapshot, now);

        self.plan_and_act(&mut snapshot, now, &mut report).await;

        let elapsed = self.last_tick.map_or(0.0, |t| now.secs_since(t)).max(0.0);
        let window = self
            .config
            .pools
            .iter()
            .map(|p| p.disruption.budget.window.as_secs())
            .max()
            .unwrap_or(3600) as f64;
        self.history.decay(now, elapsed, window);
        self.last_tick = Some(now);
        // Durable before acknowledged: a crash from here on redelivers the events or restores
        // their drains.
        let saved = self.save_state(now).await;
        self.flush_acks(saved, &report).await;
        self.metrics.last_tick_timestamp_seconds.set(now.secs_f64());
        Ok(report)
    }

    /// Plan and act on one snapshot; a capacity error backs the offering off and re-plans once
    /// so the fallback happens in this tick, not the next. Then drains move on and the newest
    /// plan is recorded, reported and published.
    async fn plan_and_act(
        &mut self,
        snapshot: &mut Snapshot,
        now: Timestamp,
        report: &mut TickReport,
    ) {
        crate::planner::headroom::observe_pools(
            &mut self.history.slo,
            &self.config,
            &snapshot.demand,
            now,
        );
        self.history.record_unbacked(snapshot, now);
        self.history.record_ready(&snapshot.instances);
        self.history.forget_gone(&snapshot.instances);
        for attempt in 0..2 {
            let plan = self.run_planner(snapshot, now);
            self.capture(snapshot, &plan);
            self.record_launch_failures(&plan, now);
            let capacity_failed = self.act(&plan, snapshot, now, report).await;
            report.plans.push(plan);
            if !capacity_failed || attempt == 1 {
                break;
            }
            // Re-observe groups so desired capacity reflects the calls that did succeed.
            match self.observe_provider(now).await {
                Ok((g, i, stale)) => {
                    snapshot.groups = g;
                    snapshot.instances = i;
                    snapshot.stale_groups = stale;
                    self.overlay(snapshot, now);
                }
                Err(_) => break,
            }
        }

        self.progress_drains(snapshot, now, report).await;
        if let Some(plan) = report.plans.last() {
            self.history.record_fits(&plan.fits_serving, now);
            self.history
                .record_scheduler_rejects(&plan.scheduler_rejects, &snapshot.pending_pods);
            self.record_unneeded(plan, now);
            self.record_warm_needed(plan, now);
            self.report_plan(plan, snapshot);
            if !self.config.dry_run {
                self.cluster.publish(plan, now).await;
            }
        }
    }

    fn count_error(&self, call: &str, e: &ProviderError) {
        self.metrics
            .provider_errors
            .get_or_create(&metrics::ErrorLabels {
                call: call.into(),
                kind: e.kind().into(),
            })
            .inc();
    }

    /// Overlay what only the controller knows: drains in progress and requested terminations.
    /// What only the controller knows, laid over the observed snapshot before planning.
    fn overlay(&mut self, snapshot: &mut Snapshot, now: Timestamp) {
        self.config.pricing.apply(&mut snapshot.groups);
        self.apply_own_state(snapshot);
        self.apply_serving_readiness(snapshot, now);
    }

    fn apply_own_state(&self, snapshot: &mut Snapshot) {
        for inst in &mut snapshot.instances {
            if self.terminating.contains(&inst.id) {
                inst.state = LifecycleState::Terminating;
            } else if self.drains.contains_key(&inst.id)
                && inst.state != LifecycleState::Terminating
            {
                inst.state = LifecycleState::Draining;
            }
        }
        for node in &mut snapshot.nodes {
            if self.drains.contains_key(&node.instance) {
                node.cordoned = true;
            }
        }
    }

    /// An instance the cloud calls running serves only once its node is serving-ready (GPUs
    /// allocatable, model cache warm, health URL answering). Until then it is in flight —
    /// counted once, neither as capacity nor as missing — from the moment the controller first
    /// saw it not serving. Past the pool's `max_provision_time_s` a node that exists is marked
    /// unhealthy (the planner drains and replaces it); an instance with no node at all stays
    /// `Launching` and the planner's stuck-launch rule replaces it.
    fn apply_serving_readiness(&mut self, snapshot: &mut Snapshot, now: Timestamp) {
        let nodes: BTreeMap<InstanceId, (bool, bool)> = snapshot
            .nodes
            .iter()
            .map(|n| (n.instance.clone(), (n.serving_ready, n.unhealthy.is_some())))
            .collect();
        let mut seen = BTreeSet::new();
        let mut mark_unhealthy = Vec::new();
        for inst in &mut snapshot.instances {
            if inst.state != LifecycleState::Ready {
                continue;
            }
            match nodes.get(&inst.id) {
                Some((true, _)) | Some((_, true)) => continue,
                _ => {}
            }
            seen.insert(inst.id.clone());
            let since = *self.not_serving_since.entry(inst.id.clone()).or_insert(now);
            let max_s = self.disruption_of(&inst.group).max_provision_time.as_secs();
            let waited = now.secs_since(since);
            if nodes.contains_key(&inst.id) && waited > max_s as f64 {
                mark_unhealthy.push((inst.id.clone(), waited as u64));
                continue;
            }
            inst.state = LifecycleState::Launching;
            inst.launched_at = inst.launched_at.max(since);
        }
        self.not_serving_since.retain(|id, _| seen.contains(id));
        for (id, waited) in mark_unhealthy {
            if let Some(n) = snapshot.nodes.iter_mut().find(|n| n.instance == id) {
                n.unhealthy = Some(format!(
                    "not serving-ready {waited} s after the cloud reported the instance running"
                ));
            }
        }
    }

    fn run_planner(&self, snapshot: &Snapshot, now: Timestamp) -> Plan {
        // Wall-clock timing here only feeds the latency histogram; it is never a decision input.
        let started = gpupool_provider::clock::monotonic();
        let plan = (self.planner)(snapshot, &self.config, &self.history, now);
        self.metrics
            .plan_duration_seconds
            .observe(started.elapsed().as_secs_f64());
        plan
    }

    /// Poll the provider's events, handle each, acknowledge it. Returns how many were handled.
    async fn handle_events(&mut self, instances: &[Instance], now: Timestamp) -> usize {
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
                self.history
                    .record_spot_interruption(&offering_of(inst), now);
                self.count_interruption(inst, "spot_interruption");
                // Serve until `interruption_drain_s` before the reclaim when configured.
                let start_at = match self.disruption_of(&inst.group).interruption_drain {
                    Some(lead) => deadline.plus_secs(-lead.as_secs_f64()).max(now),
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

    /// Back off the offerings of launches the planner found unfulfilled, with the rule it
    /// applied to its own plan (`History::record_launch_failure_at`: once per failure).
    fn record_launch_failures(&mut self, plan: &Plan, now: Timestamp) {
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

    fn count_interruption(&self, inst: &Instance, kind: &str) {
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

    fn pool_of_group(&self, group: &NodeGroupId) -> Option<&PoolName> {
        self.group_pools.get(group)
    }

    fn drain_timeout(&self, inst: &Instance) -> u64 {
        self.disruption_of(&inst.group).drain_timeout.as_secs()
    }

    /// The disruption policy of a group's pool. Groups are filtered to configured pools, so the
    /// default only covers an instance whose group vanished between two observations.
    fn disruption_of(&self, group: &NodeGroupId) -> DisruptionPolicy {
        self.pool_of_group(group)
            .and_then(|p| self.config.pool(p))
            .map(|p| p.disruption.clone())
            .unwrap_or_default()
    }

    /// Drains marked on nodes by an earlier leader (failover, restart) that this one does not
    /// know: carry them on with their deadline rather than leave a cordoned node behind.
    fn adopt_marked_drains(&mut self, view: &ClusterView, instances: &[Instance], now: Timestamp) {
        for node in &view.nodes {
            // Uncordoned by hand since: the operator took the node back.
            let Some(deadline) = node.drain_deadline.filter(|_| node.cordoned) else {
                continue;
            };
            if let Some(d) = self.drains.get_mut(&node.instance) {
                // Known from the saved state too: the earlier deadline wins (persist.rs).
                d.deadline = crate::state::resumed_deadline(d.deadline, deadline);
                continue;
            }
            if self.terminating.contains(&node.instance) {
                continue;
            }
            let Some(inst) = instances.iter().find(|i| i.id == node.instance) else {
                continue;
            };
            tracing::warn!(instance = %inst.id, node = %node.name, %deadline, "resuming a drain marked on the node by an earlier leader");
            self.start_drain(inst, deadline, now, Reason::DrainResumed { deadline });
        }
    }

    fn start_drain(
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
                // A notice can only bring the deadline and the start forward.
                if deadline < d.deadline {
                    d.deadline = deadline;
                    d.reason = reason.clone();
                }
                d.start_at = d.start_at.min(start_at);
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

    /// Execute a plan. Returns true when a launch hit a capacity or quota error (re-plan).
    async fn act(
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
                    self.count_error(action.kind(), &e);
                    match &e {
                        ProviderError::InsufficientCapacity { offering } => {
                            self.history
                                .record_launch_failure(offering, &e.to_string(), now);
                            capacity_failed = true;
                        }
                        ProviderError::QuotaExceeded { .. } => {
                            if let Action::ScaleUp { offering, .. } = action {
                                self.history
                                    .record_launch_failure(offering, &e.to_string(), now);
                                capacity_failed = true;
                            }
                        }
                        ProviderError::Throttled { .. } => {
                            throttled.insert(action.group().clone());
                        }
                        _ => {}
                    }
                    tracing::warn!(action = %action, error = %error_chain(&e), "action failed");
                    Some((e.kind().to_string(), error_chain(&e)))
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
            Action::ScaleUp {
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
            Action::StartWarm {
                pool, group, count, ..
            } => {
                self.provider.increase(group, *count).await?;
                self.note_increase(group, *count, now);
                self.history.last_scale_up.insert(pool.clone(), now);
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
                let timeout = self.disruption_of(group).drain_timeout.as_secs_f64();
                let deadline = deadline.unwrap_or(now.plus_secs(timeout));
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
            } => {
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
        }
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

    /// Move every drain forward; terminate the drained and the timed-out.
    async fn progress_drains(
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
            if now < state.start_at {
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
            let timed_out = now >= state.deadline;
            match progress {
                DrainProgress::StillRegistered { attempts } => {
                    self.metrics
                        .deregister_failures
                        .get_or_create(&Metrics::pool(state.pool.as_str()))
                        .inc();
                    if timed_out {
                        // Terminating now would cut the requests a load balancer still routes
                        // to it: keep it until deregistration succeeds or is given up.
                        tracing::warn!(instance = %id, attempts, deadline = %state.deadline, "drain deadline passed but the VM is still registered (deregister command failing): kept, not terminated");
                    }
                    continue;
                }
                DrainProgress::Abandoned {
                    attempts,
                    failing_for_s,
                } => {
                    self.drains.remove(&id);
                    self.metrics
                        .drains_abandoned
                        .get_or_create(&Metrics::pool(state.pool.as_str()))
                        .inc();
                    tracing::warn!(instance = %id, attempts, failing_for_s, reason = %state.reason, "deregistration kept failing: drain given up, the VM stays registered and in service (scale-in may pick it again later)");
                    continue;
                }
                DrainProgress::InProgress { .. } if !timed_out => continue,
                DrainProgress::Drained | DrainProgress::InProgress { .. } => {}
            }
            if timed_out && progress != DrainProgress::Drained {
                // A voluntary disruption never overrides a PodDisruptionBudget or a
                // do-not-disrupt pod (Cluster Autoscaler and Karpenter give up the same way):
                // the node goes back to service and is left alone for a while.
                if state.reason.is_voluntary() && self.abandon_drain(inst, &state, now).await {
                    continue;
                }
                tracing::warn!(instance = %id, reason = %state.reason, "drain deadline passed with work remaining; terminating (involuntary: the instance goes anyway)");
            }
            let forced = timed_out && progress != DrainProgress::Drained;
            self.terminate_drained(&id, &state, forced, report).await;
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
                self.drains.remove(id);
                self.terminating.insert(id.clone());
                report.terminated_after_drain.push(id.clone());
                // The drain itself was counted as one `down` action when it started (or
                // when the notice arrived); a termination with work left is a separate
                // fact, counted apart so a node is never counted `down` twice.
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
            Err(e) => {
                self.count_error("terminate", &e);
                tracing::warn!(instance = %id, error = %error_chain(&e), "terminate after drain failed; retrying next tick");
            }
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

    fn record_warm_needed(&mut self, plan: &Plan, now: Timestamp) {
        for g in &plan.warm_needed {
            self.history.warm_needed_at.insert(g.clone(), now);
        }
    }

    fn record_unneeded(&mut self, plan: &Plan, now: Timestamp) {
        let unneeded: BTreeSet<&InstanceId> = plan.unneeded.iter().collect();
        self.history
            .unneeded_since
            .retain(|id, _| unneeded.contains(id));
        for id in unneeded {
            self.history.unneeded_since.entry(id.clone()).or_insert(now);
        }
    }

    fn report_signals(&mut self, demand: &BTreeMap<PoolName, PoolDemand>) {
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
        match s.slo_attainment {
            Some(a) => {
                self.metrics.pool_slo_attainment.get_or_create(&l).set(a);
            }
            None => {
                self.metrics.pool_slo_attainment.remove(&l);
            }
        }
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
    }

    fn report_plan(&mut self, plan: &Plan, snapshot: &Snapshot) {
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
            match s.forecast_replicas {
                Some(f) => {
                    self.metrics
                        .pool_forecast_replicas
                        .get_or_create(&l)
                        .set(i64::from(f));
                }
                None => {
                    self.metrics.pool_forecast_replicas.remove(&l);
                }
            }
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
fn decision_pool(
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
fn instance_groups(snapshot: &Snapshot) -> BTreeMap<&InstanceId, &NodeGroupId> {
    snapshot
        .instances
        .iter()
        .map(|i| (&i.id, &i.group))
        .collect()
}

/// An error with its causes, `outer: inner: root`, for one log line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests;
