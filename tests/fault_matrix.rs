//! The fault matrix of issue #14, the cases no other test covers: each test prints one row per
//! case, `FAULT-ROW | case | what must hold | what happened`, and asserts what must hold.
//! `tests/faults.sh` runs these together with the existing tests that cover the other cases
//! and prints the table. Run with `cargo test --features aws --test fault_matrix`.
//!
//! Everything runs on 127.0.0.1: moto, the AWS fault proxy (tests/support/aws_fault_proxy.rs),
//! a fake Prometheus, and for the crash cases the real `gpupool` binary, killed with SIGKILL.
#![allow(clippy::disallowed_methods)] // test code waits on real services against wall-clock deadlines
#![cfg(feature = "aws")]

#[path = "support/aws_fault_proxy.rs"]
mod aws_fault_proxy;
#[path = "support/markers.rs"]
mod markers;
#[path = "support/moto.rs"]
mod moto;

use gpupool::config::Config;
use gpupool::controller::{Controller, DemandSource, Metrics};
use gpupool::model::{PoolName, SignalReading};
use gpupool::signals::SignalDemand;
use gpupool::testkit::doubles::{FixedDemand, ServeEveryReady};
use gpupool_aws::AwsProvider;
use gpupool_provider::NodeGroupProvider;
use moto::{GroupFixture, Moto};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn row(case: &str, must: &str, happened: &str) {
    println!("FAULT-ROW | {case} | {must} | {happened}");
}

// ---- Prometheus -------------------------------------------------------------------------

/// What the fake Prometheus does for the next query.
#[derive(Clone)]
enum Answer {
    Body(u16, String),
    Hang,
}

async fn fake_prometheus(answer: Arc<Mutex<Answer>>) -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(move || {
            let a = answer.lock().unwrap().clone();
            async move {
                match a {
                    Answer::Body(status, body) => (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        [("content-type", "application/json")],
                        body,
                    ),
                    Answer::Hang => std::future::pending().await,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn vector(ts: f64, v: &str) -> String {
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[{ts},"{v}"]}}]}}}}"#
    )
}

fn prom_config(url: &str) -> Config {
    Config::load(&format!(
        "mode: vm-only\npools:\n  - name: llama\n    requirements: {{}}\n    signals:\n      - name: waiting\n        prometheus: {{ url: \"{url}\", query: up, target_per_replica: 1, stale_after_s: 60, timeout_s: 1 }}\n"
    ))
    .unwrap()
}

async fn read_one(demand: &mut SignalDemand, cfg: &Config) -> SignalReading {
    let d = demand.read(cfg, gpupool::server::wall_clock()).await;
    d[&PoolName::from("llama")].readings[0].clone()
}

