//! Leader election on a `coordination.k8s.io/v1` Lease, the protocol of client-go's
//! `leaderelection` package:
//!
//! - the holder renews `spec.renewTime` every tick; every write is a `replace` carrying the
//!   `resourceVersion` it read, so of two replicas racing for the lease exactly one write wins
//!   (the other gets `409 Conflict`);
//! - a candidate takes the lease only after it has seen the *same* lease record (holder, renew
//!   time, resourceVersion) unchanged for `leaseDurationSeconds` of its *own* clock. Comparing
//!   `renewTime` with the local clock instead would make the election depend on clock skew
//!   between nodes;
//! - a holder that cannot renew for `renew_deadline` stops calling itself leader before anybody
//!   else may take over (renew deadline < lease duration), so two replicas never both act;
//! - on shutdown the holder releases the lease (empty holder, 1 s duration) so the other replica
//!   takes over at its next tick instead of a full lease duration later.
//!
//! In production the elector runs in its own task ([`spawn_renewal`], every third of the lease
//! duration, as client-go's retry period), so a tick that lasts longer than the lease — a GCP
//! operation is awaited up to minutes — neither loses the lease nor keeps acting on one it lost:
//! the controller checks [`LeaderHandle::fence`] before every mutating call.

use super::KubeError;
use crate::model::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

/// client-go's defaults: lease 15 s, renew deadline 10 s (the run loop ticks faster than that).
pub const DEFAULT_LEASE_DURATION_S: u32 = 15;

/// The namespace the controller's pod runs in, injected by the Deployment (downward API
/// `metadata.namespace`; deploy/kubernetes and deploy/helm both set it).
pub const POD_NAMESPACE_ENV: &str = "POD_NAMESPACE";

/// `kubernetes.lease_namespace`'s default, which is also the fallback outside a pod.
pub const DEFAULT_LEASE_NAMESPACE: &str = "kube-system";

/// Where the Lease lives. The Helm chart and the kustomize base grant the Lease Role in the
/// controller's own namespace, so the lease follows the pod: `POD_NAMESPACE` when it is set.
/// A `lease_namespace` other than the default is an explicit choice and wins (the operator then
/// grants the Role there). The config cannot tell "unset" from "set to the default", so the
/// default `kube-system` means "follow the pod"; with neither, `kube-system` (a controller run
/// outside the cluster with a kubeconfig).
pub fn lease_namespace<'a>(configured: &'a str, pod_namespace: Option<&'a str>) -> &'a str {
    let pod = pod_namespace.map(str::trim).filter(|ns| !ns.is_empty());
    match (configured, pod) {
        (c, Some(pod)) if c == DEFAULT_LEASE_NAMESPACE || c.is_empty() => pod,
        (c, _) if !c.is_empty() => c,
        _ => DEFAULT_LEASE_NAMESPACE,
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    resource_version: Option<String>,
    /// Local time this exact record was first seen.
    seen_at: Timestamp,
}

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration_s: u32,
    observed: Option<Observed>,
    /// Last successful acquire or renew while leader.
    renewed_at: Option<Timestamp>,
}

