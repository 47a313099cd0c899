//! VM-only fleets: no Kubernetes. Each instance of a pool's node groups is one serving VM
//! running `replica.replicas_per_instance` replicas; demand comes from signals only.
//!
//! [`VmCluster`] is the [`Cluster`] for this mode:
//! - **readiness** (`Node.serving_ready`), in order of preference: the pool's `health_url`
//!   (`{ip}` → the instance's private IP) answering 2xx within the timeout; else, when the pool
//!   names a `model_cache`, the instance's model-cache tag equal to it; else the provider's
//!   Ready state. Health checks run concurrently, at most [`HEALTH_CONCURRENCY`] at a time.
//! - **in-flight requests** (`Node.in_flight_requests`, `Node.idle_since`): from a per-pool
//!   Prometheus query template (`{instance}` → instance id, `{ip}` → private IP), the pool's
//!   `in_flight_query`, as an [`InFlight`]: a known count, no series (none configured, or an
//!   empty answer) or unreadable (the query failed). Only a known 0 is idle; `idle_since` is
//!   remembered across ticks.
//! - **drain** (every VM-only scale-in is one: the planner never terminates a serving VM
//!   directly, whatever its in-flight count): run the pool's `deregister_command` (argv,
//!   `{id}`/`{ip}` substituted, no shell, with a timeout). A failure keeps the VM serving and
//!   registered ([`DrainProgress::StillRegistered`]: the controller never terminates it then,
//!   deadline or not) and the command is retried next tick, for at most
//!   `disruption.deregister_give_up_s`; after that the drain is given up
//!   ([`DrainProgress::Abandoned`]) and the VM kept. Once deregistered, wait until the instance
//!   reports 0 requests in flight; without an in-flight series, wait a grace period after
//!   deregistration instead; while the query fails (Prometheus down), keep waiting. Only then
//!   `Drained`. The controller's drain deadline bounds the wait after deregistration.
//!
//! **The drain is marked on the instance** (`NodeGroupProvider::mark_draining`: the EC2 tag /
//! GCP label `gpupool.io/drain-deadline` = the deadline in epoch seconds) before the
//! deregister command first runs, so a new process that lost the state file (or never had it)
//! finds the mark and resumes the drain: the instance's node is reported cordoned with that
//! `drain_deadline`, and the controller adopts it as it adopts a Kubernetes node's drain
//! annotation. Marking is retried every tick until it succeeds, but a failing mark never
//! holds the drain itself (the state file still records it; a spot notice's VM must stop
//! taking requests whatever the tag API says). When a drain is given up (`Abandoned`) the mark
//! is removed; the removal is retried at every observation while it fails, and until a
//! listing shows the instance without the mark (the listing of a tick is read before its
//! removal; EC2 reads are eventually consistent) the instance is reported unmarked — this
//! process knows the drain is over and must not adopt it again.
//!
//! The cluster publishes serving replicas per pool to [`ServingReplicas`], the latency
//! guard-rail's base.

