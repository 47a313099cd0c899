//! Cordon and drain through the Eviction API, as `kubectl drain` does, one step per call.
//!
//! Every call: cordon (idempotent), list the node's pods from the API server (not the cache:
//! "drained" must be true now, not as of the last watch event), and ask for an eviction of each
//! pod that may be evicted and is not already terminating. The API server enforces
//! PodDisruptionBudgets: a `429 Too Many Requests` means "not now" and the pod is tried again on
//! the next call — never deleted around the budget. Evictions carry no grace-period override,
//! so each pod gets its own `terminationGracePeriodSeconds`.
//!
//! Skipped: DaemonSet and mirror pods (they do not hold the node and would come back), finished
//! pods. Never evicted: pods marked `gpupool.io/do-not-disrupt` / `safe-to-evict: "false"` —
//! they keep the drain in progress until its deadline, when the controller terminates anyway.

use super::{KubeError, convert};
use crate::contract::ANNOTATION_DRAIN_DEADLINE;
use crate::model::Timestamp;
use k8s_openapi::api::core::v1::{Node as K8sNode, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::Status;

/// At most this many eviction requests per drain step, so one huge node cannot stall a tick;
/// the rest are evicted on the next calls.
pub const MAX_EVICTIONS_PER_STEP: usize = 64;

/// Bound on one eviction request, so a client whose retry layer re-sends 429s (kube's
/// default) cannot hold the tick: a timed-out eviction is retried next step.
pub const EVICTION_TIMEOUT_S: u64 = 15;

/// What one step found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainStep {
    /// Workload pods still on the node (terminating ones included).
    pub remaining: u32,
    pub evicted: Vec<String>,
    /// Refused by a disruption budget (429): retried next step.
    pub blocked_by_pdb: Vec<String>,
    /// Marked do-not-disrupt: left alone.
    pub do_not_disrupt: Vec<String>,
    /// Other eviction failures (logged, retried next step).
    pub failed: Vec<String>,
}

/// Cordon `node` and mark the drain with its deadline (`gpupool.io/drain-deadline`, Unix
/// seconds), so a new leader finds and carries on a drain this one started.
pub async fn cordon(
    nodes: &Api<K8sNode>,
    node: &str,
    deadline: Timestamp,
) -> Result<(), KubeError> {
    let patch = serde_json::json!({
        "metadata": {"annotations": {ANNOTATION_DRAIN_DEADLINE: deadline.millis().div_euclid(1000).to_string()}},
        "spec": {"unschedulable": true},
    });
    match nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Gone already: nothing left to cordon or drain.
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(KubeError::api(format!("cordoning node {node}"), e)),
    }
}

/// Undo [`cordon`]: schedulable again, drain mark removed (a merge patch with `null` deletes
/// the annotation). For a voluntary drain given up on because evictions stayed refused.
pub async fn uncordon(nodes: &Api<K8sNode>, node: &str) -> Result<(), KubeError> {
    let patch = serde_json::json!({
        "metadata": {"annotations": {ANNOTATION_DRAIN_DEADLINE: null}},
        "spec": {"unschedulable": false},
    });
    match nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(KubeError::api(format!("uncordoning node {node}"), e)),
    }
}

/// One drain step for `node` (`marked`: already cordoned with a drain deadline).
pub async fn step(
    client: &kube::Client,
    node: &str,
    marked: bool,
    deadline: Timestamp,
) -> Result<DrainStep, KubeError> {
    let nodes: Api<K8sNode> = Api::all(client.clone());
    if !marked {
        cordon(&nodes, node, deadline).await?;
    }
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .map_err(|e| KubeError::api(format!("listing pods on node {node}"), e))?;
    let mut out = DrainStep::default();
    let mut requests = 0usize;
    for pod in &list.items {
        if convert::is_finished(pod) || convert::is_daemon(pod) {
            continue;
        }
        out.remaining += 1;
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let key = format!("{ns}/{name}");
        if pod.metadata.deletion_timestamp.is_some() {
            // Evicted earlier (or deleted by someone else): its grace period is running.
            continue;
        }
        if convert::do_not_disrupt(pod) {
            out.do_not_disrupt.push(key);
            continue;
        }
        if requests >= MAX_EVICTIONS_PER_STEP {
            continue;
        }
        requests += 1;
        let attempt = tokio::time::timeout(
            std::time::Duration::from_secs(EVICTION_TIMEOUT_S),
            evict(client, &ns, &name),
        )
        .await;
        let Ok(result) = attempt else {
            tracing::warn!(pod = %key, node, "eviction still retrying after {EVICTION_TIMEOUT_S} s (a PDB-blocked eviction behind a retrying client?); next tick");
            out.blocked_by_pdb.push(key);
            continue;
        };
        match result {
            Ok(()) => out.evicted.push(key),
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                // Gone between the list and the eviction.
                out.remaining -= 1;
            }
            Err(kube::Error::Api(s)) if s.code == 429 => {
                // DEBUG here, every tick; the cluster logs the first refusal of a drain at INFO.
                tracing::debug!(pod = %key, node, message = %s.message, "eviction refused by a disruption budget; retrying next tick");
                out.blocked_by_pdb.push(key);
            }
            Err(e) => {
                tracing::warn!(pod = %key, node, error = %e, "eviction failed; retrying next tick");
                out.failed.push(key);
            }
        }
    }
    Ok(out)
}

/// `POST /api/v1/namespaces/{ns}/pods/{name}/eviction` with a `policy/v1` Eviction. No
/// `deleteOptions`: the pod's own grace period applies.
async fn evict(client: &kube::Client, namespace: &str, name: &str) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let body = serde_json::json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
    });
    pods.create_subresource::<_, Status>("eviction", name, &PostParams::default(), &body)
        .await
        .map(|_| ())
}