fn micro_time(t: Timestamp) -> MicroTime {
    // Timestamps the controller passes are milliseconds since the epoch, well inside jiff's
    // range (years -9999..=9999); fall back to the epoch rather than panic on a bad clock.
    MicroTime(
        k8s_openapi::jiff::Timestamp::from_millisecond(t.millis())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

impl LeaderElector {
    /// `identity` must be unique per replica: the pod name (downward API `metadata.name`).
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        lease_duration_s: u32,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration_s: lease_duration_s.max(2),
            observed: None,
            renewed_at: None,
        }
    }

    /// The Lease named in `kubernetes.lease_name`, in the namespace [`lease_namespace`] picks
    /// from `kubernetes.lease_namespace` and the pod's own namespace (`POD_NAMESPACE`, set by
    /// the Deployment from the downward API `metadata.namespace`).
    pub fn from_config(
        client: Client,
        k: &crate::config::KubernetesConfig,
        identity: &str,
    ) -> Self {
        let pod_namespace = std::env::var(POD_NAMESPACE_ENV).ok();
        let namespace = lease_namespace(&k.lease_namespace, pod_namespace.as_deref());
        tracing::info!(
            lease = %k.lease_name,
            namespace,
            pod_namespace = pod_namespace.as_deref().unwrap_or("(unset)"),
            "leader election lease"
        );
        Self::new(
            client,
            namespace,
            &k.lease_name,
            identity,
            DEFAULT_LEASE_DURATION_S,
        )
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Renewals must succeed within this long or the holder steps down: two thirds of the lease
    /// duration, as client-go's 10 s of 15 s.
    fn renew_deadline_s(&self) -> f64 {
        f64::from(self.lease_duration_s) * 2.0 / 3.0
    }

    /// Leader at `now`: the last renewal is younger than the renew deadline. Read this in
    /// `/readyz` and before every tick; it turns false by itself when renewals stop working.
    pub fn is_leader(&self, now: Timestamp) -> bool {
        self.renewed_at
            .is_some_and(|t| now.secs_since(t) < self.renew_deadline_s())
    }

    fn spec(&self, now: Timestamp, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let ours =
            previous.and_then(|p| p.holder_identity.as_deref()) == Some(self.identity.as_str());
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration_s as i32),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(micro_time(now))
            },
            renew_time: Some(micro_time(now)),
            lease_transitions: Some(if ours || previous.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }
    }

    /// Acquire the lease if it is free or expired, renew it if held. `Ok(true)` while this
    /// replica leads. A lost race (`409`) is `Ok(false)`; an API error is `Err` and the caller
    /// must not act this tick (leadership then lapses after the renew deadline).
    pub async fn try_acquire_or_renew(&mut self, now: Timestamp) -> Result<bool, KubeError> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| KubeError::api("reading the leader lease", e))?;
        let Some(current) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.remember(&created, now);
                    self.renewed_at = Some(now);
                    tracing::info!(identity = %self.identity, lease = %self.name, "created lease; leading");
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => {
                    self.renewed_at = None;
                    Ok(false)
                }
                Err(e) => Err(KubeError::api("creating the leader lease", e)),
            };
        };
        self.remember(&current, now);
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let ours = holder == Some(self.identity.as_str());
        if !ours && holder.is_some() {
            let duration = spec
                .lease_duration_seconds
                .map_or(self.lease_duration_s as f64, f64::from);
            // `remember` set this: the record's first sighting.
            let seen_at = self.observed.as_ref().map_or(now, |o| o.seen_at);
            if now.secs_since(seen_at) < duration {
                self.renewed_at = None;
                return Ok(false);
            }
            tracing::info!(identity = %self.identity, previous = ?holder, "lease expired; taking over");
        }
        let mut next = current.clone();
        next.spec = Some(self.spec(now, current.spec.as_ref()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(updated) => {
                if !ours {
                    tracing::info!(identity = %self.identity, lease = %self.name, "acquired lease; leading");
                }
                self.remember(&updated, now);
                self.renewed_at = Some(now);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => {
                // Someone else wrote first; our view is stale. Not leader until we read again.
                if ours {
                    tracing::warn!(identity = %self.identity, "lease renewal lost a write race; stepping down");
                }
                self.renewed_at = None;
                Ok(false)
            }
            Err(e) => Err(KubeError::api("renewing the leader lease", e)),
        }
    }

    /// Give the lease up (on shutdown) so another replica leads at its next tick.
    pub async fn release(&mut self, now: Timestamp) -> Result<(), KubeError> {
        if self.renewed_at.take().is_none() {
            return Ok(());
        }
        let Some(mut current) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| KubeError::api("reading the leader lease", e))?
        else {
            return Ok(());
        };
        let spec = current.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(micro_time(now));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &current)
            .await
        {
            Ok(_) => Ok(()),
            // Someone else already moved on: nothing to release.
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() => Ok(()),
            Err(e) => Err(KubeError::api("releasing the leader lease", e)),
        }
    }

    fn remember(&mut self, lease: &Lease, now: Timestamp) {
        let spec = lease.spec.as_ref();
        let record = Observed {
            holder: spec.and_then(|s| s.holder_identity.clone()),
            renew_time: spec.and_then(|s| s.renew_time.clone()),
            resource_version: lease.metadata.resource_version.clone(),
            seen_at: now,
        };
        let same = self.observed.as_ref().is_some_and(|o| {
            o.holder == record.holder
                && o.renew_time == record.renew_time
                && o.resource_version == record.resource_version
        });
        if !same {
            self.observed = Some(record);
        }
    }
}

