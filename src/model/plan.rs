use super::{InstanceId, LaunchFailure, Money, NodeGroupId, OfferingKey, PoolName, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What the planner decided for one tick: the actions to take, and a reason for every action
/// and every non-action. The controller executes actions; it turns decisions into Kubernetes
/// Events, metrics and logs. The planner itself publishes nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub decisions: Vec<Decision>,
    /// Instances the planner found unneeded this tick (the controller keeps the
    /// `unneeded_since` clock in `History`).
    #[serde(default)]
    pub unneeded: Vec<InstanceId>,
    /// Warm pools wanted at (at least) their current size this tick (the controller keeps
    /// the `warm_needed_at` clock in `History`).
    #[serde(default)]
    pub warm_needed: Vec<NodeGroupId>,
    /// Per-pool summary figures (for metrics and the `plan` command).
    #[serde(default)]
    pub pools: Vec<PoolSummary>,
    /// Launches the cloud accepted and did not fulfil, found this tick (the controller backs
    /// their offerings off in `History` with the same rule the planner applied to this plan).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub launch_failures: Vec<LaunchFailureRecord>,
    /// Pending pods (`namespace/name`) placed on the free room of a serving node, and that
    /// node's instance (the controller keeps since when in `History::fits_serving`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fits_serving: Vec<(String, InstanceId)>,
    /// Pods found rejected by the scheduler this tick (`planner::rejects`; the controller
    /// keeps them in `History::scheduler_rejects`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduler_rejects: Vec<(String, super::Rejection)>,
}

/// A launch the cloud accepted and reported it cannot fulfil (or that showed neither progress
/// nor an error within the pool's `scale_up.launch_timeout_s`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaunchFailureRecord {
    pub pool: PoolName,
    pub group: NodeGroupId,
    pub offering: OfferingKey,
    pub failure: LaunchFailure,
    /// Requested instances that will not come.
    pub count: u32,
    /// The cloud's words, or what gpupool saw for a timeout.
    pub message: String,
    /// When the cloud reported it (for a timeout: when the timeout passed).
    pub at: Timestamp,
    /// Stuck instances standing for the request (GCP), deleted to take it back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceId>,
}

/// One thing to do. Every action carries the reason a person reads in logs and Events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Launch `count` cold instances of `offering` in `group`.
    ScaleUp {
        pool: PoolName,
        group: NodeGroupId,
        offering: OfferingKey,
        count: u32,
        reason: Reason,
    },
    /// Start `count` stopped, cache-warm instances from the group's warm/standby pool.
    StartWarm {
        pool: PoolName,
        group: NodeGroupId,
        count: u32,
        reason: Reason,
    },
    /// Keep this many stopped, cache-warm instances in the group's warm pool.
    SetWarmPool {
        pool: PoolName,
        group: NodeGroupId,
        size: u32,
        reason: Reason,
    },
    /// Cordon and drain the node of this instance; it is terminated once empty (or when
    /// `deadline` passes).
    Drain {
        pool: PoolName,
        group: NodeGroupId,
        instance: InstanceId,
        node: Option<String>,
        deadline: Option<Timestamp>,
        reason: Reason,
    },
    /// Terminate these (empty or drained) instances and lower desired capacity by as many.
    ScaleDown {
        pool: PoolName,
        group: NodeGroupId,
        instances: Vec<InstanceId>,
        reason: Reason,
    },
    /// Take back `count` requested instances the cloud will not deliver (lower desired to what
    /// is backed; delete the stuck `instances`), so the group stops waiting on them.
    ReleaseUnfulfilled {
        pool: PoolName,
        group: NodeGroupId,
        offering: OfferingKey,
        count: u32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        instances: Vec<InstanceId>,
        reason: Reason,
    },
    /// Release instances held by a launch lifecycle hook: their model cache is warm.
    CompleteWarmup {
        pool: PoolName,
        group: NodeGroupId,
        instance: InstanceId,
    },
}

