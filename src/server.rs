//! The HTTP endpoints: `/metrics` (Prometheus text from the registry passed in), `/healthz`
//! (liveness) and `/readyz` (readiness).
//!
//! - `/healthz` answers 200 while the run loop is alive: its last tick (successful or not)
//!   is no older than [`Health::MISSED_TICKS`] tick intervals. Before the first tick the
//!   process start counts as the last tick, so a slow first observation is not a restart.
//! - `/readyz` answers 200 only while this replica is the leader *and* its last tick
//!   succeeded; otherwise 503 with `not-leader`, `no-tick-yet` or `last-tick-failed`, so a
//!   load balancer or `kubectl get pods` shows which replica acts.

use crate::model::Timestamp;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
}

/// What the run loop reports and the probes read. All fields are atomics: the loop writes,
/// the server reads, nothing blocks.
#[derive(Debug)]
pub struct Health {
    tick_interval_ms: i64,
    /// Wall-clock millis of the last completed tick (or of the start, before any).
    last_tick_ms: AtomicI64,
    ticked: AtomicBool,
    last_tick_ok: AtomicBool,
    leader: AtomicBool,
}

impl Health {
    /// Ticks that may be missed before the process counts as hung.
    pub const MISSED_TICKS: i64 = 3;

    pub fn new(tick_interval_s: u64, started: Timestamp) -> Self {
        Health {
            tick_interval_ms: (tick_interval_s.max(1) * 1000) as i64,
            last_tick_ms: AtomicI64::new(started.millis()),
            ticked: AtomicBool::new(false),
            last_tick_ok: AtomicBool::new(false),
            leader: AtomicBool::new(false),
        }
    }

    /// Called by the run loop after every tick.
    pub fn record_tick(&self, now: Timestamp, ok: bool) {
        self.last_tick_ms.store(now.millis(), Ordering::Relaxed);
        self.last_tick_ok.store(ok, Ordering::Relaxed);
        self.ticked.store(true, Ordering::Relaxed);
    }

    /// Called by a standby's loop: alive, but not ticking (only the leader ticks).
    pub fn heartbeat(&self, now: Timestamp) {
        self.last_tick_ms.store(now.millis(), Ordering::Relaxed);
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    /// Liveness at `now`: `Err` with the age of the last tick when it is too old.
    pub fn live(&self, now: Timestamp) -> Result<(), String> {
        let age_ms = now.millis() - self.last_tick_ms.load(Ordering::Relaxed);
        if age_ms > Self::MISSED_TICKS * self.tick_interval_ms {
            Err(format!("last tick {:.0} s ago", age_ms as f64 / 1000.0))
        } else {
            Ok(())
        }
    }

    /// Readiness. A standby is ready (`Ok("not-leader")`): answering 503 there would let the
    /// PodDisruptionBudget block evicting the leader forever (drains, cluster upgrades). The
    /// leader is ready once its last tick succeeded.
    pub fn ready(&self) -> Result<&'static str, &'static str> {
        if !self.leader.load(Ordering::Relaxed) {
            Ok("not-leader")
        } else if !self.ticked.load(Ordering::Relaxed) {
            Err("no-tick-yet")
        } else if !self.last_tick_ok.load(Ordering::Relaxed) {
            Err("last-tick-failed")
        } else {
            Ok("ready")
        }
    }
}

/// The wall clock as a `Timestamp` (the server is shell code; probes are about real time).
pub fn wall_clock() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Timestamp::from_millis(ms)
}

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    health: Arc<Health>,
}

/// The router, for embedding or tests.
pub fn router(registry: Arc<Registry>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { registry, health })
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let body = crate::controller::metrics::encode(&s.registry);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    match s.health.live(wall_clock()) {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    match s.health.ready() {
        Ok(body) => (StatusCode::OK, body),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Bind `addr` and serve until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    serve_on(listener, registry, health, shutdown).await
}

/// Serve on an already bound listener (tests bind port 0 and read the address first).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    axum::serve(listener, router(registry, health))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_follows_the_last_tick() {
        let h = Health::new(10, Timestamp::from_secs(100));
        assert!(
            h.live(Timestamp::from_secs(125)).is_ok(),
            "start counts as a tick"
        );
        assert!(h.live(Timestamp::from_secs(131)).is_err());
        h.record_tick(Timestamp::from_secs(130), false);
        assert!(
            h.live(Timestamp::from_secs(150)).is_ok(),
            "a failed tick is still a live loop"
        );
    }

    #[test]
    fn readiness_needs_leader_and_a_good_tick() {
        let h = Health::new(10, Timestamp::from_secs(0));
        assert_eq!(h.ready(), Ok("not-leader"));
        h.set_leader(true);
        assert_eq!(h.ready(), Err("no-tick-yet"));
        h.record_tick(Timestamp::from_secs(10), false);
        assert_eq!(h.ready(), Err("last-tick-failed"));
        h.record_tick(Timestamp::from_secs(20), true);
        assert_eq!(h.ready(), Ok("ready"));
        h.set_leader(false);
        assert_eq!(h.ready(), Ok("not-leader"));
    }

    #[tokio::test]
    async fn endpoints_answer_over_http() {
        let metrics = crate::controller::Metrics::default();
        let mut reg = Registry::default();
        metrics.register(&mut reg);
        metrics.ticks.inc();
        let health = Arc::new(Health::new(10, wall_clock()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, Arc::new(reg), health.clone(), async {
            let _ = rx.await;
        }));
        let http = reqwest::Client::new();
        let get = |p: &str| http.get(format!("http://{addr}{p}")).send();
        let m = get("/metrics").await.unwrap();
        assert_eq!(m.status(), 200);
        assert!(m.text().await.unwrap().contains("gpupool_ticks_total 1"));
        assert_eq!(get("/healthz").await.unwrap().status(), 200);
        // A standby is ready (so a PDB never blocks evicting the leader) and says why it idles.
        let r = get("/readyz").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "not-leader");
        health.set_leader(true);
        health.record_tick(wall_clock(), false);
        let r = get("/readyz").await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.text().await.unwrap(), "last-tick-failed");
        health.record_tick(wall_clock(), true);
        assert_eq!(get("/readyz").await.unwrap().status(), 200);
        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