use crate::config::{Config, PoolConfig};
use crate::controller::{Cluster, ClusterError, ClusterView, DrainProgress};
use crate::model::{
    InFlight, Instance, InstanceId, LifecycleState, Node, NodeGroupId, PoolName, Timestamp,
};
use crate::signals::{ServingReplicas, auth, prometheus};
use async_trait::async_trait;
use gpupool_provider::NodeGroupProvider;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Health checks and in-flight queries in flight at once (a bound on a large fleet's burst).
pub const HEALTH_CONCURRENCY: usize = 16;
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_DEREGISTER_TIMEOUT: Duration = Duration::from_secs(30);
/// Without an in-flight metric, how long after deregistration requests are assumed finished.
const DEFAULT_DRAIN_GRACE_S: f64 = 30.0;

/// A per-instance in-flight metric: `query` with `{instance}`/`{ip}` substituted, run against
/// the Prometheus at `url`.
#[derive(Clone, Debug, PartialEq)]
pub struct InFlightQuery {
    pub url: String,
    pub query: String,
    /// Its credentials, TLS and headers (`signals::auth`).
    pub access: auth::AccessKey,
}

impl InFlightQuery {
    /// This query for one instance (`{instance}`/`{ip}` substituted).
    fn for_instance(&self, inst: &Instance) -> InFlightQuery {
        InFlightQuery {
            url: self.url.clone(),
            query: substitute(&self.query, inst),
            access: self.access.clone(),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct DrainState {
    /// The deadline last marked on the instance, encoded as the mark holds it.
    marked: Option<String>,
    deregistered_at: Option<Timestamp>,
    attempts: u32,
    /// When the first deregistration attempt failed (the give-up clock).
    failing_since: Option<Timestamp>,
}

pub struct VmCluster {
    config: Arc<Config>,
    provider: Arc<dyn NodeGroupProvider>,
    http: reqwest::Client,
    /// In-flight queries' clients by access settings (built once, see `signals::auth`).
    endpoints: auth::Endpoints,
    serving: Arc<ServingReplicas>,
    in_flight: BTreeMap<PoolName, InFlightQuery>,
    health_timeout: Duration,
    deregister_timeout: Duration,
    group_pools: BTreeMap<NodeGroupId, PoolName>,
    idle_since: BTreeMap<InstanceId, Timestamp>,
    drains: BTreeMap<InstanceId, DrainState>,
    /// Instances whose drain was given up, with their group and whether the mark's removal
    /// succeeded; kept until a listing shows them unmarked.
    unmark: BTreeMap<InstanceId, (NodeGroupId, bool)>,
}

impl VmCluster {
    /// Pools' `health_url`, `deregister_command` and `in_flight_query` come from `config`.
    /// `provider` is used only to learn which pool a group belongs to (instances name only
    /// their group), and only when an unknown group shows up.
    pub fn new(
        config: Arc<Config>,
        provider: Arc<dyn NodeGroupProvider>,
    ) -> Result<Self, ClusterError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("gpupool/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClusterError::Api {
                what: "building the HTTP client".into(),
                source: Box::new(e),
            })?;
        let in_flight = config
            .pools
            .iter()
            .filter_map(|p| {
                let q = p.in_flight_query.as_ref()?;
                Some((
                    p.name.clone(),
                    InFlightQuery {
                        url: q.url.clone(),
                        query: q.query.clone(),
                        access: auth::AccessKey::new(&config, q.access()),
                    },
                ))
            })
            .collect();
        Ok(VmCluster {
            config,
            provider,
            http,
            endpoints: auth::Endpoints::default(),
            serving: Arc::new(ServingReplicas::default()),
            in_flight,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            deregister_timeout: DEFAULT_DEREGISTER_TIMEOUT,
            group_pools: BTreeMap::new(),
            idle_since: BTreeMap::new(),
            drains: BTreeMap::new(),
            unmark: BTreeMap::new(),
        })
    }

    /// Publish serving replicas into `serving` (share it with `SignalDemand::with_serving`).
    pub fn with_serving(mut self, serving: Arc<ServingReplicas>) -> Self {
        self.serving = serving;
        self
    }

    pub fn with_health_timeout(mut self, t: Duration) -> Self {
        self.health_timeout = t;
        self
    }

    pub fn with_deregister_timeout(mut self, t: Duration) -> Self {
        self.deregister_timeout = t;
        self
    }

    async fn pool_of(&mut self, group: &NodeGroupId) -> Result<Option<PoolName>, ClusterError> {
        if !self.group_pools.contains_key(group) {
            let groups = self
                .provider
                .node_groups()
                .await
                .map_err(|e| ClusterError::Api {
                    what: "listing node groups for pool membership".into(),
                    source: Box::new(e),
                })?;
            self.group_pools = groups.into_iter().map(|g| (g.id, g.pool)).collect();
        }
        Ok(self.group_pools.get(group).cloned())
    }

    fn pool_config(&self, pool: &PoolName) -> Option<&PoolConfig> {
        self.config.pool(pool)
    }

    /// Mark the drain on the instance unless it already carries this deadline. A failure is a
    /// WARN and retried next tick; it never holds the drain (see the module doc).
    async fn mark(&mut self, instance: &Instance, deadline: Timestamp) {
        let want = gpupool_provider::encode_drain_deadline(deadline);
        // A new drain of an instance whose earlier drain was given up: its mark is wanted again.
        self.unmark.remove(&instance.id);
        let state = self.drains.entry(instance.id.clone()).or_default();
        let on_instance = instance
            .drain_deadline
            .map(gpupool_provider::encode_drain_deadline);
        if state.marked.as_ref() == Some(&want) || on_instance.as_ref() == Some(&want) {
            state.marked = Some(want);
            return;
        }
        match self
            .provider
            .mark_draining(&instance.group, &instance.id, deadline)
            .await
        {
            Ok(()) => {
                if let Some(d) = self.drains.get_mut(&instance.id) {
                    d.marked = Some(want);
                }
            }
            Err(e) => {
                tracing::warn!(instance = %instance.id, error = %crate::controller::error_chain(&e), "cannot mark the drain on the instance (a restart without the state file would not resume it); retrying next tick, the drain goes on");
            }
        }
    }

    /// Bookkeeping for instances that left; drain marks still to remove are retried.
    async fn forget_gone(&mut self, instances: &[Instance]) {
        let listed = |id: &InstanceId| instances.iter().any(|i| &i.id == id);
        self.idle_since.retain(|id, _| listed(id));
        self.drains.retain(|id, _| listed(id));
        // Removed, and the listing agrees: nothing left to hide.
        let unmarked = |id: &InstanceId| {
            instances
                .iter()
                .any(|i| &i.id == id && i.drain_deadline.is_none())
        };
        self.unmark
            .retain(|id, (_, removed)| listed(id) && !(*removed && unmarked(id)));
        let retry: Vec<(InstanceId, NodeGroupId)> = self
            .unmark
            .iter()
            .filter(|(_, (_, removed))| !removed)
            .map(|(i, (g, _))| (i.clone(), g.clone()))
            .collect();
        for (id, group) in retry {
            self.unmark(&group, &id).await;
        }
    }

    /// Remove the drain mark of a drain given up; remembered and retried while it fails.
    async fn unmark(&mut self, group: &NodeGroupId, instance: &InstanceId) {
        let removed = match self.provider.clear_draining(group, instance).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%instance, error = %crate::controller::error_chain(&e), "cannot remove the drain mark of a drain given up; retrying");
                false
            }
        };
        self.unmark
            .insert(instance.clone(), (group.clone(), removed));
    }
}