/// Every bad answer reads stale (which holds scale-down: a stale signal never lowers demand),
/// without a panic, and a sane answer afterwards is fresh at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_bad_answers_read_stale() {
    let answer = Arc::new(Mutex::new(Answer::Body(200, String::new())));
    let addr = fake_prometheus(answer.clone()).await;
    let cfg = prom_config(&format!("http://{addr}"));
    let mut demand = SignalDemand::new().unwrap();
    let now = gpupool::server::wall_clock().secs_f64();
    let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.to_string();
    let error = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#.to_string();
    let cases: Vec<(&str, Answer)> = vec![
        ("Prometheus: NaN", Answer::Body(200, vector(now, "NaN"))),
        ("Prometheus: +Inf", Answer::Body(200, vector(now, "+Inf"))),
        ("Prometheus: -Inf", Answer::Body(200, vector(now, "-Inf"))),
        ("Prometheus: empty result", Answer::Body(200, empty)),
        ("Prometheus: status error", Answer::Body(400, error)),
        ("Prometheus: HTTP 500", Answer::Body(500, "oops".into())),
        (
            "Prometheus: garbage body",
            Answer::Body(200, "\u{0}<html>garbage".into()),
        ),
        (
            "Prometheus: old sample (1 h)",
            Answer::Body(200, vector(now - 3600.0, "5")),
        ),
        (
            "Prometheus: timestamp -1e300",
            Answer::Body(200, vector(-1e300, "5")),
        ),
        ("Prometheus: hang", Answer::Hang),
    ];
    for (case, a) in cases {
        *answer.lock().unwrap() = a;
        let r = read_one(&mut demand, &cfg).await;
        assert!(r.stale && r.replicas.is_none(), "{case}: {r:?}");
        *answer.lock().unwrap() = Answer::Body(200, vector(now, "3"));
        let again = read_one(&mut demand, &cfg).await;
        assert_eq!(
            (again.stale, again.replicas),
            (false, Some(3)),
            "{case}: {again:?}"
        );
        row(
            case,
            "signal stale (scale-down held), no panic; fresh again at the next sane answer",
            "stale, no replicas; next read fresh (3)",
        );
    }
    // Refused: nothing listens on the port any more.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r = read_one(&mut demand, &prom_config(&format!("http://{closed}"))).await;
    assert!(r.stale && r.replicas.is_none(), "{r:?}");
    row(
        "Prometheus: connection refused",
        "signal stale (scale-down held), no panic",
        "stale, no replicas",
    );
}

// ---- AWS behind the fault proxy -----------------------------------------------------------

/// A moto with one spot group `llama-spot`, a proxy in front, and a controller on it.
struct Rig {
    moto: Moto,
    proxy: aws_fault_proxy::FaultProxy,
    clients: moto::Clients,
    ctl: Controller,
    demand: Arc<Mutex<u32>>,
    ticks: i64,
}

impl Rig {
    async fn start(api_timeout: Duration, max_attempts: u32) -> Rig {
        let moto = Moto::start();
        let proxy = aws_fault_proxy::FaultProxy::start(&moto.endpoint).await;
        let clients = moto.clients().await;
        clients
            .group(GroupFixture {
                name: "llama-spot",
                zones: &["us-east-1a"],
                overrides: &["g5.xlarge"],
                on_demand_pct: 0,
                ..Default::default()
            })
            .await;
        let yaml = format!(
            "provider: aws\nmode: vm-only\ntick_interval_s: 10\naws: {{ region: us-east-1, endpoint_url: \"{}\" }}\npools:\n  - name: llama\n    requirements: {{ gpu_models: [A10G] }}\n    replica: {{ gpus: 1, replicas_per_instance: 1 }}\n    capacity: {{ spot_share: 1.0 }}\n    limits: {{ min_nodes: 0, max_nodes: 4 }}\n    disruption: {{ unneeded_time_s: 0, scale_down_delay_after_add_s: 0 }}\n    signals:\n      - cron: {{ start: \"0 0 0 1 1 *\", end: \"0 0 1 1 1 *\", desired: 0, timezone: UTC }}\n",
            moto.endpoint
        );
        let cfg = Config::load(&yaml).unwrap_or_else(|e| panic!("{e}"));
        let mut settings = moto.settings_at(&proxy.endpoint, &["llama"]);
        settings.api_timeout = api_timeout;
        settings.max_attempts = max_attempts;
        let provider = Arc::new(AwsProvider::new(settings).await.unwrap());
        let demand = Arc::new(Mutex::new(0));
        let ctl = Controller::new(
            Arc::new(cfg),
            provider,
            Box::new(ServeEveryReady::new("llama")),
            Box::new(FixedDemand::new("llama", demand.clone())),
            Arc::new(Metrics::default()),
        );
        Rig {
            moto,
            proxy,
            clients,
            ctl,
            demand,
            ticks: 0,
        }
    }

    /// One tick at wall time plus 10 s per tick (the controller's clock runs ahead of the
    /// fakes', never behind). `Ok(true)`: a good tick; `Ok(false)`: held.
    async fn tick(&mut self) -> bool {
        self.ticks += 1;
        let now = gpupool::server::wall_clock().plus_secs(10.0 * self.ticks as f64);
        self.ctl.tick(now).await.is_ok()
    }

