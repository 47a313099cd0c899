//! gpupool's GCP provider: managed instance groups (MIGs) as node groups.
//!
//! - **Discovery.** MIG resources carry no labels, so a MIG belongs to pool `<pool>` when its
//!   instance template's `properties.labels` hold `gpupool-io-pool=<pool>` and
//!   `gpupool-io-enabled=true` (GCP label keys allow no `.` or `/`: `gpupool.io/pool` →
//!   `gpupool-io-pool`, the mapping of the root crate's `contract::gcp_label_key`). Zonal MIGs
//!   are listed in the configured zones, regional MIGs in the region. Offerings are the
//!   template's machine type (+ `guestAccelerators`) × provisioning model (STANDARD / SPOT) ×
//!   the MIG's zones (its zone, or `distributionPolicy.zones`), priced from the table in
//!   `data/` (see [`catalog`]).
//! - **Sizes.** Per the Compute API reference (`InstanceGroupManager`), `targetSize` is "the
//!   target number of running instances"; the standby pool is `targetStoppedSize` +
//!   `targetSuspendedSize` on top of it. gpupool's `desired` is `targetSize`.
//! - **Launch failures.** A MIG reports a stockout or a quota not as an operation error but as
//!   managed instances that stay `currentAction: CREATING` with `lastAttempt.errors` while it
//!   retries (what Cluster Autoscaler's gce provider reads, `autoscaling_gce_client.go`
//!   `FetchMigInstances`). `node_groups` reports those VMs per offering in
//!   [`NodeGroup::unfulfilled`] as soon as they are listed; `instances` keeps listing them as
//!   `Launching` (the planner leaves them out by name); `release_unfulfilled` deletes them.
//! - **Actuation.** `increase` in `MANUAL` standby mode (the default) first starts stopped and
//!   resumes suspended VMs by name (`startInstances`/`resumeInstances`, which raise
//!   `targetSize` and lower the standby targets), then resizes for the rest; in
//!   `SCALE_OUT_POOL` mode the MIG does that itself on a resize ("automatically resumes or starts
//!   VMs in the standby pool when the group scales out, and replenishes the standby pool
//!   afterwards", `InstanceGroupManagerStandbyPolicy.mode`), so gpupool only resizes. The pool's
//!   size is set through `targetStoppedSize` (or `targetSuspendedSize` for a suspended pool)
//!   alone. A standby VM's hourly cost (`WarmPool::standing_cost_per_hour`) is its template's
//!   disks while stopped ([`standby_cost`]); unknown where a disk or the pool is not priced.
//!   `terminate` is `deleteInstances` with `skipInstancesOnValidationError`. Every
//!   operation is polled to `DONE` within the operation deadline; its `error.errors[].code`
//!   maps onto [`ProviderError`].
//! - **Drain mark (VM-only).** `mark_draining`/`clear_draining` set or remove the VM label
//!   `gpupool-io-drain-deadline` (epoch seconds: label values allow only lowercase letters,
//!   digits, `-` and `_`, so no RFC 3339 time) through `instances.setLabels`, which replaces the
//!   whole label set and takes the `labelFingerprint` of the labels read with `instances.get`
//!   (Compute API reference, `instances.setLabels`); a racing label write fails with 412 and
//!   the controller retries next tick. `instances` reads the label back with the VMs.
//!   Tested as a pure label merge (`mapping::with_drain_mark`), against the fake Compute
//!   server (`tests/gcp_fake.rs`: set, read back, removed, a racing write refused with 412 and
//!   retried without losing the other writer's label), and end to end by the root package's
//!   `tests/gcp_drain_mark.rs` (a drain resumed from the label after the process and its state
//!   file are lost).
//! - **Events.** Preemptions come from zone operations of type
//!   `compute.instances.preempted` (30 s notice), listed by `operationType` alone and dated in
//!   the client: `insertTime` carries the zone's UTC offset, so a filter comparing it with a UTC
//!   string would skip hours of events.

pub mod catalog;
mod compute;
mod mapping;
pub mod monitoring;
pub mod standby_cost;
pub mod util;

pub use compute::{GroupRef, Location};

use async_trait::async_trait;
use catalog::Catalog;
use compute::{ClientOptions, Compute};
use google_cloud_compute_v1::model::{InstanceGroupManager, ManagedInstance, Operation};
use gpupool_provider::{
    Instance, InstanceId, LaunchFailure, LifecycleState, NodeGroup, NodeGroupId, NodeGroupProvider,
    OfferingKey, PoolName, ProviderError, ProviderEvent, ProviderEventKind, Result, Timestamp,
    UnfulfilledLaunch, WarmPool, Zone,
};
use mapping::TemplateShape;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// GCP label keys (`contract.rs` in the root crate holds the same strings; this crate cannot
/// depend on the root package, and tests/gcp_controller.rs checks the two agree).
pub const LABEL_POOL: &str = "gpupool-io-pool";
pub const LABEL_ENABLED: &str = "gpupool-io-enabled";
pub const LABEL_MODEL_CACHE: &str = "gpupool-io-model-cache";

/// The operation type Compute records when it reclaims a SPOT/preemptible VM.
pub const OP_PREEMPTED: &str = "compute.instances.preempted";
/// GCP's preemption notice: the guest gets 30 s between the ACPI signal and the stop.
pub const PREEMPTION_NOTICE_S: f64 = 30.0;

/// How far back the first preemption poll looks: a notice older than its 30 s deadline is
/// no longer actionable, so a restart should not replay an hour of history.
const FIRST_POLL_LOOKBACK_S: f64 = 60.0;
/// Event ids remembered for de-duplication (bounded like the controller's own set).
const SEEN_MAX: usize = 4096;

/// Which credentials the clients send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GcpCredentials {
    /// [`GcpCredentials::for_endpoint`] decides from the endpoint override.
    #[default]
    Auto,
    /// Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC file,
    /// or the metadata server (GKE Workload Identity, a VM's service account).
    ApplicationDefault,
    /// No credentials: for a local fake or emulator only.
    Anonymous,
}

impl GcpCredentials {
    /// ADC for real endpoints; anonymous for a plain-`http://` endpoint override, since an
    /// access token must never travel unencrypted and only test fakes listen on plain HTTP.
    pub fn for_endpoint(endpoint: Option<&str>) -> GcpCredentials {
        match endpoint {
            Some(e) if e.starts_with("http://") => GcpCredentials::Anonymous,
            _ => GcpCredentials::ApplicationDefault,
        }
    }
}

/// Compute Engine's documented ceiling on the VMs of one zonal MIG: the default cap of a
/// pool's MIG when the pool sets none.
pub const DEFAULT_MAX_GROUP_SIZE: u32 = 1000;