impl Action {
    pub fn pool(&self) -> &PoolName {
        match self {
            Action::ScaleUp { pool, .. }
            | Action::StartWarm { pool, .. }
            | Action::SetWarmPool { pool, .. }
            | Action::Drain { pool, .. }
            | Action::ScaleDown { pool, .. }
            | Action::ReleaseUnfulfilled { pool, .. }
            | Action::CompleteWarmup { pool, .. } => pool,
        }
    }
    pub fn group(&self) -> &NodeGroupId {
        match self {
            Action::ScaleUp { group, .. }
            | Action::StartWarm { group, .. }
            | Action::SetWarmPool { group, .. }
            | Action::Drain { group, .. }
            | Action::ScaleDown { group, .. }
            | Action::ReleaseUnfulfilled { group, .. }
            | Action::CompleteWarmup { group, .. } => group,
        }
    }
    /// Low-cardinality name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::ScaleUp { .. } => "scale_up",
            Action::StartWarm { .. } => "start_warm",
            Action::SetWarmPool { .. } => "set_warm_pool",
            Action::Drain { .. } => "drain",
            Action::ScaleDown { .. } => "scale_down",
            Action::ReleaseUnfulfilled { .. } => "release_unfulfilled",
            Action::CompleteWarmup { .. } => "complete_warmup",
        }
    }
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            Action::ScaleUp { reason, .. }
            | Action::StartWarm { reason, .. }
            | Action::SetWarmPool { reason, .. }
            | Action::Drain { reason, .. }
            | Action::ScaleDown { reason, .. }
            | Action::ReleaseUnfulfilled { reason, .. } => Some(reason),
            Action::CompleteWarmup { .. } => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::ScaleUp {
                pool,
                group,
                offering,
                count,
                reason,
            } => {
                write!(
                    f,
                    "[{pool}] scale up {group} by {count} ({offering}): {reason}"
                )
            }
            Action::StartWarm {
                pool,
                group,
                count,
                reason,
            } => {
                write!(
                    f,
                    "[{pool}] start {count} warm instance(s) in {group}: {reason}"
                )
            }
            Action::SetWarmPool {
                pool,
                group,
                size,
                reason,
            } => {
                write!(f, "[{pool}] set warm pool of {group} to {size}: {reason}")
            }
            Action::Drain {
                pool,
                instance,
                node,
                reason,
                ..
            } => {
                let node = node.as_deref().unwrap_or("-");
                write!(f, "[{pool}] drain {instance} (node {node}): {reason}")
            }
            Action::ScaleDown {
                pool,
                group,
                instances,
                reason,
            } => {
                let ids: Vec<_> = instances.iter().map(|i| i.as_str()).collect();
                write!(
                    f,
                    "[{pool}] terminate {} in {group}: {reason}",
                    ids.join(",")
                )
            }
            Action::ReleaseUnfulfilled {
                pool,
                group,
                count,
                reason,
                ..
            } => write!(
                f,
                "[{pool}] take back {count} unfulfilled launch(es) in {group}: {reason}"
            ),
            Action::CompleteWarmup {
                pool,
                group,
                instance,
            } => {
                write!(
                    f,
                    "[{pool}] complete warm-up of {instance} in {group}: model cache is warm"
                )
            }
        }
    }
}

/// What a decision is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "kebab-case")]
pub enum Subject {
    Pool(PoolName),
    Group(NodeGroupId),
    Instance(InstanceId),
    /// `namespace/name` of a pending pod.
    Pod(String),
    Offering(OfferingKey),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Pool(p) => write!(f, "pool {p}"),
            Subject::Group(g) => write!(f, "group {g}"),
            Subject::Instance(i) => write!(f, "instance {i}"),
            Subject::Pod(p) => write!(f, "pod {p}"),
            Subject::Offering(o) => write!(f, "offering {o}"),
        }
    }
}

/// Did the planner act on the subject, or why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// An action in this plan covers it.
    Acted,
    /// Covered by capacity already there or in flight; nothing to do.
    Satisfied,
    /// Deliberately not acting (waiting for unneeded time, stale data, budget).
    Held,
    /// Cannot act (no offering fits, at max).
    Blocked,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Acted => "acted",
            Outcome::Satisfied => "satisfied",
            Outcome::Held => "held",
            Outcome::Blocked => "blocked",
        }
    }
}

/// A decision with its reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub subject: Subject,
    pub outcome: Outcome,
    pub reason: Reason,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.subject,
            self.outcome.as_str(),
            self.reason
        )
    }
}