    async fn desired(&self) -> i32 {
        self.clients.desired("llama-spot").await.0
    }
}

/// Scaling 0→3 under random refusals: within 3 ticks, never past 3.
async fn scale_up_under(throttle: u32, errors: u32, case: &str) {
    let mut rig = Rig::start(Duration::from_secs(20), 4).await;
    rig.proxy.chaos(throttle, errors, 0x5eed_1234);
    *rig.demand.lock().unwrap() = 3;
    let mut at = None;
    let mut held = 0;
    for n in 1..=3 {
        if !rig.tick().await {
            held += 1;
        }
        if rig.desired().await >= 3 {
            at = Some(n);
            break;
        }
    }
    let (t, f) = rig.proxy.refused();
    assert!(t + f > 0, "{case}: faults injected");
    assert_eq!(rig.desired().await, 3, "{case}: scaled to 3 exactly");
    row(
        case,
        "0→3 within 3 ticks, no double launch, no panic",
        &format!(
            "desired 3 at tick {}, {held} tick(s) held, {t} calls throttled, {f} failed",
            at.unwrap()
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_10_percent_throttling() {
    scale_up_under(10, 0, "AWS: 10 % throttling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_30_percent_throttling() {
    scale_up_under(30, 0, "AWS: 30 % throttling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_20_percent_server_errors() {
    scale_up_under(0, 20, "AWS: 20 % HTTP 500").await;
}

/// The AWS endpoint killed (connection refused), then back: nothing is removed meanwhile, and
/// the loop recovers in the tick it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_killed_then_back() {
    let mut rig = Rig::start(Duration::from_secs(5), 2).await;
    *rig.demand.lock().unwrap() = 2;
    assert!(rig.tick().await);
    assert_eq!(rig.desired().await, 2);
    let port: u16 = rig
        .proxy
        .endpoint
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    rig.proxy.stop().await;
    *rig.demand.lock().unwrap() = 0;
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        outcomes.push(if rig.tick().await {
            "stale view"
        } else {
            "held"
        });
    }
    assert_eq!(rig.desired().await, 2, "nothing removed while blind");
    let proxy = aws_fault_proxy::FaultProxy::start_on(&rig.moto.endpoint, port).await;
    *rig.demand.lock().unwrap() = 3;
    assert!(rig.tick().await, "recovers in the tick the API is back");
    assert_eq!(rig.desired().await, 3);
    drop(proxy);
    row(
        "AWS: endpoint killed, then back",
        "no panic, nothing removed while blind (demand fell to 0), recovers in one tick",
        &format!("ticks while down: {outcomes:?}; desired kept 2; next tick after return: 3"),
    );
}

/// AWS restarted empty (every group gone): no panic, nothing launched or removed elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_restarted_empty() {
    let mut rig = Rig::start(Duration::from_secs(5), 2).await;
    *rig.demand.lock().unwrap() = 2;
    assert!(rig.tick().await);
    let empty = Moto::start();
    rig.proxy.set_upstream(&empty.endpoint);
    let before = rig.proxy.calls().len();
    let ok = rig.tick().await;
    let writes: Vec<String> = rig.proxy.calls()[before..]
        .iter()
        .filter(|c| !c.action.starts_with("Describe"))
        .map(|c| c.action.clone())
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(rig.desired().await, 2, "the old groups untouched");
    row(
        "AWS: restarted empty (no groups)",
        "no panic, no write call, no launch elsewhere",
        &format!(
            "tick {}; write calls: none",
            if ok { "completed" } else { "held" }
        ),
    );
}

/// AWS hung (accepts, never answers): every call ends at its timeout, no action, and the loop
/// goes on when it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_hung() {
    let mut rig = Rig::start(Duration::from_secs(4), 2).await;
    *rig.demand.lock().unwrap() = 1;
    assert!(rig.tick().await);
    rig.proxy.hang(true);
    *rig.demand.lock().unwrap() = 0;
    let started = Instant::now();
    let ok = rig.tick().await;
    let took = started.elapsed();
    rig.proxy.hang(false);
    assert_eq!(rig.desired().await, 1, "nothing removed while hung");
    *rig.demand.lock().unwrap() = 2;
    assert!(rig.tick().await);
    assert_eq!(rig.desired().await, 2);
    row(
        "AWS: hung",
        "the tick ends (calls time out), nothing removed, next tick acts",
        &format!(
            "tick {} after {:.1} s (4 s per call), desired kept 1; next tick: 2",
            if ok {
                "used the last good view"
            } else {
                "held"
            },
            took.as_secs_f64()
        ),
    );
}

// ---- SQS ----------------------------------------------------------------------------------

/// A 256 KiB message (SQS's maximum) on the interruption queue: read without a panic, left in
/// the queue (unknown shape: for the dead-letter queue), the loop goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_256_kib_message() {
    let moto = Moto::start();
    let c = moto.clients().await;
    let (url, _) = c.queue("gpupool-interruptions").await;
    let filler = "x".repeat(256 * 1024 - 40);
    let body = format!("{{\"source\":\"aws.ec2\",\"pad\":\"{filler}\"}}");
    assert!(body.len() <= 256 * 1024);
    c.sqs
        .send_message()
        .queue_url(&url)
        .message_body(&body)
        .send()
        .await
        .unwrap();
    let mut settings = moto.settings(&["llama"]);
    settings.interruption_queue_url = Some(url.clone());
    let p = AwsProvider::new(settings).await.unwrap();
    let events = p.poll_events().await.unwrap();
    assert!(events.is_empty(), "{events:?}");
    let depth = p.metrics().queue_depth(&url).await.unwrap();
    assert_eq!(depth.total(true), 1, "left for the dead-letter queue");
    row(
        "SQS: 256 KiB message",
        "no panic, not acknowledged (left for redrive), loop goes on",
        &format!("{} bytes read, no event, still in the queue", body.len()),
    );
}

