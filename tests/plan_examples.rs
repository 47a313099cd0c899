//! The shipped example snapshots (`examples/snapshots/*.json`) planned with their config: each
//! must keep showing the situation it documents, so the examples cannot rot.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines

use gpupool::config::Config;
use gpupool::model::{Action, History, Outcome, Plan, Snapshot, Subject};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/snapshots")
}

fn run(name: &str) -> Plan {
    let cfg = Config::load_file(&dir().join("config.yaml")).expect("example config is valid");
    let text = std::fs::read_to_string(dir().join(name)).expect("example snapshot exists");
    let snap: Snapshot = serde_json::from_str(&text).expect("example snapshot parses");
    gpupool::planner::plan(&snap, &cfg, &History::default(), snap.taken_at)
}

fn pod_reason(p: &Plan, pod: &str) -> (Outcome, String) {
    let d = p
        .decisions
        .iter()
        .find(|d| d.subject == Subject::Pod(pod.into()))
        .unwrap_or_else(|| panic!("no decision for pod {pod}"));
    (d.outcome, d.reason.to_string())
}

fn codes(p: &Plan, subject_kind: fn(&Subject) -> bool) -> Vec<&'static str> {
    p.decisions
        .iter()
        .filter(|d| subject_kind(&d.subject))
        .map(|d| d.reason.code())
        .collect()
}

const CHECKED: &[&str] = &[
    "aws-late-stockout.json",
    "spot-fallback.json",
    "mig-no-fit.json",
    "stale-signal.json",
    "budget.json",
    "warm-start.json",
];

#[test]
fn every_shipped_snapshot_is_checked_here() {
    let mut shipped: Vec<String> = std::fs::read_dir(dir())
        .expect("examples/snapshots exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    shipped.sort();
    let mut checked: Vec<String> = CHECKED.iter().map(|s| s.to_string()).collect();
    checked.sort();
    assert_eq!(shipped, checked);
}

#[test]
fn spot_fallback() {
    let p = run("spot-fallback.json");
    let [
        Action::ScaleUp {
            offering,
            count,
            reason,
            ..
        },
    ] = &p.actions[..]
    else {
        panic!("{:?}", p.actions)
    };
    assert_eq!(offering.to_string(), "p5.48xlarge/on-demand/us-east-1a");
    assert_eq!(*count, 2);
    let text = reason.to_string();
    assert!(
        text.starts_with("fell back from p5.48xlarge/spot/us-east-1a to p5.48xlarge/on-demand"),
        "{text}"
    );
    assert!(text.contains("reports no capacity"), "{text}");
    let offerings = codes(&p, |s| matches!(s, Subject::Offering(_)));
    assert_eq!(offerings, vec!["offering_unavailable", "above_max_price"]);
    assert_eq!(pod_reason(&p, "ml/llama-70b-0").0, Outcome::Acted);
}

#[test]
fn mig_no_fit() {
    let p = run("mig-no-fit.json");
    assert_eq!(
        pod_reason(&p, "ml/embed-0"),
        (
            Outcome::Blocked,
            "no offering fits: MIG profile 1g.10gb not offered".to_owned()
        )
    );
    assert_eq!(pod_reason(&p, "ml/rerank-1").0, Outcome::Acted);
    assert!(
        matches!(&p.actions[..], [Action::ScaleUp { count: 1, offering, .. }] if offering.instance_type.as_str() == "p4d.24xlarge")
    );
}

#[test]
fn stale_signal_holds_scale_down() {
    let p = run("stale-signal.json");
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert!(p.unneeded.is_empty());
    let d = p
        .decisions
        .iter()
        .find(|d| d.reason.code() == "data_stale")
        .expect("a data_stale decision");
    assert_eq!(d.outcome, Outcome::Held);
    assert!(d.reason.to_string().contains("ttft-p95"));
}

#[test]
fn budget_keeps_unneeded_nodes() {
    let p = run("budget.json");
    assert_eq!(p.unneeded.len(), 3);
    // Kubernetes mode: an empty node is cordoned and re-checked before it goes (a drain that
    // ends at once if it is still empty).
    let removed: Vec<_> = p
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Drain { reason, .. } if reason.code() == "empty"))
        .collect();
    assert_eq!(removed.len(), 1, "one at once: another is already draining");
    let held = codes(&p, |s| matches!(s, Subject::Instance(_)));
    // The one node kept for demand says so; the two unneeded ones wait for the budget.
    assert_eq!(
        held,
        vec!["needed_for_demand", "budget_exhausted", "budget_exhausted"]
    );
}

#[test]
fn warm_pool_start() {
    let p = run("warm-start.json");
    let kinds: Vec<_> = p
        .actions
        .iter()
        .map(|a| match a {
            Action::StartWarm { count, .. } => format!("start_warm {count}"),
            Action::ScaleUp { count, reason, .. } => format!("scale_up {count} {}", reason.code()),
            Action::SetWarmPool { size, .. } => format!("set_warm_pool {size}"),
            other => other.kind().to_owned(),
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["start_warm 2", "scale_up 1 forecast", "set_warm_pool 3"]
    );
}

/// A spot group whose desired AWS accepted (2) with no instance behind it and a failed scaling
/// activity: taken back, backed off with a retry time, on-demand launched in the same plan.
#[test]
fn aws_late_stockout() {
    let p = run("aws-late-stockout.json");
    let [
        Action::ReleaseUnfulfilled {
            group,
            count,
            reason,
            ..
        },
        Action::ScaleUp {
            group: up,
            offering,
            count: n,
            reason: why,
            ..
        },
    ] = &p.actions[..]
    else {
        panic!("{:?}", p.actions)
    };
    assert_eq!((group.as_str(), *count), ("llm-h100-spot", 2));
    let text = reason.to_string();
    assert!(text.contains("InsufficientInstanceCapacity"), "{text}");
    assert!(text.contains("backing off until t=1700000060"), "{text}");
    assert_eq!((up.as_str(), *n), ("llm-h100-od", 2));
    assert_eq!(offering.capacity_type.as_str(), "on-demand");
    assert_eq!(why.code(), "fallback");
    assert_eq!(p.launch_failures.len(), 1);
}
