//! The HTTP endpoints: `/metrics` (Prometheus text from the registry passed in), `/healthz`
//! (liveness) and `/readyz` (readiness).
//!
//! - `/healthz` answers 200 while the run loop is alive: its last tick (successful or not)
//!   is no older than [`Health::MISSED_TICKS`] tick intervals. Before the first tick the
//!   process start counts as the last tick, so a slow first observation is not a restart.
//! - `/readyz` answers 200 only while this replica is the leader *and* its last tick
//!   succeeded; otherwise 503 with `not-leader`, `no-tick-yet` or `last-tick-failed`, so a
//!   load balancer or `kubectl get pods` shows which replica acts.
//!
//! **Listen address**: `metrics.listen`, default `0.0.0.0:8080` — every interface, because in
//! Kubernetes the kubelet's probes and Prometheus reach the pod IP. On a VM-only host reachable
//! by others, set it to `127.0.0.1:8080` or a private address (`gpupool run --listen`
//! overrides it).
//!
//! **The server cannot hurt the loop.** It runs on its own tasks; the loop only stores atomics
//! into [`Health`] and never waits on it. Against clients that open connections and never
//! finish a request, [`ServerLimits`]:
//! - a header-read timeout, which hyper also applies to a kept-alive connection waiting for its
//!   next request (the timer starts whenever hyper waits for a request head: `Conn::
//!   poll_read_head` in hyper 1.x), so it is the idle timeout too;
//! - a connection age limit, for a client that stalls mid-response;
//! - at most `max_connections` connections, far below the usual 1,024 descriptors per process
//!   so the loop's own connections (cloud APIs, Prometheus) always find one. When the limit is
//!   reached the oldest connection without a request in progress is closed to make room, as
//!   nginx reuses keep-alive connections when `worker_connections` run out
//!   (`ngx_drain_connections`): a flood of idle connections cannot keep a probe out. Only when
//!   every connection is mid-request is the new one refused.
//!
//! Concurrent requests are bounded by the connection limit (HTTP/1.1 serves one request per
//! connection at a time), so no separate request-concurrency layer is needed.

use crate::model::Timestamp;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// The last status the run loop published, served on `/status`.
    pub status: StatusBoard,
}

/// The controller's last status as JSON (`model::status::Status`), swapped in whole by the
/// run loop once a tick; the server only clones the `Arc` under the lock.
#[derive(Debug, Default)]
pub struct StatusBoard(Mutex<Option<Arc<String>>>);

impl StatusBoard {
    pub fn publish(&self, json: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(json));
    }
    pub fn get(&self) -> Option<Arc<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
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
            status: StatusBoard::default(),
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
    gpupool_provider::clock::wall_clock()
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
        .route("/status", get(status))
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

/// `/status`: the controller's per-pool view and reasons (JSON), 503 before the first tick.
async fn status(State(s): State<AppState>) -> axum::response::Response {
    match s.health.status.get() {
        Some(json) => (
            [(header::CONTENT_TYPE, "application/json")],
            json.as_str().to_owned(),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no-status-yet").into_response(),
    }
}

/// What one client may hold of the server (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections open at once; beyond it the oldest idle one is closed.
    pub max_connections: usize,
    /// Time to send a complete request head, on a new connection and between the requests of
    /// a kept-alive one.
    pub header_read_timeout: Duration,
    /// Longest a connection may stay open, whatever it does.
    pub max_connection_age: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            // A quarter of the common 1,024 soft descriptor limit: Prometheus, probes and a
            // few operators need a handful; the rest stays for the control loop.
            max_connections: 256,
            // Probes and scrapes send their request head at once; Prometheus re-opens a
            // scrape connection closed between scrapes at no cost.
            header_read_timeout: Duration::from_secs(10),
            // /metrics is rendered in memory and is small: minutes are plenty.
            max_connection_age: Duration::from_secs(300),
        }
    }
}

/// Pause after a failed `accept` (out of descriptors, …) before trying again, so the loop does
/// not spin; connections closing meanwhile free descriptors.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

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

/// Serve on an already bound listener (tests bind port 0 and read the address first), with
/// the default [`ServerLimits`].
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_with_limits(
        listener,
        router(registry, health),
        ServerLimits::default(),
        shutdown,
    )
    .await
}

