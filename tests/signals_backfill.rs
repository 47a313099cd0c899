//! The SLO learner's backfill from a real Prometheus: `SignalDemand::demand_history` reads a
//! pool's Prometheus signals over the last hours with range queries, and a controller whose
//! learner has no history starts on the learnt basis at its first tick, not the prior.
//!
//! Prometheus is given three hours of history without waiting for it: the test writes an
//! OpenMetrics file of one gauge sampled every 10 s up to now, turns it into TSDB blocks with
//! `promtool tsdb create-blocks-from openmetrics` and only then starts Prometheus on that data
//! directory. The storage docs' caveat — "it is not safe to backfill data from the last 3 hours
//! (the current head block) as this time range may overlap with the current head block
//! Prometheus is still mutating" (<https://prometheus.io/docs/prometheus/latest/storage/>,
//! "Backfilling from OpenMetrics format") — is about a *running* server: here no Prometheus
//! runs on the directory while the blocks are written, its head starts empty, and promtool
//! (2.42, Debian bookworm) writes blocks right up to now.
#![allow(clippy::disallowed_methods)] // test code waits on a real service against wall-clock deadlines

mod signals_harness;

use gpupool::config::Config;
use gpupool::controller::{Controller, DemandSource, Metrics};
use gpupool::model::{HeadroomBasis, PoolName, Timestamp};
use gpupool::planner::headroom::BackfillWindow;
use gpupool::signals::SignalDemand;
use gpupool::testkit::doubles::{MemCluster, MemProvider};
use signals_harness::{poll, wall_now};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The gauge's sample interval, and the controller's tick (one backfill point per tick).
const STEP_S: i64 = 10;
/// How much history Prometheus holds.
const HISTORY_S: i64 = 3 * 3600;
/// The gauge steps up every half hour: its level per segment, oldest first …
const SEGMENT_S: i64 = 1800;
const LEVELS: [f64; 6] = [2.0, 10.0, 17.0, 24.0, 31.0, 38.0];
/// … and the replicas KEDA makes of each with `target_per_replica: 5, activation: 2`:
/// 2 is not above the activation (0), then ceil(10/5), ceil(17/5), ….
const REPLICAS: [u32; 6] = [0, 2, 4, 5, 7, 8];
/// One sample (in the third segment) is `NaN`: the point it answers is unknown.
const NAN_AT_S: i64 = 2 * SEGMENT_S + 500;
/// Prometheus' default `--query.lookback-delta` (5 m): an evaluation finds the newest sample
/// at most this old.
const LOOKBACK_S: i64 = 300;

const LLAMA: &str = r#"waiting{model="llama"}"#;

/// The samples' times: `first_s + k·STEP_S` up to `last_s`.
struct History {
    first_s: i64,
    last_s: i64,
}

impl History {
    /// Ending at the last 10-s mark at or before `now`.
    fn before(now: Timestamp) -> History {
        let last_s = now.millis().div_euclid(1000 * STEP_S) * STEP_S;
        History {
            first_s: last_s - HISTORY_S + STEP_S,
            last_s,
        }
    }

    fn value(&self, sample_s: i64) -> f64 {
        let offset = sample_s - self.first_s;
        if offset == NAN_AT_S {
            return f64::NAN;
        }
        LEVELS[(offset / SEGMENT_S) as usize]
    }

    /// `llama` as specified, and a second series of the same gauge (`other`, constant).
    fn openmetrics(&self) -> String {
        let mut out = String::from("# HELP waiting Requests waiting.\n# TYPE waiting gauge\n");
        for (model, other) in [("llama", false), ("other", true)] {
            for t in (self.first_s..=self.last_s).step_by(STEP_S as usize) {
                let v = if other { 1.0 } else { self.value(t) };
                let v = if v.is_nan() {
                    "NaN".to_owned()
                } else {
                    v.to_string()
                };
                out.push_str(&format!("waiting{{model=\"{model}\"}} {v} {t}\n"));
            }
        }
        out.push_str("# EOF\n");
        out
    }