/// Why. Each variant renders as a sentence an operator can act on, and has a fixed `code()`
/// for metric labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    // ---- reasons to add capacity ----
    PendingPods {
        pods: u32,
        nodes: u32,
    },
    SignalDemand {
        wanted_replicas: u32,
        capacity_replicas: u32,
    },
    Forecast {
        forecast_replicas: u32,
        capacity_replicas: u32,
        horizon_s: u64,
    },
    MinNodes {
        min: u32,
    },
    OnDemandBase {
        base: u32,
    },
    WarmPoolSizing {
        forecast_replicas: u32,
        target: u32,
    },
    /// A warm pool wanted smaller, held at its size: keeping an unneeded warm instance has not
    /// yet cost what warming a new one would (`planner::warmpool::shrink_hold`).
    WarmPoolHeld {
        size: u32,
        wanted: u32,
        unneeded_for_s: u64,
        hold_s: u64,
    },
    /// Warm instances held for the pool's spot capacity, which a reclaim can take before a
    /// cold replacement serves (`planner::warmpool`): more than `growth` (the warm pool the
    /// forecast or the SLO's headroom wants).
    SpotStandby {
        spot_replicas: u32,
        notice_s: Option<u64>,
        cold_start_s: u64,
        growth: u32,
        target: u32,
    },
    /// Standing headroom an `slo` asks for (learnt, see `planner::headroom`).
    SloHeadroom(super::HeadroomExplain),
    Fallback {
        from: OfferingKey,
        to: OfferingKey,
        why: String,
    },
    // ---- reasons to remove or replace capacity ----
    Unneeded {
        unneeded_for_s: u64,
    },
    Empty,
    /// Launch `replacement` for the node of `replaces`, which then goes as unneeded.
    Consolidate {
        saving_per_hour: Money,
        replacement: OfferingKey,
        replaces: InstanceId,
    },
    /// A spot interruption notice: reclaimed at `deadline`; `start` says when the drain
    /// starts and why (absent in state saved before it existed: read as unknown).
    SpotInterruption {
        deadline: Timestamp,
        #[serde(default)]
        start: SpotDrainStart,
    },
    Rebalance,
    Drift {
        have: String,
        want: String,
    },
    NotServingReady {
        waited_s: u64,
        max_s: u64,
    },
    Unhealthy {
        condition: String,
    },
    DrainTimedOut {
        timeout_s: u64,
    },
    /// A drain found marked on a node (by an earlier leader) and carried on.
    DrainResumed {
        deadline: Timestamp,
    },
    // ---- reasons not to act ----
    CoveredByInFlight {
        in_flight_nodes: u32,
    },
    CoveredByCapacity,
    /// A pending pod that fits the free room of a node already serving: the scheduler will
    /// place it there, so it is not demand.
    FitsServingNode,
    AtMaxNodes {
        max: u32,
    },
    AtMaxCost {
        max_per_hour: Money,
        would_be: Money,
    },
    GroupAtMaxSize {
        group: NodeGroupId,
        max: u32,
    },
    OfferingInBackoff {
        offering: OfferingKey,
        until: Timestamp,
        error: String,
    },
    OfferingUnavailable {
        offering: OfferingKey,
    },
    AboveMaxPrice {
        offering: OfferingKey,
        price: Money,
        max: Money,
    },
    /// The offering has no known price in its region and a price or cost cap applies: it
    /// cannot be shown to stay under the cap, so it is not launched (unknown is not zero).
    PriceUnknown {
        offering: OfferingKey,
        max_per_hour: Money,
    },
    /// Nodes of the pool have no known price and `max_cost_per_hour` is set: the pool's cost
    /// cannot be shown to stay under the cap, so nothing more is launched.
    CostUnknown {
        unpriced_nodes: u32,
        max_per_hour: Money,
    },
    BudgetExhausted {
        at_once: u32,
        /// `None`: no per-window limit.
        in_window: Option<u32>,
        window_s: u64,
    },
    DataStale {
        signals: Vec<String>,
    },
    UnneededTooShort {
        unneeded_for_s: u64,
        need_s: u64,
    },
    ScaleDownCooldown {
        since_scale_up_s: u64,
        need_s: u64,
    },
    NeededForDemand,
    AtMinNodes {
        min: u32,
    },
    DoNotDisrupt {
        pod: String,
    },
    ScaleDownDisabled,
    NoOfferingFits {
        constraint: String,
    },
    NotInAnyPool,
    /// The group cannot take a change of size now (`NodeGroup::activity_in_progress`: AWS,
    /// being deleted; GCP, an operation of gpupool's still running past its deadline).
    ActivityInProgress {
        group: NodeGroupId,
    },
    ConsolidationNotWorthIt {
        saving_per_hour: Money,
        cold_start_cost: Money,
    },
    /// The offering does not meet the pool's requirements (GPU model, count, memory, zone,
    /// instance type).
    OfferingNotAllowed {
        offering: OfferingKey,
        constraint: String,
    },
    /// A pending pod will run on a node this plan launches (or starts from the warm pool).
    PlacedOnNewNode {
        group: NodeGroupId,
        offering: OfferingKey,
        warm: bool,
    },
    /// The pool's `scale_up.max_nodes_per_tick` stops further launches this tick.
    MaxNodesPerTick {
        max: u32,
    },
    /// The cloud accepted a launch of `offering` and then reported it cannot fulfil it (or it
    /// showed no progress within the launch timeout): taken back, offering backed off until
    /// `retry_at`.
    LaunchFailed {
        offering: OfferingKey,
        failure: LaunchFailure,
        message: String,
        at: Timestamp,
        retry_at: Timestamp,
    },
    /// A voluntary drain of this node was given up at its deadline (evictions refused by a
    /// PodDisruptionBudget or a do-not-disrupt pod); the node is left alone for a while.
    DrainAbandoned {
        since: Timestamp,
    },
    /// An at-risk spot node (rebalance recommendation) keeps serving until its replacement
    /// does.
    RebalanceWaiting {
        in_flight_nodes: u32,
    },
    /// The group cannot go below its own min size, so this unneeded node stays.
    GroupAtMinSize {
        group: NodeGroupId,
        min: u32,
    },
    /// The pool is paused (`paused: true`): planned, not acted on.
    Paused,
    /// The pool's `scale_down.enabled` is false: unneeded nodes stay.
    PoolScaleDownDisabled,
    /// A cluster watch failed and has not relisted yet: the cache may be missing pods bound or
    /// nodes added meanwhile, so nothing is removed until it is current again.
    CacheNotCurrent {
        since: Timestamp,
        resources: Vec<super::WatchedResource>,
    },
    /// The scheduler kept this pod off a node launched for it that fits it by every
    /// constraint gpupool models (`node`, serving since `node_ready_at`): it asks for
    /// something gpupool does not model, so no more nodes are launched for it until
    /// `retry_at` (Cluster Autoscaler's `NotTriggerScaleUp`).
    SchedulerRejects {
        node: String,
        message: String,
        retry_at: Timestamp,
    },
}

