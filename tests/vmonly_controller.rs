//! The controller in VM-only mode, end to end on real services: a real Prometheus (Debian's
//! `prometheus`) scraping a synthetic inference exporter, the real `SignalDemand`, the real
//! `VmCluster` (HTTP health checks, deregister command, per-instance in-flight query, all from
//! the config as `gpupool run` builds them), the real planner, and the real `AwsProvider`
//! driving an Auto Scaling group on a real moto server.
//!
//! Ticks are driven with explicit timestamps: wall-clock based, so Prometheus evaluates
//! queries at times it has data for, and advanced virtually through the unneeded time (the
//! harness starts Prometheus with a 30-minute lookback so queries minutes ahead still see the
//! newest scrape). Health URLs point at
//! the exporter (`/health/{ip}`): moto's instances have private IPs nothing may be sent to.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines
#![cfg(feature = "aws")]

#[path = "support/moto.rs"]
mod moto;
mod signals_harness;

use gpupool::config::Config;
use gpupool::controller::{Controller, Metrics};
use gpupool::model::{InstanceId, PoolName, Timestamp};
use gpupool::signals::{ServingReplicas, SignalDemand};
use gpupool::vmonly::VmCluster;
use gpupool_aws::AwsProvider;
use gpupool_provider::NodeGroupProvider;
use moto::{GroupFixture, Moto};
use prometheus_client::registry::Registry;
use signals_harness::{Exporter, Prometheus, wall_now};
use std::sync::Arc;

const WAITING: &str = "vllm:num_requests_waiting{model_name=\"llama\"}";
const GROUP: &str = "llama-asg";

fn config(
    moto: &Moto,
    prom: &str,
    exporter: std::net::SocketAddr,
    dereg_log: &std::path::Path,
) -> Config {
    Config::load(&format!(
        r#"
provider: aws
mode: vm-only
tick_interval_s: 10
aws:
  region: us-east-1
  endpoint_url: {endpoint}
pools:
  - name: llama
    requirements: {{ gpu_models: [A10G] }}
    replica: {{ gpus: 1, replicas_per_instance: 1 }}
    limits: {{ min_nodes: 0, max_nodes: 10 }}
    scale_up: {{ cold_start_s: 60 }}
    disruption: {{ unneeded_time_s: 120, scale_down_delay_after_add_s: 0, drain_timeout_s: 600, max_provision_time_s: 600 }}
    forecast: {{ enabled: false }}
    health_url: "http://{exporter}/health/{{ip}}"
    deregister_command: ["sh", "-c", "echo \"$0\" >> {log}", "{{id}}"]
    in_flight_query:
      url: {prom}
      query: sum(vllm:num_requests_running{{instance_id="{{instance}}"}})
    signals:
      - name: waiting
        prometheus:
          url: {prom}
          query: sum(vllm:num_requests_waiting{{model_name="llama"}})
          target_per_replica: 5
          stale_after_s: 60
          timeout_s: 2
"#,
        endpoint = moto.endpoint,
        log = dereg_log.display()
    ))
    .expect("test config is valid")
}

/// The group's desired capacity and instance ids, read back from moto.
async fn group(c: &moto::Clients) -> (u32, Vec<String>) {
    let (d, ids) = c.desired(GROUP).await;
    (u32::try_from(d).expect("desired capacity"), ids)
}

