//! `gpupool run --dry-run` as a process, in Kubernetes mode against the fake API server and
//! with the GCP provider against the fake Compute API, while "someone else" (this test, as
//! Cluster Autoscaler would) resizes the managed MIG: the running controller serves `/status`
//! and `gpupool status` prints what it would have done next to what the other actor did, with
//! the cost difference; no mutating Compute call comes from gpupool; the leader writes the
//! `gpupool-status` ConfigMap; and a tick dumped with `--dump-snapshot` replays through
//! `gpupool plan` to the plan the controller made. And with an hour between ticks, a new pending
//! GPU pod is still planned at once: the pod watch wakes the loop.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines
#![cfg(all(feature = "kube", feature = "gcp"))]

use gpupool_gcp_fake as fake_compute;
#[path = "support/fake_kube.rs"]
mod fake_kube;

use fake_compute::FakeCompute;
use fake_kube::{FakeKube, Kind, eventually};
use gpupool::model::Plan;
use gpupool::model::status::{RunMode, Status};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Deadline for the spawned controller to reach a state. It answers in about a second alone
/// (the whole file: 1.8 s); under `tests/run.sh` on 2 busy cores the first tick of the debug
/// binary, spawned beside other test binaries and builds, went past 60 s once. A passing run
/// never waits for it.
const SETTLE_S: u64 = 240;

const PROJECT: &str = "gpupool-test";

async fn gpupool(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_gpupool"))
        .args(args)
        .output()
        .await
        .unwrap()
}

