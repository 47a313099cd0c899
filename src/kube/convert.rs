//! Pure conversions from Kubernetes objects to the planner's model, and the pruning applied to
//! cached objects. No I/O, no clock: time comes in as arguments, so every rule here is a unit
//! test away.

use super::quantity;
use crate::config::{KubernetesConfig, PoolConfig};
use crate::contract::{
    ANNOTATION_CA_SAFE_TO_EVICT, ANNOTATION_CA_SCALE_DOWN_DISABLED, ANNOTATION_DO_NOT_DISRUPT,
    ANNOTATION_DRAIN_DEADLINE, ANNOTATION_KARPENTER_DO_NOT_DISRUPT, TAG_MODEL_CACHE, TAG_POOL,
    model_cache_label_value,
};
use crate::model::{
    CapacityType, GpuRequest, InstanceId, LabelOperator, LabelRequirement, Node, PendingPod,
    PoolName, RunningPod, Taint, TaintEffect, Timestamp, Toleration, TolerationOperator, labels,
};
use k8s_openapi::api::core::v1::{
    Container, Node as K8sNode, NodeCondition, NodeSpec, NodeStatus, Pod, PodCondition, PodSpec,
    PodStatus, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// The kubelet's annotation on mirror pods (static pods shown in the API).
pub const ANNOTATION_MIRROR: &str = "kubernetes.io/config.mirror";

/// Annotations gpupool reads on pods; every other annotation is dropped from the cache.
const POD_ANNOTATIONS_KEPT: &[&str] = &[
    ANNOTATION_DO_NOT_DISRUPT,
    ANNOTATION_KARPENTER_DO_NOT_DISRUPT,
    ANNOTATION_CA_SAFE_TO_EVICT,
    ANNOTATION_MIRROR,
];
/// Annotations gpupool reads on nodes.
const NODE_ANNOTATIONS_KEPT: &[&str] = &[
    ANNOTATION_CA_SCALE_DOWN_DISABLED,
    ANNOTATION_KARPENTER_DO_NOT_DISRUPT,
    ANNOTATION_DO_NOT_DISRUPT,
    ANNOTATION_DRAIN_DEADLINE,
];

/// What kind of GPU a resource name stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuKind {
    Whole,
    Mig { profile: String },
    Shared { replicas_per_gpu: u32 },
}

/// The cluster's GPU resource names, from `kubernetes:` in the config. Names are configuration,
/// not code: nothing here guesses that an unknown extended resource is a GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuResourceNames {
    whole: Vec<String>,
    mig_prefix: String,
    shared: Vec<(String, u32)>,
}

impl GpuResourceNames {
    pub fn from_config(k: &KubernetesConfig) -> Self {
        GpuResourceNames {
            whole: k.gpu_resources.clone(),
            mig_prefix: k.mig_resource_prefix.clone(),
            shared: k
                .shared_gpu_resources
                .iter()
                .map(|s| (s.name.clone(), s.replicas_per_gpu))
                .collect(),
        }
    }

    pub fn classify(&self, resource: &str) -> Option<GpuKind> {
        if self.whole.iter().any(|w| w == resource) {
            return Some(GpuKind::Whole);
        }
        if let Some(&(_, replicas_per_gpu)) = self.shared.iter().find(|(n, _)| n == resource) {
            return Some(GpuKind::Shared { replicas_per_gpu });
        }
        if !self.mig_prefix.is_empty()
            && let Some(profile) = resource.strip_prefix(&self.mig_prefix)
            && !profile.is_empty()
        {
            return Some(GpuKind::Mig {
                profile: profile.to_owned(),
            });
        }
        None
    }

    /// The pod's GPU request from its effective resource requests. A pod asking for several
    /// GPU kinds at once (unusual) is reported by the first in the order whole, MIG, shared —
    /// whole GPUs are the scarcest and decide the node shape.
    pub fn request(&self, requests: &BTreeMap<String, f64>) -> GpuRequest {
        let mut mig: Option<GpuRequest> = None;
        let mut shared: Option<GpuRequest> = None;
        let mut whole = 0u32;
        for (name, &v) in requests {
            let n = quantity::count(v);
            if n == 0 {
                continue;
            }
            match self.classify(name) {
                Some(GpuKind::Whole) => whole += n,
                Some(GpuKind::Mig { profile }) => {
                    mig.get_or_insert(GpuRequest::Mig { profile, count: n });
                }
                Some(GpuKind::Shared { replicas_per_gpu }) => {
                    shared.get_or_insert(GpuRequest::Shared {
                        count: n,
                        replicas_per_gpu,
                    });
                }
                None => {}
            }
        }
        if whole > 0 {
            return GpuRequest::Whole { count: whole };
        }
        mig.or(shared).unwrap_or(GpuRequest::None)
    }
}

fn add_into(acc: &mut BTreeMap<String, f64>, res: &BTreeMap<String, f64>) {
    for (k, v) in res {
        *acc.entry(k.clone()).or_default() += v;
    }
}

fn max_into(acc: &mut BTreeMap<String, f64>, res: &BTreeMap<String, f64>) {
    for (k, v) in res {
        let e = acc.entry(k.clone()).or_default();
        *e = e.max(*v);
    }
}

fn parse_map(m: Option<&BTreeMap<String, Quantity>>) -> BTreeMap<String, f64> {
    m.into_iter()
        .flatten()
        .filter_map(|(k, q)| quantity::parse(&q.0).map(|v| (k.clone(), v)))
        .collect()
}