    /// The replicas a range query of `llama` at `t` yields: the newest sample at or before
    /// `t` within the lookback, through KEDA; `None` before the history or at the NaN.
    fn expected_at(&self, t: Timestamp) -> Option<u32> {
        let t_ms = t.millis();
        if t_ms < self.first_s * 1000 {
            return None;
        }
        let sample_s = (t_ms.div_euclid(1000 * STEP_S) * STEP_S).min(self.last_s);
        if t_ms - sample_s * 1000 > LOOKBACK_S * 1000 || self.value(sample_s).is_nan() {
            return None;
        }
        Some(REPLICAS[((sample_s - self.first_s) / SEGMENT_S) as usize])
    }
}

fn temp_dir() -> PathBuf {
    // The tests of this file run in parallel: a counter keeps their directories apart.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!(
        "gpupool-backfill-{}-{}-{n}",
        std::process::id(),
        wall_now().millis()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

const MISSING: &str = "the Debian package `prometheus` (binaries `prometheus` and `promtool`) \
                       must be installed: run tests/run.sh, which installs it";

/// A real Prometheus serving the blocks written from `openmetrics`; stopped when dropped.
struct HistoryPrometheus {
    url: String,
    child: Child,
    dir: PathBuf,
}

impl HistoryPrometheus {
    async fn start(openmetrics: &str) -> HistoryPrometheus {
        let dir = temp_dir();
        let input = dir.join("history.om");
        std::fs::write(&input, openmetrics).unwrap();
        let data = dir.join("data");
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&data)
            .output()
            .unwrap_or_else(|e| panic!("promtool: {e}; {MISSING}"));
        assert!(
            out.status.success(),
            "promtool create-blocks-from failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(
            dir.join("prometheus.yml"),
            "global:\n  scrape_interval: 15s\n",
        )
        .unwrap();
        let port = gpupool::testkit::free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("prometheus: {e}; {MISSING}"));
        let mut p = HistoryPrometheus {
            url: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        p.wait_ready().await;
        p
    }

    async fn wait_ready(&mut self) {
        let ready = format!("{}/-/ready", self.url);
        let log = self.dir.join("prometheus.log");
        let child = &mut self.child;
        poll(Duration::from_secs(60), "prometheus ready", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("prometheus exited ({status}): {}", tail(&log));
            }
            let ready = ready.clone();
            async move { matches!(reqwest::get(&ready).await, Ok(r) if r.status().is_success()) }
        })
        .await;
    }
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    s.lines().rev().take(20).collect::<Vec<_>>().join("\n")
}

impl Drop for HistoryPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One pool `p` with `signals` (YAML list items, indented for the pool) and an `slo`.
fn config(signals: &str) -> Config {
    Config::load(&format!(
        "tick_interval_s: {STEP_S}\naws: {{ region: us-east-1 }}\npools:\n  - name: p\n    requirements: {{}}\n    replica: {{ replicas_per_instance: 1 }}\n    limits: {{ max_nodes: 20 }}\n    slo: {{ queue_wait_s: 1.0, attainment: 0.99 }}\n    signals:\n{signals}"
    ))
    .expect("test config is valid")
}

fn prometheus_signal(name: &str, url: &str, query: &str) -> String {
    format!(
        "      - name: {name}\n        prometheus: {{ url: \"{url}\", query: '{query}', target_per_replica: 5, activation: 2, timeout_s: 5 }}\n"
    )
}

async fn history(cfg: &Config, now: Timestamp) -> Vec<(Timestamp, u32)> {
    let window = BackfillWindow::before(now, cfg.tick_interval);
    SignalDemand::new()
        .unwrap()
        .demand_history(cfg, &cfg.pools[0], window)
        .await
}