async fn status_json(url: &str) -> Option<Status> {
    let out = gpupool(&["status", "--url", url, "--json"]).await;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The newest dumped tick whose three files are all there.
fn newest_dump(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let mut stamps: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| Some(n.strip_prefix("plan-")?.strip_suffix(".json")?.to_owned()))
        .collect();
    stamps.sort();
    let s = stamps.pop()?;
    let f = |k: &str| dir.join(format!("{k}-{s}.json"));
    Some((f("snapshot"), f("history"), f("plan")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_run_beside_another_autoscaler_reports_and_changes_nothing() {
    let kube = FakeKube::start().await;
    let compute = FakeCompute::start(PROJECT).await.unwrap();
    compute.add_l4_template("l4-od", false, "llama");
    compute.add_mig(
        "zones/us-central1-a",
        "llama-od",
        "l4-od",
        &["us-central1-a"],
        1,
        None,
    );

    let dir = std::env::temp_dir().join(format!("gpupool-shadow-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{}\"}}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context: {{cluster: fake, user: u}}\n\
             current-context: c\n",
            kube.url()
        ),
    )
    .unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "provider: gcp\nmode: kubernetes\ntick_interval_s: 1\n\
             gcp:\n  project: {PROJECT}\n  region: us-central1\n  zones: [us-central1-a]\n  \
             endpoint_url: \"{}\"\n\
             pools:\n  - name: llama\n    requirements: {{ gpu_models: [L4] }}\n    \
             limits: {{ min_nodes: 2, max_nodes: 6 }}\n",
            compute.endpoint()
        ),
    )
    .unwrap();
    let dumps = dir.join("dumps");
    let port = gpupool::testkit::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("gpupool.log")).unwrap();
    let mut run = tokio::process::Command::new(env!("CARGO_BIN_EXE_gpupool"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--dry-run"])
        .arg("--dump-snapshot")
        .arg(&dumps)
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", "gpupool")
        .env("POD_NAME", "gpupool-0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log_text = || std::fs::read_to_string(dir.join("gpupool.log")).unwrap_or_default();

    // The controller leads, plans, and would add a node for min_nodes: 2.
    let first = eventually(SETTLE_S, "a planned shadow status", || {
        let url = url.clone();
        async move {
            status_json(&url)
                .await
                .filter(|s| s.planned_at.is_some() && s.leader)
        }
    })
    .await;
    assert_eq!(first.mode, RunMode::Shadow, "{}", log_text());
    let pool = &first.pools[0];
    assert!(
        pool.actions
            .iter()
            .any(|a| matches!(a, gpupool::model::Action::ScaleUp { .. })),
        "{pool:#?}"
    );

    // "Cluster Autoscaler" grows the MIG to 3.
    let resize = format!(
        "{}/compute/v1/projects/{PROJECT}/zones/us-central1-a/instanceGroupManagers/llama-od/resize?size=3",
        compute.endpoint()
    );
    let r = reqwest::Client::new().post(&resize).send().await.unwrap();
    assert!(r.status().is_success(), "{r:?}");
    compute.settle();
    let seen = eventually(
        SETTLE_S,
        "the other actor's change in the shadow report",
        || {
            let url = url.clone();
            async move {
                status_json(&url).await.filter(|s| {
                    s.pools[0]
                        .shadow
                        .as_ref()
                        .is_some_and(|sh| sh.observed_added >= 2)
                })
            }
        },
    )
    .await;
    let sh = seen.pools[0].shadow.as_ref().unwrap();
    let change = sh.changes.iter().find(|c| c.desired_after == 3).unwrap();
    assert_eq!(change.desired_before, 1);
    assert_eq!(change.added.len(), 2);
    assert!(sh.actual_cost_per_hour > gpupool::model::Money::ZERO);
    assert_eq!(
        sh.cost_difference_per_hour,
        sh.would_cost_per_hour - sh.actual_cost_per_hour
    );

    // The table a person reads.
    let out = gpupool(&["status", "--url", &url]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mode shadow"), "{text}");
    assert!(text.contains("pool llama:"), "{text}");
    assert!(text.contains("others added"), "{text}");

    // The leader's status ConfigMap.
    let cm = eventually(30, "the status ConfigMap", || {
        let cm = kube.get(Kind::ConfigMap, "gpupool", "gpupool-status");
        async move { cm }
    })
    .await;
    assert!(cm["data"]["status"].as_str().unwrap().contains("shadow"));

    // A dumped tick replays to the plan the controller made.
    let (snapshot, history, plan) = newest_dump(&dumps).expect("dumped ticks");
    let made: Plan = serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap();
    let out = gpupool(&[
        "plan",
        "--snapshot",
        snapshot.to_str().unwrap(),
        "--history",
        history.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--json",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Plan = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(replayed.actions, made.actions);
    assert_eq!(replayed.decisions, made.decisions);

    run.start_kill().unwrap();
    let _ = run.wait().await;
    // Not one mutating Compute call from gpupool: the only one is this test's resize.
    let writes: Vec<String> = compute
        .calls()
        .into_iter()
        // `listManagedInstances` is a read the Compute API serves as a POST (API reference,
        // instanceGroupManagers.listManagedInstances).
        .filter(|c| !c.starts_with("GET") && !c.ends_with("/listManagedInstances"))
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(writes[0].contains("/resize"), "{writes:?}");
    assert!(
        !log_text().contains("executing"),
        "an action was executed in shadow mode"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A new pending GPU pod is planned without waiting for the tick: with `tick_interval_s: 3600`
/// the only plans after the first are those the pod watch's wake-up starts (batched, 1 s idle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pending_pod_is_planned_before_the_next_tick() {
    let kube = FakeKube::start().await;
    let compute = FakeCompute::start(PROJECT).await.unwrap();
    compute.add_l4_template("l4-od", false, "llama");
    compute.add_mig(
        "zones/us-central1-a",
        "llama-od",
        "l4-od",
        &["us-central1-a"],
        0,
        None,
    );
    let dir = std::env::temp_dir().join(format!("gpupool-wake-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{}\"}}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context: {{cluster: fake, user: u}}\n\
             current-context: c\n",
            kube.url()
        ),
    )
    .unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "provider: gcp\nmode: kubernetes\ntick_interval_s: 3600\ndry_run: true\n\
             gcp:\n  project: {PROJECT}\n  region: us-central1\n  zones: [us-central1-a]\n  \
             endpoint_url: \"{}\"\n\
             pools:\n  - name: llama\n    requirements: {{ gpu_models: [L4] }}\n    \
             limits: {{ max_nodes: 6 }}\n",
            compute.endpoint()
        ),
    )
    .unwrap();
    let port = gpupool::testkit::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("gpupool.log")).unwrap();
    let mut run = tokio::process::Command::new(env!("CARGO_BIN_EXE_gpupool"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", "gpupool")
        .env("POD_NAME", "gpupool-0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The first tick has run (status served) and the pod watch streams (it watches only after
    // its first list is in), so the pod below arrives as a watch event.
    eventually(SETTLE_S, "the first tick and the pod watch", || {
        let url = url.clone();
        let watching = kube
            .count_requests(|r| r.starts_with("GET /api/v1/pods?") && r.contains("watch=true"))
            > 0;
        async move { status_json(&url).await.filter(|_| watching) }
    })
    .await;
    let created = std::time::Instant::now();
    kube.apply(fake_kube::pending_pod(
        "ml",
        "fresh",
        serde_json::json!({"nvidia.com/gpu": "1"}),
        serde_json::json!({"gpupool.io/pool": "llama"}),
    ));
    let s = eventually(SETTLE_S, "a plan for the new pod", || {
        let url = url.clone();
        async move {
            status_json(&url).await.filter(|s| {
                s.pods
                    .iter()
                    .any(|g| g.examples.iter().any(|p| p == "ml/fresh"))
            })
        }
    })
    .await;
    // A figure for the record, not an assertion: the batch window (1 s idle) plus a tick.
    eprintln!(
        "new pending pod planned {:.2} s after it was created",
        created.elapsed().as_secs_f64()
    );
    assert!(s.leader);
    assert!(
        s.pools[0]
            .actions
            .iter()
            .any(|a| matches!(a, gpupool::model::Action::ScaleUp { .. })),
        "{:#?}",
        s.pools[0]
    );
    run.start_kill().unwrap();
    let _ = run.wait().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
