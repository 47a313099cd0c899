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
//! - **Sizes.** A MIG's `targetSize` counts every VM it keeps, running or in the standby pool
//!   (`targetStoppedSize` + `targetSuspendedSize`); gpupool's `desired` is the running part.
//! - **Actuation.** `increase` resizes (`SCALE_OUT_POOL` standby mode: the MIG starts standby
//!   VMs first) or, in `MANUAL` standby mode, patches `targetStoppedSize` down and `targetSize`
//!   up in one call so stopped VMs start first. `terminate` is `deleteInstances` with
//!   `skipInstancesOnValidationError`. Every operation is polled to `DONE` within the
//!   operation deadline; its `error.errors[].code` maps onto [`ProviderError`].
//! - **Events.** Preemptions come from zone operations of type
//!   `compute.instances.preempted` (30 s notice); failed creations from
//!   `listManagedInstances` `lastAttempt.errors` (stockout / quota codes).

pub mod catalog;
mod compute;
mod mapping;
pub mod util;

pub use compute::{GroupRef, Location};

use async_trait::async_trait;
use catalog::Catalog;
use compute::{ClientOptions, Compute};
use google_cloud_compute_v1::model::{InstanceGroupManager, ManagedInstance, Operation};
use gpupool_provider::{
    Instance, InstanceId, LaunchFailure, LifecycleState, NodeGroup, NodeGroupId, NodeGroupProvider,
    OfferingKey, PoolName, ProviderError, ProviderEvent, ProviderEventKind, Result, Timestamp,
    WarmPool, Zone,
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
}

impl GcpPoolSettings {
    /// A pool with the default cap ([`DEFAULT_MAX_GROUP_SIZE`]) and no model-cache check.
    pub fn new(name: PoolName) -> GcpPoolSettings {
        GcpPoolSettings {
            name,
            max_group_size: DEFAULT_MAX_GROUP_SIZE,
            model_cache: None,
        }
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
    /// Events found while listing instances, delivered by the next `poll_events`.
    queued: Vec<ProviderEvent>,
    /// When a VM without a creation time (still being created) was first seen.
    first_seen: HashMap<String, Timestamp>,
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
    // The provider is the imperative shell: reading the clock here is its job (the planner only
    // ever receives times as arguments).
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Timestamp::from_millis(ms)
}

fn as_i32(n: u32, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| ProviderError::InvalidConfig(format!("{what} {n} is too large")))
}

fn size(v: Option<i32>) -> u32 {
    v.map_or(0, |n| n.max(0) as u32)
}

