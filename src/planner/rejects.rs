//! Pods the scheduler keeps rejecting for a constraint gpupool does not model (pod
//! anti-affinity, topology spread, a PVC's zone, host ports, ephemeral storage…).
//!
//! The sign: a pending pod has fit the free room of a serving node by every constraint gpupool
//! models for [`REJECT_GRACE_S`], and the scheduler's last message about it is not only about
//! resources gpupool models. The scheduler retries an unschedulable pod when a node is added or
//! changes (kube-scheduler's queueing hints), so a minute after a fitting node serves, a pod
//! still pending was refused. Such a pod stops being demand and stops holding that node: no
//! node is launched for it for a backoff (10 min, doubling to 2 h; CA likewise writes
//! `NotTriggerScaleUp` for a pod no node group can help and does not scale up for it), and the
//! decision carries the scheduler's message into the pod's `NotTriggerScaleUp` Event.

use crate::config::KubernetesConfig;
use crate::model::{History, Reason, Rejection, Snapshot, Timestamp};
use std::collections::BTreeMap;

/// How long a pod may fit a serving node by gpupool's model and still be pending before the
/// scheduler is taken to have refused it.
pub const REJECT_GRACE_S: f64 = 60.0;
/// No launch for a rejected pod for this long, doubling with each rejection in a row.
pub const REJECT_BACKOFF_BASE_S: f64 = 600.0;
pub const REJECT_BACKOFF_MAX_S: f64 = 7200.0;

/// The pods (`namespace/name`) not to launch for this tick with their reason, and the
/// rejections found new this tick (for `History::record_scheduler_rejects`).
pub(super) fn blocked(
    snapshot: &Snapshot,
    history: &History,
    kube: &KubernetesConfig,
    now: Timestamp,
) -> (BTreeMap<String, Reason>, Vec<(String, Rejection)>) {
    let mut out = BTreeMap::new();
    let mut new = Vec::new();
    for pod in &snapshot.pending_pods {
        let key = pod.key();
        let prev = history.scheduler_rejects.get(&key);
        if let Some(r) = prev.filter(|r| r.until > now) {
            out.insert(key, reason(r));
            continue;
        }
        let Some((inst, since)) = history.fits_serving.get(&key) else {
            continue;
        };
        let Some(node) = snapshot.node_of(inst).filter(|n| n.serving_ready) else {
            continue;
        };
        let Some(message) = snapshot.scheduler_messages.get(&key) else {
            continue;
        };
        if now.secs_since(*since) < REJECT_GRACE_S || only_modelled(message, kube) {
            continue;
        }
        let count = prev.map_or(1, |p| p.count.saturating_add(1));
        let backoff =
            (REJECT_BACKOFF_BASE_S * 2f64.powi(count.min(16) as i32 - 1)).min(REJECT_BACKOFF_MAX_S);
        let r = Rejection {
            node: node.name.clone(),
            message: message.clone(),
            at: now,
            until: now.plus_secs(backoff),
            count,
        };
        out.insert(key.clone(), reason(&r));
        new.push((key, r));
    }
    (out, new)
}

fn reason(r: &Rejection) -> Reason {
    Reason::SchedulerRejects {
        node: r.node.clone(),
        message: r.message.clone(),
        retry_at: r.until,
    }
}

/// Is the scheduler's message only about resources gpupool models (cpu, memory, the
/// configured GPU resources)? kube-scheduler writes a failed fit as `0/N nodes are available:
/// <count> <reason>, <count> <reason>.` (optionally followed by ` preemption: …`) —
/// `FitError.Error` in `pkg/scheduler/framework/types.go` — and the resource-fit plugin's
/// reason is `Insufficient <resource name>` (`pkg/scheduler/framework/plugins/noderesources/
/// fit.go`). Only that exact shape counts as "modelled": any other reason, or a message in
/// another shape, is a constraint gpupool cannot check.
pub fn only_modelled(message: &str, kube: &KubernetesConfig) -> bool {
    let Some((_, body)) = message.split_once("nodes are available: ") else {
        return false;
    };
    let body = body.split(" preemption:").next().unwrap_or(body);
    let body = body.trim().trim_end_matches('.');
    if body.is_empty() {
        return false;
    }
    body.split(", ").all(|part| {
        let reason = part
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        reason
            .strip_prefix("Insufficient ")
            .is_some_and(|res| modelled(res.trim(), kube))
    })
}

