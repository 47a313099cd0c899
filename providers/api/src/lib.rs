//! The boundary between gpupool's core and a cloud.
//!
//! A *node group* is one AWS Auto Scaling Group, one GCP managed instance group, or one
//! simulated group. The core never sees SDK types: a provider translates its cloud into
//! [`NodeGroup`], [`Offering`], [`Instance`] and [`ProviderEvent`], and maps its errors onto
//! [`ProviderError`], an enum the controller *acts on* (backoff, retry, give up).
//!
//! Contract shared by every method (after Cluster Autoscaler's `NodeGroup` and Karpenter's
//! `CloudProvider`):
//! - every mutating call is idempotent with respect to its target state where the cloud
//!   allows it (`set_desired` to the same value twice is one change);
//! - `NotFound` on a terminate means "already gone" and the controller treats it as success;
//! - offerings that are temporarily unavailable stay listed with `available: false`, so the
//!   planner can explain why it did not use them instead of silently forgetting them.

pub mod clock;
pub mod mig;
mod money;
mod price;
mod time;

pub use money::{HOURS_PER_MONTH, Money, gp3};
pub use price::Price;
pub use time::{Timestamp, TimestampError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);
        impl $name {
            pub fn new(s: impl Into<String>) -> Self { Self(s.into()) }
            pub fn as_str(&self) -> &str { &self.0 }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(&self.0) }
        }
        impl From<&str> for $name {
            fn from(s: &str) -> Self { Self(s.to_owned()) }
        }
    };
}

id_newtype!(
    /// The user's name for a pool of interchangeable GPU capacity, e.g. `llama-70b`.
    PoolName
);
id_newtype!(
    /// A provider's node group: an ASG name, a MIG self-link-ish `zone/name`, a sim id.
    NodeGroupId
);
id_newtype!(
    /// A cloud instance id (`i-0abc…`, a GCE instance name).
    InstanceId
);
id_newtype!(
    /// An instance or machine type name (`p5.48xlarge`, `a2-highgpu-8g`).
    InstanceTypeName
);
id_newtype!(
    /// An availability zone (`us-east-1a`, `us-central1-b`).
    Zone
);

/// On-demand or spot (GCP: STANDARD or SPOT provisioning).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CapacityType {
    OnDemand,
    Spot,
}

impl CapacityType {
    pub fn as_str(self) -> &'static str {
        match self {
            CapacityType::OnDemand => "on-demand",
            CapacityType::Spot => "spot",
        }
    }
}

impl fmt::Display for CapacityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A MIG (multi-instance GPU) profile the type can be partitioned into, e.g. `1g.10gb` × 7
/// per A100-80GB. `per_gpu` is how many slices of this profile one GPU yields.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MigProfile {
    pub name: String,
    pub per_gpu: u32,
}

/// The accelerators of one instance type. `model` is normalised upper-case (`H100`, `A10G`,
/// `L4`, `T4`, `A100`, `V100`), the way pool requirements name GPUs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GpuInfo {
    pub model: String,
    pub count: u32,
    pub memory_mib_per_gpu: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mig_profiles: Vec<MigProfile>,
}

/// What one instance of a type provides (allocatable, i.e. after system reservations).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InstanceType {
    pub name: InstanceTypeName,
    pub vcpu: u32,
    pub memory_mib: u64,
    pub gpu: GpuInfo,
}

/// `<model>@<version>` as a label value. Kubernetes and GCP label values both reject `@`
/// (GCP also `.` and upper case) and hold at most 63 characters, so after lower-casing every
/// character outside `[a-z0-9_-]` becomes `_`: `llama-70b@v3.1` → `llama-70b_v3_1`. AWS tags keep
/// the plain form. One encoding for Kubernetes, GCP and the Terraform startup scripts; compare
/// encoded forms, never raw ones.
pub fn model_cache_label_value(cache: &str) -> String {
    cache
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect()
}

/// Key of an offering, used for backoff bookkeeping and reasons.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OfferingKey {
    pub instance_type: InstanceTypeName,
    pub capacity_type: CapacityType,
    pub zone: Zone,
}

impl fmt::Display for OfferingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.instance_type, self.capacity_type, self.zone
        )
    }
}