impl Reason {
    /// A disruption gpupool chooses (cost, fit, drift, advice), as opposed to one the cloud or
    /// the hardware forces (spot reclaim, scheduled retirement, a broken GPU, a node that never
    /// came up). A voluntary drain never overrides a PodDisruptionBudget or do-not-disrupt.
    pub fn is_voluntary(&self) -> bool {
        use Reason::*;
        matches!(
            self,
            Unneeded { .. } | Empty | Consolidate { .. } | Drift { .. } | Rebalance
        )
    }

    pub fn code(&self) -> &'static str {
        use Reason::*;
        match self {
            PendingPods { .. } => "pending_pods",
            SignalDemand { .. } => "signal_demand",
            Forecast { .. } => "forecast",
            MinNodes { .. } => "min_nodes",
            OnDemandBase { .. } => "on_demand_base",
            WarmPoolSizing { .. } => "warm_pool_sizing",
            SpotStandby { .. } => "spot_standby",
            WarmPoolHeld { .. } => "warm_pool_held",
            SloHeadroom(_) => "slo_headroom",
            Fallback { .. } => "fallback",
            Unneeded { .. } => "unneeded",
            Empty => "empty",
            Consolidate { .. } => "consolidate",
            SpotInterruption { .. } => "spot_interruption",
            Rebalance => "rebalance",
            Drift { .. } => "drift",
            NotServingReady { .. } => "not_serving_ready",
            Unhealthy { .. } => "unhealthy",
            DrainTimedOut { .. } => "drain_timed_out",
            DrainResumed { .. } => "drain_resumed",
            CoveredByInFlight { .. } => "covered_by_in_flight",
            CoveredByCapacity => "covered_by_capacity",
            FitsServingNode => "fits_serving_node",
            AtMaxNodes { .. } => "at_max_nodes",
            AtMaxCost { .. } => "at_max_cost",
            GroupAtMaxSize { .. } => "group_at_max_size",
            OfferingInBackoff { .. } => "offering_in_backoff",
            OfferingUnavailable { .. } => "offering_unavailable",
            AboveMaxPrice { .. } => "above_max_price",
            PriceUnknown { .. } => "price_unknown",
            CostUnknown { .. } => "cost_unknown",
            BudgetExhausted { .. } => "budget_exhausted",
            DataStale { .. } => "data_stale",
            UnneededTooShort { .. } => "unneeded_too_short",
            ScaleDownCooldown { .. } => "scale_down_cooldown",
            NeededForDemand => "needed_for_demand",
            AtMinNodes { .. } => "at_min_nodes",
            DoNotDisrupt { .. } => "do_not_disrupt",
            ScaleDownDisabled => "scale_down_disabled",
            NoOfferingFits { .. } => "no_offering_fits",
            NotInAnyPool => "not_in_any_pool",
            ActivityInProgress { .. } => "activity_in_progress",
            ConsolidationNotWorthIt { .. } => "consolidation_not_worth_it",
            OfferingNotAllowed { .. } => "offering_not_allowed",
            PlacedOnNewNode { .. } => "placed_on_new_node",
            MaxNodesPerTick { .. } => "max_nodes_per_tick",
            LaunchFailed { .. } => "launch_failed",
            GroupAtMinSize { .. } => "group_at_min_size",
            RebalanceWaiting { .. } => "rebalance_waiting",
            DrainAbandoned { .. } => "drain_abandoned",
            Paused => "paused",
            PoolScaleDownDisabled => "pool_scale_down_disabled",
            CacheNotCurrent { .. } => "cache_not_current",
            SchedulerRejects { .. } => "scheduler_rejects",
        }
    }
}

