//! Shared by tests/signals_*.rs and tests/vmonly_*.rs: a synthetic vLLM-style exporter the test
//! drives, and a real `prometheus` server scraping it every second. Both bind 127.0.0.1 on
//! free ports and stop when dropped.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod prom_api;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Gauges the exporter serves, by full series text (`name{labels}`), value as written.
#[derive(Clone, Default)]
pub struct Gauges(Arc<Mutex<Vec<(String, String)>>>);

impl Gauges {
    pub fn set(&self, series: &str, value: &str) {
        let mut g = self.0.lock().unwrap();
        match g.iter_mut().find(|(s, _)| s == series) {
            Some((_, v)) => *v = value.to_owned(),
            None => g.push((series.to_owned(), value.to_owned())),
        }
    }
    fn render(&self) -> String {
        let g = self.0.lock().unwrap();
        let mut out = String::new();
        let mut typed = std::collections::BTreeSet::new();
        for (series, value) in g.iter() {
            let name = series.split('{').next().unwrap_or(series);
            if typed.insert(name.to_owned()) {
                out.push_str(&format!("# TYPE {name} gauge\n"));
            }
            out.push_str(&format!("{series} {value}\n"));
        }
        out
    }
}

pub struct Exporter {
    pub addr: SocketAddr,
    pub gauges: Gauges,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Exporter {
    pub async fn start() -> Exporter {
        let gauges = Gauges::default();
        let g = gauges.clone();
        let app = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let g = g.clone();
                    async move { ([("content-type", "text/plain; version=0.0.4")], g.render()) }
                }),
            )
            // VM health checks: `/health/<ip>` answers 200 (every simulated VM is healthy).
            .route("/health/{ip}", axum::routing::get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Exporter {
            addr,
            gauges,
            stop: Some(tx),
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = std::env::temp_dir().join(format!("gpupool-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub struct Prometheus {
    pub url: String,
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Prometheus {
    /// Start a real Prometheus scraping `target` every second; returns once it answers ready.
    pub async fn start(target: SocketAddr) -> Prometheus {
        let dir = temp_dir("prom");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: inference\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = gpupool::testkit::free_port();
        let mut p = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            child: None,
            dir,
            port,
        };
        p.spawn().await;
        p
    }

    async fn spawn(&mut self) {
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            // Controller tests tick on a virtual clock that runs minutes ahead of the wall
            // clock (through unneeded times); a query that far ahead of the newest scrape must
            // still find it. Series that disappear are still ended by staleness markers.
            .arg("--query.lookback-delta=30m")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the `prometheus` binary (Debian package `prometheus`) must be installed");
        self.child = Some(child);
        let ready = format!("{}/-/ready", self.url);
        poll(Duration::from_secs(60), "prometheus ready", || async {
            matches!(reqwest::get(&ready).await, Ok(r) if r.status().is_success())
        })
        .await;
    }

    /// Start again after [`Prometheus::kill`], on the same port with the same data.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after kill");
        self.spawn().await;
    }

    /// Stop the server now (SIGKILL) and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Value of an instant query now, if there is exactly one sample.
    pub async fn value(&self, query: &str) -> Option<String> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            &[("query", query)],
        )
        .ok()?;
        let body: serde_json::Value = reqwest::get(url).await.ok()?.json().await.ok()?;
        let r = body["data"]["result"].as_array()?;
        (r.len() == 1)
            .then(|| r[0]["value"][1].as_str().map(str::to_owned))
            .flatten()
    }

    /// Wait until Prometheus has scraped `query` with value `want`.
    pub async fn wait_for(&self, query: &str, want: &str) {
        poll(
            Duration::from_secs(30),
            &format!("{query} == {want} in Prometheus"),
            || async { self.value(query).await.as_deref() == Some(want) },
        )
        .await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Poll `cond` every 100 ms until it holds; panic after `deadline`.
pub async fn poll<F, Fut>(deadline: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The wall clock as a gpupool `Timestamp` (Prometheus evaluates queries at real time).
pub fn wall_now() -> gpupool::model::Timestamp {
    gpupool::server::wall_clock()
}