/// One way to get capacity: instance type × capacity type × zone, with its price and risk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offering {
    pub instance_type: InstanceType,
    pub capacity_type: CapacityType,
    pub zone: Zone,
    /// Price of one running instance per hour in the group's region, or [`Price::Unknown`]
    /// when no source has a figure for this type there (never another region's figure).
    pub price_per_hour: Price,
    /// Probability that a spot instance of this offering is reclaimed within an hour
    /// (0 for on-demand). From the spot advisor bucket, raised by observed interruptions.
    pub interruption_risk_per_hour: f64,
    /// False while the cloud reports no capacity; kept in the list so reasons can name it.
    pub available: bool,
}

impl Offering {
    pub fn key(&self) -> OfferingKey {
        OfferingKey {
            instance_type: self.instance_type.name.clone(),
            capacity_type: self.capacity_type,
            zone: self.zone.clone(),
        }
    }
}

/// A node taint, as on the Kubernetes node the group's instances register.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Taint {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: TaintEffect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

/// The warm (AWS) or standby (GCP) pool of a group: stopped instances whose disks already hold
/// the model cache, started in seconds instead of minutes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmPool {
    /// Size the provider is asked to keep (AWS `MinSize` of the warm pool, GCP
    /// `targetStoppedSize`).
    pub target_size: u32,
    /// Stopped instances ready to start now.
    pub ready: u32,
    /// Instances still being prepared for the warm pool (launch, cache download, stop).
    pub warming: u32,
    /// What one stopped warm instance costs per hour — its disks: "We don't charge usage for
    /// a stopped instance … you are charged for Amazon EBS volume usage" (Amazon EC2 API
    /// Reference, `StopInstances`); a stopped Compute Engine VM likewise bills its persistent
    /// disks only. [`Price::Unknown`] when the provider does not read it (the pool's
    /// `warm_pool.standing_cost_per_hour` may say).
    #[serde(default = "unknown_price")]
    pub standing_cost_per_hour: Price,
}

fn unknown_price() -> Price {
    Price::Unknown
}

/// One ASG / MIG / simulated group, as discovered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeGroup {
    pub id: NodeGroupId,
    pub pool: PoolName,
    /// Offerings this group can launch (all share the group's capacity type on AWS warm-pool
    /// groups; a mixed-instances group lists one per override × zone).
    pub offerings: Vec<Offering>,
    pub min_size: u32,
    pub max_size: u32,
    /// Desired capacity as the cloud reports it now.
    pub desired: u32,
    /// Labels a node of this group registers with (the template; scale from zero).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<Taint>,
    #[serde(default)]
    pub warm_pool: Option<WarmPool>,
    /// The group cannot take a change of size now: on AWS while it is being deleted, on GCP
    /// while an operation gpupool started on it has outlived its deadline. Not an ordinary
    /// launch in progress: the cloud takes a new size while it carries out the last one.
    #[serde(default)]
    pub activity_in_progress: bool,
    /// Launches the cloud accepted but reports it cannot fulfil, still outstanding now (see
    /// [`UnfulfilledLaunch`]). Empty when every requested instance is on its way or there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unfulfilled: Vec<UnfulfilledLaunch>,
}

/// A launch the cloud accepted and then reported it could not carry out — the way both clouds
/// report a stockout or a quota:
/// - AWS: `SetDesiredCapacity` succeeds; minutes later `DescribeScalingActivities` shows the
///   launch activity with `StatusCode: Failed` and a `StatusMessage` naming the EC2 error
///   (InsufficientInstanceCapacity, UnfulfillableCapacity, MaxSpotInstanceCountExceeded,
///   VcpuLimitExceeded …), and the group's desired capacity stays raised with no instance
///   behind it. `instances` is empty: the unfulfilled part is `desired` minus the instances
///   the group lists.
/// - GCP: `resize`/`createInstances` succeed; the managed instances stay `currentAction:
///   CREATING` with `lastAttempt.errors` (ZONE_RESOURCE_POOL_EXHAUSTED, …QUOTA…) while the
///   group retries. `instances` names those stuck VMs.
///
/// A provider reports one only while it is outstanding: once the request was taken back
/// ([`NodeGroupProvider::release_unfulfilled`]) or a later launch succeeded, it is gone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnfulfilledLaunch {
    /// The offering that could not be launched (zone and capacity type as the cloud said).
    pub offering: OfferingKey,
    pub failure: LaunchFailure,
    /// How many requested instances this failure stands for (AWS: desired − listed instances;
    /// GCP: the stuck VMs). At least 1.
    pub count: u32,
    /// The cloud's own words (the activity's StatusMessage, the lastAttempt error message).
    pub message: String,
    /// When the cloud reported the failure (the activity's start time, the error's time; the
    /// time the provider first saw it when the cloud gives none).
    pub at: Timestamp,
    /// Instances that stand for the unfulfilled request and must be deleted to take it back
    /// (GCP: the stuck CREATING VMs). Empty on AWS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceId>,
}