/// Where the lead of a spot drain (how long before the reclaim it starts) comes from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LeadBasis {
    /// The pool's `disruption.interruption_drain_s`.
    Configured { lead_s: u64 },
    /// Learnt: the longest request over the last `window_s` took `longest_s`; the lead is
    /// that rounded up plus one tick of `tick_s` (the drain starts at a tick, so up to one
    /// tick is lost).
    Measured {
        longest_s: f64,
        window_s: u64,
        tick_s: u64,
    },
}

impl LeadBasis {
    /// Seconds before the reclaim the drain starts.
    pub fn lead_s(&self) -> u64 {
        match *self {
            LeadBasis::Configured { lead_s } => lead_s,
            // `longest_s` is finite and at most an hour (`RequestDuration::measured`), so the
            // cast cannot saturate.
            LeadBasis::Measured {
                longest_s, tick_s, ..
            } => (longest_s.max(0.0).ceil() as u64).saturating_add(tick_s),
        }
    }
}

impl fmt::Display for LeadBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LeadBasis::Configured { .. } => {
                write!(f, "disruption.interruption_drain_s is set")
            }
            LeadBasis::Measured {
                longest_s,
                window_s,
                tick_s,
            } => write!(
                f,
                "the longest request in the last {} took {longest_s:.1} s, plus one {tick_s}-s tick",
                Span(window_s)
            ),
        }
    }
}

/// A window in the largest whole unit that fits it: "hour", "10 min", "90 s".
struct Span(u64);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            3600 => write!(f, "hour"),
            s if s % 3600 == 0 => write!(f, "{} h", s / 3600),
            s if s % 60 == 0 => write!(f, "{} min", s / 60),
            s => write!(f, "{s} s"),
        }
    }
}

/// When a spot drain starts, and why ([`crate::planner::rules::cloud_event`] decides).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "at")]
pub enum SpotDrainStart {
    /// Serving on until the basis' lead before the reclaim.
    BeforeReclaim { basis: LeadBasis },
    /// At the notice: the lead is not shorter than the `notice_s` left.
    AtNoticeLeadTooLong { basis: LeadBasis, notice_s: u64 },
    /// At the notice: how long requests take is not known (no lead configured, no fresh
    /// measurement) — never drain late on missing data.
    #[default]
    AtNoticeUnknown,
}

impl SpotDrainStart {
    /// The lead the drain starts with; `None`: at the notice.
    pub fn lead_s(&self) -> Option<u64> {
        match self {
            SpotDrainStart::BeforeReclaim { basis } => Some(basis.lead_s()),
            SpotDrainStart::AtNoticeLeadTooLong { .. } | SpotDrainStart::AtNoticeUnknown => None,
        }
    }
}

