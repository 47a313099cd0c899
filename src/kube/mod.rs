//! Kubernetes mode: the [`Cluster`] gpupool drives instead of Cluster Autoscaler.
//!
//! - [`watch`]: reflectors on pods (not finished) and on nodes labelled `gpupool.io/pool`,
//!   pruned to what the planner reads; `observe` holds (`NotSynced`) until both listed once.
//! - [`convert`]: pure Pod/Node → `PendingPod`/`RunningPod`/`Node` conversions, GPU resource
//!   names from config, serving-readiness and GPU health.
//! - [`provider_id`]: node ↔ instance by `spec.providerID`.
//! - [`drain`]: cordon + Eviction API, honouring PDBs, grace periods and do-not-disrupt.
//! - [`events`]: `TriggeredScaleUp` / `NotTriggerScaleUp` on pods, `Drain` / `Replaced` /
//!   `ScaleDown` on nodes, rate-limited.
//! - [`lease`]: leader election on a `coordination.k8s.io/v1` Lease.
//! - [`status_map`]: the `gpupool-status` ConfigMap (Cluster Autoscaler's status ConfigMap).

pub mod convert;
pub mod drain;
pub mod events;
pub mod lease;
pub mod provider_id;
pub mod quantity;
pub mod status_map;
pub mod watch;

pub use lease::LeaderElector;

use crate::config::{Config, PoolConfig};
use crate::contract::TAG_POOL;
use crate::controller::{Cluster, ClusterError, ClusterView, DrainProgress};
use crate::model::{Instance, InstanceId, Node, PendingPod, Plan, PoolName, RunningPod, Timestamp};
use async_trait::async_trait;
use convert::GpuResourceNames;
use events::{EventKind, EventLimiter, Target};
use k8s_openapi::api::core::v1::{Node as K8sNode, ObjectReference, Pod};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use provider_id::ProviderId;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Name gpupool reports as the events' `reportingController`.
pub const REPORTING_CONTROLLER: &str = "gpupool";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    NotSynced(String),
}

impl KubeError {
    /// A failed API call, with what gpupool was doing.
    pub fn api(what: impl Into<String>, source: kube::Error) -> Self {
        KubeError::Api {
            what: what.into(),
            source,
        }
    }
}

impl From<KubeError> for ClusterError {
    fn from(e: KubeError) -> Self {
        match e {
            KubeError::NotSynced(s) => ClusterError::NotSynced(s),
            KubeError::Api { what, source } => ClusterError::Api {
                what,
                source: Box::new(source),
            },
        }
    }
}

/// A client for gpupool from a kube `Config` (`kube::Config::infer().await` in a pod).
///
/// kube's default retry layer is switched off: it retries `429 Too Many Requests` up to 15
/// times with backoff up to 1000 s, and an eviction refused by a PodDisruptionBudget *is* a
/// 429 — with the retry on, one PDB-blocked pod would stall the control loop. gpupool retries
/// on its own schedule instead: watchers back off, drains and events try again next tick.
pub fn client(mut config: kube::Config) -> Result<Client, KubeError> {
    config.default_retry = false;
    Client::try_from(config).map_err(|e| KubeError::api("building the Kubernetes client", e))
}

/// The Kubernetes cluster as the controller sees it.
pub struct KubeCluster {
    client: Client,
    config: Arc<Config>,
    names: GpuResourceNames,
    pods: watch::Reflected<Pod>,
    nodes: watch::Reflected<K8sNode>,
    recorder: Recorder,
    limiter: EventLimiter,
    /// First time each pending pod (by uid) was seen pending, on the controller's clock.
    pending_since: HashMap<String, Timestamp>,
    /// Since when each managed node has had no workload pods.
    idle_since: HashMap<String, Timestamp>,
    /// Last health complaint logged per node, so a broken node is logged once per change.
    unhealthy_logged: HashMap<String, String>,
    /// Nodes whose drain has logged a PodDisruptionBudget refusal at INFO already (one line
    /// per drain; the refusals of every tick are at DEBUG).
    pdb_refusal_logged: std::collections::HashSet<String>,
    /// Woken by the pod watch for every new pending GPU pod (plan within ~1 s, batched).
    wake: Arc<crate::controller::batcher::Batcher>,
    /// The scheduler's message on each pending GPU pod of the last view.
    scheduler_messages: BTreeMap<String, String>,
}