/// A container's requests, with the API server's defaulting applied: a resource with a limit
/// and no request is requested at its limit (always so for extended resources like GPUs).
fn container_requests(c: &Container) -> BTreeMap<String, f64> {
    let Some(r) = &c.resources else {
        return BTreeMap::new();
    };
    let mut req = parse_map(r.requests.as_ref());
    for (k, v) in parse_map(r.limits.as_ref()) {
        req.entry(k).or_insert(v);
    }
    req
}

/// The pod's effective requests, as the scheduler computes them:
/// `max(Σ containers + Σ sidecars, max over init containers of (init + sidecars started before
/// it)) + overhead`. Sidecars are init containers with `restartPolicy: Always`. Pod-level
/// `resources.requests` (cpu and memory only) replace the container sum where set.
pub fn pod_requests(spec: &PodSpec) -> BTreeMap<String, f64> {
    let mut sidecars = BTreeMap::new();
    let mut init_max = BTreeMap::new();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            add_into(&mut sidecars, &r);
        } else {
            let mut with_sidecars = sidecars.clone();
            add_into(&mut with_sidecars, &r);
            max_into(&mut init_max, &with_sidecars);
        }
    }
    let mut total = BTreeMap::new();
    for c in &spec.containers {
        add_into(&mut total, &container_requests(c));
    }
    add_into(&mut total, &sidecars);
    max_into(&mut total, &init_max);
    if let Some(ResourceRequirements {
        requests: Some(pod_level),
        ..
    }) = &spec.resources
    {
        for (k, v) in parse_map(Some(pod_level)) {
            if k == "cpu" || k == "memory" {
                total.insert(k, v);
            }
        }
    }
    add_into(&mut total, &parse_map(spec.overhead.as_ref()));
    total
}

fn label_operator(op: &str) -> Option<LabelOperator> {
    Some(match op {
        "In" => LabelOperator::In,
        "NotIn" => LabelOperator::NotIn,
        "Exists" => LabelOperator::Exists,
        "DoesNotExist" => LabelOperator::DoesNotExist,
        "Gt" => LabelOperator::Gt,
        "Lt" => LabelOperator::Lt,
        _ => return None,
    })
}

/// Required node affinity as OR-of-ANDs. `matchFields` (only `metadata.name` exists) pins a pod
/// to an existing node and can never be met by a new one; such a term is kept as an
/// unsatisfiable requirement so the planner does not launch capacity for it. A term with an
/// unknown operator is treated the same way (the API server rejects those anyway).
pub fn required_affinity(spec: &PodSpec) -> Vec<Vec<LabelRequirement>> {
    let Some(terms) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return Vec::new();
    };
    terms
        .node_selector_terms
        .iter()
        .map(|term| {
            let mut reqs = Vec::new();
            for e in term.match_expressions.iter().flatten() {
                match label_operator(&e.operator) {
                    Some(operator) => reqs.push(LabelRequirement {
                        key: e.key.clone(),
                        operator,
                        values: e.values.clone().unwrap_or_default(),
                    }),
                    None => reqs.push(unsatisfiable(&format!("operator {}", e.operator))),
                }
            }
            for f in term.match_fields.iter().flatten() {
                reqs.push(unsatisfiable(&format!("matchFields {}", f.key)));
            }
            reqs
        })
        .collect()
}

/// A requirement no node template satisfies, named so the planner's reason shows why.
fn unsatisfiable(what: &str) -> LabelRequirement {
    LabelRequirement {
        key: format!("gpupool.io/unsupported({what})"),
        operator: LabelOperator::Exists,
        values: Vec::new(),
    }
}

fn taint_effect(e: &str) -> Option<TaintEffect> {
    Some(match e {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        _ => return None,
    })
}

pub fn tolerations(spec: &PodSpec) -> Vec<Toleration> {
    spec.tolerations
        .iter()
        .flatten()
        .map(|t| Toleration {
            key: t.key.clone().filter(|k| !k.is_empty()),
            operator: if t.operator.as_deref() == Some("Exists") {
                TolerationOperator::Exists
            } else {
                TolerationOperator::Equal
            },
            value: t.value.clone(),
            effect: t.effect.as_deref().and_then(taint_effect),
        })
        .collect()
}

pub fn node_taints(spec: Option<&NodeSpec>) -> Vec<Taint> {
    spec.and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(Taint {
                key: t.key.clone(),
                value: t.value.clone().unwrap_or_default(),
                effect: taint_effect(&t.effect)?,
            })
        })
        .collect()
}

fn annotation<'a>(
    pod_or_node: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    pod_or_node
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// DaemonSet pods and mirror (static) pods: they do not keep a node alive, are not evicted by a
/// drain, and would come back on any replacement node anyway.
pub fn is_daemon(pod: &Pod) -> bool {
    annotation(&pod.metadata, ANNOTATION_MIRROR).is_some()
        || pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "DaemonSet" && o.controller == Some(true))
}