impl fmt::Display for SpotDrainStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpotDrainStart::BeforeReclaim { basis } => write!(
                f,
                "serving until {} s before the reclaim: {basis}",
                basis.lead_s()
            ),
            SpotDrainStart::AtNoticeLeadTooLong { basis, notice_s } => write!(
                f,
                "draining at the notice: a {} s lead ({basis}) does not fit the {notice_s} s left",
                basis.lead_s()
            ),
            SpotDrainStart::AtNoticeUnknown => {
                write!(f, "draining at the notice: request durations unknown")
            }
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Reason::*;
        // Every variant in exactly one group (the compiler checks this match is exhaustive).
        match self {
            PendingPods { .. }
            | SignalDemand { .. }
            | Forecast { .. }
            | MinNodes { .. }
            | OnDemandBase { .. }
            | WarmPoolSizing { .. }
            | SpotStandby { .. }
            | SloHeadroom(_)
            | Fallback { .. }
            | CoveredByInFlight { .. }
            | CoveredByCapacity
            | FitsServingNode
            | PlacedOnNewNode { .. } => self.fmt_scale_up(f),
            Unneeded { .. }
            | Empty
            | Consolidate { .. }
            | SpotInterruption { .. }
            | Rebalance
            | Drift { .. }
            | NotServingReady { .. }
            | Unhealthy { .. }
            | DrainTimedOut { .. }
            | DrainResumed { .. }
            | DrainAbandoned { .. }
            | RebalanceWaiting { .. } => self.fmt_disruption(f),
            AtMaxNodes { .. }
            | AtMaxCost { .. }
            | GroupAtMaxSize { .. }
            | GroupAtMinSize { .. }
            | OfferingInBackoff { .. }
            | OfferingUnavailable { .. }
            | AboveMaxPrice { .. }
            | PriceUnknown { .. }
            | CostUnknown { .. }
            | NoOfferingFits { .. }
            | NotInAnyPool
            | ActivityInProgress { .. }
            | OfferingNotAllowed { .. }
            | LaunchFailed { .. }
            | SchedulerRejects { .. }
            | MaxNodesPerTick { .. } => self.fmt_capacity(f),
            BudgetExhausted { .. }
            | DataStale { .. }
            | UnneededTooShort { .. }
            | WarmPoolHeld { .. }
            | ScaleDownCooldown { .. }
            | NeededForDemand
            | AtMinNodes { .. }
            | DoNotDisrupt { .. }
            | ScaleDownDisabled
            | ConsolidationNotWorthIt { .. }
            | Paused
            | PoolScaleDownDisabled
            | CacheNotCurrent { .. } => self.fmt_hold(f),
        }
    }
}

impl Reason {
    /// Scale-up: what demand wants and how it is (or already was) met.
    fn fmt_scale_up(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Reason::*;
        match self {
            PendingPods { pods, nodes } => {
                write!(f, "{pods} pending pod(s) need {nodes} more node(s)")
            }
            SignalDemand {
                wanted_replicas,
                capacity_replicas,
            } => write!(
                f,
                "signals want {wanted_replicas} replica(s), capacity serves {capacity_replicas}"
            ),
            Forecast {
                forecast_replicas,
                capacity_replicas,
                horizon_s,
            } => write!(
                f,
                "forecast wants {forecast_replicas} replica(s) within {horizon_s} s, capacity \
                 serves {capacity_replicas}"
            ),
            MinNodes { min } => write!(f, "pool minimum is {min} node(s)"),
            OnDemandBase { base } => write!(f, "on-demand base of {base} node(s)"),
            WarmPoolSizing {
                forecast_replicas,
                target,
            } => write!(
                f,
                "forecast of {forecast_replicas} replica(s) over the cold-start horizon wants \
                 {target} warm instance(s)"
            ),
            SpotStandby {
                spot_replicas,
                notice_s,
                cold_start_s,
                growth,
                target,
            } => {
                write!(
                    f,
                    "holding {target} warm: {spot_replicas} spot replica(s) can be reclaimed on "
                )?;
                match notice_s {
                    Some(n) => write!(f, "a {n}-s notice")?,
                    None => write!(f, "a notice the cloud does not state")?,
                }
                write!(
                    f,
                    ", before a {cold_start_s}-s cold start could replace them (growth alone \
                     wants {growth})"
                )
            }
            SloHeadroom(h) => write!(f, "{h}"),
            Fallback { from, to, why } => write!(f, "fell back from {from} to {to}: {why}"),
            CoveredByInFlight { in_flight_nodes } => {
                write!(
                    f,
                    "covered by {in_flight_nodes} node(s) already launching or starting"
                )
            }
            CoveredByCapacity => write!(f, "covered by serving capacity"),
            FitsServingNode => write!(
                f,
                "fits the free room of a serving node; the scheduler will place it there"
            ),
            PlacedOnNewNode {
                group,
                offering,
                warm,
            } => {
                let how = if *warm {
                    "started warm"
                } else {
                    "launched cold"
                };
                write!(f, "will run on a new {offering} node in {group} ({how})")
            }
            _ => unreachable!("{} is rendered by another group", self.code()),
        }
    }