/// Where an instance is in its life. Order is the normal progression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LifecycleState {
    /// Requested, booting, pulling image, loading the model.
    Launching,
    /// Being prepared for the warm pool (will stop when its cache is warm).
    Warming,
    /// Stopped in the warm pool with a warm model cache.
    Warm,
    /// Started from the warm pool, loading from local disk.
    Starting,
    /// Serving (for Kubernetes pools: the node is serving-ready).
    Ready,
    /// Cordoned, in-flight work finishing.
    Draining,
    /// Being terminated.
    Terminating,
}

impl LifecycleState {
    /// Capacity that will serve without further action: counted by the planner so a second
    /// tick never launches the same capacity again.
    pub fn is_in_flight(self) -> bool {
        matches!(self, LifecycleState::Launching | LifecycleState::Starting)
    }
    pub fn is_warm_pool(self) -> bool {
        matches!(self, LifecycleState::Warming | LifecycleState::Warm)
    }
    /// Backs one unit of the group's desired capacity: launching, starting, serving or
    /// draining. Not the warm pool (AWS counts warm-pool instances apart from desired; GCP's
    /// `targetSize` counts running VMs only) and not an instance being terminated (gpupool
    /// terminates with a decrement).
    pub fn counts_in_desired(self) -> bool {
        use LifecycleState::*;
        matches!(self, Launching | Starting | Ready | Draining)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleState::Launching => "launching",
            LifecycleState::Warming => "warming",
            LifecycleState::Warm => "warm",
            LifecycleState::Starting => "starting",
            LifecycleState::Ready => "ready",
            LifecycleState::Draining => "draining",
            LifecycleState::Terminating => "terminating",
        }
    }
}

/// One instance of a group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: InstanceId,
    pub group: NodeGroupId,
    pub instance_type: InstanceTypeName,
    pub capacity_type: CapacityType,
    pub zone: Zone,
    pub state: LifecycleState,
    pub launched_at: Timestamp,
    /// `<model>@<version>` the instance reports its cache holds (tag or node label).
    #[serde(default)]
    pub model_cache: Option<String>,
    /// Kubernetes `spec.providerID` of the node this instance is (aws:///zone/i-…,
    /// gce://project/zone/name).
    #[serde(default)]
    pub provider_id: Option<String>,
    /// Scale-in protection set outside gpupool; never chosen as a victim.
    #[serde(default)]
    pub protected_from_scale_in: bool,
    /// A lifecycle hook holds this instance until the controller completes it.
    #[serde(default)]
    pub awaiting_lifecycle_hook: bool,
    /// Private address, for VM-only health checks.
    #[serde(default)]
    pub private_ip: Option<String>,
    /// The drain deadline marked on the instance by [`NodeGroupProvider::mark_draining`] (AWS:
    /// the tag [`DRAIN_DEADLINE_TAG`]; GCP: the label [`DRAIN_DEADLINE_LABEL`]), read back
    /// with the instance. `None`: no mark, or a mark whose value is not a sane time (logged by
    /// the provider; an unreadable mark is not a drain to resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_deadline: Option<Timestamp>,
}

/// How long after launch a Linux Spot Instance that *Amazon EC2* interrupts is not charged at
/// all (Amazon EC2 User Guide, "Billing for interrupted Spot Instances": interrupted by Amazon
/// EC2 in the first hour, "No charge"; stopped or terminated by the user, "Charged for the
/// seconds used"). Compute Engine documents no such refund for a preempted Spot VM.
pub const AWS_SPOT_RECLAIM_FREE: std::time::Duration = std::time::Duration::from_secs(3600);