/// `gpupool.io/do-not-disrupt: "true"`, Karpenter's `karpenter.sh/do-not-disrupt: "true"`, or
/// Cluster Autoscaler's `safe-to-evict: "false"`.
pub fn do_not_disrupt(pod: &Pod) -> bool {
    annotation(&pod.metadata, ANNOTATION_DO_NOT_DISRUPT) == Some("true")
        || annotation(&pod.metadata, ANNOTATION_KARPENTER_DO_NOT_DISRUPT) == Some("true")
        || annotation(&pod.metadata, ANNOTATION_CA_SAFE_TO_EVICT) == Some("false")
}

fn pod_condition<'a>(status: Option<&'a PodStatus>, type_: &str) -> Option<&'a PodCondition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The scheduler tried and found no node: `PodScheduled=False` with reason `Unschedulable`, not
/// bound, not being deleted. (Pods the scheduler has not looked at yet are not demand yet.)
pub fn is_unschedulable(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    node_name_of(pod).is_none()
        && pod.metadata.deletion_timestamp.is_none()
        && matches!(phase, None | Some("Pending"))
        && pod_condition(pod.status.as_ref(), "PodScheduled")
            .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
}

/// Longest scheduler message kept per pod (it grows with the reasons of a big cluster).
pub const SCHEDULER_MESSAGE_MAX: usize = 1024;

fn bounded(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The scheduler's message on an unschedulable pod (`PodScheduled=False, Unschedulable`).
pub fn scheduler_message(pod: &Pod) -> Option<String> {
    pod_condition(pod.status.as_ref(), "PodScheduled")
        .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
        .and_then(|c| c.message.clone())
        .filter(|m| !m.is_empty())
}

/// Pods that no longer hold resources on their node.
pub fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

pub fn node_name_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// An unschedulable pod that asks for a configured GPU resource, as the planner sees it.
/// `None` for every other pod.
pub fn pending_pod(
    pod: &Pod,
    names: &GpuResourceNames,
    pending_since: Timestamp,
) -> Option<PendingPod> {
    if !is_unschedulable(pod) {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let requests = pod_requests(spec);
    let gpu = names.request(&requests);
    if gpu == GpuRequest::None {
        return None;
    }
    let node_selector = spec.node_selector.clone().unwrap_or_default();
    Some(PendingPod {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        pool: node_selector
            .get(TAG_POOL)
            .map(|p| PoolName::new(p.clone())),
        gpu,
        cpu_milli: requests.get("cpu").map_or(0, |&v| quantity::cpu_milli(v)),
        memory_mib: requests
            .get("memory")
            .map_or(0, |&v| quantity::memory_mib(v)),
        node_selector,
        affinity: required_affinity(spec),
        tolerations: tolerations(spec),
        pending_since,
    })
}

/// A pod bound to a node, as scale-down and drain see it.
pub fn running_pod(pod: &Pod, names: &GpuResourceNames) -> RunningPod {
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let requests = pod_requests(spec);
    RunningPod {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        gpu: names.request(&requests),
        cpu_milli: requests.get("cpu").map_or(0, |&v| quantity::cpu_milli(v)),
        memory_mib: requests
            .get("memory")
            .map_or(0, |&v| quantity::memory_mib(v)),
        daemon: is_daemon(pod),
        do_not_disrupt: do_not_disrupt(pod),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        node_selector: spec.node_selector.clone().unwrap_or_default(),
        affinity: required_affinity(spec),
        tolerations: tolerations(spec),
    }
}

/// Whether a node serves, and if not, whether it is merely not there yet or broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeHealth {
    /// Counts as capacity.
    pub serving_ready: bool,
    /// Broken: drain and replace. `None` for a node that is healthy or still coming up.
    pub unhealthy: Option<String>,
    /// Why a healthy node is not serving-ready yet (for logs): `None` when it is.
    pub waiting_for: Option<String>,
}

fn condition<'a>(status: Option<&'a NodeStatus>, type_: &str) -> Option<&'a NodeCondition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// GPU resources of a node: per configured resource name, (capacity, allocatable).
fn gpu_resources(node: &K8sNode, names: &GpuResourceNames) -> BTreeMap<String, (f64, f64)> {
    let status = node.status.as_ref();
    let cap = parse_map(status.and_then(|s| s.capacity.as_ref()));
    let alloc = parse_map(status.and_then(|s| s.allocatable.as_ref()));
    let mut out = BTreeMap::new();
    for name in cap.keys().chain(alloc.keys()) {
        if names.classify(name).is_some() {
            out.insert(
                name.clone(),
                (
                    cap.get(name).copied().unwrap_or(0.0),
                    alloc.get(name).copied().unwrap_or(0.0),
                ),
            );
        }
    }
    out
}

