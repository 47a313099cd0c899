//! Secrets never reach the log: Prometheus signals with a bearer token and a basic-auth
//! password are refused by the fake, the failures are logged at debug, and the captured log
//! holds neither secret. A test binary of its own: tracing caches each call site's interest
//! process-wide, so a test running on another thread without a subscriber could make these
//! events invisible to this test's thread-local subscriber.
#![allow(clippy::disallowed_methods)] // test code (and the shared harness) may read the wall clock

mod signals_harness;

use gpupool::config::Config;
use gpupool::controller::DemandSource;
use gpupool::model::PoolName;
use gpupool::signals::SignalDemand;
use signals_harness::prom_api::{PromApi, Require};
use signals_harness::wall_now;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

fn temp_file(tag: &str, content: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let p = std::env::temp_dir().join(format!(
        "gpupool-authlog-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::write(&p, content).unwrap();
    p
}

fn config(url: &str, access: &str) -> Config {
    Config::load(&format!(
        "mode: vm-only\npools:\n  - name: p\n    requirements: {{}}\n    replica: {{ replicas_per_instance: 1 }}\n    limits: {{ max_nodes: 50 }}\n    signals:\n      - name: q\n        prometheus:\n          url: {url}\n          query: sum(queue)\n          target_per_replica: 5\n          timeout_s: 2\n{access}\n"
    ))
    .expect("test config is valid")
}

async fn replicas(cfg: &Config) -> Option<u32> {
    let mut d = SignalDemand::new().unwrap();
    let mut out = d.read(cfg, wall_now()).await;
    let p = out.remove(&PoolName::from("p")).expect("pool read");
    let r = &p.readings[0];
    if r.stale { None } else { r.replicas }
}

/// A subscriber writing every event, at every level, into a buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Current-thread runtime: every task runs on this thread, under the thread-local subscriber.
#[tokio::test(flavor = "current_thread")]
async fn secrets_never_reach_the_log() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    const TOKEN: &str = "s3cr3t-T0KEN-value";
    const PASSWORD: &str = "hunter2-PASSWORD-value";
    let api = PromApi::start(Require::Bearer("something-else".into()), "1").await;
    let tok = temp_file("log-tok", TOKEN);
    let pw = temp_file("log-pw", PASSWORD);
    for access in [
        format!("          auth: {{ bearer_token_file: {} }}", tok.display()),
        format!(
            "          auth: {{ basic: {{ username: u, password_file: {} }} }}",
            pw.display()
        ),
    ] {
        let cfg = config(&api.url(), &access);
        // Refused (wrong secret): the failure is logged at debug, with its error chain.
        assert_eq!(replicas(&cfg).await, None);
        // The config's Debug form names files, never their content.
        assert!(!format!("{cfg:?}").contains(TOKEN));
    }
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("signal read failed"),
        "the failures were logged (so this test can fail): {log}"
    );
    assert!(!log.contains(TOKEN), "token in the log:\n{log}");
    assert!(!log.contains(PASSWORD), "password in the log:\n{log}");
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("u:{PASSWORD}"));
    assert!(!log.contains(&encoded), "encoded credentials in the log");
    assert_eq!(api.seen().len(), 2);
    std::fs::remove_file(&tok).unwrap();
    std::fs::remove_file(&pw).unwrap();
}