    /// Scale-down and disruption: why a node is removed, replaced or drained.
    fn fmt_disruption(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Reason::*;
        match self {
            Unneeded { unneeded_for_s } => write!(f, "unneeded for {unneeded_for_s} s"),
            Empty => write!(f, "node is empty"),
            Consolidate {
                saving_per_hour,
                replacement,
                replaces,
            } => write!(
                f,
                "replace by {replacement} (replacing {replaces}), saving {saving_per_hour}/h"
            ),
            SpotInterruption { deadline, start } => {
                write!(
                    f,
                    "spot interruption notice, reclaimed at {deadline}; {start}"
                )
            }
            Rebalance => write!(f, "cloud recommends rebalancing this spot instance"),
            Drift { have, want } => write!(f, "model cache {have} drifted from {want}"),
            NotServingReady { waited_s, max_s } => {
                write!(
                    f,
                    "not serving-ready after {waited_s} s (max provision time {max_s} s)"
                )
            }
            Unhealthy { condition } => write!(f, "GPU unhealthy: {condition}"),
            DrainTimedOut { timeout_s } => write!(f, "drain timed out after {timeout_s} s"),
            DrainResumed { deadline } => write!(
                f,
                "resuming a drain an earlier gpupool leader started (deadline {deadline})"
            ),
            DrainAbandoned { since } => write!(
                f,
                "a voluntary drain was given up at {since}: evictions were refused (PodDisruptionBudget \
                 or do-not-disrupt)"
            ),
            RebalanceWaiting { in_flight_nodes } => write!(
                f,
                "rebalance recommended: waiting for the replacement ({in_flight_nodes} node(s) \
                 on their way) before draining"
            ),
            _ => unreachable!("{} is rendered by another group", self.code()),
        }
    }

    /// Capacity and launch: the limits, offerings and failures that stop a launch.
    fn fmt_capacity(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Reason::*;
        match self {
            AtMaxNodes { max } => write!(f, "pool is at its maximum of {max} node(s)"),
            AtMaxCost {
                max_per_hour,
                would_be,
            } => {
                write!(
                    f,
                    "would cost {would_be}/h, above the pool's maximum of {max_per_hour}/h"
                )
            }
            GroupAtMaxSize { group, max } => write!(f, "group {group} is at its max size {max}"),
            OfferingInBackoff {
                offering,
                until,
                error,
            } => {
                write!(
                    f,
                    "offering {offering} in backoff until {until} after: {error}"
                )
            }
            OfferingUnavailable { offering } => {
                write!(f, "offering {offering} reports no capacity")
            }
            AboveMaxPrice {
                offering,
                price,
                max,
            } => {
                write!(
                    f,
                    "offering {offering} costs {price}/h, above max price {max}/h"
                )
            }
            PriceUnknown {
                offering,
                max_per_hour,
            } => write!(
                f,
                "offering {offering} has no known price in its region, so it cannot be shown \
                 to stay under the cap of {max_per_hour}/h (set a price override)"
            ),
            CostUnknown {
                unpriced_nodes,
                max_per_hour,
            } => write!(
                f,
                "{unpriced_nodes} node(s) of the pool have no known price, so its cost cannot \
                 be shown to stay under its maximum of {max_per_hour}/h"
            ),
            NoOfferingFits { constraint } => write!(f, "no offering fits: {constraint}"),
            NotInAnyPool => write!(f, "pod matches no configured pool"),
            ActivityInProgress { group } => {
                write!(
                    f,
                    "group {group} cannot change size now (being deleted, or an earlier \
                     operation is still running)"
                )
            }
            OfferingNotAllowed {
                offering,
                constraint,
            } => write!(
                f,
                "offering {offering} is outside the pool's requirements: {constraint}"
            ),
            LaunchFailed {
                offering,
                failure,
                message,
                at,
                retry_at,
            } => write!(
                f,
                "launch of {offering} failed ({failure}, reported {at}): {message}; backing off \
                 until {retry_at}"
            ),
            GroupAtMinSize { group, min } => {
                write!(f, "group {group} is at its min size {min}")
            }
            SchedulerRejects {
                node,
                message,
                retry_at,
            } => write!(
                f,
                "the scheduler keeps it off node {node}, which fits it by every constraint gpupool \
                 models (\"{message}\"); no node is launched for it until {retry_at}"
            ),
            MaxNodesPerTick { max } => {
                write!(
                    f,
                    "at most {max} node(s) are launched per tick (scale_up.max_nodes_per_tick)"
                )
            }
            _ => unreachable!("{} is rendered by another group", self.code()),
        }
    }