/// One pool gpupool manages on GCP.
#[derive(Clone, Debug, PartialEq)]
pub struct GcpPoolSettings {
    pub name: PoolName,
    /// MIGs have no maximum of their own (that is the autoscaler's): gpupool refuses to grow
    /// one of this pool's MIGs past this many running VMs.
    pub max_group_size: u32,
    /// `<model>@<version>` serving VMs must hold; matched against the encoded label.
    pub model_cache: Option<String>,
    /// A VM the MIG is still creating with no error reported for this long is an unfulfilled
    /// launch ([`LaunchFailure::TimedOut`]): the pool's `scale_up.launch_timeout_s`.
    pub launch_timeout: Duration,
}

/// The default of [`GcpPoolSettings::launch_timeout`] (the config's default
/// `scale_up.launch_timeout_s`).
pub const DEFAULT_LAUNCH_TIMEOUT: Duration = Duration::from_secs(300);

impl GcpPoolSettings {
    /// A pool with the default cap ([`DEFAULT_MAX_GROUP_SIZE`]) and no model-cache check.
    pub fn new(name: PoolName) -> GcpPoolSettings {
        GcpPoolSettings {
            name,
            max_group_size: DEFAULT_MAX_GROUP_SIZE,
            model_cache: None,
            launch_timeout: DEFAULT_LAUNCH_TIMEOUT,
        }
    }

    /// How long a VM may stay in creation with no error before it counts as failed (use the
    /// pool's `scale_up.launch_timeout_s`).
    pub fn with_launch_timeout(mut self, t: Duration) -> Self {
        self.launch_timeout = t;
        self
    }

    /// Cap each of the pool's MIGs (use the pool's `limits.max_nodes`).
    pub fn with_max_group_size(mut self, n: u32) -> Self {
        self.max_group_size = n;
        self
    }

    /// The `<model>@<version>` the pool's VMs must report (the pool's `model_cache`).
    pub fn with_model_cache(mut self, m: Option<String>) -> Self {
        self.model_cache = m;
        self
    }
}

/// Everything the provider needs; the CLI maps `GcpConfig` and the pools onto it.
#[derive(Clone, Debug)]
pub struct GcpSettings {
    pub project: String,
    /// Region of regional MIGs (and of the prices).
    pub region: String,
    /// Zones searched for zonal MIGs and polled for preemptions. The zones of regional MIGs
    /// are polled too.
    pub zones: Vec<String>,
    /// `https://compute.googleapis.com` when `None`; a private endpoint or a test fake.
    pub endpoint_url: Option<String>,
    pub credentials: GcpCredentials,
    /// Budget of one API call, retries included.
    pub api_timeout: Duration,
    /// How long a mutating call waits for its operation to reach `DONE`.
    pub operation_deadline: Duration,
    /// Pause between two reads of a running operation.
    pub operation_poll_interval: Duration,
    pub pools: Vec<GcpPoolSettings>,
}