/// AWS tag key marking a VM-only drain in progress; its value is the drain deadline
/// ([`encode_drain_deadline`]). Set with the drain, removed when the drain is given up without
/// terminating; a terminated instance takes it along.
pub const DRAIN_DEADLINE_TAG: &str = "gpupool.io/drain-deadline";
/// The same mark as a GCP label: label keys allow only lowercase letters, digits, `-` and `_`
/// (Compute Engine docs, "Labels": "Keys and values can only contain lowercase letters,
/// numeric characters, underscores, and dashes"), so `gpupool.io/` becomes `gpupool-io-`, as
/// the crate's other labels (`gpupool-io-pool`).
pub const DRAIN_DEADLINE_LABEL: &str = "gpupool-io-drain-deadline";

/// The drain-deadline mark's value: whole seconds since the Unix epoch, in decimal (`1767225600`).
/// Chosen over RFC 3339 because a GCP label value cannot hold `:` or upper-case `T`/`Z`, and one
/// encoding for both clouds keeps the mark comparable; the deadline is rounded *down* to the
/// second, so a resumed drain never ends later than the original.
pub fn encode_drain_deadline(deadline: Timestamp) -> String {
    deadline.millis().div_euclid(1000).to_string()
}

/// Parse a drain-deadline mark. `None` for anything but decimal epoch seconds inside
/// [`Timestamp::is_external_range`] (the tag is written by gpupool, but anyone with
/// `ec2:CreateTags` can write it: an insane value is rejected, never wrapped).
pub fn decode_drain_deadline(value: &str) -> Option<Timestamp> {
    let v = value.trim();
    if v.is_empty() || v.len() > 15 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = v.parse().ok()?;
    let t = Timestamp::from_secs(secs);
    t.is_external_range().then_some(t)
}

/// Something the cloud told us that the controller must act on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderEvent {
    /// Token to acknowledge after handling (an SQS receipt handle, an operation id). `None`
    /// for events that need no acknowledgement.
    pub ack: Option<String>,
    /// Id for de-duplication and logs (SQS message id, operation id).
    pub id: String,
    pub kind: ProviderEventKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ProviderEventKind {
    /// The instance will be reclaimed at `deadline` (AWS: 2 min notice, GCP: 30 s).
    SpotInterruption {
        instance: InstanceId,
        deadline: Timestamp,
    },
    /// The cloud advises replacing this spot instance proactively.
    RebalanceRecommendation { instance: InstanceId },
    /// Scheduled maintenance / retirement at `at`.
    ScheduledChange { instance: InstanceId, at: Timestamp },
    /// The instance changed state outside our control (stopped, terminated).
    InstanceStateChange { instance: InstanceId, state: String },
    /// A launch for this offering failed (read back from scaling activities / operations).
    LaunchFailed {
        group: NodeGroupId,
        offering: OfferingKey,
        error: LaunchFailure,
        message: String,
    },
}

impl ProviderEventKind {
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderEventKind::SpotInterruption { .. } => "spot_interruption",
            ProviderEventKind::RebalanceRecommendation { .. } => "rebalance_recommendation",
            ProviderEventKind::ScheduledChange { .. } => "scheduled_change",
            ProviderEventKind::InstanceStateChange { .. } => "instance_state_change",
            ProviderEventKind::LaunchFailed { .. } => "launch_failed",
        }
    }
}

/// Why a launch failed, as far as the controller cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LaunchFailure {
    InsufficientCapacity,
    QuotaExceeded,
    /// The cloud cannot launch this offering at all in that place (AWS `Unsupported`: the
    /// instance type is not offered in the zone).
    Unsupported,
    /// Accepted, then neither progress nor an error within the pool's launch timeout.
    TimedOut,
    Other,
}

impl LaunchFailure {
    /// A fixed, low-cardinality label for metrics and reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchFailure::InsufficientCapacity => "insufficient_capacity",
            LaunchFailure::QuotaExceeded => "quota_exceeded",
            LaunchFailure::Unsupported => "unsupported",
            LaunchFailure::TimedOut => "timed_out",
            LaunchFailure::Other => "other",
        }
    }
}