/// A Prometheus holding [`HISTORY_S`] of history up to now, and that history.
async fn history_prometheus() -> (Timestamp, History, HistoryPrometheus) {
    let now = wall_now();
    let h = History::before(now);
    let prom = HistoryPrometheus::start(&h.openmetrics()).await;
    (now, h, prom)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_reads_the_prometheus_signals_past() {
    let (now, h, prom) = history_prometheus().await;
    let url = prom.url.as_str();

    // (a) One Prometheus signal: one point per 10-s step of the last 6 h where Prometheus
    // knows the value, KEDA applied; nothing before the 3 h of history (unknown, not zero)
    // and nothing at the NaN sample.
    let cfg = config(&prometheus_signal("waiting", url, LLAMA));
    let window = BackfillWindow::before(now, cfg.tick_interval);
    assert_eq!(window.step, Duration::from_secs(STEP_S as u64));
    let want: Vec<(Timestamp, u32)> = window
        .times()
        .filter_map(|t| h.expected_at(t).map(|r| (t, r)))
        .collect();
    let got = history(&cfg, now).await;
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    assert!(got.len() > 1000, "about 3 h at 10 s: {}", got.len());
    assert!(got.first().unwrap().0.millis() >= h.first_s * 1000);
    let levels: std::collections::BTreeSet<u32> = got.iter().map(|&(_, r)| r).collect();
    assert_eq!(levels.into_iter().collect::<Vec<_>>(), REPLICAS.to_vec());
    let nan_s = h.first_s + NAN_AT_S;
    assert!(
        !got.iter()
            .any(|&(t, _)| t.millis().div_euclid(1000 * STEP_S) * STEP_S == nan_s),
        "the point answered by the NaN sample is unknown"
    );

    // Two Prometheus signals: a point is the larger of the two; `other` (1 waiting) is never
    // active (activation 2), so the pool's past is `llama`'s.
    let two = config(&format!(
        "{}{}",
        prometheus_signal("waiting", url, LLAMA),
        prometheus_signal("other", url, r#"waiting{model="other"}"#)
    ));
    assert_eq!(history(&two, now).await, want);
    // A second signal that is 5 replicas above: ceil((v + 25)/5) wins everywhere it is known.
    let above = config(&format!(
        "{}{}",
        prometheus_signal("waiting", url, LLAMA),
        prometheus_signal("plus", url, r#"waiting{model="llama"} + 25"#)
    ));
    let plus = history(&above, now).await;
    assert_eq!(plus.len(), want.len());
    assert!(
        plus.iter().zip(&want).all(|(p, w)| p.0 == w.0 && p.1 > w.1),
        "{:?}",
        &plus[..3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sources_and_failed_queries_leave_the_past_unknown() {
    let (now, _, prom) = history_prometheus().await;
    let url = prom.url.as_str();
    // The pool's one Prometheus signal alone has a past …
    assert!(
        !history(&config(&prometheus_signal("waiting", url, LLAMA)), now)
            .await
            .is_empty()
    );

    // (b) … but a pool with a signal whose past is not read (cron, SQS, latency): nothing known,
    // even though its Prometheus signal has history.
    let cron = "      - name: office\n        cron: { start: \"0 0 8 * * *\", end: \"0 0 18 * * *\", desired: 3, timezone: UTC }\n";
    let sqs = "      - name: queue\n        sqs: { queue_url: \"https://sqs.us-east-1.amazonaws.com/123456789012/q\", target_per_replica: 5 }\n";
    let latency = format!(
        "      - name: ttft\n        latency: {{ url: \"{url}\", query: '{LLAMA}', target: 1.0 }}\n"
    );
    for other in [cron, sqs, latency.as_str()] {
        let cfg = config(&format!(
            "{}{other}",
            prometheus_signal("waiting", url, LLAMA)
        ));
        assert_eq!(history(&cfg, now).await, vec![], "{other}");
    }

    // (c) A query that fails — nothing listening, several series — leaves everything unknown,
    // even when another signal of the pool answered.
    let dead = format!("http://127.0.0.1:{}", gpupool::testkit::free_port());
    for failing in [
        prometheus_signal("dead", &dead, LLAMA),
        prometheus_signal("unaggregated", url, "waiting"),
        prometheus_signal("bad", url, "sum(("),
    ] {
        let alone = config(&failing);
        assert_eq!(history(&alone, now).await, vec![], "{failing}");
        let with_good = config(&format!(
            "{}{failing}",
            prometheus_signal("waiting", url, LLAMA)
        ));
        assert_eq!(history(&with_good, now).await, vec![], "{failing}");
    }
    // A series that does not exist: no point known.
    let absent = config(&prometheus_signal(
        "absent",
        url,
        r#"waiting{model="absent"}"#,
    ));
    assert_eq!(history(&absent, now).await, vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controllers_first_tick_plans_on_the_learnt_basis() {
    let (_, _, prom) = history_prometheus().await;
    let url = prom.url.as_str();
    // (d) End to end: a controller whose learner has no history backfills it at its first
    // tick and plans on the learnt basis; the same controller over a signal without history
    // stays on the prior.
    for (query, basis) in [
        (LLAMA, HeadroomBasis::Learned),
        (r#"waiting{model="absent"}"#, HeadroomBasis::Prior),
    ] {
        let cfg = config(&prometheus_signal("waiting", url, query));
        let mut ctl = Controller::new(
            Arc::new(cfg),
            Arc::new(MemProvider::default()),
            Box::new(MemCluster {
                drain_ticks: 1,
                drain_calls: BTreeMap::new(),
            }),
            Box::new(SignalDemand::new().unwrap()),
            Arc::new(Metrics::default()),
        );
        let report = ctl.tick(wall_now()).await.expect("tick");
        let plan = report.plan().expect("a plan");
        let pool = plan
            .pools
            .iter()
            .find(|p| p.pool == PoolName::from("p"))
            .expect("pool p planned");
        let hr = pool.headroom_running.as_ref().expect("an slo pool");
        assert_eq!(hr.basis, basis, "{query}: {hr:?}");
    }
}

/// A loopback front end (as a Mimir or Thanos gateway is) answering range queries under the
/// path prefix `/prom` only with `Authorization: Bearer gpupool` and `X-Scope-OrgID:
/// tenant-1` — 401 otherwise — with the value 12 at every step from `start` to `end`.
async fn gated_range_api() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use axum::extract::Query;
    use axum::http::{HeaderMap, StatusCode};
    let app = axum::Router::new().route(
        "/prom/api/v1/query_range",
        axum::routing::get(
            |headers: HeaderMap, Query(q): Query<BTreeMap<String, String>>| async move {
                let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
                if h("authorization") != "Bearer gpupool" || h("x-scope-orgid") != "tenant-1" {
                    return (StatusCode::UNAUTHORIZED, "unauthorized".to_owned());
                }
                let num = |k: &str| q.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap();
                let (start, end, step) = (num("start"), num("end"), num("step"));
                let mut values = Vec::new();
                let mut t = start;
                while t <= end {
                    values.push(format!("[{t:.3},\"12\"]"));
                    t += step;
                }
                let body = format!(
                    r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{}},"values":[{}]}}]}}}}"#,
                    values.join(",")
                );
                (StatusCode::OK, body)
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, server)
}

/// The range query goes through the signal's endpoint as the live read does: its path
/// prefix, credential and headers; a refused credential leaves the past unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_queries_use_the_signals_prefix_credential_and_headers() {
    let (addr, server) = gated_range_api().await;
    let signal = |url: &str, access: &str| {
        config(&format!(
            "      - name: waiting\n        prometheus:\n          url: {url}\n          query: sum(queue)\n          target_per_replica: 5\n          timeout_s: 2\n{access}"
        ))
    };
    // CARGO_PKG_NAME is set for every test run: the token is `gpupool`.
    let access = "          auth: { bearer_token_env: CARGO_PKG_NAME }\n          headers: { X-Scope-OrgID: tenant-1 }\n";
    let now = wall_now();
    let window = BackfillWindow::before(now, Duration::from_secs(STEP_S as u64));
    // Every step of the window, ceil(12 / 5) = 3; `end` itself (Prometheus includes it) is
    // not in `[from, to)`.
    let want: Vec<(Timestamp, u32)> = window.times().map(|t| (t, 3)).collect();
    assert_eq!(want.len(), 2160);
    let gated = signal(&format!("http://{addr}/prom"), access);
    assert_eq!(history(&gated, now).await, want);
    let refused = signal(
        &format!("http://{addr}/prom"),
        "          headers: { X-Scope-OrgID: tenant-1 }\n",
    );
    assert_eq!(history(&refused, now).await, vec![]);
    let no_prefix = signal(&format!("http://{addr}"), access);
    assert_eq!(history(&no_prefix, now).await, vec![]);
    server.abort();
}