impl KubeCluster {
    /// Start the reflectors. Call inside a tokio runtime; `observe` reports `NotSynced` until
    /// both initial lists are in. `instance` names this replica in Events (the pod name).
    /// Build `client` with [`client`] (no 429 retry layer); with kube's default client an
    /// eviction blocked by a PDB is bounded by `drain::EVICTION_TIMEOUT_S` instead.
    pub fn start(client: Client, config: Arc<Config>, instance: Option<String>) -> Self {
        let names = GpuResourceNames::from_config(&config.kubernetes);
        let keep_conditions = config.kubernetes.gpu_unhealthy_conditions.clone();
        let nodes = watch::spawn(
            Api::<K8sNode>::all(client.clone()),
            // Only nodes of managed pools: the selector is "label exists".
            watcher::Config::default().labels(TAG_POOL),
            "nodes",
            move |n: &mut K8sNode| convert::prune_node(n, &keep_conditions),
            |_: &K8sNode| {},
        );
        let wake = Arc::new(crate::controller::batcher::Batcher::default());
        let pods = watch::spawn(
            Api::<Pod>::all(client.clone()),
            // Finished pods hold nothing; the API server filters them out for us.
            watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed"),
            "pods",
            convert::prune_pod,
            {
                let (wake, names) = (wake.clone(), names.clone());
                move |p: &Pod| {
                    // A pod gpupool would plan for (pending, unschedulable, asking a GPU
                    // resource) and has not triggered for before.
                    if let Some(uid) = p.metadata.uid.as_deref()
                        && convert::pending_pod(p, &names, Timestamp::default()).is_some()
                        && wake.trigger(uid)
                    {
                        tracing::debug!(pod = %pod_key(p), "new pending GPU pod: planning within the batch window");
                    }
                }
            },
        );
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: REPORTING_CONTROLLER.into(),
                instance,
            },
        );
        KubeCluster {
            client,
            config,
            names,
            pods,
            nodes,
            recorder,
            limiter: EventLimiter::new(events::DEFAULT_EVENT_INTERVAL_S),
            pending_since: HashMap::new(),
            idle_since: HashMap::new(),
            unhealthy_logged: HashMap::new(),
            pdb_refusal_logged: std::collections::HashSet::new(),
            wake,
            scheduler_messages: BTreeMap::new(),
        }
    }

    /// Wakes when new pending GPU pods appeared (batched: 1 s idle, 10 s max); the run loop
    /// plans then instead of waiting for the next tick.
    pub fn wakeups(&self) -> Arc<crate::controller::batcher::Batcher> {
        self.wake.clone()
    }

    /// At most one event per object and reason per `interval_s` (default 300 s).
    pub fn with_event_interval(mut self, interval_s: u64) -> Self {
        self.limiter = EventLimiter::new(interval_s);
        self
    }

    pub fn pods_watch(&self) -> &watch::WatchHealth {
        &self.pods.health
    }

    pub fn nodes_watch(&self) -> &watch::WatchHealth {
        &self.nodes.health
    }

    /// Both initial lists are in.
    pub fn synced(&self) -> bool {
        self.pods.health.synced() && self.nodes.health.synced()
    }

    fn check_synced(&self) -> Result<(), KubeError> {
        for (what, h) in [("nodes", &self.nodes.health), ("pods", &self.pods.health)] {
            if !h.synced() {
                let why = h.last_error().map_or(String::new(), |e| format!(": {e}"));
                return Err(KubeError::NotSynced(format!(
                    "initial list of {what} not complete{why}"
                )));
            }
        }
        Ok(())
    }

    /// Nodes of managed pools linked to `instances`, and pending GPU pods.
    pub fn view(
        &mut self,
        instances: &[Instance],
        now: Timestamp,
    ) -> Result<ClusterView, KubeError> {
        self.check_synced()?;
        let cfg = self.config.clone();
        // Managed nodes by name.
        let mut managed: BTreeMap<String, Managed<'_>> = BTreeMap::new();
        for n in self.nodes.store.state() {
            let Some(name) = n.metadata.name.clone() else {
                continue;
            };
            let Some(pool) = n
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(TAG_POOL))
                .and_then(|p| cfg.pool(&PoolName::new(p.clone())))
            else {
                continue;
            };
            // The cloud controller sets providerID shortly after registration; until then the
            // node cannot be linked and its instance stays in flight on the provider's word.
            let Some(pid) = n.spec.as_ref().and_then(|s| s.provider_id.as_deref()) else {
                continue;
            };
            let inst = provider_id::match_instance(pid, instances);
            let id = match (inst, ProviderId::parse(pid)) {
                (Some(i), _) => i.id.clone(),
                // A node whose instance the provider did not list (terminated a moment ago, or a
                // group not discovered): still reported, under the id its providerID names, so
                // the planner sees it but cannot act on an unknown instance.
                (None, Some(p)) => p.instance_id(),
                (None, None) => continue,
            };
            managed.insert(name, (n, id, pool, inst));
        }

        let mut pending: Vec<PendingPod> = Vec::new();
        let mut on_node: HashMap<String, Vec<RunningPod>> = HashMap::new();
        let mut pending_uids = Vec::new();
        self.scheduler_messages.clear();
        for p in self.pods.store.state() {
            if let Some(node) = convert::node_name_of(&p) {
                if managed.contains_key(node) && !convert::is_finished(&p) {
                    on_node
                        .entry(node.to_owned())
                        .or_default()
                        .push(convert::running_pod(&p, &self.names));
                }
                continue;
            }
            let uid = p.metadata.uid.clone().unwrap_or_else(|| pod_key(&p));
            let since = self.pending_since.get(&uid).copied().unwrap_or(now);
            if let Some(pp) = convert::pending_pod(&p, &self.names, since) {
                self.pending_since.entry(uid.clone()).or_insert(now);
                if let Some(m) = convert::scheduler_message(&p) {
                    self.scheduler_messages.insert(pp.key(), m);
                }
                pending_uids.push(uid);
                pending.push(pp);
            }
        }
        // Forget pods that are no longer pending (bounded by the live set).
        let live: std::collections::HashSet<&String> = pending_uids.iter().collect();
        self.pending_since.retain(|uid, _| live.contains(uid));
        pending.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

        let mut nodes: Vec<Node> = Vec::with_capacity(managed.len());
        for (name, (k, id, pool, inst)) in &managed {
            let health = convert::node_health(
                k,
                pool,
                &self.names,
                &cfg.kubernetes.gpu_unhealthy_conditions,
            );
            self.log_health(name, &health);
            let mut pods = on_node.remove(name).unwrap_or_default();
            pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            let idle = if pods.iter().any(|p| !p.daemon) {
                self.idle_since.remove(name);
                None
            } else {
                Some(*self.idle_since.entry(name.clone()).or_insert(now))
            };
            let capacity = convert::capacity_type(k, inst.map(|i| i.capacity_type));
            nodes.push(convert::node(
                k,
                id.clone(),
                pool.name.clone(),
                capacity,
                &health,
                pods,
                idle,
            ));
        }
        self.idle_since.retain(|n, _| managed.contains_key(n));
        self.unhealthy_logged.retain(|n, _| managed.contains_key(n));
        Ok(ClusterView {
            nodes,
            pending_pods: pending,
        })
    }

    fn log_health(&mut self, node: &str, h: &convert::NodeHealth) {
        match &h.unhealthy {
            Some(why) => {
                if self.unhealthy_logged.get(node) != Some(why) {
                    tracing::warn!(node, reason = %why, "GPU node unhealthy: not serving-ready, to be replaced");
                    self.unhealthy_logged.insert(node.to_owned(), why.clone());
                }
            }
            None => {
                self.unhealthy_logged.remove(node);
            }
        }
    }

    /// GPU health complaints of the nodes seen at the last `view`, by node name. Until the model
    /// has `Node.unhealthy`, this is how the shell can learn *why* a node is not serving-ready.
    pub fn unhealthy_nodes(&self) -> BTreeMap<String, String> {
        self.unhealthy_logged
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The cached node backing `instance`, if it registered.
    fn node_of(&self, instance: &Instance) -> Option<Arc<K8sNode>> {
        let one = std::slice::from_ref(instance);
        self.nodes.store.find(|n| {
            n.spec
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                .is_some_and(|pid| provider_id::match_instance(pid, one).is_some())
        })
    }

    /// One drain step for the node of `instance`.
    pub async fn drain_step(
        &mut self,
        instance: &Instance,
        deadline: Timestamp,
        now: Timestamp,
    ) -> Result<DrainProgress, KubeError> {
        if !self.nodes.health.synced() {
            return Err(KubeError::NotSynced(
                "initial list of nodes not complete".into(),
            ));
        }
        let Some(node) = self.node_of(instance) else {
            // Never registered (or already deleted): no pods can run there.
            return Ok(DrainProgress::Drained);
        };
        let name = node.metadata.name.clone().unwrap_or_default();
        let marked = convert::is_marked_for_drain(&node);
        let step = drain::step(&self.client, &name, marked, deadline).await?;
        if !step.do_not_disrupt.is_empty() {
            tracing::info!(
                node = %name,
                pods = ?step.do_not_disrupt,
                deadline = %deadline,
                left_s = deadline.secs_since(now),
                "do-not-disrupt pods stay until the drain deadline"
            );
        }
        if !step.blocked_by_pdb.is_empty() && self.pdb_refusal_logged.insert(name.clone()) {
            tracing::info!(
                node = %name,
                pods = ?step.blocked_by_pdb,
                deadline = %deadline,
                "evictions refused by a PodDisruptionBudget; retrying every tick until the drain deadline"
            );
        }
        tracing::debug!(node = %name, ?step, "drain step");
        if step.remaining == 0 {
            self.pdb_refusal_logged.remove(&name);
        }
        Ok(if step.remaining == 0 {
            DrainProgress::Drained
        } else {
            DrainProgress::InProgress {
                remaining: step.remaining,
            }
        })
    }

    /// Cordon the node of `instance` and mark the drain's `deadline` on it (no node yet, or
    /// already marked: nothing to do).
    pub async fn cordon_node(
        &mut self,
        instance: &Instance,
        deadline: Timestamp,
    ) -> Result<(), KubeError> {
        if !self.nodes.health.synced() {
            return Err(KubeError::NotSynced(
                "initial list of nodes not complete".into(),
            ));
        }
        let Some(node) = self.node_of(instance) else {
            return Ok(());
        };
        if convert::is_marked_for_drain(&node) {
            return Ok(());
        }
        let name = node.metadata.name.clone().unwrap_or_default();
        let nodes: Api<K8sNode> = Api::all(self.client.clone());
        drain::cordon(&nodes, &name, deadline).await?;
        tracing::info!(node = %name, instance = %instance.id, "cordoned ahead of a spot reclaim; pods keep running until the drain window");
        Ok(())
    }

    /// Take the node of `instance` back into service after a voluntary drain was given up.
    pub async fn uncordon_node(&mut self, instance: &Instance) -> Result<(), KubeError> {
        let Some(node) = self.node_of(instance) else {
            return Ok(());
        };
        let name = node.metadata.name.clone().unwrap_or_default();
        let nodes: Api<K8sNode> = Api::all(self.client.clone());
        drain::uncordon(&nodes, &name).await?;
        self.pdb_refusal_logged.remove(&name);
        tracing::info!(node = %name, instance = %instance.id, "uncordoned: voluntary drain given up");
        Ok(())
    }

    fn reference(&self, target: &Target) -> Option<ObjectReference> {
        match target {
            Target::Pod(key) => {
                let (ns, name) = key.split_once('/')?;
                let pod = self.pods.store.find(|p| {
                    p.metadata.namespace.as_deref() == Some(ns)
                        && p.metadata.name.as_deref() == Some(name)
                })?;
                Some(pod.object_ref(&()))
            }
            Target::Instance { instance, node } => {
                let n = self.nodes.store.find(|n| match node {
                    Some(name) => n.metadata.name.as_deref() == Some(name.as_str()),
                    None => n
                        .spec
                        .as_ref()
                        .and_then(|s| s.provider_id.as_deref())
                        .and_then(ProviderId::parse)
                        .is_some_and(|p| p.instance_id().as_str() == instance),
                })?;
                Some(n.object_ref(&()))
            }
        }
    }

    /// Write the plan's events (rate-limited). Failures are logged: an event is never worth
    /// holding the control loop for.
    pub async fn publish_events(&mut self, plan: &Plan, now: Timestamp) -> usize {
        let mut written = 0;
        for ev in events::plan_events(&plan.actions, &plan.decisions) {
            if written >= events::MAX_EVENTS_PER_TICK {
                break;
            }
            let Some(reference) = self.reference(&ev.target) else {
                continue;
            };
            if !self.limiter.allow(&ev.target, ev.reason, now) {
                continue;
            }
            let e = KubeEvent {
                type_: match ev.kind {
                    EventKind::Normal => EventType::Normal,
                    EventKind::Warning => EventType::Warning,
                },
                reason: ev.reason.into(),
                note: Some(ev.note.clone()),
                action: ev.action.into(),
                secondary: None,
            };
            match self.recorder.publish(&e, &reference).await {
                Ok(()) => written += 1,
                Err(err) => {
                    tracing::warn!(target = ?ev.target, reason = ev.reason, error = %err, "cannot write event");
                }
            }
        }
        written
    }
}