    /// Holds: why a node (or the whole pool) is kept as it is.
    fn fmt_hold(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Reason::*;
        match self {
            BudgetExhausted {
                at_once,
                in_window,
                window_s,
            } => match in_window {
                Some(n) => write!(
                    f,
                    "disruption budget exhausted ({at_once} at once, {n} per {window_s} s)"
                ),
                None => write!(f, "disruption budget exhausted ({at_once} at once)"),
            },
            DataStale { signals } => {
                write!(
                    f,
                    "holding scale-down: data missing or stale: {}",
                    signals.join(", ")
                )
            }
            WarmPoolHeld {
                size,
                wanted,
                unneeded_for_s,
                hold_s,
            } => write!(
                f,
                "warm pool held at {size} ({wanted} wanted): unneeded for {unneeded_for_s} s of \
                 the {hold_s} s after which keeping a warm instance has cost what warming one \
                 does"
            ),
            UnneededTooShort {
                unneeded_for_s,
                need_s,
            } => {
                write!(
                    f,
                    "unneeded for {unneeded_for_s} s of the {need_s} s required"
                )
            }
            ScaleDownCooldown {
                since_scale_up_s,
                need_s,
            } => write!(
                f,
                "scaled up {since_scale_up_s} s ago; scale-down waits {need_s} s after a scale-up"
            ),
            NeededForDemand => write!(f, "needed to serve current demand plus headroom"),
            AtMinNodes { min } => write!(f, "pool is at its minimum of {min} node(s)"),
            DoNotDisrupt { pod } => write!(f, "pod {pod} must not be disrupted"),
            ScaleDownDisabled => write!(f, "node has scale-down disabled"),
            ConsolidationNotWorthIt {
                saving_per_hour,
                cold_start_cost,
            } => write!(
                f,
                "saving {saving_per_hour}/h over the next hour does not beat the cold-start cost \
                 {cold_start_cost}"
            ),
            Paused => write!(f, "pool is paused (paused: true): planned, not acted on"),
            PoolScaleDownDisabled => {
                write!(
                    f,
                    "scale-down is disabled for this pool (scale_down.enabled: false)"
                )
            }
            CacheNotCurrent { since, resources } => {
                let r: Vec<&str> = resources.iter().map(|r| r.as_str()).collect();
                write!(
                    f,
                    "holding scale-down: the {} watch failed at {since} and has not relisted yet",
                    r.join(" and ")
                )
            }
            _ => unreachable!("{} is rendered by another group", self.code()),
        }
    }
}

/// Per-pool figures of one plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolSummary {
    pub pool: PoolName,
    /// Nodes the pool should have (serving + in flight) after this plan.
    pub desired_nodes: u32,
    pub ready_nodes: u32,
    /// Replicas the pool's ready nodes run (nodes of a known shape only).
    #[serde(default)]
    pub ready_replicas: u32,
    pub in_flight_nodes: u32,
    pub warm_instances: u32,
    pub pending_pods: u32,
    /// Replicas the signals want (None without signals).
    pub wanted_replicas: Option<u32>,
    /// Replicas the forecast wants over the cold-start horizon (None when forecasting is off
    /// or has no forecast yet).
    #[serde(default)]
    pub forecast_replicas: Option<u32>,
    /// Sum of the known hourly prices of the pool's nodes after this plan.
    pub cost_per_hour: Money,
    /// Nodes whose price is unknown in their region: not in `cost_per_hour` (unknown is not
    /// zero), shown beside it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unpriced_nodes: u32,
    /// With an `slo`: spare running replicas held above demand, and why.
    #[serde(default)]
    pub headroom_running: Option<super::HeadroomExplain>,
    /// With an `slo` and a warm pool: replicas the warm pool holds, and why.
    #[serde(default)]
    pub headroom_warm: Option<super::HeadroomExplain>,
    /// Spot replicas held warm on standby (`planner::warmpool`'s spot standby): the warm pool
    /// keeps this many on top of the growth it holds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub spot_standby_replicas: u32,
    /// With an `slo`: the attainment measured (None: unknown).
    #[serde(default)]
    pub slo_attainment: Option<f64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