/// Substitute `{id}`, `{instance}` and `{ip}` in a template.
fn substitute(template: &str, inst: &Instance) -> String {
    template
        .replace("{id}", inst.id.as_str())
        .replace("{instance}", inst.id.as_str())
        .replace("{ip}", inst.private_ip.as_deref().unwrap_or(""))
}

/// What one concurrent probe found about one instance.
struct Probe {
    ready: bool,
    in_flight: InFlight,
}

async fn probe(
    http: reqwest::Client,
    health_url: Option<String>,
    in_flight: Option<(InFlightQuery, Option<auth::Endpoint>)>,
    cache_ok: bool,
    timeout: Duration,
    now: Timestamp,
) -> Probe {
    let ready = match health_url {
        Some(url) => matches!(
            http.get(&url).timeout(timeout).send().await,
            Ok(r) if r.status().is_success()
        ),
        None => cache_ok,
    };
    let in_flight = match in_flight {
        Some((q, e)) => read_in_flight(e.as_ref(), &q, now, timeout).await,
        None => InFlight::NoSeries,
    };
    Probe { ready, in_flight }
}

async fn read_in_flight(
    endpoint: Option<&auth::Endpoint>,
    q: &InFlightQuery,
    now: Timestamp,
    timeout: Duration,
) -> InFlight {
    // No endpoint: its client or credential could not be built (logged by nobody else; the
    // count is unreadable, so scale-in keeps waiting, as when Prometheus is down).
    let Some(endpoint) = endpoint else {
        return InFlight::Unreadable;
    };
    match prometheus::query_at(endpoint, &q.url, &q.query, now, timeout).await {
        Ok(Some(s)) if s.value.is_finite() && s.value >= 0.0 => {
            InFlight::Known(s.value.round().min(f64::from(u32::MAX)) as u32)
        }
        Ok(None) => InFlight::NoSeries,
        _ => InFlight::Unreadable,
    }
}