fn modelled(resource: &str, kube: &KubernetesConfig) -> bool {
    matches!(resource, "cpu" | "memory")
        || kube.gpu_resources.iter().any(|r| r == resource)
        || resource.starts_with(kube.mig_resource_prefix.as_str())
        || kube.shared_gpu_resources.iter().any(|s| s.name == resource)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CapacityType, InstanceId, Outcome, Subject};
    use crate::planner::fixtures::*;

    #[test]
    fn which_scheduler_messages_are_about_modelled_resources() {
        let k = KubernetesConfig::default();
        let cases = [
            (
                "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                true,
            ),
            (
                "0/3 nodes are available: 1 Insufficient cpu, 2 Insufficient nvidia.com/gpu. \
                 preemption: 0/3 nodes are available: 3 No preemption victims found for \
                 incoming pod.",
                true,
            ),
            (
                "0/2 nodes are available: 2 Insufficient nvidia.com/mig-1g.5gb.",
                true,
            ),
            (
                "0/1 nodes are available: 1 Insufficient ephemeral-storage.",
                false,
            ),
            (
                "0/4 nodes are available: 1 Insufficient nvidia.com/gpu, 3 node(s) didn't match \
                 pod anti-affinity rules.",
                false,
            ),
            (
                "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports.",
                false,
            ),
            (
                "running PreBind plugin \"VolumeBinding\": binding volumes: timed out",
                false,
            ),
            ("", false),
        ];
        for (msg, want) in cases {
            assert_eq!(only_modelled(msg, &k), want, "{msg}");
        }
    }

    #[test]
    fn a_pod_refused_by_a_fitting_serving_node_is_blocked_with_a_backoff() {
        let cfg = config(vec![pool_cfg("llm")]);
        let t = Timestamp::from_secs;
        let snap = |at: i64, msg: &str| {
            let mut s: Snapshot = snapshot()
                .group(g5_od())
                .instance(instance(
                    "i-1",
                    "g5-od",
                    "g5.xlarge",
                    CapacityType::OnDemand,
                ))
                .node(node("i-1", "llm", CapacityType::OnDemand))
                .pending(gpu_pod(1).name("web-0").tolerate("nvidia.com/gpu"))
                .build();
            s.taken_at = t(at);
            if !msg.is_empty() {
                s.scheduler_messages
                    .insert("default/web-0".into(), msg.into());
            }
            s
        };
        let fits = |since: i64| {
            let mut h = History::default();
            h.fits_serving
                .insert("default/web-0".into(), (InstanceId::from("i-1"), t(since)));
            h
        };
        let refused =
            "0/1 nodes are available: 1 node(s) didn't match pod topology spread constraints.";
        let stale = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.";
        let cases = [
            (
                "within the grace period",
                snap(1_050, refused),
                fits(1_000),
                false,
            ),
            (
                "refused for an unmodelled constraint",
                snap(1_060, refused),
                fits(1_000),
                true,
            ),
            (
                "the message is about modelled resources",
                snap(1_060, stale),
                fits(1_000),
                false,
            ),
            (
                "no message from the scheduler",
                snap(1_060, ""),
                fits(1_000),
                false,
            ),
            (
                "never fit a serving node",
                snap(1_060, refused),
                History::default(),
                false,
            ),
        ];
        for (name, s, h, want) in cases {
            let (blocked, new) = blocked(&s, &h, &cfg.kubernetes, s.taken_at);
            assert_eq!(blocked.contains_key("default/web-0"), want, "{name}");
            assert_eq!(new.len(), usize::from(want), "{name}");
        }

        // In the plan: blocked with the scheduler's words, and recorded with a backoff that
        // doubles when it happens again.
        let s = snap(1_060, refused);
        let plan = crate::planner::plan(&s, &cfg, &fits(1_000), s.taken_at);
        let d = plan
            .decisions
            .iter()
            .find(|d| d.subject == Subject::Pod("default/web-0".into()))
            .unwrap();
        assert_eq!(d.outcome, Outcome::Blocked);
        assert!(
            d.reason.to_string().contains("topology spread"),
            "{}",
            d.reason
        );
        assert_eq!(plan.scheduler_rejects.len(), 1);
        let first = &plan.scheduler_rejects[0].1;
        assert_eq!(first.until, t(1_060 + 600));
        let mut h = fits(1_000);
        h.record_scheduler_rejects(&plan.scheduler_rejects, &s.pending_pods);
        let later = snap(1_700, refused);
        let (b, new) = blocked(&later, &h, &cfg.kubernetes, later.taken_at);
        assert!(b.contains_key("default/web-0"));
        assert_eq!(new[0].1.count, 2);
        assert_eq!(new[0].1.until, t(1_700 + 1_200));
    }
}
