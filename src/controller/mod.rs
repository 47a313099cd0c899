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

mod act;
pub mod batcher;
#[cfg(feature = "aws")]
pub mod cloudwatch;
mod drains;
pub mod dump;
mod events;
mod instrumented;
pub mod metrics;
mod observe;
mod persist;
mod report;
pub mod run;
mod shadow;

pub use crate::model::DrainProgress;
pub use instrumented::Instrumented;
pub use metrics::Metrics;
pub use observe::{READ_RETRY_BUDGET_PER_TICK, RetryBudget};
pub use shadow::Planned;

use crate::config::{Config, DisruptionPolicy};
use crate::model::{
    Action, History, Instance, InstanceId, Node, NodeGroup, NodeGroupId, PendingPod, Plan,
    PoolDemand, PoolName, Reason, Snapshot, Timestamp,
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

    /// The replicas `pool`'s signals wanted in the past, one point per `step` within
    /// `[from, to)`, oldest first: the history an SLO learner that has none yet (first start,
    /// state lost) is backfilled from (`planner::headroom::backfill`). Never fails: a point
    /// whose value is not known (a signal without history, a failed or partial query) is left
    /// out — unknown, not zero — and a source that cannot tell returns nothing, which leaves
    /// the learner on its prior. Default: nothing known.
    async fn demand_history(
        &mut self,
        _config: &Config,
        _pool: &crate::config::PoolConfig,
        _window: crate::planner::headroom::BackfillWindow,
    ) -> Vec<(Timestamp, u32)> {
        Vec::new()
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
    /// `None` when the call succeeded.
    pub error: Option<ActionFailure>,
}

/// Why an action failed: the provider error's fixed kind (a metric label) and its rendered
/// chain of causes (for logs), rendered once here at the edge.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionFailure {
    pub kind: &'static str,
    pub message: String,
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
    /// Drained spot instances left to the cloud's reclaim (out of their group, not billed if
    /// reclaimed within the cloud's refund window) instead of terminated.
    pub released_to_reclaim: Vec<InstanceId>,
    /// Released instances the reclaim never came for, terminated by the sweep.
    pub swept: Vec<InstanceId>,
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
    /// SLO pools whose learner backfill was tried by this process (once each).
    backfill_tried: BTreeSet<PoolName>,
    /// Each pool's longest recent request as its demand last reported it, and when it was
    /// read: cloud events are handled before the tick reads demand, so a spot drain's learnt
    /// lead comes from the previous read (`planner::rules::cloud_event` ignores old ones).
    request_durations: BTreeMap<PoolName, (Timestamp, crate::model::RequestDuration)>,
    /// Instances this process released to the cloud's reclaim, by notice deadline: the sweep
    /// runs once one is overdue (and once at start, for a process that lost them).
    released: BTreeMap<InstanceId, Timestamp>,
    swept_once: bool,
    /// After a failed sweep (throttled, or the policy lacks a permission), not again before
    /// this: a sweep is one `DescribeInstances`, not something to repeat every tick.
    sweep_retry_at: Option<Timestamp>,
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
        // Every call is timed and every error counted here, once, whoever makes the call.
        let provider = Arc::new(Instrumented::new(provider, metrics.clone()));
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
            backfill_tried: BTreeSet::new(),
            request_durations: BTreeMap::new(),
            released: BTreeMap::new(),
            swept_once: false,
            sweep_retry_at: None,
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
        self.backfill_learners(now).await;
        let demand = self.demand.read(&self.config, now).await;
        self.report_signals(&demand);
        self.request_durations = demand
            .iter()
            .filter_map(|(p, d)| d.request_duration.map(|r| (p.clone(), (now, r))))
            .collect();

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
        self.history.decay(now, elapsed, self.budget_window_s());
        self.last_tick = Some(now);
        // Durable before acknowledged: a crash from here on redelivers the events or restores
        // their drains.
        let saved = self.save_state(now).await;
        self.flush_acks(saved, &report).await;
        self.metrics.last_tick_timestamp_seconds.set(now.secs_f64());
        Ok(report)
    }

    /// Backfill each SLO pool's learner that has no history yet from the demand source's past
    /// (`DemandSource::demand_history`), once per pool per process: a first start — or one
    /// whose saved state was lost — then starts from what the signals saw over the last
    /// [`crate::planner::headroom::BACKFILL_S`] instead of the conservative prior. Nothing
    /// known leaves the learner as it was.
    async fn backfill_learners(&mut self, now: Timestamp) {
        let config = self.config.clone();
        for pool in &config.pools {
            let Some(slo) = &pool.slo else { continue };
            if !self.backfill_tried.insert(pool.name.clone())
                || self
                    .history
                    .slo
                    .get(&pool.name)
                    .is_some_and(|st| st.observations > 0 || !st.recent.is_empty())
            {
                continue;
            }
            let window =
                crate::planner::headroom::BackfillWindow::before(now, config.tick_interval);
            let points = self.demand.demand_history(&config, pool, window).await;
            let h = crate::planner::headroom::Horizons::of(pool, config.tick_interval.as_secs());
            let st = self.history.slo.entry(pool.name.clone()).or_default();
            let learnt = crate::planner::headroom::backfill(st, h, &points, now);
            tracing::info!(
                pool = %pool.name,
                points = points.len(),
                learnt,
                basis = ?crate::planner::headroom::basis(st, slo),
                "SLO learner backfilled from the signals' history"
            );
        }
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
            crate::planner::headroom::record_served(
                &mut self.history.slo,
                &snapshot.demand,
                &plan.pools,
            );
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
        self.sweep_released(now, report).await;
        if let Some(plan) = report.plans.last() {
            self.history.record_fits(&plan.fits_serving, now);
            self.history
                .record_scheduler_rejects(&plan.scheduler_rejects, &snapshot.pending_pods);
            self.history.record_unneeded(&plan.unneeded, now);
            self.history.record_warm_needed(&plan.warm_needed, now);
            self.report_plan(plan, snapshot);
            if !self.config.dry_run {
                self.cluster.publish(plan, now).await;
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

    fn pool_of_group(&self, group: &NodeGroupId) -> Option<&PoolName> {
        self.group_pools.get(group)
    }

    /// The disruption policy of a group's pool. Groups are filtered to configured pools, so the
    /// default only covers an instance whose group vanished between two observations.
    fn disruption_of(&self, group: &NodeGroupId) -> DisruptionPolicy {
        self.pool_of_group(group)
            .and_then(|p| self.config.pool(p))
            .map(|p| p.disruption.clone())
            .unwrap_or_default()
    }
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
