//! The HTTP server under a flood of idle connections, with the descriptor limit a process
//! typically runs with (1,024): 2,000 idle loopback connections must not stop `/healthz` from
//! answering. Without a connection limit the server accepts until `accept` fails with EMFILE,
//! and every later connection — the probe's too — waits in the backlog for good.
//!
//! The server runs in a child process (this test binary again, `serve_child`) started under
//! `ulimit -n 1024`, so only it feels the limit; the 2,000 client sockets are this process's.
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "GPUPOOL_SERVER_FLOOD_CHILD";
const IDLE_CONNECTIONS: usize = 2000;

/// Child mode: serve the real router on 127.0.0.1:0 with the default limits, print the address,
/// stop when stdin closes (the parent exiting or dropping the pipe). A no-op in a normal run.
#[test]
fn serve_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let metrics = gpupool::controller::Metrics::default();
        let mut reg = prometheus_client::registry::Registry::default();
        metrics.register(&mut reg);
        let health = std::sync::Arc::new(gpupool::server::Health::new(
            3600,
            gpupool::server::wall_clock(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("LISTENING {}", listener.local_addr().unwrap());
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = String::new();
                while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
            })
            .await;
        };
        gpupool::server::serve_on(listener, std::sync::Arc::new(reg), health, stdin_closed)
            .await
            .unwrap();
    });
}

/// Kills the child when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_stop_healthz() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = Child(
        Command::new("sh")
            .arg("-c")
            .arg(r#"ulimit -n 1024 && exec "$0" serve_child --exact --nocapture --test-threads=1"#)
            .arg(&exe)
            .env(CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server child"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let addr: std::net::SocketAddr = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        lines
            .find_map(|l| {
                // The harness may print `test serve_child ... ` on the same line first.
                let l = l.ok()?;
                let (_, a) = l.split_once("LISTENING ")?;
                Some(a.trim().parse().expect("address"))
            })
            .expect("the child prints its address")
    })
    .await
    .unwrap();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let healthz = |http: reqwest::Client| async move {
        matches!(http.get(format!("http://{addr}/healthz")).send().await,
            Ok(r) if r.status() == 200)
    };
    assert!(healthz(http.clone()).await, "answers before the flood");

    // 2,000 connections that never send a byte, opened concurrently and held.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..IDLE_CONNECTIONS {
        set.spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(10),
                tokio::net::TcpStream::connect(addr),
            )
            .await
        });
    }
    let mut held = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(Ok(Ok(s))) = r {
            held.push(s);
        }
    }
    // The kernel completes handshakes for the server's backlog whether or not it accepts; more
    // than the descriptor limit shows the flood went past it.
    assert!(
        held.len() > 1100,
        "only {} of {IDLE_CONNECTIONS} connections were established",
        held.len()
    );

    // /healthz answers within a bounded number of attempts while they are all held.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answered = false;
    while Instant::now() < deadline {
        if healthz(http.clone()).await {
            answered = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        answered,
        "/healthz unreachable with {} idle connections held",
        held.len()
    );
    // And /metrics too (the Prometheus signal path of the issue).
    let m = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 200);
    drop(held);
}
