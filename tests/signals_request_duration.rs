//! `disruption.request_duration_query` against a real Prometheus scraping a synthetic vLLM-style
//! end-to-end latency histogram (`vllm:e2e_request_latency_seconds`): the README's query reads
//! the upper bound of the bucket holding the longest request, an hour without requests (NaN)
//! and a dead Prometheus read unknown, and a request beyond the largest finite bucket reads
//! that bound — short, as the README warns.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines

mod signals_harness;

use gpupool::config::Config;
use gpupool::controller::DemandSource;
use gpupool::model::{PoolName, RequestDuration};
use gpupool::signals::SignalDemand;
use signals_harness::{Exporter, Prometheus, wall_now};

const BUCKET: &str = "vllm:e2e_request_latency_seconds_bucket";
/// The README's query.
const QUERY: &str =
    "histogram_quantile(1, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket[1h])))";
const BOUNDS: [&str; 7] = ["10", "20", "30", "40", "50", "60", "+Inf"];

/// Cumulative bucket counts, in `BOUNDS` order.
fn set_buckets(exporter: &Exporter, counts: [u32; 7]) {
    for (le, n) in BOUNDS.iter().zip(counts) {
        exporter
            .gauges
            .set(&format!("{BUCKET}{{le=\"{le}\"}}"), &n.to_string());
    }
}

fn config(prom: &str) -> Config {
    Config::load(&format!(
        "pools:\n  - name: llama\n    requirements: {{}}\n    disruption:\n      request_duration_query: {{ url: \"{prom}\", query: \"{QUERY}\", window_s: 3600, stale_after_s: 60, timeout_s: 2 }}\n"
    ))
    .expect("test config is valid")
}

async fn longest(d: &mut SignalDemand, cfg: &Config) -> Option<RequestDuration> {
    d.read(cfg, wall_now())
        .await
        .remove(&PoolName::from("llama"))
        .expect("pool read")
        .request_duration
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_request_is_read_from_the_latency_histogram_and_unknown_is_never_zero() {
    let exporter = Exporter::start().await;
    set_buckets(&exporter, [0; 7]);
    let mut prom = Prometheus::start(exporter.addr).await;
    let cfg = config(&prom.url);
    let mut demand = SignalDemand::new().unwrap();

    // No request in the window: the quantile of nothing is NaN — unknown, not zero.
    prom.wait_for(QUERY, "NaN").await;
    assert_eq!(longest(&mut demand, &cfg).await, None);

    // Five requests, the longest in (40, 50]: φ = 1 reads that bucket's upper bound, 50 s.
    set_buckets(&exporter, [2, 2, 4, 4, 5, 5, 5]);
    prom.wait_for(QUERY, "50").await;
    assert_eq!(
        longest(&mut demand, &cfg).await,
        Some(RequestDuration {
            longest_s: 50.0,
            window_s: 3600
        })
    );

    // One request longer than the largest finite bound (60 s) lands in +Inf: Prometheus
    // returns that bound, which is short of the request.
    set_buckets(&exporter, [2, 2, 4, 4, 5, 5, 6]);
    prom.wait_for(QUERY, "60").await;
    assert_eq!(
        longest(&mut demand, &cfg).await.map(|d| d.longest_s),
        Some(60.0)
    );

    // Prometheus gone: unknown.
    prom.kill();
    assert_eq!(longest(&mut demand, &cfg).await, None);
}