/// One open connection: how many requests it is serving, and how to close it.
struct Slot {
    busy: Arc<AtomicUsize>,
    close: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Open connections by age (ids grow), shared by the accept loop and the connection tasks.
#[derive(Default)]
struct Slots(Mutex<BTreeMap<u64, Slot>>);

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Slot>> {
        // A poisoned lock only means a connection task panicked mid-update; the map is valid.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Make room for one more connection: true when there is room (closing the oldest idle
    /// connection if needed), false when every connection is mid-request.
    fn make_room(&self, max: usize) -> bool {
        let mut m = self.lock();
        // Connections already told to close are on their way out: they do not count.
        if m.values().filter(|s| s.close.is_some()).count() < max {
            return true;
        }
        let idle = m
            .iter()
            .find(|(_, s)| s.busy.load(Ordering::Acquire) == 0 && s.close.is_some())
            .map(|(id, _)| *id);
        match idle.and_then(|id| m.get_mut(&id)) {
            Some(slot) => {
                // The task removes its slot once it has closed the socket.
                if let Some(tx) = slot.close.take() {
                    let _ = tx.send(());
                }
                true
            }
            None => false,
        }
    }
}

/// Counts a request in progress on its connection for as long as it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn enter(c: &Arc<AtomicUsize>) -> Self {
        c.fetch_add(1, Ordering::AcqRel);
        Busy(c.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serve `app` on `listener` within `limits` until `shutdown` completes; then stop accepting,
/// let requests in progress finish (idle connections close at once) and return.
pub async fn serve_with_limits(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let slots = Arc::new(Slots::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_id: u64 = 0;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Reap finished connection tasks so the set stays as small as the connections.
        while tasks.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // EMFILE/ENFILE or a connection reset before accept: not fatal for a server
                // whose clients retry. Pause so this does not spin, then accept again.
                tracing::debug!(error = %e, "accept failed; retrying");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        if !slots.make_room(limits.max_connections) {
            tracing::debug!(
                max = limits.max_connections,
                "every connection is mid-request; refusing a new one"
            );
            drop(stream);
            continue;
        }
        let id = next_id;
        next_id += 1;
        let busy = Arc::new(AtomicUsize::new(0));
        let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
        slots.lock().insert(
            id,
            Slot {
                busy: busy.clone(),
                close: Some(close_tx),
            },
        );
        let inner = TowerToHyperService::new(app.clone());
        let service = hyper::service::service_fn(move |req| {
            let guard = Busy::enter(&busy);
            let fut = hyper::service::Service::call(&inner, req);
            async move {
                let r = fut.await;
                drop(guard);
                r
            }
        });
        let (slots, mut stop_rx) = (slots.clone(), stop_rx.clone());
        tasks.spawn(async move {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let age = tokio::time::sleep(limits.max_connection_age);
            let mut age = std::pin::pin!(age);
            let mut close_rx = close_rx;
            let mut stopping = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::trace!(error = %e, "connection ended");
                        }
                        break;
                    }
                    // Evicted to make room, or too old: dropping the connection closes it.
                    _ = &mut close_rx => break,
                    _ = &mut age => break,
                    r = stop_rx.wait_for(|s| *s), if !stopping => {
                        stopping = true;
                        if r.is_err() {
                            break;
                        }
                        // Finish a request in progress, close an idle connection now.
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            slots.lock().remove(&id);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
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

    /// A server with `limits` on a free loopback port; the sender stops it.
    async fn start(
        limits: ServerLimits,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<(), ServerError>>,
    ) {
        let health = Arc::new(Health::new(10, wall_clock()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(Arc::new(Registry::default()), health);
        let server = tokio::spawn(serve_with_limits(listener, app, limits, async {
            let _ = rx.await;
        }));
        (addr, tx, server)
    }

    /// Read until the server closes the connection (Ok) or the deadline passes (Err).
    async fn closed_by_server(c: &mut tokio::net::TcpStream) -> Result<(), &'static str> {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        let deadline = std::time::Duration::from_secs(20);
        match tokio::time::timeout(deadline, async {
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        {
            Ok(()) => Ok(()),
            Err(_) => Err("still open at the deadline"),
        }
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed() {
        let (addr, stop, server) = start(ServerLimits {
            header_read_timeout: Duration::from_millis(200),
            ..ServerLimits::default()
        })
        .await;
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert_eq!(closed_by_server(&mut idle).await, Ok(()));
        // A kept-alive connection idle after its request is closed the same way.
        use tokio::io::AsyncWriteExt;
        let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(closed_by_server(&mut kept).await, Ok(()));
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn at_the_limit_the_oldest_idle_connection_makes_room() {
        let (addr, stop, server) = start(ServerLimits {
            max_connections: 4,
            ..ServerLimits::default()
        })
        .await;
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        // The probe is the fifth connection: it gets in, and the oldest idle one goes.
        let r = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(closed_by_server(&mut idle[0]).await, Ok(()));
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
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

    #[tokio::test]
    async fn status_is_served_once_the_loop_published_one() {
        let health = Arc::new(Health::new(10, wall_clock()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(
            listener,
            Arc::new(Registry::default()),
            health.clone(),
            async {
                let _ = rx.await;
            },
        ));
        let url = format!("http://{addr}/status");
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 503);
        health.status.publish(r#"{"leader":true}"#.into());
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.text().await.unwrap(), r#"{"leader":true}"#);
        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