#[async_trait]
impl Cluster for VmCluster {
    async fn observe(
        &mut self,
        instances: &[Instance],
        now: Timestamp,
    ) -> Result<ClusterView, ClusterError> {
        // In-flight queries' clients: built once per access setting, retried while failing.
        let config = self.config.clone();
        let _failed = self.endpoints.prepare(&config, &self.http).await;
        self.forget_gone(instances).await;

        let semaphore = Arc::new(tokio::sync::Semaphore::new(HEALTH_CONCURRENCY));
        let mut set = tokio::task::JoinSet::new();
        let mut candidates: Vec<(usize, PoolName)> = Vec::new();
        for (i, inst) in instances.iter().enumerate() {
            // Only running instances can serve; draining ones are still observed (in-flight).
            if !matches!(inst.state, LifecycleState::Ready | LifecycleState::Draining) {
                continue;
            }
            let Some(pool) = self.pool_of(&inst.group).await? else {
                continue;
            };
            let Some(pc) = self.pool_config(&pool) else {
                continue;
            };
            let health_url = pc.health_url.as_ref().map(|t| substitute(t, inst));
            // With a health URL but no IP the check cannot be made: not ready.
            let health_url = health_url.filter(|_| inst.private_ip.is_some());
            let no_ip_for_url = pc.health_url.is_some() && inst.private_ip.is_none();
            let cache_ok = !no_ip_for_url
                && match &pc.model_cache {
                    Some(want) => inst.model_cache.as_deref() == Some(want.as_str()),
                    None => true,
                };
            let in_flight = self.in_flight.get(&pool).map(|q| {
                let e = self.endpoints.get(&q.access).cloned();
                (q.for_instance(inst), e)
            });
            let (http, timeout, sem) = (self.http.clone(), self.health_timeout, semaphore.clone());
            set.spawn(async move {
                // The semaphore is never closed, so acquiring only waits for a free slot.
                let _permit = sem.acquire_owned().await.ok();
                (
                    i,
                    probe(http, health_url, in_flight, cache_ok, timeout, now).await,
                )
            });
            candidates.push((i, pool));
        }
        let mut probes: BTreeMap<usize, Probe> = BTreeMap::new();
        while let Some(joined) = set.join_next().await {
            if let Ok((i, p)) = joined {
                probes.insert(i, p);
            }
        }

        let mut nodes = Vec::with_capacity(candidates.len());
        let mut serving: BTreeMap<PoolName, u32> = self
            .config
            .pools
            .iter()
            .map(|p| (p.name.clone(), 0))
            .collect();
        for (i, pool) in candidates {
            let inst = &instances[i];
            // A probe task that panicked reads as not ready, in-flight unknown.
            let p = probes.remove(&i).unwrap_or(Probe {
                ready: false,
                in_flight: InFlight::Unreadable,
            });
            let idle_since = match p.in_flight {
                InFlight::Known(0) => Some(*self.idle_since.entry(inst.id.clone()).or_insert(now)),
                _ => {
                    self.idle_since.remove(&inst.id);
                    None
                }
            };
            // A drain marked on the instance (by this process or a dead one), unless this process
            // gave it up and the mark's removal is pending.
            let drain_deadline = inst
                .drain_deadline
                .filter(|_| !self.unmark.contains_key(&inst.id));
            if p.ready && inst.state == LifecycleState::Ready {
                let per = self
                    .pool_config(&pool)
                    .and_then(crate::signals::replicas_per_node)
                    .unwrap_or(1);
                *serving.entry(pool.clone()).or_default() += per;
            }
            nodes.push(Node {
                serving_ready: p.ready,
                cordoned: self.drains.contains_key(&inst.id) || drain_deadline.is_some(),
                idle_since,
                drain_deadline,
                ..Node::vm(inst, pool, p.in_flight)
            });
        }
        for (pool, n) in serving {
            self.serving.set(&pool, n);
        }
        Ok(ClusterView {
            nodes,
            pending_pods: Vec::new(),
        })
    }

