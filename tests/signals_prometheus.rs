//! `SignalDemand` against a real Prometheus scraping a synthetic inference exporter.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines

mod signals_harness;

use gpupool::config::Config;
use gpupool::controller::DemandSource;
use gpupool::model::{PoolDemand, PoolName};
use gpupool::signals::{ServingReplicas, SignalDemand};
use signals_harness::{Exporter, Prometheus, wall_now};
use std::sync::Arc;

const WAITING: &str = "vllm:num_requests_waiting{model_name=\"llama\"}";
const TTFT: &str = "vllm:ttft_p95_seconds{model_name=\"llama\"}";

fn config(prom: &str) -> Config {
    Config::load(&format!(
        r#"
mode: vm-only
pools:
  - name: llama
    requirements: {{}}
    replica: {{ replicas_per_instance: 1 }}
    limits: {{ max_nodes: 50 }}
    signals:
      - name: waiting
        prometheus:
          url: {prom}
          query: sum(vllm:num_requests_waiting{{model_name="llama"}})
          target_per_replica: 5
          activation: 2
          stale_after_s: 30
          timeout_s: 2
      - name: ttft
        latency:
          url: {prom}
          query: max(vllm:ttft_p95_seconds{{model_name="llama"}})
          target: 1.0
          timeout_s: 2
      - name: absent
        prometheus:
          url: {prom}
          query: sum(vllm:num_requests_waiting{{model_name="no-such-model"}})
          target_per_replica: 5
          timeout_s: 2
"#
    ))
    .expect("test config is valid")
}

async fn read(d: &mut SignalDemand, cfg: &Config) -> PoolDemand {
    d.read(cfg, wall_now())
        .await
        .remove(&PoolName::from("llama"))
        .expect("pool read")
}

fn reading<'a>(p: &'a PoolDemand, name: &str) -> &'a gpupool::model::SignalReading {
    p.readings
        .iter()
        .find(|r| r.name == name)
        .expect("reading present")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_metric_drives_replicas_and_failures_read_stale() {
    let exporter = Exporter::start().await;
    exporter.gauges.set(WAITING, "0");
    exporter.gauges.set(TTFT, "0.5");
    let mut prom = Prometheus::start(exporter.addr).await;
    prom.wait_for(&format!("sum({WAITING})"), "0").await;

    let cfg = config(&prom.url);
    let serving = Arc::new(ServingReplicas::default());
    let mut demand = SignalDemand::new().unwrap().with_serving(serving.clone());

    // Idle queue: fresh, asks for zero; the latency guard-rail under target asks nothing.
    let d = read(&mut demand, &cfg).await;
    assert_eq!(reading(&d, "waiting").replicas, Some(0));
    assert!(!reading(&d, "waiting").stale);
    assert!(!reading(&d, "ttft").stale);
    assert_eq!(reading(&d, "ttft").replicas, None);
    // An empty vector (no such series) is stale and never lowers demand.
    assert!(reading(&d, "absent").stale, "{d:#?}");
    assert_eq!(d.replicas_now, Some(0));

    // KEDA activation: 2 waiting is not above activation 2 → a pool at zero stays at zero.
    exporter.gauges.set(WAITING, "2");
    prom.wait_for(&format!("sum({WAITING})"), "2").await;
    assert_eq!(read(&mut demand, &cfg).await.replicas_now, Some(0));

    // Rising queue → rising replicas: ceil(12/5) = 3, then ceil(31/5) = 7.
    let mut seen = Vec::new();
    for (waiting, want) in [("12", 3), ("31", 7)] {
        exporter.gauges.set(WAITING, waiting);
        prom.wait_for(&format!("sum({WAITING})"), waiting).await;
        let d = read(&mut demand, &cfg).await;
        assert_eq!(reading(&d, "waiting").value, Some(waiting.parse().unwrap()));
        assert_eq!(d.replicas_now, Some(want), "{d:#?}");
        assert!(
            d.replicas_forecast.unwrap() >= want,
            "forecast never below now"
        );
        seen.push(d.replicas_now.unwrap());
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");

    // Latency 3× over target with 4 replicas serving → ceil(4 × 3.0 / 1.0) = 12 wins the max.
    serving.set(&PoolName::from("llama"), 4);
    exporter.gauges.set(TTFT, "3");
    prom.wait_for(&format!("max({TTFT})"), "3").await;
    let d = read(&mut demand, &cfg).await;
    assert_eq!(reading(&d, "ttft").replicas, Some(12));
    assert_eq!(d.replicas_now, Some(12));

    // NaN from the exporter → stale, no replicas from that signal.
    exporter.gauges.set(WAITING, "NaN");
    prom.wait_for(&format!("sum({WAITING})"), "NaN").await;
    let d = read(&mut demand, &cfg).await;
    assert!(reading(&d, "waiting").stale);
    assert_eq!(reading(&d, "waiting").replicas, None);

    // Prometheus gone → every Prometheus signal stale; with no fresh signal, no demand figure.
    prom.kill();
    let d = read(&mut demand, &cfg).await;
    assert_eq!(d.stale_signals(), vec!["waiting", "ttft", "absent"]);
    assert_eq!(d.replicas_now, None);
    assert_eq!(d.replicas_forecast, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_makes_the_reading_stale() {
    // A server that accepts and never answers: the signal's timeout_s bounds the read.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        loop {
            if let Ok((c, _)) = listener.accept().await {
                conns.push(c);
            }
        }
    });
    let cfg = Config::load(&format!(
        "mode: vm-only\npools:\n  - name: llama\n    requirements: {{}}\n    signals:\n      - name: waiting\n        prometheus: {{ url: \"http://{addr}\", query: up, target_per_replica: 1, timeout_s: 1 }}\n"
    ))
    .unwrap();
    let mut demand = SignalDemand::new().unwrap();
    let d = demand.read(&cfg, wall_now()).await;
    let r = &d[&PoolName::from("llama")].readings[0];
    assert!(r.stale && r.replicas.is_none(), "{r:?}");
    hold.abort();
}