impl fmt::Display for LaunchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors a provider returns. The controller matches on the variant, never on text.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("insufficient capacity for {offering}")]
    InsufficientCapacity { offering: OfferingKey },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("quota exceeded: {what}")]
    QuotaExceeded { what: String },
    #[error("throttled by the cloud API (retry after {retry_after_ms} ms)")]
    Throttled { retry_after_ms: u64 },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("{call} on {target} failed")]
    Transient {
        /// The API call, e.g. `SetDesiredCapacity`.
        call: &'static str,
        /// What it was acting on (group, instance, queue).
        target: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ProviderError {
    /// A fixed, low-cardinality label for metrics (never object names or error text).
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::InsufficientCapacity { .. } => "insufficient_capacity",
            ProviderError::NotFound { .. } => "not_found",
            ProviderError::QuotaExceeded { .. } => "quota_exceeded",
            ProviderError::Throttled { .. } => "throttled",
            ProviderError::InvalidConfig(_) => "invalid_config",
            ProviderError::Transient { .. } => "transient",
        }
    }
}

pub type Result<T, E = ProviderError> = std::result::Result<T, E>;

/// A cloud (or the simulator) seen as node groups.
///
/// Implementations must be cheap to call once per tick: the controller calls `node_groups` and
/// `instances` every tick and caches nothing across ticks itself.
#[async_trait]
pub trait NodeGroupProvider: Send + Sync {
    /// A short name for logs and metrics: `aws`, `gcp`, `sim`.
    fn name(&self) -> &'static str;

    /// Discover the groups gpupool manages (tagged/labelled for a configured pool), with their
    /// offerings, sizes and warm pools. Paginates fully. Required.
    async fn node_groups(&self) -> Result<Vec<NodeGroup>>;

    /// All instances of a group in any lifecycle state, warm-pool members included. Required.
    async fn instances(&self, group: &NodeGroupId) -> Result<Vec<Instance>>;

    /// Raise desired capacity by `delta`. The cloud takes warm/standby instances first (AWS
    /// warm pools and GCP standby pools both do), so this is also how warm instances are
    /// started. Must not exceed the group's `max_size`: returns `InvalidConfig` if asked to.
    async fn increase(&self, group: &NodeGroupId, delta: u32) -> Result<()>;

    /// Terminate exactly these instances and lower desired capacity by as many, so the cloud
    /// never picks a victim itself. An instance already gone is not an error. Instances with
    /// scale-in protection are refused with `InvalidConfig`.
    async fn terminate(&self, group: &NodeGroupId, instances: &[InstanceId]) -> Result<()>;

    /// Take back launches the cloud accepted but will not fulfil, without naming a running
    /// instance: AWS lowers desired capacity by `count` but never below the instances the
    /// group lists nor below its min size; GCP deletes the stuck `instances` (which lowers
    /// `targetSize`). Returns how many requested instances were taken back (less than `count`
    /// when the group's min size or a launch that appeared meanwhile stops it). Idempotent:
    /// asking again after the request is gone takes back nothing.
    async fn release_unfulfilled(
        &self,
        group: &NodeGroupId,
        count: u32,
        instances: &[InstanceId],
    ) -> Result<u32>;

    /// Ask the cloud to keep `size` stopped, cache-warm instances. `InvalidConfig` when the
    /// group cannot have one (AWS: mixed-instances or spot group).
    async fn set_warm_pool_size(&self, group: &NodeGroupId, size: u32) -> Result<()>;

    /// Release an instance held by a launch lifecycle hook once its model cache is warm
    /// (AWS `CompleteLifecycleAction`). Providers without hooks return `Ok(())`.
    async fn complete_warmup(&self, group: &NodeGroupId, instance: &InstanceId) -> Result<()>;

    /// Events since the last call: interruptions, rebalance advice, failed launches. Events
    /// with an `ack` token are delivered again until acknowledged.
    async fn poll_events(&self) -> Result<Vec<ProviderEvent>>;

    /// Acknowledge a handled event (delete the SQS message). Unknown tokens are not an error.
    async fn ack_event(&self, ack: &str) -> Result<()>;

    /// Mark a VM-only drain on the instance itself, with its deadline, so a new process that
    /// lost (or never had) the state file resumes it: the mark comes back as
    /// [`Instance::drain_deadline`]. Idempotent (marking again overwrites the value). An
    /// instance already gone is `NotFound`.
    async fn mark_draining(
        &self,
        group: &NodeGroupId,
        instance: &InstanceId,
        deadline: Timestamp,
    ) -> Result<()>;