/// Serving-readiness and GPU health of a node of `pool`.
///
/// Serving-ready = kubelet `Ready=True`, some configured GPU resource allocatable, the pool's
/// model cache label present (when the pool has one), and not unhealthy.
///
/// Unhealthy = one of `unhealthy_conditions` is `True`; or a GPU resource's allocatable fell
/// below its capacity (the device plugin withdrew a failed GPU); or fewer whole GPUs are
/// allocatable than the node should have (`requirements.gpus_per_node`, else the node's
/// `gpupool.io/gpu-count` label). A node with *no* GPU allocatable yet is still coming up (the
/// device plugin registers after the kubelet): not unhealthy, just not ready; the planner
/// replaces it after `max_provision_time_s` if it never gets there.
pub fn node_health(
    node: &K8sNode,
    pool: &PoolConfig,
    names: &GpuResourceNames,
    unhealthy_conditions: &[String],
) -> NodeHealth {
    let status = node.status.as_ref();
    let mut unhealthy = None;
    for c in unhealthy_conditions {
        if let Some(cond) = condition(status, c)
            && cond.status == "True"
        {
            let why = cond
                .reason
                .as_deref()
                .or(cond.message.as_deref())
                .unwrap_or("");
            unhealthy = Some(if why.is_empty() {
                format!("node condition {c}=True")
            } else {
                format!("node condition {c}=True ({why})")
            });
            break;
        }
    }
    let gpus = gpu_resources(node, names);
    let any_allocatable = gpus.values().any(|&(_, a)| a >= 1.0);
    if unhealthy.is_none()
        && any_allocatable
        && let Some((name, (cap, alloc))) = gpus.iter().find(|(_, (c, a))| a < c)
    {
        unhealthy = Some(format!(
            "{name}: {} of {} allocatable",
            quantity::count(*alloc),
            quantity::count(*cap)
        ));
    }
    if unhealthy.is_none() && any_allocatable {
        let expected = pool.requirements.gpus_per_node.or_else(|| {
            node.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::GPU_COUNT))
                .and_then(|v| v.parse().ok())
        });
        // Whole GPUs the node offers: whole resources, or shared replicas ÷ replicas per GPU.
        // MIG-only nodes are skipped: slices per GPU depend on the partitioning.
        let mut whole = 0u32;
        let mut known = false;
        for (name, &(_, alloc)) in &gpus {
            match names.classify(name) {
                Some(GpuKind::Whole) => {
                    whole += quantity::count(alloc);
                    known = true;
                }
                Some(GpuKind::Shared { replicas_per_gpu }) if replicas_per_gpu > 0 => {
                    whole += quantity::count(alloc) / replicas_per_gpu;
                    known = true;
                }
                _ => {}
            }
        }
        if let Some(expected) = expected
            && known
            && whole < expected
        {
            unhealthy = Some(format!("{whole} of {expected} GPUs allocatable"));
        }
    }
    let ready = condition(status, "Ready").is_some_and(|c| c.status == "True");
    let cache_label = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(TAG_MODEL_CACHE));
    let waiting_for = if !ready {
        Some("kubelet Ready".to_owned())
    } else if !any_allocatable {
        Some("GPU resources allocatable".to_owned())
    } else {
        // Label values cannot hold `@`: compare the encoded forms (`llama-70b@v3` is labelled
        // `llama-70b_v3`).
        match &pool.model_cache {
            Some(want) if cache_label != Some(&model_cache_label_value(want)) => Some(format!(
                "model cache {want} (node has {})",
                cache_label.map_or("none", String::as_str)
            )),
            _ => None,
        }
    };
    NodeHealth {
        serving_ready: unhealthy.is_none() && waiting_for.is_none(),
        unhealthy,
        waiting_for,
    }
}

/// The capacity type of a node: the instance's when known (the cloud is authoritative), else
/// the well-known labels (gpupool's own, Karpenter's, EKS managed node groups', GKE's).
pub fn capacity_type(node: &K8sNode, instance: Option<CapacityType>) -> CapacityType {
    if let Some(c) = instance {
        return c;
    }
    let l = node.metadata.labels.as_ref();
    let get = |k: &str| l.and_then(|l| l.get(k)).map(String::as_str);
    let spot = matches!(get(labels::CAPACITY_TYPE), Some("spot"))
        || matches!(get("karpenter.sh/capacity-type"), Some("spot"))
        || matches!(get("eks.amazonaws.com/capacityType"), Some("SPOT"))
        || matches!(get("cloud.google.com/gke-spot"), Some("true"))
        || matches!(get("cloud.google.com/gke-preemptible"), Some("true"));
    if spot {
        CapacityType::Spot
    } else {
        CapacityType::OnDemand
    }
}

/// `spec.unschedulable`: cordoned, by a drain or by hand.
pub fn is_cordoned(node: &K8sNode) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

/// The planner's node. `pods` are the node's (already converted) pods; `idle_since` is kept by
/// the caller across observations.
pub fn node(
    node: &K8sNode,
    instance: InstanceId,
    pool: PoolName,
    capacity: CapacityType,
    health: &NodeHealth,
    pods: Vec<RunningPod>,
    idle_since: Option<Timestamp>,
) -> Node {
    Node {
        name: node.metadata.name.clone().unwrap_or_default(),
        instance,
        pool,
        capacity_type: capacity,
        labels: node.metadata.labels.clone().unwrap_or_default(),
        taints: node_taints(node.spec.as_ref()),
        serving_ready: health.serving_ready,
        cordoned: is_cordoned(node),
        scale_down_disabled: annotation(&node.metadata, ANNOTATION_CA_SCALE_DOWN_DISABLED)
            == Some("true")
            || annotation(&node.metadata, ANNOTATION_KARPENTER_DO_NOT_DISRUPT) == Some("true")
            || annotation(&node.metadata, ANNOTATION_DO_NOT_DISRUPT) == Some("true"),
        pods,
        in_flight_requests: crate::model::InFlight::NotMeasured,
        idle_since,
        unhealthy: health.unhealthy.clone(),
        drain_deadline: drain_deadline(node),
    }
}

/// Cordoned and carrying gpupool's drain mark: a drain gpupool started (and may carry on).
pub fn is_marked_for_drain(node: &K8sNode) -> bool {
    is_cordoned(node) && drain_deadline(node).is_some()
}