fn metric_line(reg: &Registry, prefix: &str) -> Option<String> {
    gpupool::controller::metrics::encode(reg)
        .lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_only_controller_scales_on_the_queue_holds_when_stale_and_drains_before_scale_in() {
    let moto = Moto::start();
    let c = moto.clients().await;
    c.group(GroupFixture {
        name: GROUP,
        zones: &["us-east-1a"],
        max: 10,
        ..Default::default()
    })
    .await;

    let exporter = Exporter::start().await;
    exporter.gauges.set(WAITING, "0");
    let mut prom = Prometheus::start(exporter.addr).await;
    prom.wait_for(&format!("sum({WAITING})"), "0").await;

    let dir = std::env::temp_dir().join(format!("gpupool-vmonly-{}", moto.port));
    std::fs::create_dir_all(&dir).unwrap();
    let dereg_log = dir.join("deregistered.log");
    let _ = std::fs::remove_file(&dereg_log);
    let cfg = Arc::new(config(&moto, &prom.url, exporter.addr, &dereg_log));

    let provider: Arc<dyn NodeGroupProvider> =
        Arc::new(AwsProvider::new(moto.settings(&["llama"])).await.unwrap());
    let serving = Arc::new(ServingReplicas::default());
    let cluster = VmCluster::new(cfg.clone(), provider.clone())
        .unwrap()
        .with_serving(serving.clone());
    let demand = SignalDemand::new().unwrap().with_serving(serving.clone());
    let metrics = Arc::new(Metrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut ctl = Controller::new(
        cfg.clone(),
        provider,
        Box::new(cluster),
        Box::new(demand),
        metrics,
    );
    async fn tick(ctl: &mut Controller, now: Timestamp) {
        let r = ctl
            .tick(now)
            .await
            .unwrap_or_else(|e| panic!("tick: {}", gpupool::controller::error_chain(&e)));
        for a in &r.results {
            assert!(a.error.is_none(), "action failed: {a:?}");
        }
    }

    // Idle queue: nothing launched.
    let t0 = wall_now();
    tick(&mut ctl, t0).await;
    assert_eq!(group(&c).await.0, 0);

    // Rising queue: 12 waiting / 5 per replica → 3 instances within two ticks of Prometheus
    // having scraped it.
    exporter.gauges.set(WAITING, "12");
    prom.wait_for(&format!("sum({WAITING})"), "12").await;
    let mut t = wall_now();
    for _ in 0..2 {
        tick(&mut ctl, t).await;
        if group(&c).await.0 >= 3 {
            break;
        }
        t = t.plus_secs(10.0);
    }
    let (desired, ids) = group(&c).await;
    assert_eq!(
        desired, 3,
        "desired capacity follows the queue within two ticks"
    );
    assert_eq!(ids.len(), 3, "moto launched the instances: {ids:?}");
    // Every VM answers its health check: serving replicas are published for the guard-rail.
    tick(&mut ctl, t.plus_secs(10.0)).await;
    assert_eq!(serving.get(&PoolName::from("llama")), Some(3));
    for id in &ids {
        exporter.gauges.set(
            &format!("vllm:num_requests_running{{instance_id=\"{id}\"}}"),
            "2",
        );
    }

    // The queue drains to 1 (one replica's worth), then Prometheus dies: the signal is stale,
    // the controller reports it and holds — no scale-in however long it lasts.
    exporter.gauges.set(WAITING, "1");
    prom.wait_for(&format!("sum({WAITING})"), "1").await;
    prom.wait_for("sum(vllm:num_requests_running)", "6").await;
    prom.kill();
    let hold_start = wall_now();
    for k in 0..30 {
        tick(&mut ctl, hold_start.plus_secs(10.0 * k as f64)).await;
    }
    assert_eq!(
        group(&c).await.0,
        3,
        "stale signal: no scale-in across 300 s (> unneeded time)"
    );
    assert!(
        ctl.draining().next().is_none(),
        "stale signal: nothing drained"
    );
    assert_eq!(
        metric_line(
            &registry,
            "gpupool_signal_stale{pool=\"llama\",signal=\"waiting\"}"
        )
        .as_deref(),
        Some("gpupool_signal_stale{pool=\"llama\",signal=\"waiting\"} 1")
    );

    // Prometheus back: fresh again; 1 waiting → 1 replica, so two instances become unneeded.
    prom.restart().await;
    prom.wait_for(&format!("sum({WAITING})"), "1").await;
    prom.wait_for("sum(vllm:num_requests_running)", "6").await;
    let fresh = wall_now();
    let mut first_drain_at: Option<f64> = None;
    let mut k = 0;
    while first_drain_at.is_none() && k < 30 {
        let now = fresh.plus_secs(10.0 * k as f64);
        tick(&mut ctl, now).await;
        if ctl.draining().next().is_some() {
            first_drain_at = Some(now.secs_since(fresh));
        }
        k += 1;
    }
    assert_eq!(
        metric_line(
            &registry,
            "gpupool_signal_stale{pool=\"llama\",signal=\"waiting\"}"
        )
        .as_deref(),
        Some("gpupool_signal_stale{pool=\"llama\",signal=\"waiting\"} 0")
    );
    let first_drain_at = first_drain_at.expect("scale-in starts once the signal is fresh");
    assert!(
        first_drain_at >= 120.0,
        "scale-in waits the unneeded time, started after {first_drain_at} s"
    );

    // The drain deregisters the VM, then waits for its in-flight requests (2) to finish: the
    // instance stays in the group meanwhile.
    let mut draining: Vec<InstanceId> = ctl.draining().map(|(id, _)| id.clone()).collect();
    // Longer than the 30 s grace used when in-flight is unknown: only the metric holds them.
    let mut now = fresh.plus_secs(10.0 * k as f64);
    for _ in 0..6 {
        tick(&mut ctl, now).await;
        now = now.plus_secs(10.0);
    }
    let log = std::fs::read_to_string(&dereg_log).unwrap_or_default();
    for id in &draining {
        assert!(
            log.lines().any(|l| l == id.as_str()),
            "{id} deregistered before termination: {log:?}"
        );
    }
    assert_eq!(
        group(&c).await,
        (3, ids.clone()),
        "in-flight work keeps the VMs"
    );
    // Prometheus down mid-drain: in-flight unreadable is not "idle"; the drain waits.
    prom.kill();
    for _ in 0..6 {
        tick(&mut ctl, now).await;
        now = now.plus_secs(10.0);
    }
    assert_eq!(
        group(&c).await,
        (3, ids.clone()),
        "an unreadable in-flight metric keeps the VMs"
    );
    prom.restart().await;
    prom.wait_for("sum(vllm:num_requests_running)", "6").await;

    // In-flight reaches 0 → drained → terminated (TerminateInstanceInAutoScalingGroup with
    // decrement). The disruption budget (one at a time) drains the second unneeded VM after the
    // first; each goes through deregister + wait-for-idle.
    let mut terminated: Vec<String> = Vec::new();
    let mut running = 6;
    for _round in 0..2 {
        assert_eq!(draining.len(), 1, "budget: one drain at a time");
        let id = draining[0].to_string();
        exporter.gauges.set(
            &format!("vllm:num_requests_running{{instance_id=\"{id}\"}}"),
            "0",
        );
        running -= 2;
        prom.wait_for("sum(vllm:num_requests_running)", &running.to_string())
            .await;
        for _ in 0..5 {
            now = now.plus_secs(10.0);
            tick(&mut ctl, now).await;
            if !group(&c).await.1.contains(&id) {
                break;
            }
        }
        let (_, left) = group(&c).await;
        assert!(!left.contains(&id), "{id} terminated once idle: {left:?}");
        let log = std::fs::read_to_string(&dereg_log).unwrap_or_default();
        assert!(
            log.lines().any(|l| l == id),
            "{id} deregistered before termination"
        );
        terminated.push(id);
        if terminated.len() == 2 {
            break;
        }
        // The next unneeded VM: its drain starts within the unneeded time (its clock restarted
        // while Prometheus was down: a stale signal holds every scale-down decision).
        for _ in 0..15 {
            draining = ctl.draining().map(|(id, _)| id.clone()).collect();
            if !draining.is_empty() {
                break;
            }
            now = now.plus_secs(10.0);
            tick(&mut ctl, now).await;
        }
    }
    let (desired, left) = group(&c).await;
    assert_eq!(
        terminated.len(),
        2,
        "two idle VMs scaled in: {terminated:?}"
    );
    assert_eq!(
        desired, 1,
        "desired capacity decremented with each termination"
    );
    assert_eq!(left.len(), 1, "one VM left: {left:?}");
    assert!(ids.contains(&left[0]) && !terminated.contains(&left[0]));
    // A few more ticks at 1 waiting: nothing else happens.
    for _ in 0..3 {
        now = now.plus_secs(10.0);
        tick(&mut ctl, now).await;
    }
    assert_eq!(group(&c).await.0, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Four pools of one idle VM each, all unneeded (nothing waiting, `min_nodes: 0`):
/// - `a`: its in-flight gauge reads 0;
/// - `b`: its in-flight query has no series;
/// - `c`: its in-flight query's Prometheus is unreachable;
/// - `d`: in-flight 0, but its deregister command always fails.
///
/// Every VM that leaves its group must have been deregistered before (a, b and c all are: an
/// idle-looking VM is drained, never terminated directly), and `d` is never terminated while
/// registered — not at its drain deadline, not when its drain is given up after
/// `deregister_give_up_s` (counted in `gpupool_drains_abandoned_total`). With the old
/// behaviour (`is_empty()` reading unknown as 0, a direct ScaleDown of idle VMs, termination at
/// the drain deadline) a, b and c would leave without a deregistration and d would be
/// terminated at its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_vms_are_always_deregistered_first_and_a_failing_deregister_keeps_the_vm() {
    const POOLS: [&str; 4] = ["a", "b", "c", "d"];
    let moto = Moto::start();
    let c = moto.clients().await;
    for p in POOLS {
        c.group(GroupFixture {
            name: &format!("{p}-asg"),
            pool: Some(p),
            zones: &["us-east-1a"],
            max: 2,
            desired: 1,
            ..Default::default()
        })
        .await;
    }
    let ids: std::collections::BTreeMap<&str, String> = {
        let mut m = std::collections::BTreeMap::new();
        for p in POOLS {
            let (_, ids) = c.desired(&format!("{p}-asg")).await;
            assert_eq!(ids.len(), 1, "{p}: moto launched one VM");
            m.insert(p, ids[0].clone());
        }
        m
    };

    let exporter = Exporter::start().await;
    exporter.gauges.set(WAITING, "0");
    let running = |id: &str| format!("vllm:num_requests_running{{instance_id=\"{id}\"}}");
    exporter.gauges.set(&running(&ids["a"]), "0");
    exporter.gauges.set(&running(&ids["d"]), "0");
    let prom = Prometheus::start(exporter.addr).await;
    prom.wait_for(&format!("sum({WAITING})"), "0").await;
    prom.wait_for("count(vllm:num_requests_running)", "2").await;

    let dir = std::env::temp_dir().join(format!("gpupool-vmonly-idle-{}", moto.port));
    std::fs::create_dir_all(&dir).unwrap();
    let ok_log = dir.join("deregistered.log");
    let fail_log = dir.join("deregister-failed.log");
    let _ = std::fs::remove_file(&ok_log);
    let _ = std::fs::remove_file(&fail_log);
    // Nothing listens on port 1: connection refused, the in-flight count is unreadable.
    let unreachable = "http://127.0.0.1:1";
    let pool = |name: &str, in_flight_url: &str, dereg: String| {
        format!(
            r#"
  - name: {name}
    requirements: {{ gpu_models: [A10G] }}
    replica: {{ gpus: 1, replicas_per_instance: 1 }}
    limits: {{ min_nodes: 0, max_nodes: 2 }}
    scale_up: {{ cold_start_s: 60 }}
    disruption: {{ unneeded_time_s: 60, scale_down_delay_after_add_s: 0, drain_timeout_s: 60, max_provision_time_s: 600, deregister_give_up_s: 120 }}
    forecast: {{ enabled: false }}
    health_url: "http://{exporter}/health/{{ip}}"
    deregister_command: {dereg}
    in_flight_query:
      url: {in_flight_url}
      query: sum(vllm:num_requests_running{{instance_id="{{instance}}"}})
    signals:
      - name: waiting
        prometheus:
          url: {prom}
          query: sum(vllm:num_requests_waiting{{model_name="llama"}})
          target_per_replica: 5
          stale_after_s: 60
          timeout_s: 2
"#,
            exporter = exporter.addr,
            prom = prom.url,
        )
    };
    let ok = format!(
        r#"["sh", "-c", "echo \"$0\" >> {}", "{{id}}"]"#,
        ok_log.display()
    );
    let failing = format!(
        r#"["sh", "-c", "echo \"$0\" >> {}; exit 3", "{{id}}"]"#,
        fail_log.display()
    );
    let yaml = format!(
        "provider: aws\nmode: vm-only\ntick_interval_s: 10\naws:\n  region: us-east-1\n  endpoint_url: {}\npools:{}{}{}{}",
        moto.endpoint,
        pool("a", &prom.url, ok.clone()),
        pool("b", &prom.url, ok.clone()),
        pool("c", unreachable, ok.clone()),
        pool("d", &prom.url, failing),
    );
    let cfg = Arc::new(Config::load(&yaml).expect("test config is valid"));

    let provider: Arc<dyn NodeGroupProvider> =
        Arc::new(AwsProvider::new(moto.settings(&POOLS)).await.unwrap());
    let serving = Arc::new(ServingReplicas::default());
    let cluster = VmCluster::new(cfg.clone(), provider.clone())
        .unwrap()
        .with_serving(serving.clone());
    let demand = SignalDemand::new().unwrap().with_serving(serving.clone());
    let metrics = Arc::new(Metrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut ctl = Controller::new(
        cfg.clone(),
        provider,
        Box::new(cluster),
        Box::new(demand),
        metrics,
    );

    let in_group = |p: &str| {
        let c = &c;
        let name = format!("{p}-asg");
        async move { c.desired(&name).await.1 }
    };
    let log_has = |log: &std::path::Path, id: &str| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .any(|l| l == id)
    };
    let counter = |name: &str, pool: &str| -> u64 {
        metric_line(&registry, &format!("{name}{{pool=\"{pool}\"}}"))
            .and_then(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    };

    let start = wall_now();
    let mut gone: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
    // 10 s ticks: unneeded 60 s, then a, b and c drain (b waits its 30 s grace, c its 60 s
    // deadline); d's drain fails until it is given up 120 s later. 40 ticks bound it all.
    for k in 0..40 {
        let now = start.plus_secs(10.0 * f64::from(k));
        let r = ctl
            .tick(now)
            .await
            .unwrap_or_else(|e| panic!("tick: {}", gpupool::controller::error_chain(&e)));
        for a in &r.results {
            assert!(a.error.is_none(), "action failed: {a:?}");
        }
        for p in POOLS {
            let id = &ids[p];
            if gone.contains_key(p) || in_group(p).await.contains(id) {
                continue;
            }
            assert!(
                log_has(&ok_log, id),
                "pool {p}: {id} left its group without being deregistered first"
            );
            gone.insert(p, now.secs_since(start));
        }
        if ["a", "b", "c"].iter().all(|p| gone.contains_key(p))
            && counter("gpupool_drains_abandoned_total", "d") >= 1
        {
            break;
        }
    }
    for p in ["a", "b", "c"] {
        assert!(
            gone.contains_key(p),
            "pool {p}: its idle VM was scaled in: {gone:?}"
        );
    }
    // d: tried, failed, kept — past its drain deadline and after its drain was given up.
    assert!(
        log_has(&fail_log, &ids["d"]),
        "d's deregistration was tried"
    );
    assert!(!log_has(&ok_log, &ids["d"]));
    assert!(
        in_group("d").await.contains(&ids["d"]),
        "a VM that could not be deregistered is never terminated"
    );
    assert!(!gone.contains_key("d"));
    assert!(counter("gpupool_deregister_failures_total", "d") >= 2);
    assert_eq!(counter("gpupool_drains_abandoned_total", "d"), 1);
    for p in ["a", "b", "c"] {
        assert_eq!(counter("gpupool_deregister_failures_total", p), 0, "{p}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