    /// Remove the drain mark: the drain was given up and the instance stays in service.
    /// Idempotent: no mark, or an instance already gone, is not an error.
    async fn clear_draining(&self, group: &NodeGroupId, instance: &InstanceId) -> Result<()>;

    /// How long after its launch a spot instance that the *cloud* reclaims is not billed at
    /// all, when this provider can leave a drained instance to that reclaim
    /// ([`Self::release_to_reclaim`]). AWS: an hour (EC2 User Guide, "Billing for interrupted
    /// Spot Instances"). `None` (the default): the cloud bills a reclaimed instance as one
    /// the controller terminates, or the provider cannot release one — terminate instead.
    fn reclaim_refund_window(&self) -> Option<std::time::Duration> {
        None
    }

    /// Take a drained spot instance under an interruption notice out of its group, lowering
    /// desired capacity by one, and leave it running for the cloud to reclaim (AWS
    /// `DetachInstances` with `ShouldDecrementDesiredCapacity`): the cloud then launches no
    /// replacement, and a reclaim within [`Self::reclaim_refund_window`] is not billed. The
    /// caller marks the instance first ([`Self::mark_draining`], the notice's deadline), so
    /// [`Self::sweep_released`] finds it if the reclaim never comes. `InvalidConfig` when the
    /// cloud refuses (min size, not in service): terminate instead. The default refuses.
    async fn release_to_reclaim(&self, group: &NodeGroupId, instance: &InstanceId) -> Result<()> {
        let _ = instance;
        Err(ProviderError::InvalidConfig(format!(
            "{group}: this provider cannot leave an instance to the cloud's reclaim"
        )))
    }

    /// Terminate the instances [`Self::release_to_reclaim`] left to a reclaim that has not
    /// come by their marked deadline plus `grace` (a notice the cloud did not carry out, a
    /// clock off): found by their mark, outside every group, so a restarted controller
    /// finds them too. Returns what it terminated. The default has nothing to sweep.
    async fn sweep_released(
        &self,
        now: Timestamp,
        grace: std::time::Duration,
    ) -> Result<Vec<InstanceId>> {
        let _ = (now, grace);
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_states_are_launching_and_starting() {
        use LifecycleState::*;
        let in_flight: Vec<_> = [
            Launching,
            Warming,
            Warm,
            Starting,
            Ready,
            Draining,
            Terminating,
        ]
        .into_iter()
        .filter(|s| s.is_in_flight())
        .collect();
        assert_eq!(in_flight, vec![Launching, Starting]);
    }

    #[test]
    fn error_kinds_are_stable_labels() {
        let e = ProviderError::Throttled { retry_after_ms: 10 };
        assert_eq!(e.kind(), "throttled");
        let e = ProviderError::Transient {
            call: "SetDesiredCapacity",
            target: "asg-1".into(),
            source: "boom".into(),
        };
        assert_eq!(e.to_string(), "SetDesiredCapacity on asg-1 failed");
    }

    #[test]
    fn drain_deadline_marks_round_trip_and_reject_what_is_not_a_sane_time() {
        let t = Timestamp::from_millis(1_767_225_600_900);
        assert_eq!(encode_drain_deadline(t), "1767225600");
        assert_eq!(
            decode_drain_deadline("1767225600"),
            Some(Timestamp::from_secs(1_767_225_600))
        );
        // Rounded down: a resumed drain never ends later than the original.
        assert!(decode_drain_deadline(&encode_drain_deadline(t)).unwrap() <= t);
        for bad in [
            "",
            " ",
            "-5",
            "1e300",
            "2026-01-01T00:00:00Z",
            "999999999999999999999",
            "12.5",
            "0x10",
        ] {
            assert_eq!(decode_drain_deadline(bad), None, "{bad:?}");
        }
        // Label rules (lowercase, digits, `-`, `_`; at most 63 characters) hold for the GCP key
        // and every value.
        let label_ok = |s: &str| {
            s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        };
        assert!(label_ok(DRAIN_DEADLINE_LABEL));
        assert!(label_ok(&encode_drain_deadline(t)));
    }

    #[test]
    fn event_kind_serialises_tagged() {
        let k = ProviderEventKind::SpotInterruption {
            instance: "i-1".into(),
            deadline: Timestamp::from_secs(120),
        };
        let s = serde_json::to_string(&k).unwrap();
        assert!(s.contains("\"type\":\"spot-interruption\""), "{s}");
    }
}
