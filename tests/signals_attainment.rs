//! `slo.attainment_query` against a real Prometheus scraping a synthetic vLLM-style queue-time
//! histogram (`vllm:request_queue_time_seconds`): with a `count_query`, a reading covering
//! fewer than `1 / (1 − attainment)` requests, or whose count is not known, is unknown — the
//! simulator's rule, which the README states for both — and enough requests read the
//! fraction; without one every fresh fraction counts; a dead Prometheus reads unknown.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines

mod signals_harness;

use gpupool::config::Config;
use gpupool::controller::DemandSource;
use gpupool::model::PoolName;
use gpupool::signals::SignalDemand;
use signals_harness::{Exporter, Prometheus, wall_now};

const MET: &str = "vllm:request_queue_time_seconds_bucket{le=\"1.0\"}";
const COUNT: &str = "vllm:request_queue_time_seconds_count";
/// The fraction met. The README's query takes `rate(…[10m])` of both counters; the ratio of
/// the raw counters keeps this test's figures exact (what is tested is how gpupool reads the
/// answers, not PromQL's rate).
const QUERY: &str = "sum(vllm:request_queue_time_seconds_bucket{le=\"1.0\"}) / sum(vllm:request_queue_time_seconds_count)";
const COUNT_QUERY: &str = "sum(vllm:request_queue_time_seconds_count)";

fn config(prom: &str, count_query: Option<&str>) -> Config {
    let count = count_query.map_or(String::new(), |c| format!(", count_query: '{c}'"));
    Config::load(&format!(
        "pools:\n  - name: llama\n    requirements: {{}}\n    slo:\n      queue_wait_s: 1.0\n      attainment: 0.99\n      attainment_query: {{ url: \"{prom}\", query: '{QUERY}', window_s: 600, stale_after_s: 60, timeout_s: 2{count} }}\n"
    ))
    .expect("test config is valid")
}

fn set(exporter: &Exporter, met: u32, total: u32) {
    exporter.gauges.set(MET, &met.to_string());
    exporter.gauges.set(COUNT, &total.to_string());
}

async fn attainment(d: &mut SignalDemand, cfg: &Config) -> Option<f64> {
    d.read(cfg, wall_now())
        .await
        .remove(&PoolName::from("llama"))
        .expect("pool read")
        .slo_attainment
        .map(|a| a.fraction)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_counts_only_with_enough_requests_and_unknown_is_never_met() {
    let exporter = Exporter::start().await;
    let mut prom = Prometheus::start(exporter.addr).await;
    let counted = config(&prom.url, Some(COUNT_QUERY));
    let uncounted = config(&prom.url, None);
    // A count query naming a series nobody exports: empty result, count unknown.
    let absent = config(&prom.url, Some("sum(no_such_series_total)"));
    let mut demand = SignalDemand::new().unwrap();

    // 3 requests, 2 in time: 66.7 %. With a 99 % target that is 3 of the 100 it takes to see
    // one miss in the tail: unknown. Without a count the fraction is all there is.
    set(&exporter, 2, 3);
    prom.wait_for(COUNT_QUERY, "3").await;
    assert_eq!(attainment(&mut demand, &counted).await, None);
    let v = attainment(&mut demand, &uncounted).await.unwrap();
    assert!((v - 2.0 / 3.0).abs() < 1e-9, "{v}");

    // 99 requests: still one short of 100.
    set(&exporter, 95, 99);
    prom.wait_for(COUNT_QUERY, "99").await;
    assert_eq!(attainment(&mut demand, &counted).await, None);

    // 200 requests, 190 in time: 95 %, known.
    set(&exporter, 190, 200);
    prom.wait_for(COUNT_QUERY, "200").await;
    assert_eq!(attainment(&mut demand, &counted).await, Some(0.95));

    // The count cannot be read: the reading is unknown, not taken on trust.
    assert_eq!(attainment(&mut demand, &absent).await, None);

    // Prometheus gone: unknown with or without a count.
    prom.kill();
    assert_eq!(attainment(&mut demand, &counted).await, None);
    assert_eq!(attainment(&mut demand, &uncounted).await, None);
}