/// The drain gpupool marked on a node (`gpupool.io/drain-deadline`, Unix seconds), if any
/// (an unparsable value is ignored: the node is then not adopted, never drained by mistake).
pub fn drain_deadline(node: &K8sNode) -> Option<Timestamp> {
    annotation(&node.metadata, ANNOTATION_DRAIN_DEADLINE)?
        .trim()
        .parse::<i64>()
        .ok()
        .map(Timestamp::from_secs)
}

fn keep_annotations(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    keep: &[&str],
) {
    if let Some(a) = &mut meta.annotations {
        a.retain(|k, _| keep.contains(&k.as_str()));
        if a.is_empty() {
            meta.annotations = None;
        }
    }
}

fn prune_container(c: &Container) -> Container {
    Container {
        name: c.name.clone(),
        resources: c.resources.clone(),
        restart_policy: c.restart_policy.clone(),
        ..Container::default()
    }
}

/// Drop everything from a cached pod that the conversions above do not read: managed fields,
/// unrelated annotations and labels, container images/env/probes/volumes, container statuses.
/// A GPU cluster's pod cache is then a few hundred bytes per pod.
pub fn prune_pod(pod: &mut Pod) {
    let m = &mut pod.metadata;
    m.managed_fields = None;
    m.labels = None;
    m.finalizers = None;
    keep_annotations(m, POD_ANNOTATIONS_KEPT);
    if let Some(spec) = &pod.spec {
        let affinity = spec
            .affinity
            .as_ref()
            .map(|a| k8s_openapi::api::core::v1::Affinity {
                node_affinity: a.node_affinity.clone(),
                ..Default::default()
            });
        pod.spec = Some(PodSpec {
            containers: spec.containers.iter().map(prune_container).collect(),
            init_containers: spec
                .init_containers
                .as_ref()
                .map(|cs| cs.iter().map(prune_container).collect()),
            node_name: spec.node_name.clone(),
            node_selector: spec.node_selector.clone(),
            affinity,
            tolerations: spec.tolerations.clone(),
            overhead: spec.overhead.clone(),
            resources: spec.resources.clone(),
            termination_grace_period_seconds: spec.termination_grace_period_seconds,
            ..PodSpec::default()
        });
    }
    if let Some(status) = &pod.status {
        pod.status = Some(PodStatus {
            phase: status.phase.clone(),
            conditions: status.conditions.as_ref().map(|cs| {
                cs.iter()
                    .filter(|c| c.type_ == "PodScheduled")
                    .map(|c| PodCondition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        reason: c.reason.clone(),
                        // The scheduler's reason for an unschedulable pod, bounded: it names
                        // what gpupool may not model (`planner::rejects`).
                        message: c
                            .message
                            .as_deref()
                            .filter(|_| c.reason.as_deref() == Some("Unschedulable"))
                            .map(|m| bounded(m, SCHEDULER_MESSAGE_MAX).to_owned()),
                        ..PodCondition::default()
                    })
                    .collect()
            }),
            ..PodStatus::default()
        });
    }
}