/// A Prometheus (or a proxy in front of one) answering with numbers out of range: the reading
/// is stale — never a panic, never a fresh value from a timestamp that cannot be — and a
/// sane answer from the same endpoint is read again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_answers_read_stale_without_a_panic() {
    let body = Arc::new(std::sync::Mutex::new(String::new()));
    let served = body.clone();
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(move || {
            let b = served.lock().unwrap().clone();
            async move { ([("content-type", "application/json")], b) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let cfg = Config::load(&format!(
        "mode: vm-only\npools:\n  - name: llama\n    requirements: {{}}\n    signals:\n      - name: waiting\n        prometheus: {{ url: \"http://{addr}\", query: up, target_per_replica: 1, stale_after_s: 60, timeout_s: 2 }}\n"
    ))
    .unwrap();
    let mut demand = SignalDemand::new().unwrap();
    let now = wall_now();
    let answer = |ts: &str, v: &str| {
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[{ts},"{v}"]}}]}}}}"#
        )
    };
    let ahead = format!("{:.3}", now.plus_secs(7200.0).secs_f64());
    for (ts, v) in [
        ("-1e300", "3"),
        ("1e300", "3"),
        ("-1", "3"),
        (ahead.as_str(), "3"),
        ("1e999", "3"),
    ] {
        *body.lock().unwrap() = answer(ts, v);
        let d = demand.read(&cfg, now).await;
        let r = &d[&PoolName::from("llama")].readings[0];
        assert!(r.stale && r.replicas.is_none(), "timestamp {ts}: {r:?}");
    }
    let sane = format!("{:.3}", now.secs_f64());
    *body.lock().unwrap() = answer(&sane, "3");
    let d = demand.read(&cfg, now).await;
    let r = &d[&PoolName::from("llama")].readings[0];
    assert_eq!((r.stale, r.replicas), (false, Some(3)), "{r:?}");
    server.abort();
}