    /// Before the drain window of a spot notice: the VM keeps serving, but the drain is already
    /// marked, so a restart that lost the state file still knows it.
    async fn cordon(
        &mut self,
        instance: &Instance,
        deadline: Timestamp,
    ) -> Result<(), ClusterError> {
        self.mark(instance, deadline).await;
        Ok(())
    }

    async fn drain(
        &mut self,
        instance: &Instance,
        deadline: Timestamp,
        now: Timestamp,
    ) -> Result<DrainProgress, ClusterError> {
        // Marked before the VM is first deregistered: a crash after deregistration always
        // leaves the mark behind.
        self.mark(instance, deadline).await;
        let state = self.drains.entry(instance.id.clone()).or_default().clone();
        let pool = match self.pool_of(&instance.group).await {
            Ok(p) => p,
            // Not deregistered yet and the pool (so the command) unknown: the VM still takes
            // requests, so it must not look drainable to the deadline.
            Err(e) if state.deregistered_at.is_none() => {
                tracing::warn!(instance = %instance.id, error = %crate::controller::error_chain(&e), "cannot tell the VM's pool to deregister it; retrying next tick");
                return Ok(DrainProgress::StillRegistered {
                    attempts: state.attempts,
                });
            }
            Err(e) => return Err(e),
        };

        let deregistered_at = match state.deregistered_at {
            Some(t) => t,
            None => {
                let pc = pool.as_ref().and_then(|p| self.pool_config(p));
                let argv = pc.and_then(|p| p.deregister_command.clone());
                let give_up_s = pc.map_or_else(
                    || {
                        crate::config::DisruptionPolicy::default()
                            .deregister_give_up
                            .as_secs()
                    },
                    |p| p.disruption.deregister_give_up.as_secs(),
                );
                if let Some(argv) = argv {
                    let attempt = state.attempts + 1;
                    if let Err(why) = run_deregister(&argv, instance, self.deregister_timeout).await
                    {
                        let since = state.failing_since.unwrap_or(now);
                        let failing_for_s = now.secs_since(since).max(0.0) as u64;
                        if failing_for_s >= give_up_s {
                            // Forget it: the VM is back in service; a later scale-in starts over.
                            self.drains.remove(&instance.id);
                            self.unmark(&instance.group, &instance.id).await;
                            return Ok(DrainProgress::Abandoned {
                                attempts: attempt,
                                failing_for_s,
                            });
                        }
                        if let Some(d) = self.drains.get_mut(&instance.id) {
                            d.attempts = attempt;
                            d.failing_since = Some(since);
                        }
                        // Only the program name: arguments and output may carry secrets.
                        tracing::warn!(instance = %instance.id, program = %argv[0], attempt, failing_for_s, give_up_s, %why, "deregister command failed; the VM stays registered and serving, the command is retried next tick");
                        return Ok(DrainProgress::StillRegistered { attempts: attempt });
                    }
                    tracing::info!(instance = %instance.id, program = %argv[0], attempt, "deregistered");
                }
                if let Some(d) = self.drains.get_mut(&instance.id) {
                    d.deregistered_at = Some(now);
                }
                now
            }
        };

        let q = pool
            .as_ref()
            .and_then(|p| self.in_flight.get(p))
            .map(|q| q.for_instance(instance));
        let in_flight = match q {
            Some(q) => {
                let e = self.endpoints.get(&q.access);
                read_in_flight(e, &q, now, self.health_timeout).await
            }
            None => InFlight::NoSeries,
        };
        let grace_over = now.secs_since(deregistered_at) >= DEFAULT_DRAIN_GRACE_S;
        Ok(match in_flight {
            InFlight::Known(0) => DrainProgress::Drained,
            InFlight::Known(n) => DrainProgress::InProgress { remaining: n },
            // No metric (none configured, or the server stopped exporting it): requests routed
            // before deregistration get a grace period to finish. `remaining: 0`: none known.
            // (`NotMeasured` is never produced here: VM-only reads say NoSeries instead.)
            InFlight::NoSeries | InFlight::NotMeasured if grace_over => DrainProgress::Drained,
            InFlight::NoSeries | InFlight::NotMeasured => {
                DrainProgress::InProgress { remaining: 0 }
            }
            // The metric exists but cannot be read now: keep waiting rather than cut requests
            // short; the controller's drain deadline (`drain_timeout_s`) still bounds this.
            InFlight::Unreadable => {
                tracing::debug!(instance = %instance.id, "in-flight requests unreadable; drain waits");
                DrainProgress::InProgress {
                    remaining: u32::MAX,
                }
            }
        })
    }
}