impl GcpSettings {
    pub fn new(project: impl Into<String>, region: impl Into<String>) -> GcpSettings {
        GcpSettings {
            project: project.into(),
            region: region.into(),
            zones: Vec::new(),
            endpoint_url: None,
            credentials: GcpCredentials::Auto,
            api_timeout: Duration::from_secs(20),
            operation_deadline: Duration::from_secs(120),
            operation_poll_interval: Duration::from_secs(1),
            pools: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GcpError {
    #[error("invalid GCP settings: {0}")]
    Settings(String),
    #[error("loading Application Default Credentials")]
    Credentials(#[source] google_cloud_auth::build_errors::Error),
    #[error("building the {client} client")]
    Client {
        client: &'static str,
        #[source]
        source: google_cloud_gax::client_builder::Error,
    },
    #[error("loading the shipped price table")]
    Catalog(#[from] catalog::CatalogError),
}

/// What discovery learned about a group, kept for the calls that follow in the same tick.
#[derive(Clone, Debug)]
struct GroupMeta {
    pool: PoolName,
    shape: TemplateShape,
    zones: Vec<String>,
}

impl GroupMeta {
    /// `zone` if known, else the group's first zone (a zonal MIG has only one).
    fn zone_or_first(&self, zone: Option<String>) -> String {
        zone.or_else(|| self.zones.first().cloned())
            .unwrap_or_default()
    }
}

/// What this provider saw of one VM the MIG is creating.
#[derive(Clone, Copy, Debug)]
struct Creation {
    since: Timestamp,
    error_since: Option<Timestamp>,
}

#[derive(Default)]
struct State {
    /// Instance templates are immutable in GCP (a change is a new template), so a template
    /// read once never needs reading again.
    templates: HashMap<String, Option<TemplateShape>>,
    groups: BTreeMap<GroupRef, GroupMeta>,
    /// Operations that outlived their deadline: the group stays "activity in progress" until
    /// they are DONE.
    pending_ops: BTreeMap<GroupRef, Operation>,
    /// Newest preemption `insertTime` seen per zone.
    preempt_cursor: BTreeMap<String, Timestamp>,
    seen: VecDeque<String>,
    /// When each VM without a creation time (still being created) was first seen, per group.
    first_seen: BTreeMap<GroupRef, HashMap<String, Timestamp>>,
    /// Per group, the VMs the MIG is creating (not yet running) and when they were first seen
    /// so, and first seen with a `lastAttempt` error: the API dates neither, so these are the
    /// `at` of their unfulfilled launch.
    creating: BTreeMap<GroupRef, HashMap<String, Creation>>,
    /// Why a group's standby VM cost is unknown, as already warned: once per group and reason.
    cost_warned: BTreeSet<(GroupRef, standby_cost::Unknown)>,
}

impl State {
    fn remember(&mut self, id: &str) -> bool {
        if self.seen.iter().any(|s| s == id) {
            return false;
        }
        self.seen.push_back(id.to_owned());
        if self.seen.len() > SEEN_MAX {
            self.seen.pop_front();
        }
        true
    }
}

pub struct GcpProvider {
    settings: GcpSettings,
    compute: Compute,
    catalog: Catalog,
    state: Mutex<State>,
}

fn wall_clock() -> Timestamp {
    // The provider is the imperative shell: reading the clock is its job (the planner only ever
    // receives times as arguments), through the one clock module.
    gpupool_provider::clock::wall_clock()
}

fn as_i32(n: u32, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| ProviderError::InvalidConfig(format!("{what} {n} is too large")))
}

fn size(v: Option<i32>) -> u32 {
    v.map_or(0, |n| n.clamp(0, MAX_MIG_SIZE) as u32)
}

/// Largest MIG size accepted from the API: "A managed instance group can have up to 1000 VM
/// instances per group. Please contact Cloud Support if you need an increase in this limit"
/// (Compute API reference, `instanceGroupManagers.insert`; 2,000 with paginated listing, per
/// the "Increase a MIG's size limit" sample). 10,000 leaves room for raised limits.
pub const MAX_MIG_SIZE: i32 = 10_000;

/// A MIG size field gpupool refuses to plan on (negative, or beyond [`MAX_MIG_SIZE`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("group {group}: {field} is {value}, outside 0..={MAX_MIG_SIZE}")]
pub struct SizeOutOfRange {
    pub group: String,
    pub field: &'static str,
    pub value: i64,
}

/// The MIG's `targetSize`, `targetStoppedSize` and `targetSuspendedSize` checked where they
/// enter: a missing one is 0 (proto3 JSON leaves zero values out), one out of range is an
/// error naming the group and the field, so the group reads as unreadable this tick, never as
/// empty.
fn check_sizes(group: &str, m: &InstanceGroupManager) -> std::result::Result<(), SizeOutOfRange> {
    for (field, v) in [
        ("targetSize", m.target_size),
        ("targetStoppedSize", m.target_stopped_size),
        ("targetSuspendedSize", m.target_suspended_size),
    ] {
        if let Some(v) = v.filter(|v| !(0..=MAX_MIG_SIZE).contains(v)) {
            return Err(SizeOutOfRange {
                group: group.to_owned(),
                field,
                value: i64::from(v),
            });
        }
    }
    Ok(())
}

/// Running VMs the MIG aims for: `targetSize`, "the target number of running instances for
/// this managed instance group" (Compute API reference, `InstanceGroupManager.targetSize`). The
/// standby pool (`targetStoppedSize`, `targetSuspendedSize`) is not part of it: `stopInstances`
/// lowers `targetSize` and raises `targetStoppedSize`, `startInstances` does the reverse.
fn running_target(m: &InstanceGroupManager) -> u32 {
    size(m.target_size)
}

/// The standby pool's target: stopped plus suspended VMs.
fn standby_target(m: &InstanceGroupManager) -> u32 {
    size(m.target_stopped_size) + size(m.target_suspended_size)
}

/// A pool of suspended VMs rather than stopped ones: only `targetSuspendedSize` is set.
fn is_suspended_pool(m: &InstanceGroupManager) -> bool {
    size(m.target_suspended_size) > 0 && size(m.target_stopped_size) == 0
}

fn standby_mode(m: &InstanceGroupManager) -> &str {
    m.standby_policy
        .as_ref()
        .and_then(|p| p.mode.as_ref())
        .and_then(|m| m.name())
        // The documented default when the policy is absent.
        .unwrap_or("MANUAL")
}

impl GcpProvider {
    pub async fn new(settings: GcpSettings) -> Result<GcpProvider, GcpError> {
        if settings.project.is_empty() || settings.region.is_empty() {
            return Err(GcpError::Settings("project and region are required".into()));
        }
        if settings.pools.is_empty() {
            return Err(GcpError::Settings("no pools to manage".into()));
        }
        let resolved = match settings.credentials {
            GcpCredentials::Auto => GcpCredentials::for_endpoint(settings.endpoint_url.as_deref()),
            c => c,
        };
        let credentials = match resolved {
            GcpCredentials::Anonymous => {
                google_cloud_auth::credentials::anonymous::Builder::new().build()
            }
            GcpCredentials::ApplicationDefault | GcpCredentials::Auto => {
                google_cloud_auth::credentials::Builder::default()
                    .build()
                    .map_err(GcpError::Credentials)?
            }
        };
        let compute = Compute::new(
            settings.project.clone(),
            &ClientOptions {
                endpoint: settings.endpoint_url.clone(),
                credentials,
                api_timeout: settings.api_timeout,
            },
        )
        .await?;
        Ok(GcpProvider {
            catalog: Catalog::shipped()?,
            settings,
            compute,
            // Preemption cursors start at the first poll of each zone (`poll_events`).
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves only caches behind; keep serving with them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pool_settings(&self, pool: &PoolName) -> Option<&GcpPoolSettings> {
        self.settings.pools.iter().find(|p| &p.name == pool)
    }

    fn group_ref(&self, id: &NodeGroupId) -> Result<GroupRef> {
        GroupRef::parse(id.as_str()).ok_or_else(|| {
            ProviderError::InvalidConfig(format!(
                "{id} is not a GCP group id (zones/<zone>/<name> or regions/<region>/<name>)"
            ))
        })
    }

    async fn shape(&self, template_url: &str) -> Result<Option<TemplateShape>> {
        if let Some(s) = self.lock().templates.get(template_url) {
            return Ok(s.clone());
        }
        let shape = match self.compute.get_template(template_url).await {
            Ok(t) => mapping::template_shape(&t),
            Err(ProviderError::InvalidConfig(why)) => {
                tracing::warn!(template = template_url, why, "MIG skipped");
                None
            }
            Err(e) => return Err(e),
        };
        self.lock()
            .templates
            .insert(template_url.to_owned(), shape.clone());
        Ok(shape)
    }

    /// The pool a template's labels assign its MIG to, if gpupool manages it.
    fn pool_of(&self, shape: &TemplateShape) -> Option<PoolName> {
        if shape.labels.get(LABEL_ENABLED).map(String::as_str) != Some("true") {
            return None;
        }
        let v = shape.labels.get(LABEL_POOL)?;
        self.settings
            .pools
            .iter()
            .find(|p| &util::encode_label_value(p.name.as_str()) == v)
            .map(|p| p.name.clone())
    }

    fn mig_zones(g: &GroupRef, m: &InstanceGroupManager) -> Vec<String> {
        match &g.location {
            Location::Zone(z) => vec![z.clone()],
            Location::Region(_) => m
                .distribution_policy
                .as_ref()
                .map(|d| {
                    d.zones
                        .iter()
                        .filter_map(|z| z.zone.as_deref().map(|u| util::last_segment(u).to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Is a previously timed-out operation on this group still running?
    async fn activity_in_progress(&self, g: &GroupRef) -> Result<bool> {
        let Some(op) = self.lock().pending_ops.get(g).cloned() else {
            return Ok(false);
        };
        let now = self.compute.get_operation(&op).await?;
        if op_done(&now) {
            self.lock().pending_ops.remove(g);
            if let Some(e) = op_error_text(&now) {
                tracing::warn!(group = %g.id(), error = e, "a timed-out operation finished with an error");
            }
            Ok(false)
        } else {
            Ok(true)
        }
    }

    async fn describe(&self, g: &GroupRef, m: &InstanceGroupManager) -> Result<Option<NodeGroup>> {
        let Some(template) = m
            .instance_template
            .clone()
            .or_else(|| m.versions.first().and_then(|v| v.instance_template.clone()))
        else {
            return Ok(None);
        };
        let Some(shape) = self.shape(&template).await? else {
            return Ok(None);
        };
        let Some(pool) = self.pool_of(&shape) else {
            return Ok(None);
        };
        let Some(ps) = self.pool_settings(&pool).cloned() else {
            return Ok(None);
        };
        check_sizes(&g.id(), m).map_err(|e| ProviderError::Transient {
            call: "instanceGroupManagers.list",
            target: g.id(),
            source: Box::new(e),
        })?;
        let zones = Self::mig_zones(g, m);
        let (offerings, unpriced) = mapping::offerings(&self.catalog, &shape, &zones);
        if !unpriced.is_empty() {
            tracing::warn!(group = %g.id(), machine_type = shape.machine_type, zones = ?unpriced,
                "no price in the shipped table for these zones: no offering there");
        }
        // One listing serves the standby pool's counts and the stuck creations.
        let managed = self.compute.list_managed(g).await?;
        let states = self.states(m, &managed, &HashMap::new());
        let standby = standby_target(m);
        let warm_pool = if m.standby_policy.is_some() || standby > 0 {
            Some(WarmPool {
                target_size: standby,
                ready: states
                    .iter()
                    .filter(|s| **s == LifecycleState::Warm)
                    .count() as u32,
                warming: states
                    .iter()
                    .filter(|s| **s == LifecycleState::Warming)
                    .count() as u32,
                standing_cost_per_hour: self.standing_cost(g, &shape, m),
            })
        } else {
            None
        };
        let activity_in_progress = self.activity_in_progress(g).await?;
        let meta = GroupMeta {
            pool: pool.clone(),
            shape,
            zones,
        };
        let unfulfilled = self.unfulfilled(g, &meta, &managed, &states);
        self.lock().groups.insert(g.clone(), meta);
        Ok(Some(NodeGroup {
            id: NodeGroupId::new(g.id()),
            pool: pool.clone(),
            offerings,
            min_size: 0,
            max_size: ps.max_group_size,
            desired: running_target(m),
            // The Kubernetes label a node of this pool carries (`contract::TAG_POOL`).
            labels: [("gpupool.io/pool".to_owned(), pool.to_string())].into(),
            taints: Vec::new(),
            warm_pool,
            activity_in_progress,
            unfulfilled,
        }))
    }

    /// What one standby VM of the MIG costs per hour: its template's disks in the MIG's region
    /// ([`standby_cost::standing_cost_per_hour`]); a pool with suspended VMs
    /// (`targetSuspendedSize` > 0) is priced as suspended, hence unknown. Unknown is warned
    /// once per group and reason; the pool's `warm_pool.standing_cost_per_hour` then decides.
    fn standing_cost(
        &self,
        g: &GroupRef,
        shape: &TemplateShape,
        m: &InstanceGroupManager,
    ) -> gpupool_provider::Price {
        let kind = if size(m.target_suspended_size) > 0 {
            standby_cost::StandbyKind::Suspended
        } else {
            standby_cost::StandbyKind::Stopped
        };
        let region = match &g.location {
            Location::Zone(z) => util::region_of_zone(z),
            Location::Region(r) => r.as_str(),
        };
        match standby_cost::standing_cost_per_hour(&shape.disks, region, kind) {
            Ok(cost) => cost.into(),
            Err(why) => {
                let first = self.lock().cost_warned.insert((g.clone(), why.clone()));
                if first {
                    tracing::warn!(group = %g.id(), malformed_reply = why.is_malformed(),
                        reason = %why, "standby VM cost unknown: the shrink hold uses the pool's \
                        warm_pool.standing_cost_per_hour if set, else unneeded_time_s");
                }
                gpupool_provider::Price::Unknown
            }
        }
    }

    /// The group's launches the MIG accepted and cannot carry out, among the VMs counted in the
    /// running target (`Launching`, not standby refills), one entry per offering (zone) with the
    /// VMs' names:
    /// - VMs still being created with a `lastAttempt` error, as soon as it is listed: capacity
    ///   codes classified ([`mapping::capacity_code`]), any other error `Other` — Cluster
    ///   Autoscaler too takes any error on an instance not running yet for a failed creation
    ///   (`autoscaling_gce_client.go`, `isInstanceNotRunningYet`). Dated when first seen with
    ///   the error (the API gives the errors no time).
    /// - VMs still being created with no error for longer than the pool's launch timeout:
    ///   `TimedOut`, dated when the timeout ran out (as the planner dates its silent case).
    ///
    /// VMs no longer being created are forgotten.
    fn unfulfilled(
        &self,
        g: &GroupRef,
        meta: &GroupMeta,
        managed: &[ManagedInstance],
        states: &[LifecycleState],
    ) -> Vec<UnfulfilledLaunch> {
        let now = wall_clock();
        let timeout = self
            .pool_settings(&meta.pool)
            .map_or(DEFAULT_LAUNCH_TIMEOUT, |p| p.launch_timeout);
        let mut st = self.lock();
        let creating = st.creating.entry(g.clone()).or_default();
        let mut still = BTreeSet::new();
        let mut by_offering: BTreeMap<OfferingKey, UnfulfilledLaunch> = BTreeMap::new();
        for (mi, state) in managed.iter().zip(states) {
            let Some(name) = mi.name.clone() else {
                continue;
            };
            if *state != LifecycleState::Launching || !mapping::not_yet_created(mi) {
                continue;
            }
            still.insert(name.clone());
            let c = creating.entry(name.clone()).or_insert(Creation {
                since: now,
                error_since: None,
            });
            let (failure, message, at) = match mapping::creation_error(mi) {
                Some((failure, message)) => {
                    let at = *c.error_since.get_or_insert(now);
                    (failure, message, at)
                }
                None => {
                    c.error_since = None;
                    let waited = now.secs_since(c.since);
                    if waited < timeout.as_secs_f64() {
                        continue;
                    }
                    (
                        LaunchFailure::TimedOut,
                        format!(
                            "{} s in creation ({}) and no error reported (launch timeout {} s)",
                            waited as u64,
                            mapping::current_action(mi),
                            timeout.as_secs()
                        ),
                        c.since.plus_secs(timeout.as_secs_f64()),
                    )
                }
            };
            let offering = self.offering_key(meta, meta.zone_or_first(mapping::instance_zone(mi)));
            let u = by_offering
                .entry(offering.clone())
                .or_insert_with(|| UnfulfilledLaunch {
                    offering,
                    failure,
                    count: 0,
                    message: message.clone(),
                    at,
                    instances: Vec::new(),
                });
            // The earliest VM's reason stands for the offering.
            if at < u.at {
                u.at = at;
                u.failure = failure;
                u.message = message;
            }
            u.count += 1;
            u.instances.push(InstanceId::new(name));
        }
        creating.retain(|n, _| still.contains(n));
        by_offering.into_values().collect()
    }

    /// Lifecycle states of a MIG's VMs. A VM being created or running for the standby pool (its
    /// `targetStatus` is `STOPPED` or `SUSPENDED`: "the eventual status of the instance",
    /// `ManagedInstance.targetStatus`) is a standby VM in its initial delay, reported `Warming`,
    /// not serving capacity. Where the API leaves `targetStatus` out, the active VMs beyond the
    /// running target are taken for those: launching before running, and among running the
    /// newest (`created_ms`, when known).
    fn states(
        &self,
        m: &InstanceGroupManager,
        managed: &[ManagedInstance],
        details: &HashMap<String, mapping::VmDetails>,
    ) -> Vec<LifecycleState> {
        let mut states: Vec<LifecycleState> = managed.iter().map(mapping::lifecycle).collect();
        let active_state = |s: LifecycleState| {
            matches!(
                s,
                LifecycleState::Launching | LifecycleState::Ready | LifecycleState::Starting
            )
        };
        for (i, mi) in managed.iter().enumerate() {
            let bound_for_standby = matches!(
                mi.target_status.as_ref().and_then(|t| t.name()),
                Some("STOPPED" | "SUSPENDED")
            );
            if bound_for_standby && active_state(states[i]) && states[i] != LifecycleState::Starting
            {
                states[i] = LifecycleState::Warming;
            }
        }
        let target = running_target(m) as usize;
        let mut active: Vec<usize> = (0..managed.len())
            .filter(|&i| active_state(states[i]))
            .collect();
        if active.len() > target {
            let created = |i: usize| {
                managed[i]
                    .name
                    .as_ref()
                    .and_then(|n| details.get(n))
                    .and_then(|d| d.created_ms)
                    .unwrap_or(i64::MAX)
            };
            active.sort_by_key(|&i| {
                let rank = match states[i] {
                    LifecycleState::Starting => 0,
                    LifecycleState::Ready => 1,
                    _ => 2,
                };
                (rank, created(i))
            });
            for &i in &active[target..] {
                // A VM the MIG is starting from standby is serving capacity on its way.
                if states[i] != LifecycleState::Starting {
                    states[i] = LifecycleState::Warming;
                }
            }
        }
        states
    }

    /// Start up to `n` standby VMs by name, suspended ones first (resuming keeps their memory;
    /// "Accelerate scale out with suspended and stopped VMs" recommends suspended pools for
    /// slow in-memory initialisation), then stopped ones: `resumeInstances` / `startInstances`,
    /// which raise `targetSize` and lower `targetSuspendedSize` / `targetStoppedSize` by as many
    /// (Compute API reference). Only VMs at rest with no pending action are named: "you can only
    /// specify instances that are stopped" (resp. suspended). Returns how many were started.
    async fn start_standby(&self, g: &GroupRef, meta: &GroupMeta, n: u32) -> Result<u32> {
        let managed = self.compute.list_managed(g).await?;
        let at_rest = |statuses: &'static [&'static str]| {
            managed
                .iter()
                .filter(move |mi| {
                    mapping::current_action(mi) == "NONE"
                        && statuses.contains(&mapping::instance_status(mi))
                })
                .filter_map(|mi| mi.instance.clone())
        };
        let resume: Vec<String> = at_rest(&["SUSPENDED"]).take(n as usize).collect();
        // A stopped VM's status is TERMINATED ("The instance has stopped (either by explicit
        // action or underlying failure)"); STOPPED is listed too.
        let start: Vec<String> = at_rest(&["STOPPED", "TERMINATED"])
            .take(n as usize - resume.len())
            .collect();
        let mut started = 0;
        if !resume.is_empty() {
            tracing::info!(group = %g.id(), count = resume.len(), "resuming standby VMs");
            let k = resume.len() as u32;
            let op = self.compute.resume_instances(g, resume).await?;
            self.wait(g, meta, op, "resumeInstances").await?;
            started += k;
        }
        if !start.is_empty() {
            tracing::info!(group = %g.id(), count = start.len(), "starting standby VMs");
            let k = start.len() as u32;
            let op = self.compute.start_instances(g, start).await?;
            self.wait(g, meta, op, "startInstances").await?;
            started += k;
        }
        Ok(started)
    }

    async fn meta(&self, g: &GroupRef) -> Result<GroupMeta> {
        if let Some(m) = self.lock().groups.get(g).cloned() {
            return Ok(m);
        }
        let mig = self.compute.get_mig(g).await?;
        self.describe(g, &mig).await?;
        self.lock().groups.get(g).cloned().ok_or_else(|| {
            ProviderError::InvalidConfig(format!("{} is not a MIG of a managed pool", g.id()))
        })
    }

    /// Set (`Some`) or remove (`None`) the drain label of one VM of `group`: read the VM
    /// (`instances.get`: labels and `labelFingerprint`), write the whole label set back with
    /// the mark changed (`instances.setLabels` replaces every label, so the others are carried
    /// over as read; the fingerprint makes a racing label write fail with HTTP 412 rather than
    /// be lost — the caller retries next tick), and wait for the zonal operation. The VM's zone
    /// comes from the group's own listing; a VM not in it is `NotFound`.
    async fn set_drain_label(
        &self,
        group: &NodeGroupId,
        instance: &InstanceId,
        deadline: Option<Timestamp>,
    ) -> Result<()> {
        let g = self.group_ref(group)?;
        let meta = self.meta(&g).await?;
        let managed = self.compute.list_managed(&g).await?;
        let zone = managed
            .iter()
            .find(|mi| mi.name.as_deref() == Some(instance.as_str()))
            .and_then(mapping::instance_zone)
            .ok_or_else(|| ProviderError::NotFound {
                what: format!("instance {instance} in {group}"),
            })?;
        let vm = self.compute.get_instance(&zone, instance.as_str()).await?;
        let Some(labels) = mapping::with_drain_mark(&vm.labels, deadline) else {
            return Ok(());
        };
        let op = self
            .compute
            .set_labels(&zone, instance.as_str(), labels, &vm)
            .await?;
        self.wait(&g, &meta, op, "instances.setLabels").await?;
        tracing::info!(%group, %instance, ?deadline, "drain label set on the instance");
        Ok(())
    }

    /// Poll an operation until `DONE` or the deadline; map its error.
    async fn wait(
        &self,
        g: &GroupRef,
        meta: &GroupMeta,
        op: Operation,
        call: &'static str,
    ) -> Result<()> {
        let deadline =
            gpupool_provider::clock::monotonic_tokio() + self.settings.operation_deadline;
        let mut op = op;
        while !op_done(&op) {
            if gpupool_provider::clock::monotonic_tokio() >= deadline {
                tracing::warn!(group = %g.id(), operation = op.name.as_deref().unwrap_or(""), call,
                    "operation still running at its deadline; the group is busy until it ends");
                self.lock().pending_ops.insert(g.clone(), op);
                return Ok(());
            }
            tokio::time::sleep(self.settings.operation_poll_interval).await;
            op = self.compute.get_operation(&op).await?;
        }
        match op_failure(&op) {
            None => Ok(()),
            Some((code, message)) => Err(self.op_error(g, meta, call, &code, &message)),
        }
    }

    fn op_error(
        &self,
        g: &GroupRef,
        meta: &GroupMeta,
        call: &'static str,
        code: &str,
        message: &str,
    ) -> ProviderError {
        match mapping::capacity_code(code) {
            Some(LaunchFailure::InsufficientCapacity) => {
                // The stockout names its zone in the message for regional MIGs; a zonal MIG has
                // one zone anyway.
                let zone = util::segment_after(message, "zones")
                    .and_then(|z| {
                        z.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                            .next()
                    })
                    .map(str::to_owned)
                    .filter(|z| meta.zones.contains(z));
                ProviderError::InsufficientCapacity {
                    offering: self.offering_key(meta, meta.zone_or_first(zone)),
                }
            }
            Some(LaunchFailure::QuotaExceeded) => ProviderError::QuotaExceeded {
                what: format!("{call} on {}: {message}", g.id()),
            },
            _ if code == "RESOURCE_NOT_FOUND" => ProviderError::NotFound { what: g.id() },
            _ => ProviderError::Transient {
                call,
                target: g.id(),
                source: format!("operation failed: {code}: {message}").into(),
            },
        }
    }

    /// The offering a VM of this group in `zone` is.
    fn offering_key(&self, meta: &GroupMeta, zone: String) -> OfferingKey {
        OfferingKey {
            instance_type: mapping::instance_type_name(&self.catalog, &meta.shape, &zone),
            capacity_type: meta.shape.capacity,
            zone: Zone::new(zone),
        }
    }

    /// Zones to poll for preemptions: the configured ones and every managed MIG's.
    fn event_zones(&self) -> BTreeSet<String> {
        let st = self.lock();
        self.settings
            .zones
            .iter()
            .cloned()
            .chain(st.groups.values().flat_map(|m| m.zones.iter().cloned()))
            .collect()
    }
}

fn op_done(op: &Operation) -> bool {
    op.status.as_ref().and_then(|s| s.name()) == Some("DONE")
}

/// The first error of a finished operation: `(code, message)`.
fn op_failure(op: &Operation) -> Option<(String, String)> {
    let e = op.error.as_ref()?.errors.first()?;
    Some((
        e.code.clone().unwrap_or_default(),
        e.message.clone().unwrap_or_default(),
    ))
}

fn op_error_text(op: &Operation) -> Option<String> {
    op_failure(op).map(|(c, m)| format!("{c}: {m}"))
}

#[async_trait]
impl NodeGroupProvider for GcpProvider {
    fn name(&self) -> &'static str {
        "gcp"
    }

    async fn node_groups(&self) -> Result<Vec<NodeGroup>> {
        // Zonal MIGs in the configured zones, regional ones in the region.
        let locations = (self.settings.zones.iter().cloned().map(Location::Zone))
            .chain([Location::Region(self.settings.region.clone())]);
        let mut migs: Vec<(GroupRef, InstanceGroupManager)> = Vec::new();
        for location in locations {
            for m in self.compute.list_migs(&location).await? {
                if let Some(g) = GroupRef::of(&m) {
                    migs.push((g, m));
                }
            }
        }
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for (g, m) in &migs {
            if let Some(group) = self.describe(g, m).await? {
                seen.insert(g.clone());
                out.push(group);
            }
        }
        let mut st = self.lock();
        st.groups.retain(|g, _| seen.contains(g));
        st.creating.retain(|g, _| seen.contains(g));
        st.first_seen.retain(|g, _| seen.contains(g));
        drop(st);
        Ok(out)
    }

    async fn instances(&self, group: &NodeGroupId) -> Result<Vec<Instance>> {
        let g = self.group_ref(group)?;
        let meta = self.meta(&g).await?;
        let mig = self.compute.get_mig(&g).await?;
        let managed = self.compute.list_managed(&g).await?;

        // The VMs themselves carry creation time, the model-cache label and the address.
        let filter = format!(
            "labels.{LABEL_POOL} = \"{}\"",
            util::encode_label_value(meta.pool.as_str())
        );
        let mut details: HashMap<String, mapping::VmDetails> = HashMap::new();
        let zones: BTreeSet<String> = managed.iter().filter_map(mapping::instance_zone).collect();
        for zone in &zones {
            for vm in self.compute.list_instances(zone, &filter).await? {
                if let Some(name) = vm.name.clone() {
                    details.insert(name, mapping::vm_details(&vm, LABEL_MODEL_CACHE));
                }
            }
        }

        let states = self.states(&mig, &managed, &details);
        let expected = self
            .pool_settings(&meta.pool)
            .and_then(|p| p.model_cache.clone());
        let now = wall_clock();
        let mut st = self.lock();
        let mut out = Vec::with_capacity(managed.len());
        for (mi, state) in managed.iter().zip(states) {
            let Some(name) = mi.name.clone() else {
                continue;
            };
            let zone = meta.zone_or_first(mapping::instance_zone(mi));
            let d = details.get(&name).cloned().unwrap_or_default();
            let launched_at = match d.created_ms {
                Some(ms) => Timestamp::from_millis(ms),
                None => *st
                    .first_seen
                    .entry(g.clone())
                    .or_default()
                    .entry(name.clone())
                    .or_insert(now),
            };
            out.push(Instance {
                id: InstanceId::new(name.clone()),
                group: group.clone(),
                instance_type: mapping::instance_type_name(&self.catalog, &meta.shape, &zone),
                capacity_type: meta.shape.capacity,
                provider_id: Some(format!("gce://{}/{zone}/{name}", self.settings.project)),
                zone: Zone::new(zone),
                state,
                launched_at,
                model_cache: mapping::model_cache(
                    d.model_cache_label.as_deref(),
                    expected.as_deref(),
                ),
                // MIGs have no per-VM scale-in protection.
                protected_from_scale_in: false,
                awaiting_lifecycle_hook: false,
                private_ip: d.private_ip,
                drain_deadline: d
                    .drain_deadline_label
                    .as_deref()
                    .and_then(gpupool_provider::decode_drain_deadline),
            });
        }
        // Keep the first-seen time only of this group's VMs that are listed and still have no
        // creation time of their own.
        let live: BTreeSet<&str> = managed.iter().filter_map(|m| m.name.as_deref()).collect();
        if let Some(seen) = st.first_seen.get_mut(&g) {
            seen.retain(|n, _| {
                live.contains(n.as_str()) && details.get(n).and_then(|d| d.created_ms).is_none()
            });
        }
        Ok(out)
    }

    async fn increase(&self, group: &NodeGroupId, delta: u32) -> Result<()> {
        if delta == 0 {
            return Ok(());
        }
        let g = self.group_ref(group)?;
        let meta = self.meta(&g).await?;
        let max = self
            .pool_settings(&meta.pool)
            .map_or(0, |p| p.max_group_size);
        let m = self.compute.get_mig(&g).await?;
        let running = running_target(&m);
        if running + delta > max {
            return Err(ProviderError::InvalidConfig(format!(
                "{group}: {running} running + {delta} exceeds the maximum of {max}"
            )));
        }
        let mut started = 0;
        if standby_mode(&m) != "SCALE_OUT_POOL"
            && (m.standby_policy.is_some() || standby_target(&m) > 0)
        {
            // MANUAL mode: "MIG does not automatically resume or start VMs in the standby pool
            // when the group scales out" (InstanceGroupManagerStandbyPolicy.mode), so a resize
            // alone would create new VMs next to idle warm ones. Start them by name first.
            started = self.start_standby(&g, &meta, delta).await?;
        }
        // startInstances/resumeInstances already raised targetSize by `started`; the resize sets
        // the absolute target, so only the rest are new VMs. In SCALE_OUT_POOL mode this resize
        // is the whole scale-out: the MIG starts standby VMs first and refills the pool itself.
        if started < delta {
            let to = running + delta;
            tracing::info!(%group, from = running + started, to, "resizing");
            let op = self.compute.resize(&g, as_i32(to, "size")?).await?;
            self.wait(&g, &meta, op, "resize").await?;
        }
        Ok(())
    }

    async fn terminate(&self, group: &NodeGroupId, instances: &[InstanceId]) -> Result<()> {
        if instances.is_empty() {
            return Ok(());
        }
        let g = self.group_ref(group)?;
        let meta = self.meta(&g).await?;
        // deleteInstances takes instance URLs; a regional MIG's VMs live in several zones, so
        // take each URL from the group's own listing. A VM missing from it is already gone.
        let managed = self.compute.list_managed(&g).await?;
        let wanted: BTreeSet<&str> = instances.iter().map(InstanceId::as_str).collect();
        let urls: Vec<String> = managed
            .iter()
            .filter(|mi| mi.name.as_deref().is_some_and(|n| wanted.contains(n)))
            .filter_map(|mi| mi.instance.clone())
            .collect();
        if urls.is_empty() {
            return Ok(());
        }
        tracing::info!(%group, count = urls.len(), "deleting instances");
        let op = self.compute.delete_instances(&g, urls).await?;
        match self.wait(&g, &meta, op, "deleteInstances").await {
            Err(ProviderError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    async fn release_unfulfilled(
        &self,
        group: &NodeGroupId,
        count: u32,
        instances: &[InstanceId],
    ) -> Result<u32> {
        if count == 0 {
            return Ok(0);
        }
        let g = self.group_ref(group)?;
        let meta = self.meta(&g).await?;
        // Re-read the group: only VMs that are still not created are taken back. One that came
        // up meanwhile is capacity after all, and one already being deleted is gone, so asking
        // twice deletes nothing the second time.
        let managed = self.compute.list_managed(&g).await?;
        let wanted: BTreeSet<&str> = instances.iter().map(InstanceId::as_str).collect();
        let mut candidates: Vec<&ManagedInstance> = managed
            .iter()
            .filter(|mi| mapping::not_yet_created(mi))
            .filter(|mi| {
                wanted.is_empty() || mi.name.as_deref().is_some_and(|n| wanted.contains(n))
            })
            .collect();
        if wanted.is_empty() {
            // No names (a launch that showed neither progress nor an error in time): take the
            // VMs the MIG reports a capacity error for first, then any still being created.
            candidates.sort_by_key(|mi| mapping::creation_error(mi).is_none());
        }
        let victims: Vec<(String, String)> = candidates
            .into_iter()
            .filter_map(|mi| Some((mi.name.clone()?, mi.instance.clone()?)))
            .take(count as usize)
            .collect();
        if victims.is_empty() {
            return Ok(0);
        }
        let n = victims.len() as u32;
        tracing::info!(%group, count = n, "deleting VMs the MIG cannot create");
        // deleteInstances "reduces the targetSize of the managed instance group by the number of
        // instances that you delete" (Compute API reference), which is exactly taking the
        // request back; skipInstancesOnValidationError skips a VM deleted meanwhile.
        let op = self
            .compute
            .delete_instances(&g, victims.iter().map(|(_, u)| u.clone()).collect())
            .await?;
        match self.wait(&g, &meta, op, "deleteInstances").await {
            Ok(()) | Err(ProviderError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        if let Some(creating) = self.lock().creating.get_mut(&g) {
            for (name, _) in &victims {
                creating.remove(name);
            }
        }
        Ok(n)
    }

    async fn set_warm_pool_size(&self, group: &NodeGroupId, size_wanted: u32) -> Result<()> {
        let g = self.group_ref(group)?;
        let meta = self.meta(&g).await?;
        let m = self.compute.get_mig(&g).await?;
        // The standby pool is its own target next to the running `targetSize`, which stays as it
        // is: "This number changes when you … manually change the targetStoppedSize using the
        // update method" (InstanceGroupManager.targetStoppedSize; likewise targetSuspendedSize).
        // In SCALE_OUT_POOL mode the MIG keeps the pool at this size by itself after scale-outs.
        // The reported pool is stopped + suspended VMs; the one target gpupool moves is the
        // pool's kind (suspended when only targetSuspendedSize is set, else stopped), so that
        // the two together come to `size_wanted`.
        let current = standby_target(&m);
        if current == size_wanted {
            return Ok(());
        }
        let suspended_pool = is_suspended_pool(&m);
        let (field, mine, other) = if suspended_pool {
            (
                "targetSuspendedSize",
                size(m.target_suspended_size),
                size(m.target_stopped_size),
            )
        } else {
            (
                "targetStoppedSize",
                size(m.target_stopped_size),
                size(m.target_suspended_size),
            )
        };
        if size_wanted.saturating_sub(other) == mine {
            // A mixed pool whose other part alone exceeds the size: nothing gpupool moves.
            return Ok(());
        }
        let wanted = as_i32(size_wanted.saturating_sub(other), field)?;
        let body = if suspended_pool {
            InstanceGroupManager::new().set_target_suspended_size(wanted)
        } else {
            InstanceGroupManager::new().set_target_stopped_size(wanted)
        };
        tracing::info!(%group, field, from = current, to = size_wanted, "setting the standby pool size");
        let op = self.compute.patch(&g, body).await?;
        self.wait(&g, &meta, op, "patch").await
    }

    async fn complete_warmup(&self, _group: &NodeGroupId, _instance: &InstanceId) -> Result<()> {
        // GCP has no lifecycle hooks: a VM's model-cache label gates serving instead.
        Ok(())
    }

    async fn poll_events(&self) -> Result<Vec<ProviderEvent>> {
        let mut events = Vec::new();
        let mut failure = None;
        for zone in self.event_zones() {
            let since = {
                let mut st = self.lock();
                *st.preempt_cursor
                    .entry(zone.clone())
                    .or_insert_with(|| wall_clock().plus_secs(-FIRST_POLL_LOOKBACK_S))
            };
            // Filter on the type only. `insertTime` is RFC 3339 text with the zone's offset
            // (`2026-11-23T07:00:00.123-08:00`; the Operation reference says only "RFC3339 text
            // format"), and the list filter compares it as a string, so `insertTime >= "<UTC>"`
            // would skip every event of the hours the offset spans. Times are compared below,
            // parsed.
            let filter = format!("operationType = \"{OP_PREEMPTED}\"");
            let ops = match self.compute.list_zone_operations(&zone, &filter).await {
                Ok(ops) => ops,
                Err(e) => {
                    // Other zones' events still count; this zone is retried next tick from the
                    // same cursor, so nothing is lost.
                    tracing::warn!(zone, error = %e, "cannot list zone operations");
                    failure.get_or_insert(e);
                    continue;
                }
            };
            let mut st = self.lock();
            for op in ops {
                if op.operation_type.as_deref() != Some(OP_PREEMPTED) {
                    continue;
                }
                let Some(at) = op.insert_time.as_deref().and_then(util::parse_rfc3339) else {
                    continue;
                };
                if at < since {
                    // Older than the cursor: reported before, or stale at the first poll.
                    continue;
                }
                let id = op
                    .id
                    .map(|i| i.to_string())
                    .or_else(|| op.name.clone())
                    .unwrap_or_default();
                if at > since {
                    st.preempt_cursor.insert(zone.clone(), at);
                }
                // The cursor is inclusive (two preemptions can share a millisecond), so the
                // same operation is listed again next time: de-duplicate by its id.
                if !st.remember(&format!("op/{id}")) {
                    continue;
                }
                let Some(target) = op.target_link.as_deref() else {
                    continue;
                };
                events.push(ProviderEvent {
                    ack: None,
                    id: format!("gcp-op-{id}"),
                    kind: ProviderEventKind::SpotInterruption {
                        instance: InstanceId::new(util::last_segment(target)),
                        deadline: at.plus_secs(PREEMPTION_NOTICE_S),
                    },
                });
            }
        }
        match failure {
            Some(e) if events.is_empty() => Err(e),
            _ => Ok(events),
        }
    }

    async fn ack_event(&self, _ack: &str) -> Result<()> {
        // Operations need no acknowledgement; de-duplication is by operation id.
        Ok(())
    }

    /// Label [`gpupool_provider::DRAIN_DEADLINE_LABEL`] on the VM (epoch seconds, a valid label
    /// value) through `instances.setLabels` ([`GcpProvider::set_drain_label`]).
    async fn mark_draining(
        &self,
        group: &NodeGroupId,
        instance: &InstanceId,
        deadline: Timestamp,
    ) -> Result<()> {
        self.set_drain_label(group, instance, Some(deadline)).await
    }

    async fn clear_draining(&self, group: &NodeGroupId, instance: &InstanceId) -> Result<()> {
        match self.set_drain_label(group, instance, None).await {
            // A VM gone has no mark left.
            Err(ProviderError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_out_of_range_name_the_group_and_field() {
        let m = |t: Option<i32>, stopped: Option<i32>| {
            let mut m = InstanceGroupManager::default();
            m.target_size = t;
            m.target_stopped_size = stopped;
            m
        };
        let table = [
            (m(None, None), None),
            (m(Some(0), Some(0)), None),
            (m(Some(MAX_MIG_SIZE), Some(3)), None),
            (m(Some(-1), None), Some(("targetSize", -1))),
            (
                m(Some(MAX_MIG_SIZE + 1), None),
                Some(("targetSize", 10_001)),
            ),
            (
                m(Some(2), Some(i32::MIN)),
                Some(("targetStoppedSize", i64::from(i32::MIN))),
            ),
        ];
        for (mig, want) in table {
            let got = check_sizes("g", &mig).err().map(|e| (e.field, e.value));
            assert_eq!(
                got, want,
                "{:?} {:?}",
                mig.target_size, mig.target_stopped_size
            );
        }
        assert_eq!(size(Some(i32::MAX)), MAX_MIG_SIZE as u32);
        assert_eq!(size(Some(-5)), 0);
    }

    #[test]
    fn target_size_is_the_running_target_and_the_pool_sits_beside_it() {
        let m = InstanceGroupManager::new()
            .set_target_size(10)
            .set_target_stopped_size(3)
            .set_target_suspended_size(1);
        assert_eq!(running_target(&m), 10);
        assert_eq!(standby_target(&m), 4);
        assert!(!is_suspended_pool(&m));
        assert!(is_suspended_pool(
            &InstanceGroupManager::new().set_target_suspended_size(2)
        ));
        assert_eq!(standby_mode(&m), "MANUAL");
    }

    #[test]
    fn plain_http_endpoints_get_no_credentials() {
        assert_eq!(
            GcpCredentials::for_endpoint(Some("http://127.0.0.1:8085")),
            GcpCredentials::Anonymous
        );
        assert_eq!(
            GcpCredentials::for_endpoint(Some("https://compute.example.internal")),
            GcpCredentials::ApplicationDefault
        );
        assert_eq!(
            GcpCredentials::for_endpoint(None),
            GcpCredentials::ApplicationDefault
        );
    }

    #[test]
    fn failed_operations_yield_their_first_error() {
        use google_cloud_compute_v1::model::operation;
        let op = Operation::new()
            .set_status(operation::Status::Done)
            .set_error(
                operation::Error::new().set_errors([operation::error::Errors::new()
                    .set_code("ZONE_RESOURCE_POOL_EXHAUSTED")
                    .set_message("no a2 in us-central1-a")]),
            );
        assert!(op_done(&op));
        assert_eq!(
            op_failure(&op),
            Some((
                "ZONE_RESOURCE_POOL_EXHAUSTED".into(),
                "no a2 in us-central1-a".into()
            ))
        );
    }
}
