use super::{CapacityType, InstanceId, PoolName, Taint, TaintEffect, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a pod asks of GPUs. GPU resource *names* are configuration (see
/// `config::GpuResources`); by the time a pod reaches the planner its request is one of these.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum GpuRequest {
    /// No GPU (rare for pods gpupool watches, but a pool may host sidecars).
    #[default]
    None,
    /// Whole GPUs (`nvidia.com/gpu: 2`, `amd.com/gpu: 1`).
    Whole { count: u32 },
    /// MIG slices of one profile (`nvidia.com/mig-1g.10gb: 1`).
    Mig { profile: String, count: u32 },
    /// Time-sliced / MPS replicas (`nvidia.com/gpu.shared: 1`): `count` replicas where each GPU
    /// offers `replicas_per_gpu` of them (from config).
    Shared { count: u32, replicas_per_gpu: u32 },
}

/// `key op values` on node labels (nodeSelector is `In` with one value).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LabelRequirement {
    pub key: String,
    pub operator: LabelOperator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LabelOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

impl LabelRequirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match self.operator {
            LabelOperator::In => v.is_some_and(|v| self.values.iter().any(|x| x == v)),
            LabelOperator::NotIn => v.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            LabelOperator::Exists => v.is_some(),
            LabelOperator::DoesNotExist => v.is_none(),
            LabelOperator::Gt | LabelOperator::Lt => {
                let (Some(v), Some(bound)) = (v, self.values.first()) else {
                    return false;
                };
                let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.operator == LabelOperator::Gt {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

/// A pod toleration.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Toleration {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default = "default_tol_op")]
    pub operator: TolerationOperator,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub effect: Option<TaintEffect>,
}

fn default_tol_op() -> TolerationOperator {
    TolerationOperator::Equal
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TolerationOperator {
    Equal,
    Exists,
}

impl Toleration {
    /// Kubernetes semantics: empty key with Exists tolerates everything; effect None matches
    /// every effect.
    pub fn tolerates(&self, t: &Taint) -> bool {
        if let Some(e) = self.effect
            && e != t.effect
        {
            return false;
        }
        match (&self.key, self.operator) {
            (None, TolerationOperator::Exists) => true,
            (None, TolerationOperator::Equal) => false,
            (Some(k), TolerationOperator::Exists) => *k == t.key,
            (Some(k), TolerationOperator::Equal) => {
                *k == t.key && self.value.as_deref().unwrap_or("") == t.value
            }
        }
    }
}

/// Pods that tolerate every `NoSchedule`/`NoExecute` taint of a node may land there.
/// `PreferNoSchedule` never blocks.
pub fn tolerates_all(tolerations: &[Toleration], taints: &[Taint]) -> bool {
    taints
        .iter()
        .filter(|t| t.effect != TaintEffect::PreferNoSchedule)
        .all(|t| tolerations.iter().any(|tol| tol.tolerates(t)))
}

/// A pod that cannot be scheduled for lack of capacity (Kubernetes mode), or a virtual replica
/// the planner places for signal-driven demand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingPod {
    pub namespace: String,
    pub name: String,
    /// The pool this pod belongs to if it names one (`nodeSelector gpupool.io/pool`); the
    /// planner otherwise matches it against every pool's template.
    #[serde(default)]
    pub pool: Option<PoolName>,
    #[serde(default)]
    pub gpu: GpuRequest,
    #[serde(default)]
    pub cpu_milli: u64,
    #[serde(default)]
    pub memory_mib: u64,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity: OR of terms, each an AND of requirements.
    #[serde(default)]
    pub affinity: Vec<Vec<LabelRequirement>>,
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// When the pod was first seen pending.
    #[serde(default)]
    pub pending_since: Timestamp,
}

impl PendingPod {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Does a node with these labels satisfy the pod's nodeSelector and required affinity?
    /// Returns the first unmet constraint, for the reason text.
    pub fn label_mismatch(&self, labels: &BTreeMap<String, String>) -> Option<String> {
        for (k, v) in &self.node_selector {
            if labels.get(k) != Some(v) {
                return Some(format!("nodeSelector {k}={v}"));
            }
        }
        if !self.affinity.is_empty()
            && !self
                .affinity
                .iter()
                .any(|term| term.iter().all(|r| r.matches(labels)))
        {
            let first = &self.affinity[0];
            let failing = first
                .iter()
                .find(|r| !r.matches(labels))
                .unwrap_or(&first[0]);
            return Some(format!(
                "node affinity {} {:?} {:?}",
                failing.key, failing.operator, failing.values
            ));
        }
        None
    }
}

/// A pod running on a node, as far as scale-down cares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunningPod {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub gpu: GpuRequest,
    #[serde(default)]
    pub cpu_milli: u64,
    #[serde(default)]
    pub memory_mib: u64,
    /// DaemonSet and mirror (static) pods do not keep a node alive and are not evicted.
    #[serde(default)]
    pub daemon: bool,
    /// `gpupool.io/do-not-disrupt: "true"` or CA's `safe-to-evict: "false"`.
    #[serde(default)]
    pub do_not_disrupt: bool,
    /// Being deleted (evicted; its grace period runs). Its owner has made, or will make, a
    /// replacement pod, which is the demand from then on.
    #[serde(default)]
    pub terminating: bool,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub affinity: Vec<Vec<LabelRequirement>>,
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
}

impl RunningPod {
    /// The pod this one becomes once its node goes away: what the planner must find room
    /// for when the node is draining (the same requests and scheduling constraints).
    pub fn displaced(&self, since: Timestamp) -> PendingPod {
        PendingPod {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            pool: self
                .node_selector
                .get(crate::contract::TAG_POOL)
                .map(|p| PoolName::new(p.clone())),
            gpu: self.gpu.clone(),
            cpu_milli: self.cpu_milli,
            memory_mib: self.memory_mib,
            node_selector: self.node_selector.clone(),
            affinity: self.affinity.clone(),
            tolerations: self.tolerations.clone(),
            pending_since: since,
        }
    }
}

/// A serving node (a Kubernetes node, or a VM in VM-only mode) backed by an instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub instance: InstanceId,
    pub pool: PoolName,
    pub capacity_type: CapacityType,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<Taint>,
    /// Counts as capacity: GPUs allocatable and model cache ready (Kubernetes), or the health
    /// URL answers (VM-only).
    pub serving_ready: bool,
    #[serde(default)]
    pub cordoned: bool,
    /// Node-level scale-down opt-out (CA's `scale-down-disabled` annotation).
    #[serde(default)]
    pub scale_down_disabled: bool,
    #[serde(default)]
    pub pods: Vec<RunningPod>,
    /// Requests in flight on this node (VM-only: from the per-instance metric). Unknown is
    /// its own state, never zero.
    #[serde(default)]
    pub in_flight_requests: InFlight,
    /// Since when the node has had no non-daemon pods / no in-flight requests, if known.
    #[serde(default)]
    pub idle_since: Option<Timestamp>,
    /// Why the node's GPUs are unusable (fewer GPUs than expected, a GPU-unhealthy condition,
    /// not serving-ready long after the cloud reported the instance running). The planner
    /// drains and replaces it within the disruption budget.
    #[serde(default)]
    pub unhealthy: Option<String>,
    /// A drain gpupool marked on the node (Kubernetes annotation `gpupool.io/drain-deadline`)
    /// and its deadline: a new leader carries it on.
    #[serde(default)]
    pub drain_deadline: Option<Timestamp>,
}

impl Node {
    /// The node of a VM that serves without Kubernetes (VM-only mode, the simulator, test
    /// clusters): named after the instance, serving-ready and not cordoned, with no labels,
    /// taints or pods; callers override what they know otherwise.
    pub fn vm(instance: &super::Instance, pool: impl Into<PoolName>, in_flight: InFlight) -> Node {
        Node::serving(
            instance.id.to_string(),
            instance.id.clone(),
            pool.into(),
            instance.capacity_type,
            in_flight,
        )
    }

    /// A serving-ready, uncordoned node `name` of `instance` with no labels, taints or pods.
    pub fn serving(
        name: String,
        instance: InstanceId,
        pool: PoolName,
        capacity_type: CapacityType,
        in_flight: InFlight,
    ) -> Node {
        Node {
            name,
            instance,
            pool,
            capacity_type,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            serving_ready: true,
            cordoned: false,
            scale_down_disabled: false,
            pods: Vec::new(),
            in_flight_requests: in_flight,
            idle_since: None,
            unhealthy: None,
            drain_deadline: None,
        }
    }

    pub fn workload_pods(&self) -> impl Iterator<Item = &RunningPod> {
        self.pods.iter().filter(|p| !p.daemon)
    }
    /// No workload pods and no request in flight *known*: a node whose in-flight count
    /// could not be read, or has no series, is not empty (unknown is not zero).
    pub fn is_empty(&self) -> bool {
        self.workload_pods().next().is_none() && self.in_flight_requests.is_idle()
    }
}

/// Requests in flight on one node, as far as gpupool can tell. The three VM-only states are
/// kept apart all the way to the planner and the drain, because they call for different
/// waits: a known 0 is idle, no series gets a grace period after deregistration, unreadable
/// keeps waiting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Option<InFlightWire>", into = "Option<InFlightWire>")]
pub enum InFlight {
    /// Not measured for this node: a Kubernetes node, whose work is its pods.
    #[default]
    NotMeasured,
    /// The per-instance metric's value.
    Known(u32),
    /// The node has no in-flight series: none is configured for the pool, or the query
    /// answered with an empty result (the server does not export it, or stopped).
    NoSeries,
    /// The query failed: Prometheus unreachable, an error, a value that is not a count.
    Unreadable,
}

impl InFlight {
    /// Known to have no work in flight (a known 0), or not measured (the pods decide).
    pub fn is_idle(self) -> bool {
        matches!(self, InFlight::NotMeasured | InFlight::Known(0))
    }
    pub fn known(self) -> Option<u32> {
        match self {
            InFlight::Known(n) => Some(n),
            _ => None,
        }
    }
}

/// JSON form of [`InFlight`]: a number for a known count, `"no_series"` / `"unreadable"`,
/// `null` or absent when not measured — so snapshots written before the states were told
/// apart (a number or `null`) still load.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum InFlightWire {
    Count(u32),
    State(InFlightState),
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum InFlightState {
    NoSeries,
    Unreadable,
}

impl From<Option<InFlightWire>> for InFlight {
    fn from(w: Option<InFlightWire>) -> Self {
        match w {
            None => InFlight::NotMeasured,
            Some(InFlightWire::Count(n)) => InFlight::Known(n),
            Some(InFlightWire::State(InFlightState::NoSeries)) => InFlight::NoSeries,
            Some(InFlightWire::State(InFlightState::Unreadable)) => InFlight::Unreadable,
        }
    }
}

impl From<InFlight> for Option<InFlightWire> {
    fn from(f: InFlight) -> Self {
        match f {
            InFlight::NotMeasured => None,
            InFlight::Known(n) => Some(InFlightWire::Count(n)),
            InFlight::NoSeries => Some(InFlightWire::State(InFlightState::NoSeries)),
            InFlight::Unreadable => Some(InFlightWire::State(InFlightState::Unreadable)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, effect: TaintEffect) -> Taint {
        Taint {
            key: key.into(),
            value: "true".into(),
            effect,
        }
    }

    #[test]
    fn toleration_semantics_follow_kubernetes() {
        let gpu = taint("nvidia.com/gpu", TaintEffect::NoSchedule);
        let exists = Toleration {
            key: Some("nvidia.com/gpu".into()),
            operator: TolerationOperator::Exists,
            value: None,
            effect: None,
        };
        assert!(exists.tolerates(&gpu));
        let wrong_value = Toleration {
            key: Some("nvidia.com/gpu".into()),
            operator: TolerationOperator::Equal,
            value: Some("false".into()),
            effect: None,
        };
        assert!(!wrong_value.tolerates(&gpu));
        let everything = Toleration {
            key: None,
            operator: TolerationOperator::Exists,
            value: None,
            effect: None,
        };
        assert!(everything.tolerates(&gpu));
        assert!(tolerates_all(
            &[],
            &[taint("soft", TaintEffect::PreferNoSchedule)]
        ));
        assert!(!tolerates_all(&[], &[gpu]));
    }

    #[test]
    fn label_requirements() {
        let labels: BTreeMap<String, String> = [
            ("gpu".to_string(), "H100".to_string()),
            ("n".to_string(), "8".to_string()),
        ]
        .into();
        let req = |k: &str, op, vals: &[&str]| LabelRequirement {
            key: k.into(),
            operator: op,
            values: vals.iter().map(|s| s.to_string()).collect(),
        };
        assert!(req("gpu", LabelOperator::In, &["A100", "H100"]).matches(&labels));
        assert!(!req("gpu", LabelOperator::NotIn, &["H100"]).matches(&labels));
        assert!(req("zone", LabelOperator::DoesNotExist, &[]).matches(&labels));
        assert!(req("n", LabelOperator::Gt, &["4"]).matches(&labels));
        assert!(!req("n", LabelOperator::Lt, &["4"]).matches(&labels));
    }

    #[test]
    fn unknown_in_flight_is_not_empty() {
        let node = |f: InFlight| Node {
            name: "i-1".into(),
            instance: "i-1".into(),
            pool: "p".into(),
            capacity_type: CapacityType::OnDemand,
            labels: BTreeMap::new(),
            taints: vec![],
            serving_ready: true,
            cordoned: false,
            scale_down_disabled: false,
            pods: vec![],
            in_flight_requests: f,
            idle_since: None,
            unhealthy: None,
            drain_deadline: None,
        };
        assert!(
            node(InFlight::NotMeasured).is_empty(),
            "Kubernetes: no pods"
        );
        assert!(node(InFlight::Known(0)).is_empty());
        assert!(!node(InFlight::Known(2)).is_empty());
        assert!(!node(InFlight::NoSeries).is_empty(), "no series is not 0");
        assert!(
            !node(InFlight::Unreadable).is_empty(),
            "unreadable is not 0"
        );
    }

    #[test]
    fn in_flight_json_keeps_old_snapshots_loading() {
        for (json, want) in [
            ("null", InFlight::NotMeasured),
            ("3", InFlight::Known(3)),
            ("0", InFlight::Known(0)),
            ("\"no_series\"", InFlight::NoSeries),
            ("\"unreadable\"", InFlight::Unreadable),
        ] {
            let got: InFlight = serde_json::from_str(json).unwrap();
            assert_eq!(got, want, "{json}");
            let back = serde_json::to_string(&got).unwrap();
            assert_eq!(serde_json::from_str::<InFlight>(&back).unwrap(), want);
        }
        assert!(serde_json::from_str::<InFlight>("-1").is_err());
        assert!(serde_json::from_str::<InFlight>("\"zero\"").is_err());
    }

    #[test]
    fn pod_label_mismatch_names_the_constraint() {
        let pod = PendingPod {
            namespace: "ml".into(),
            name: "p".into(),
            pool: None,
            gpu: GpuRequest::Whole { count: 1 },
            cpu_milli: 0,
            memory_mib: 0,
            node_selector: [("gpupool.io/gpu-model".to_string(), "H100".to_string())].into(),
            affinity: vec![],
            tolerations: vec![],
            pending_since: Timestamp(0),
        };
        let labels = [("gpupool.io/gpu-model".to_string(), "A10G".to_string())].into();
        assert_eq!(
            pod.label_mismatch(&labels).unwrap(),
            "nodeSelector gpupool.io/gpu-model=H100"
        );
    }
}