/// Why a deregister command did not succeed (no argv, env or output: they may hold secrets).
#[derive(Debug)]
enum DeregisterFailure {
    Spawn(std::io::ErrorKind),
    Exit(Option<i32>),
    TimedOut(Duration),
}

impl std::fmt::Display for DeregisterFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeregisterFailure::Spawn(k) => write!(f, "could not start: {k}"),
            DeregisterFailure::Exit(Some(c)) => write!(f, "exited with status {c}"),
            DeregisterFailure::Exit(None) => write!(f, "killed by a signal"),
            DeregisterFailure::TimedOut(t) => {
                write!(f, "timed out after {} s (killed)", t.as_secs())
            }
        }
    }
}

/// Run the argv (no shell, so no quoting surprises) with `{id}`/`{ip}` substituted.
async fn run_deregister(
    argv: &[String],
    inst: &Instance,
    timeout: Duration,
) -> Result<(), DeregisterFailure> {
    let Some((program, args)) = argv.split_first() else {
        // Config validation rejects an empty command; nothing to run is success.
        return Ok(());
    };
    let mut cmd = tokio::process::Command::new(substitute(program, inst));
    cmd.args(args.iter().map(|a| substitute(a, inst)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // A timed-out command is killed when its future is dropped.
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| DeregisterFailure::Spawn(e.kind()))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(DeregisterFailure::Exit(status.code())),
        Ok(Err(e)) => Err(DeregisterFailure::Spawn(e.kind())),
        Err(_) => Err(DeregisterFailure::TimedOut(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CapacityType;

    fn inst(id: &str, ip: Option<&str>) -> Instance {
        Instance {
            id: InstanceId::from(id),
            group: NodeGroupId::from("g"),
            instance_type: "g5.xlarge".into(),
            capacity_type: CapacityType::OnDemand,
            zone: "z".into(),
            state: LifecycleState::Ready,
            launched_at: Timestamp::from_secs(0),
            model_cache: None,
            provider_id: None,
            protected_from_scale_in: false,
            awaiting_lifecycle_hook: false,
            private_ip: ip.map(str::to_owned),
            drain_deadline: None,
        }
    }

    #[test]
    fn templates_substitute_id_and_ip() {
        let i = inst("i-1", Some("10.0.0.7"));
        assert_eq!(
            substitute("http://{ip}:8000/health", &i),
            "http://10.0.0.7:8000/health"
        );
        assert_eq!(
            substitute("x{instance=\"{instance}\"}", &i),
            "x{instance=\"i-1\"}"
        );
        assert_eq!(substitute("{id}", &i), "i-1");
    }

    #[tokio::test]
    async fn deregister_command_exit_status_and_timeout() {
        let i = inst("i-1", Some("10.0.0.7"));
        let t = Duration::from_secs(5);
        assert!(run_deregister(&["true".into()], &i, t).await.is_ok());
        assert!(matches!(
            run_deregister(&["false".into()], &i, t).await,
            Err(DeregisterFailure::Exit(Some(1)))
        ));
        // Arguments are substituted and passed without a shell.
        let ok = [
            "sh".into(),
            "-c".into(),
            "test \"$0\" = i-1 && test \"$1\" = 10.0.0.7".into(),
            "{id}".into(),
            "{ip}".into(),
        ];
        assert!(run_deregister(&ok, &i, t).await.is_ok());
        assert!(matches!(
            run_deregister(&["/nonexistent/deregister".into()], &i, t).await,
            Err(DeregisterFailure::Spawn(_))
        ));
        assert!(matches!(
            run_deregister(
                &["sleep".into(), "30".into()],
                &i,
                Duration::from_millis(100)
            )
            .await,
            Err(DeregisterFailure::TimedOut(_))
        ));
    }

    /// A cloud whose drain-mark calls fail the first `fail_marks` / `fail_clears` times.
    #[derive(Default)]
    struct Marks {
        fail_marks: std::sync::Mutex<u32>,
        fail_clears: std::sync::Mutex<u32>,
        calls: std::sync::Mutex<Vec<String>>,
    }

    fn fail_once(n: &std::sync::Mutex<u32>) -> gpupool_provider::Result<()> {
        let mut n = n.lock().unwrap();
        if *n == 0 {
            return Ok(());
        }
        *n -= 1;
        Err(gpupool_provider::ProviderError::Throttled { retry_after_ms: 0 })
    }

    #[async_trait]
    impl NodeGroupProvider for Marks {
        fn name(&self) -> &'static str {
            "marks"
        }
        async fn node_groups(&self) -> gpupool_provider::Result<Vec<crate::model::NodeGroup>> {
            Ok(vec![crate::model::NodeGroup {
                id: "g".into(),
                pool: "p".into(),
                offerings: vec![],
                min_size: 0,
                max_size: 4,
                desired: 1,
                labels: BTreeMap::new(),
                taints: vec![],
                warm_pool: None,
                activity_in_progress: false,
                unfulfilled: vec![],
            }])
        }
        async fn instances(&self, _: &NodeGroupId) -> gpupool_provider::Result<Vec<Instance>> {
            Ok(vec![])
        }
        async fn increase(&self, _: &NodeGroupId, _: u32) -> gpupool_provider::Result<()> {
            Ok(())
        }
        async fn terminate(
            &self,
            _: &NodeGroupId,
            _: &[InstanceId],
        ) -> gpupool_provider::Result<()> {
            Ok(())
        }
        async fn release_unfulfilled(
            &self,
            _: &NodeGroupId,
            _: u32,
            _: &[InstanceId],
        ) -> gpupool_provider::Result<u32> {
            Ok(0)
        }
        async fn set_warm_pool_size(
            &self,
            _: &NodeGroupId,
            _: u32,
        ) -> gpupool_provider::Result<()> {
            Ok(())
        }
        async fn complete_warmup(
            &self,
            _: &NodeGroupId,
            _: &InstanceId,
        ) -> gpupool_provider::Result<()> {
            Ok(())
        }
        async fn poll_events(&self) -> gpupool_provider::Result<Vec<crate::model::ProviderEvent>> {
            Ok(vec![])
        }
        async fn ack_event(&self, _: &str) -> gpupool_provider::Result<()> {
            Ok(())
        }
        async fn mark_draining(
            &self,
            _: &NodeGroupId,
            i: &InstanceId,
            d: Timestamp,
        ) -> gpupool_provider::Result<()> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("mark {i} {}", d.millis()));
            fail_once(&self.fail_marks)
        }
        async fn clear_draining(
            &self,
            _: &NodeGroupId,
            i: &InstanceId,
        ) -> gpupool_provider::Result<()> {
            self.calls.lock().unwrap().push(format!("clear {i}"));
            fail_once(&self.fail_clears)
        }
    }

    fn vm_cluster(deregister: &str, cloud: Arc<Marks>) -> VmCluster {
        let cfg = Config::load(&format!(
            "mode: vm-only\npools:\n  - name: p\n    requirements: {{}}\n    limits: {{ min_nodes: 1 }}\n    deregister_command: [\"{deregister}\"]\n    disruption: {{ deregister_give_up_s: 10 }}\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        VmCluster::new(Arc::new(cfg), cloud).unwrap()
    }

    #[tokio::test]
    async fn a_failing_drain_mark_never_holds_the_drain_and_is_retried() {
        let cloud = Arc::new(Marks::default());
        *cloud.fail_marks.lock().unwrap() = 1;
        let mut c = vm_cluster("true", cloud.clone());
        let i = inst("i-1", None);
        let (deadline, now) = (Timestamp::from_secs(600), Timestamp::from_secs(10));
        // The mark fails: the VM is deregistered all the same (the drain goes on).
        let p = c.drain(&i, deadline, now).await.unwrap();
        assert_eq!(p, DrainProgress::InProgress { remaining: 0 });
        // Retried at the next step, then not again once it holds.
        c.drain(&i, deadline, now.plus_secs(10.0)).await.unwrap();
        c.drain(&i, deadline, now.plus_secs(20.0)).await.unwrap();
        let marks = cloud.calls.lock().unwrap().clone();
        assert_eq!(marks, vec!["mark i-1 600000", "mark i-1 600000"]);
        // A mark already on the instance (a resumed drain) is not written again.
        let mut c = vm_cluster("true", cloud.clone());
        let mut marked = inst("i-2", None);
        marked.drain_deadline = Some(deadline);
        c.drain(&marked, deadline, now).await.unwrap();
        assert_eq!(cloud.calls.lock().unwrap().len(), 2);
        // An observed mark reads as a cordoned node with that deadline.
        let view = c.observe(&[marked.clone()], now).await.unwrap();
        assert_eq!(view.nodes[0].drain_deadline, Some(deadline));
        assert!(view.nodes[0].cordoned);
    }

    #[tokio::test]
    async fn a_drain_given_up_removes_its_mark_retrying_until_it_is_gone() {
        let cloud = Arc::new(Marks::default());
        *cloud.fail_clears.lock().unwrap() = 1;
        let mut c = vm_cluster("false", cloud.clone());
        let (deadline, now) = (Timestamp::from_secs(600), Timestamp::from_secs(10));
        let mut i = inst("i-1", None);
        // Deregistration fails, and is given up after deregister_give_up_s (10 s).
        let p = c.drain(&i, deadline, now).await.unwrap();
        assert!(matches!(p, DrainProgress::StillRegistered { .. }), "{p:?}");
        let p = c.drain(&i, deadline, now.plus_secs(10.0)).await.unwrap();
        assert!(matches!(p, DrainProgress::Abandoned { .. }), "{p:?}");
        i.drain_deadline = Some(deadline); // the removal failed: the cloud still shows it
        let view = c.observe(std::slice::from_ref(&i), now).await.unwrap();
        assert_eq!(
            view.nodes[0].drain_deadline, None,
            "this process knows it is over"
        );
        assert!(!view.nodes[0].cordoned);
        let calls = cloud.calls.lock().unwrap().clone();
        assert_eq!(calls, vec!["mark i-1 600000", "clear i-1", "clear i-1"]);
        // Removed now: not asked again, and hidden while the listing still shows it.
        let view = c.observe(std::slice::from_ref(&i), now).await.unwrap();
        assert_eq!(view.nodes[0].drain_deadline, None);
        assert_eq!(cloud.calls.lock().unwrap().len(), 3);
        // The listing caught up; a later mark on the instance (another process's drain, a
        // restore) is reported again.
        i.drain_deadline = None;
        c.observe(std::slice::from_ref(&i), now).await.unwrap();
        i.drain_deadline = Some(deadline);
        let view = c.observe(std::slice::from_ref(&i), now).await.unwrap();
        assert_eq!(view.nodes[0].drain_deadline, Some(deadline));
        assert_eq!(cloud.calls.lock().unwrap().len(), 3);
    }
}