/// Running VMs the MIG aims for: its target size less the standby pool.
fn running_target(m: &InstanceGroupManager) -> u32 {
    size(m.target_size)
        .saturating_sub(size(m.target_stopped_size))
        .saturating_sub(size(m.target_suspended_size))
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
        let zones = Self::mig_zones(g, m);
        let (offerings, unpriced) = mapping::offerings(&self.catalog, &shape, &zones);
        if !unpriced.is_empty() {
            tracing::warn!(group = %g.id(), machine_type = shape.machine_type, zones = ?unpriced,
                "no price in the shipped table for these zones: no offering there");
        }
        let stopped = size(m.target_stopped_size) + size(m.target_suspended_size);
        let warm_pool = if m.standby_policy.is_some() || stopped > 0 {
            let managed = self.compute.list_managed(g).await?;
            let states = self.states(m, &managed, &HashMap::new());
            Some(WarmPool {
                target_size: stopped,
                ready: states
                    .iter()
                    .filter(|s| **s == LifecycleState::Warm)
                    .count() as u32,
                warming: states
                    .iter()
                    .filter(|s| **s == LifecycleState::Warming)
                    .count() as u32,
            })
        } else {
            None
        };
        let activity_in_progress = self.activity_in_progress(g).await?;
        self.lock().groups.insert(
            g.clone(),
            GroupMeta {
                pool: pool.clone(),
                shape,
                zones,
            },
        );
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
            unfulfilled: Vec::new(),
        }))
    }

    /// Lifecycle states of a MIG's VMs. VMs being created or running beyond the running target
    /// are new standby VMs in their initial delay (the MIG stops them when it ends), so the
    /// surplus is reported as `Warming`, not as serving capacity. Which VMs are the surplus:
    /// launching before running, and among running the newest (`created_ms`, when known).
    fn states(
        &self,
        m: &InstanceGroupManager,
        managed: &[ManagedInstance],
        details: &HashMap<String, mapping::VmDetails>,
    ) -> Vec<LifecycleState> {
        let mut states: Vec<LifecycleState> = managed.iter().map(mapping::lifecycle).collect();
        let target = running_target(m) as usize;
        let mut active: Vec<usize> = (0..managed.len())
            .filter(|&i| {
                matches!(
                    states[i],
                    LifecycleState::Launching | LifecycleState::Ready | LifecycleState::Starting
                )
            })
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

    /// Poll an operation until `DONE` or the deadline; map its error.
    async fn wait(
        &self,
        g: &GroupRef,
        meta: &GroupMeta,
        op: Operation,
        call: &'static str,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.settings.operation_deadline;
        let mut op = op;
        while !op_done(&op) {
            if tokio::time::Instant::now() >= deadline {
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

    /// Scan `lastAttempt.errors` for capacity codes and queue one `LaunchFailed` per
    /// (VM, code) — the MIG keeps retrying the same VM, so the same error is seen every tick.
    fn scan_last_attempts(&self, g: &GroupRef, meta: &GroupMeta, managed: &[ManagedInstance]) {
        let mut st = self.lock();
        for mi in managed {
            let Some(errors) = mi.last_attempt.as_ref().and_then(|a| a.errors.as_ref()) else {
                continue;
            };
            for e in &errors.errors {
                let code = e.code.as_deref().unwrap_or("");
                let Some(kind) = mapping::capacity_code(code) else {
                    continue;
                };
                let name = mi.name.clone().unwrap_or_default();
                let id = format!("last-attempt/{}/{name}/{code}", g.id());
                if !st.remember(&id) {
                    continue;
                }
                let zone = meta.zone_or_first(mapping::instance_zone(mi));
                st.queued.push(ProviderEvent {
                    ack: None,
                    id,
                    kind: ProviderEventKind::LaunchFailed {
                        group: NodeGroupId::new(g.id()),
                        offering: self.offering_key(meta, zone),
                        error: kind,
                        message: e.message.clone().unwrap_or_else(|| code.to_owned()),
                    },
                });
            }
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
        self.lock().groups.retain(|g, _| seen.contains(g));
        Ok(out)
    }

    async fn instances(&self, group: &NodeGroupId) -> Result<Vec<Instance>> {
        let g = self.group_ref(group)?;
        let meta = self.meta(&g).await?;
        let mig = self.compute.get_mig(&g).await?;
        let managed = self.compute.list_managed(&g).await?;
        self.scan_last_attempts(&g, &meta, &managed);

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
                None => *st.first_seen.entry(name.clone()).or_insert(now),
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
            });
        }
        let live: BTreeSet<&str> = managed.iter().filter_map(|m| m.name.as_deref()).collect();
        st.first_seen
            .retain(|n, _| live.contains(n.as_str()) || !details.contains_key(n));
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
        let total = size(m.target_size);
        let stopped = size(m.target_stopped_size);
        let suspended = size(m.target_suspended_size);
        let op = if standby_mode(&m) == "MANUAL" && stopped + suspended > 0 {
            // MANUAL standby: the MIG never starts standby VMs by itself. Shrinking the standby
            // targets starts that many; the rest of `delta` are new VMs.
            let from_stopped = delta.min(stopped);
            let from_suspended = (delta - from_stopped).min(suspended);
            let new_vms = delta - from_stopped - from_suspended;
            let body = InstanceGroupManager::new()
                .set_target_size(as_i32(total + new_vms, "targetSize")?)
                .set_target_stopped_size(as_i32(stopped - from_stopped, "targetStoppedSize")?)
                .set_target_suspended_size(as_i32(
                    suspended - from_suspended,
                    "targetSuspendedSize",
                )?);
            tracing::info!(%group, from_stopped, from_suspended, new_vms, "starting standby VMs");
            self.compute.patch(&g, body).await?
        } else {
            // No standby pool, or SCALE_OUT_POOL: the MIG starts standby VMs first by itself.
            tracing::info!(%group, from = total, to = total + delta, "resizing");
            self.compute
                .resize(&g, as_i32(total + delta, "size")?)
                .await?
        };
        self.wait(&g, &meta, op, "resize").await
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
        _count: u32,
        _instances: &[InstanceId],
    ) -> Result<u32> {
        // INTERIM (being replaced in this change).
        Err(ProviderError::InvalidConfig(format!(
            "release_unfulfilled on {group}: not yet built"
        )))
    }

    async fn set_warm_pool_size(&self, group: &NodeGroupId, size_wanted: u32) -> Result<()> {
        let g = self.group_ref(group)?;
        let meta = self.meta(&g).await?;
        let m = self.compute.get_mig(&g).await?;
        let stopped = size(m.target_stopped_size);
        if stopped == size_wanted {
            return Ok(());
        }
        // The standby pool is part of targetSize: move both so the running VMs stay as they are.
        let total = (size(m.target_size) + size_wanted).saturating_sub(stopped);
        let body = InstanceGroupManager::new()
            .set_target_size(as_i32(total, "targetSize")?)
            .set_target_stopped_size(as_i32(size_wanted, "targetStoppedSize")?);
        tracing::info!(%group, from = stopped, to = size_wanted, "setting the standby pool size");
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
            let filter = format!(
                "(operationType = \"{OP_PREEMPTED}\") (insertTime >= \"{}\")",
                util::format_rfc3339(since)
            );
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
        // Failed creations found while listing instances come first (oldest news).
        let queued = std::mem::take(&mut self.lock().queued);
        events.splice(0..0, queued);
        match failure {
            Some(e) if events.is_empty() => Err(e),
            _ => Ok(events),
        }
    }

    async fn ack_event(&self, _ack: &str) -> Result<()> {
        // Operations need no acknowledgement; de-duplication is by operation id.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_target_excludes_the_standby_pool() {
        let m = InstanceGroupManager::new()
            .set_target_size(10)
            .set_target_stopped_size(3)
            .set_target_suspended_size(1);
        assert_eq!(running_target(&m), 6);
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