// ---- Crashes: the real binary, SIGKILL ------------------------------------------------------

/// A gpupool process (the binary built for this test) and its files.
struct Gpupool {
    child: std::process::Child,
}

impl Gpupool {
    fn start(config: &std::path::Path, log: &std::path::Path) -> Gpupool {
        let out = std::fs::File::create(log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_gpupool"))
            .args(["run", "--config"])
            .arg(config)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start gpupool");
        Gpupool { child }
    }

    /// SIGKILL: nothing is flushed, nothing is cleaned up.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Gpupool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `check` (sync) until it is `Some`, with a deadline.
async fn until<T>(what: &str, secs: u64, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fake Prometheus answering the in-flight query of an instance: the count set in `counts`;
/// else 1 once the instance was deregistered (its marker file exists in `dir`: requests routed
/// before are still running), 0 before.
async fn in_flight_prometheus(
    counts: Arc<Mutex<BTreeMap<String, u32>>>,
    dir: std::path::PathBuf,
) -> std::net::SocketAddr {
    let app =
        axum::Router::new().route(
            "/api/v1/query",
            axum::routing::get(move |q: axum::extract::Query<BTreeMap<String, String>>| {
                let query = q.get("query").cloned().unwrap_or_default();
                let id = query.split('"').nth(1).unwrap_or_default().to_owned();
                let n =
                    counts.lock().unwrap().get(&id).copied().unwrap_or_else(|| {
                        u32::from(dir.join(format!("deregistered-{id}")).exists())
                    });
                let now = gpupool::server::wall_clock().secs_f64();
                async move {
                    (
                        [("content-type", "application/json")],
                        vector(now, &n.to_string()),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

struct CrashRig {
    moto: Moto,
    clients: moto::Clients,
    dir: std::path::PathBuf,
    config: std::path::PathBuf,
    queue: String,
    in_flight: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl CrashRig {
    async fn start(name: &str, min_nodes: u32, desired: i32) -> CrashRig {
        let moto = Moto::start();
        let clients = moto.clients().await;
        clients
            .group(GroupFixture {
                name: "llama-spot",
                zones: &["us-east-1a"],
                overrides: &["g5.xlarge"],
                on_demand_pct: 0,
                desired,
                ..Default::default()
            })
            .await;
        let (queue, _) = clients.queue("gpupool-interruptions").await;
        let in_flight = Arc::new(Mutex::new(BTreeMap::new()));
        let dir = std::env::temp_dir().join(format!("gpupool-crash-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let prom = in_flight_prometheus(in_flight.clone(), dir.clone()).await;
        let config = dir.join("config.yaml");
        let yaml = format!(
            r#"provider: aws
mode: vm-only
tick_interval_s: 1
state: {{ path: "{state}" }}
metrics: {{ listen: "127.0.0.1:{port}" }}
aws: {{ region: us-east-1, endpoint_url: "{endpoint}", interruption_queue_url: "{queue}", api_timeout_s: 10 }}
pools:
  - name: llama
    requirements: {{ gpu_models: [A10G] }}
    replica: {{ gpus: 1, replicas_per_instance: 1 }}
    capacity: {{ spot_share: 1.0 }}
    limits: {{ min_nodes: {min_nodes}, max_nodes: 4 }}
    deregister_command: ["touch", "{dir}/deregistered-{{id}}"]
    in_flight_query: {{ url: "http://{prom}", query: "vllm_in_flight{{instance=\"{{instance}}\"}}" }}
    disruption: {{ unneeded_time_s: 0, scale_down_delay_after_add_s: 0, drain_timeout_s: 600 }}
"#,
            state = dir.join("state.json").display(),
            port = gpupool::testkit::free_port(),
            endpoint = moto.endpoint,
            dir = dir.display(),
        );
        std::fs::write(&config, yaml).unwrap();
        CrashRig {
            moto,
            clients,
            dir,
            config,
            queue,
            in_flight,
        }
    }

    fn gpupool(&self, n: u32) -> Gpupool {
        Gpupool::start(&self.config, &self.dir.join(format!("gpupool-{n}.log")))
    }

    fn deregistered(&self) -> Vec<String> {
        markers::deregistered(&self.dir)
    }

    /// Instance ids of the group that are not terminating.
    async fn live(&self) -> Vec<String> {
        self.clients.desired("llama-spot").await.1
    }

    fn state(&self) -> gpupool::state::SavedState {
        gpupool::state::file::read(&self.dir.join("state.json"))
            .unwrap()
            .expect("a state file")
    }

    fn log(&self, n: u32) -> String {
        std::fs::read_to_string(self.dir.join(format!("gpupool-{n}.log"))).unwrap_or_default()
    }
}

impl Drop for CrashRig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// kill -9 right after the spot notice was deleted from the queue: the restarted process
/// resumes the notice's drain from the state file (same deadline) and terminates the instance
/// once idle; the replacement was requested before the deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_notice_was_deleted() {
    let rig = CrashRig::start("notice", 2, 2).await;
    let ids = rig.live().await;
    assert_eq!(ids.len(), 2);
    let victim = ids[0].clone();
    rig.in_flight.lock().unwrap().insert(victim.clone(), 1);
    let first = rig.gpupool(1);
    // The notice, as EventBridge puts it on the queue (time: now, so the deadline is 2 min away).
    let time = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = format!(
        r#"{{"version":"0","id":"crash-notice-1","detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","account":"123456789012","time":"{time}","region":"us-east-1","resources":["arn:aws:ec2:us-east-1a:instance/{victim}"],"detail":{{"instance-id":"{victim}","instance-action":"terminate"}}}}"#
    );
    rig.clients
        .sqs
        .send_message()
        .queue_url(&rig.queue)
        .message_body(body)
        .send()
        .await
        .unwrap();
    let sqs = rig.clients.sqs.clone();
    let queue = rig.queue.clone();
    until("the notice deleted from the queue", 60, async || {
        let a = sqs
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(gpupool_aws::sdk::sqs::types::QueueAttributeName::All)
            .send()
            .await
            .ok()?;
        let attrs = a.attributes()?;
        let n = |k| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(1)
        };
        use gpupool_aws::sdk::sqs::types::QueueAttributeName as Q;
        (n(Q::ApproximateNumberOfMessages) + n(Q::ApproximateNumberOfMessagesNotVisible) == 0)
            .then_some(())
    })
    .await;
    first.kill9();
    let saved = rig.state();
    let drain = saved
        .drains
        .iter()
        .find(|d| d.instance.as_str() == victim)
        .unwrap_or_else(|| panic!("the drain is in the state file: {saved:?}\n{}", rig.log(1)))
        .clone();
    // The replacement was requested before the notice was deleted.
    let (desired_at_kill, _) = rig.clients.desired("llama-spot").await;
    assert_eq!(
        desired_at_kill, 3,
        "replacement requested before the deletion"
    );

    rig.in_flight.lock().unwrap().insert(victim.clone(), 0);
    let second = rig.gpupool(2);
    let live = until("the victim terminated by the new process", 60, async || {
        let live = rig.live().await;
        (!live.contains(&victim) && live.len() == 2).then_some(live)
    })
    .await;
    let log = rig.log(2);
    drop(second);
    assert!(log.contains("restored saved state"), "{log}");
    assert!(rig.deregistered().contains(&victim));
    row(
        "Crash: kill -9 after the notice's deletion",
        "drain resumed from the state file with the same deadline, instance terminated, replacement kept",
        &format!(
            "state file had the drain (deadline {} s after the notice); desired already 3 at the kill; the new process restored it, deregistered and terminated the instance; 2 serving after",
            drain.deadline.secs_since(drain.start_at).round()
        ),
    );
    let _ = live;
    let _ = &rig.moto;
}

/// kill -9 in the middle of a scale-in drain (deregistered, requests still in flight): the
/// restarted process resumes that drain — it does not leave the deregistered VM counted as
/// serving, nor pick another VM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_drain() {
    let rig = CrashRig::start("drain", 1, 2).await;
    let ids = rig.live().await;
    assert_eq!(ids.len(), 2);
    let first = rig.gpupool(1);
    let victim = until("a VM deregistered", 60, async || {
        rig.deregistered().first().cloned()
    })
    .await;
    until("the drain saved", 30, async || {
        gpupool::state::file::read(&rig.dir.join("state.json"))
            .ok()
            .flatten()
            .filter(|s| s.drains.iter().any(|d| d.instance.as_str() == victim))
    })
    .await;
    first.kill9();
    assert_eq!(
        rig.live().await.len(),
        2,
        "killed mid-drain: nothing terminated yet"
    );

    rig.in_flight.lock().unwrap().insert(victim.clone(), 0);
    let second = rig.gpupool(2);
    let live = until("the drained VM terminated", 60, async || {
        let live = rig.live().await;
        (live.len() == 1).then_some(live)
    })
    .await;
    let log = rig.log(2);
    drop(second);
    assert!(
        !live.contains(&victim),
        "the deregistered VM went: {live:?}\n{log}"
    );
    assert_eq!(
        rig.deregistered(),
        vec![victim.clone()],
        "no other VM deregistered"
    );
    row(
        "Crash: kill -9 mid-drain",
        "drain resumed, the deregistered VM terminated, no other VM touched",
        "the deregistered VM terminated by the new process; the other VM never deregistered",
    );
}