/// Leadership as the renewal task last established it, shared with the run loop and the
/// controller's fence.
#[derive(Debug)]
struct Shared {
    /// Milliseconds of the last successful acquire or renew; `i64::MIN`: not leading.
    renewed_at_ms: std::sync::atomic::AtomicI64,
    renew_deadline_ms: i64,
}

impl Shared {
    fn is_leader(&self, now: Timestamp) -> bool {
        let at = self
            .renewed_at_ms
            .load(std::sync::atomic::Ordering::Acquire);
        at != i64::MIN && now.millis().saturating_sub(at) < self.renew_deadline_ms
    }
}

/// A running renewal task ([`spawn_renewal`]).
pub struct LeaderHandle {
    shared: std::sync::Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LeaderHandle {
    /// Leading at `now`: renewed within the renew deadline.
    pub fn is_leader(&self, now: Timestamp) -> bool {
        self.shared.is_leader(now)
    }

    /// A check for the controller to make before every mutating call, on the wall clock. It
    /// turns false by itself once renewals stop succeeding, before the renew deadline runs out
    /// for any other replica's view (renew deadline < lease duration).
    pub fn fence(&self) -> crate::controller::Fence {
        let shared = self.shared.clone();
        std::sync::Arc::new(move || shared.is_leader(gpupool_provider::clock::wall_clock()))
    }

    /// Stop renewing *without* releasing — what a hung or partitioned replica looks like to
    /// the others (tests).
    pub fn abort(&mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Stop renewing and release the lease so another replica takes over at once.
    pub async fn release(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Run `elector` in its own task: acquire or renew every `period` on the wall clock (client-go
/// retries every 2 s with a 10 s renew deadline; a third of the lease keeps several attempts
/// inside the deadline). A failed renewal is logged; leadership then lapses by itself at the
/// renew deadline. Must be called inside a tokio runtime.
pub fn spawn_renewal(mut elector: LeaderElector, period: std::time::Duration) -> LeaderHandle {
    let shared = std::sync::Arc::new(Shared {
        renewed_at_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
        renew_deadline_ms: (elector.renew_deadline_s() * 1000.0) as i64,
    });
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let s = shared.clone();
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                _ = every.tick() => {}
            }
            let now = gpupool_provider::clock::wall_clock();
            match elector.try_acquire_or_renew(now).await {
                Ok(true) => s
                    .renewed_at_ms
                    .store(now.millis(), std::sync::atomic::Ordering::Release),
                Ok(false) => s
                    .renewed_at_ms
                    .store(i64::MIN, std::sync::atomic::Ordering::Release),
                Err(e) => {
                    tracing::warn!(error = %crate::controller::error_chain(&e), "leader lease renewal failed; leadership lapses at the renew deadline unless a retry succeeds");
                }
            }
        }
        s.renewed_at_ms
            .store(i64::MIN, std::sync::atomic::Ordering::Release);
        if let Err(e) = elector.release(gpupool_provider::clock::wall_clock()).await {
            tracing::warn!(error = %e, "releasing the leader lease");
        }
    });
    LeaderHandle {
        shared,
        stop: Some(stop_tx),
        task: Some(task),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_follows_the_pod_namespace_unless_configured_otherwise() {
        // Installed by the chart or kustomize: the Role is in the pod's namespace.
        assert_eq!(lease_namespace("kube-system", Some("gpupool")), "gpupool");
        assert_eq!(lease_namespace("", Some("gpupool")), "gpupool");
        // An explicit, non-default namespace is the operator's choice.
        assert_eq!(lease_namespace("infra", Some("gpupool")), "infra");
        // Outside a pod (kubeconfig): the config, else the default.
        assert_eq!(lease_namespace("infra", None), "infra");
        assert_eq!(lease_namespace("kube-system", None), "kube-system");
        assert_eq!(lease_namespace("", None), DEFAULT_LEASE_NAMESPACE);
        // An empty or blank POD_NAMESPACE is not a namespace.
        assert_eq!(lease_namespace("kube-system", Some("  ")), "kube-system");
    }
}