/// Drop images, addresses, node info, volumes and managed fields from a cached node, and every
/// condition except those health reads.
pub fn prune_node(node: &mut K8sNode, keep_conditions: &[String]) {
    let m = &mut node.metadata;
    m.managed_fields = None;
    m.finalizers = None;
    keep_annotations(m, NODE_ANNOTATIONS_KEPT);
    if let Some(spec) = &node.spec {
        node.spec = Some(NodeSpec {
            provider_id: spec.provider_id.clone(),
            taints: spec.taints.clone(),
            unschedulable: spec.unschedulable,
            ..NodeSpec::default()
        });
    }
    if let Some(status) = &node.status {
        node.status = Some(NodeStatus {
            allocatable: status.allocatable.clone(),
            capacity: status.capacity.clone(),
            conditions: status.conditions.as_ref().map(|cs| {
                cs.iter()
                    .filter(|c| c.type_ == "Ready" || keep_conditions.contains(&c.type_))
                    .map(|c| NodeCondition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                        ..NodeCondition::default()
                    })
                    .collect()
            }),
            ..NodeStatus::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn names() -> GpuResourceNames {
        GpuResourceNames::from_config(&KubernetesConfig::default())
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn unschedulable_status() -> serde_json::Value {
        json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]})
    }

    fn pool(yaml_extra: &str) -> PoolConfig {
        pool_with("{gpu_models: [H100]}", yaml_extra)
    }

    fn pool_with(requirements: &str, yaml_extra: &str) -> PoolConfig {
        let text = format!(
            "provider: sim\npools:\n  - name: llm\n    requirements: {requirements}\n{yaml_extra}"
        );
        Config::load(&text).unwrap().pools[0].clone()
    }

    #[test]
    fn classifies_configured_gpu_resource_names_only() {
        let n = names();
        assert_eq!(n.classify("nvidia.com/gpu"), Some(GpuKind::Whole));
        assert_eq!(n.classify("amd.com/gpu"), Some(GpuKind::Whole));
        assert_eq!(
            n.classify("nvidia.com/mig-1g.10gb"),
            Some(GpuKind::Mig {
                profile: "1g.10gb".into()
            })
        );
        assert_eq!(
            n.classify("nvidia.com/gpu.shared"),
            Some(GpuKind::Shared {
                replicas_per_gpu: 4
            })
        );
        // Not guessed: an unknown extended resource is not a GPU.
        assert_eq!(n.classify("example.com/fpga"), None);
        assert_eq!(n.classify("nvidia.com/mig-"), None);
    }

    #[test]
    fn limits_default_requests_and_init_containers_take_the_max() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "ml"},
            "spec": {
                "initContainers": [
                    {"name": "download", "resources": {"requests": {"cpu": "4", "memory": "8Gi"}}},
                    {"name": "proxy", "restartPolicy": "Always",
                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
                ],
                "containers": [
                    {"name": "server", "resources": {"limits": {"nvidia.com/gpu": "2"},
                                                      "requests": {"cpu": "2", "memory": "16Gi"}}},
                    {"name": "metrics", "resources": {"requests": {"cpu": "250m"}}}
                ],
                "overhead": {"cpu": "50m"}
            },
            "status": unschedulable_status()
        }));
        let r = pod_requests(p.spec.as_ref().unwrap());
        // cpu: containers 2.25 + sidecar 0.1 = 2.35 vs init 4 (sidecar starts after it) → 4,
        // plus overhead 0.05.
        assert_eq!(quantity::cpu_milli(r["cpu"]), 4050);
        // memory: 16Gi + 64Mi vs 8Gi → 16Gi+64Mi.
        assert_eq!(quantity::memory_mib(r["memory"]), 16 * 1024 + 64);
        let pp = pending_pod(&p, &names(), Timestamp(5)).unwrap();
        assert_eq!(pp.gpu, GpuRequest::Whole { count: 2 });
        assert_eq!(pp.cpu_milli, 4050);
        assert_eq!(pp.pending_since, Timestamp(5));
        assert_eq!(pp.key(), "ml/p");
    }

    #[test]
    fn sidecar_started_before_an_init_container_adds_to_it() {
        let p = pod(json!({
            "spec": {
                "initContainers": [
                    {"name": "proxy", "restartPolicy": "Always",
                     "resources": {"requests": {"cpu": "1"}}},
                    {"name": "warm", "resources": {"requests": {"cpu": "3"}}}
                ],
                "containers": [{"name": "s", "resources": {"requests": {"cpu": "1"}}}]
            }
        }));
        // init: 3 + 1 (sidecar already running) = 4 > containers 1 + sidecar 1.
        assert_eq!(
            quantity::cpu_milli(pod_requests(p.spec.as_ref().unwrap())["cpu"]),
            4000
        );
    }

    #[test]
    fn mig_and_shared_requests() {
        let mk = |res: &str, n: &str| {
            pod(json!({
                "metadata": {"name": "p", "namespace": "ml"},
                "spec": {"containers": [{"name": "c", "resources": {"limits": {res: n}}}]},
                "status": unschedulable_status()
            }))
        };
        assert_eq!(
            pending_pod(&mk("nvidia.com/mig-3g.40gb", "2"), &names(), Timestamp(0))
                .unwrap()
                .gpu,
            GpuRequest::Mig {
                profile: "3g.40gb".into(),
                count: 2
            }
        );
        assert_eq!(
            pending_pod(&mk("nvidia.com/gpu.shared", "1"), &names(), Timestamp(0))
                .unwrap()
                .gpu,
            GpuRequest::Shared {
                count: 1,
                replicas_per_gpu: 4
            }
        );
        // Not a GPU pod: not gpupool's demand.
        assert!(pending_pod(&mk("example.com/fpga", "1"), &names(), Timestamp(0)).is_none());
    }

    #[test]
    fn only_unschedulable_pods_are_pending_demand() {
        let base = |status: serde_json::Value, node: Option<&str>| {
            let mut spec = json!({"containers": [{"name": "c",
                "resources": {"limits": {"nvidia.com/gpu": "1"}}}]});
            if let Some(n) = node {
                spec["nodeName"] = json!(n);
            }
            pod(
                json!({"metadata": {"name": "p", "namespace": "ml"}, "spec": spec, "status": status}),
            )
        };
        assert!(is_unschedulable(&base(unschedulable_status(), None)));
        // Not yet looked at by the scheduler.
        assert!(!is_unschedulable(&base(json!({"phase": "Pending"}), None)));
        // Scheduling gated pods are not demand until the gate lifts.
        assert!(!is_unschedulable(&base(
            json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
            None
        )));
        // Bound (nominated and bound after the condition was written).
        assert!(!is_unschedulable(&base(unschedulable_status(), Some("n1"))));
        let mut deleting = base(unschedulable_status(), None);
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert!(!is_unschedulable(&deleting));
    }

    #[test]
    fn node_selector_affinity_and_tolerations() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "ml"},
            "spec": {
                "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "8"}}}],
                "nodeSelector": {"gpupool.io/pool": "llm", "gpupool.io/gpu-model": "H100"},
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [
                            {"key": "topology.kubernetes.io/zone", "operator": "In",
                             "values": ["us-east-1a", "us-east-1b"]},
                            {"key": "gpupool.io/gpu-count", "operator": "Gt", "values": ["4"]}]},
                        {"matchExpressions": [
                            {"key": "gpupool.io/capacity-type", "operator": "NotIn", "values": ["spot"]}]},
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
                    ]}},
                    "podAntiAffinity": {}},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                    {"operator": "Exists"},
                    {"key": "dedicated", "value": "llm"}
                ]
            },
            "status": unschedulable_status()
        }));
        let pp = pending_pod(&p, &names(), Timestamp(0)).unwrap();
        assert_eq!(pp.pool, Some(PoolName::new("llm")));
        assert_eq!(pp.node_selector.len(), 2);
        assert_eq!(pp.affinity.len(), 3);
        assert_eq!(
            pp.affinity[0],
            vec![
                LabelRequirement {
                    key: "topology.kubernetes.io/zone".into(),
                    operator: LabelOperator::In,
                    values: vec!["us-east-1a".into(), "us-east-1b".into()]
                },
                LabelRequirement {
                    key: "gpupool.io/gpu-count".into(),
                    operator: LabelOperator::Gt,
                    values: vec!["4".into()]
                }
            ]
        );
        assert_eq!(pp.affinity[1][0].operator, LabelOperator::NotIn);
        // matchFields can never be met by a new node.
        let any_labels: BTreeMap<String, String> = BTreeMap::new();
        assert!(pp.affinity[2].iter().any(|r| !r.matches(&any_labels)));
        assert_eq!(
            pp.tolerations,
            vec![
                Toleration {
                    key: Some("nvidia.com/gpu".into()),
                    operator: TolerationOperator::Exists,
                    value: None,
                    effect: Some(TaintEffect::NoSchedule)
                },
                Toleration {
                    key: None,
                    operator: TolerationOperator::Exists,
                    value: None,
                    effect: None
                },
                Toleration {
                    key: Some("dedicated".into()),
                    operator: TolerationOperator::Equal,
                    value: Some("llm".into()),
                    effect: None
                },
            ]
        );
    }

    #[test]
    fn daemon_mirror_and_do_not_disrupt() {
        let ds = pod(json!({"metadata": {"name": "dcgm", "namespace": "gpu",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "dcgm",
                                 "uid": "u", "controller": true}]},
            "spec": {"containers": [{"name": "c"}], "nodeName": "n1"}}));
        assert!(running_pod(&ds, &names()).daemon);
        let mirror = pod(
            json!({"metadata": {"name": "etcd", "namespace": "kube-system",
            "annotations": {"kubernetes.io/config.mirror": "abc"}},
            "spec": {"containers": [{"name": "c"}]}}),
        );
        assert!(is_daemon(&mirror));
        let rs = pod(json!({"metadata": {"name": "w", "namespace": "ml",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "w",
                                 "uid": "u", "controller": true}],
            "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}));
        let r = running_pod(&rs, &names());
        assert!(!r.daemon);
        assert!(r.do_not_disrupt);
        assert_eq!(r.gpu, GpuRequest::Whole { count: 1 });
        let dnd = pod(json!({"metadata": {"name": "x",
            "annotations": {"gpupool.io/do-not-disrupt": "true"}},
            "spec": {"containers": [{"name": "c"}]}}));
        assert!(do_not_disrupt(&dnd));
        let safe = pod(json!({"metadata": {"name": "x",
            "annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}},
            "spec": {"containers": [{"name": "c"}]}}));
        assert!(!do_not_disrupt(&safe));
        let karpenter = pod(json!({"metadata": {"name": "x",
            "annotations": {"karpenter.sh/do-not-disrupt": "true"}},
            "spec": {"containers": [{"name": "c"}]}}));
        assert!(do_not_disrupt(&karpenter));
    }

    fn gpu_node(alloc: &str, cap: &str, labels: serde_json::Value) -> K8sNode {
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": labels,
                         "annotations": {"cluster-autoscaler.kubernetes.io/scale-down-disabled": "true",
                                         "node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"providerID": "aws:///us-east-1a/i-1", "unschedulable": true,
                     "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]},
            "status": {
                "capacity": {"cpu": "192", "nvidia.com/gpu": cap},
                "allocatable": {"cpu": "191", "nvidia.com/gpu": alloc},
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "GpuXidError", "status": "False"}
                ]
            }
        }))
        .unwrap()
    }

    #[test]
    fn serving_ready_needs_gpus_allocatable_and_the_model_cache() {
        let p = pool("    model_cache: llama-70b@v3\n");
        let n = names();
        let booting = gpu_node("0", "0", json!({"gpupool.io/pool": "llm"}));
        let h = node_health(&booting, &p, &n, &[]);
        assert!(!h.serving_ready);
        assert_eq!(h.unhealthy, None, "booting is not broken");
        let no_cache = gpu_node("8", "8", json!({"gpupool.io/pool": "llm"}));
        let h = node_health(&no_cache, &p, &n, &[]);
        assert!(!h.serving_ready);
        assert!(h.waiting_for.unwrap().contains("llama-70b@v3"));
        let old_cache = gpu_node(
            "8",
            "8",
            json!({"gpupool.io/pool": "llm", "gpupool.io/model-cache": "llama-70b_v2"}),
        );
        assert!(!node_health(&old_cache, &p, &n, &[]).serving_ready);
        let ready = gpu_node(
            "8",
            "8",
            json!({"gpupool.io/pool": "llm", "gpupool.io/model-cache": "llama-70b_v3"}),
        );
        let h = node_health(&ready, &p, &n, &[]);
        assert!(h.serving_ready, "{h:?}");
        // Without a model cache in the pool, GPUs allocatable is enough.
        assert!(node_health(&no_cache, &pool(""), &n, &[]).serving_ready);
        // Kubelet not Ready: not capacity, not "unhealthy" either.
        let mut not_ready = ready.clone();
        not_ready
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .status = "False".into();
        let h = node_health(&not_ready, &p, &n, &[]);
        assert!(!h.serving_ready);
        assert_eq!(h.unhealthy, None);
    }

    #[test]
    fn lost_gpus_and_unhealthy_conditions_are_surfaced() {
        let p = pool("");
        let n = names();
        let withdrawn = gpu_node("7", "8", json!({"gpupool.io/pool": "llm"}));
        let h = node_health(&withdrawn, &p, &n, &[]);
        assert!(!h.serving_ready);
        assert_eq!(
            h.unhealthy.as_deref(),
            Some("nvidia.com/gpu: 7 of 8 allocatable")
        );
        let fell_off = gpu_node(
            "7",
            "7",
            json!({"gpupool.io/pool": "llm", "gpupool.io/gpu-count": "8"}),
        );
        assert_eq!(
            node_health(&fell_off, &p, &n, &[]).unhealthy.as_deref(),
            Some("7 of 8 GPUs allocatable")
        );
        // Without an expectation, 7 healthy GPUs are 7 GPUs.
        assert!(node_health(&gpu_node("7", "7", json!({})), &p, &n, &[]).serving_ready);
        let p8 = pool_with("{gpus_per_node: 8}", "");
        assert_eq!(
            node_health(&gpu_node("7", "7", json!({})), &p8, &n, &[])
                .unhealthy
                .as_deref(),
            Some("7 of 8 GPUs allocatable")
        );
        let mut xid = gpu_node("8", "8", json!({"gpupool.io/pool": "llm"}));
        let conds = xid.status.as_mut().unwrap().conditions.as_mut().unwrap();
        conds[2].status = "True".into();
        conds[2].reason = Some("Xid79".into());
        let h = node_health(&xid, &p, &n, &["GpuXidError".to_string()]);
        assert!(!h.serving_ready);
        assert_eq!(
            h.unhealthy.as_deref(),
            Some("node condition GpuXidError=True (Xid79)")
        );
        // Not configured: not looked at.
        assert!(node_health(&xid, &p, &n, &[]).serving_ready);
    }

    #[test]
    fn node_conversion_and_pruning_keep_what_the_planner_reads() {
        let mut k = gpu_node(
            "8",
            "8",
            json!({"gpupool.io/pool": "llm", "gpupool.io/capacity-type": "spot"}),
        );
        k.metadata.managed_fields = Some(vec![Default::default()]);
        k.status.as_mut().unwrap().images = Some(vec![Default::default()]);
        prune_node(&mut k, &["GpuXidError".to_string()]);
        assert!(k.metadata.managed_fields.is_none());
        assert!(k.status.as_ref().unwrap().images.is_none());
        let ann = k.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann.len(), 1, "only scale-down-disabled is kept: {ann:?}");
        let conds = k.status.as_ref().unwrap().conditions.as_ref().unwrap();
        assert_eq!(conds.len(), 2, "Ready and the configured GPU condition");
        let h = node_health(&k, &pool(""), &names(), &[]);
        assert_eq!(capacity_type(&k, None), CapacityType::Spot);
        assert_eq!(
            capacity_type(&k, Some(CapacityType::OnDemand)),
            CapacityType::OnDemand
        );
        let n = node(
            &k,
            InstanceId::new("i-1"),
            PoolName::new("llm"),
            CapacityType::Spot,
            &h,
            vec![],
            None,
        );
        assert!(n.cordoned);
        assert!(n.scale_down_disabled);
        assert!(n.serving_ready);
        assert_eq!(n.taints.len(), 1);
        assert_eq!(n.labels.get(TAG_POOL).map(String::as_str), Some("llm"));
    }

    #[test]
    fn pruned_pods_convert_the_same() {
        let mut p = pod(json!({
            "metadata": {"name": "p", "namespace": "ml", "labels": {"app": "x"},
                         "annotations": {"gpupool.io/do-not-disrupt": "true", "big": "x".repeat(1000)},
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {
                "containers": [{"name": "c", "image": "vllm:latest", "env": [{"name": "A", "value": "b"}],
                                "resources": {"limits": {"nvidia.com/mig-1g.10gb": "1"}}}],
                "nodeSelector": {"gpupool.io/pool": "llm"},
                "volumes": [{"name": "v", "emptyDir": {}}],
                "terminationGracePeriodSeconds": 120
            },
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "long"},
                {"type": "Initialized", "status": "True"}]}
        }));
        let before = pending_pod(&p, &names(), Timestamp(1)).unwrap();
        prune_pod(&mut p);
        assert_eq!(pending_pod(&p, &names(), Timestamp(1)).unwrap(), before);
        assert!(p.metadata.managed_fields.is_none());
        assert_eq!(p.metadata.annotations.as_ref().unwrap().len(), 1);
        let spec = p.spec.as_ref().unwrap();
        assert!(spec.volumes.is_none());
        assert!(spec.containers[0].image.is_none());
        assert_eq!(spec.termination_grace_period_seconds, Some(120));
        assert_eq!(
            p.status
                .as_ref()
                .unwrap()
                .conditions
                .as_ref()
                .unwrap()
                .len(),
            1
        );
    }
}