/// A node of a configured pool: the cached object, its instance id, its pool's configuration,
/// and the provider's instance when it listed one.
type Managed<'a> = (
    Arc<K8sNode>,
    InstanceId,
    &'a PoolConfig,
    Option<&'a Instance>,
);

fn pod_key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

#[async_trait]
impl Cluster for KubeCluster {
    async fn observe(
        &mut self,
        instances: &[Instance],
        now: Timestamp,
    ) -> Result<ClusterView, ClusterError> {
        Ok(self.view(instances, now)?)
    }

    async fn drain(
        &mut self,
        instance: &Instance,
        deadline: Timestamp,
        now: Timestamp,
    ) -> Result<DrainProgress, ClusterError> {
        Ok(self.drain_step(instance, deadline, now).await?)
    }

    async fn cordon(
        &mut self,
        instance: &Instance,
        deadline: Timestamp,
    ) -> Result<(), ClusterError> {
        Ok(self.cordon_node(instance, deadline).await?)
    }

    async fn uncordon(&mut self, instance: &Instance) -> Result<bool, ClusterError> {
        self.uncordon_node(instance).await?;
        Ok(true)
    }

    async fn publish(&mut self, plan: &Plan, now: Timestamp) {
        self.publish_events(plan, now).await;
    }

    fn scheduler_messages(&self) -> BTreeMap<String, String> {
        self.scheduler_messages.clone()
    }

    fn relisting(&self) -> Vec<crate::model::WatchedResource> {
        use crate::model::WatchedResource;
        [
            (WatchedResource::Pods, &self.pods.health),
            (WatchedResource::Nodes, &self.nodes.health),
        ]
        .into_iter()
        .filter(|(_, h)| h.synced() && !h.current())
        .map(|(r, _)| r)
        .collect()
    }
}
