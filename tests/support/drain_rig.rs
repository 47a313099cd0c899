//! What the VM-only drain-mark tests (`aws_drain_mark.rs`, `gcp_drain_mark.rs`) share: a fake
//! Prometheus answering the pool's in-flight query `vllm_in_flight{instance="<id>"}` with the
//! count a test sets per instance, one gpupool process (the real controller and VM-only
//! cluster over a state file), a tick clock, and a scratch directory.

use gpupool::config::Config;
use gpupool::controller::{Controller, Metrics};
use gpupool::model::Timestamp;
use gpupool::testkit::doubles::FixedDemand;
use gpupool::vmonly::VmCluster;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A fake Prometheus answering the in-flight query `vllm_in_flight{instance="<id>"}` with the
/// count set in `counts` (0 when none is set).
pub async fn prometheus(counts: Arc<Mutex<BTreeMap<String, u32>>>) -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(
            move |q: axum::extract::Query<BTreeMap<String, String>>| {
                let query = q.get("query").cloned().unwrap_or_default();
                let id = query.split('"').nth(1).unwrap_or_default().to_owned();
                let n = counts.lock().unwrap().get(&id).copied().unwrap_or(0);
                let now = gpupool::server::wall_clock().secs_f64();
                async move {
                    (
                        [("content-type", "application/json")],
                        format!(
                            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[{now},"{n}"]}}]}}}}"#
                        ),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// One gpupool process: `provider`, the real VM-only cluster over it, a demand of one replica
/// for pool `llama`, and the state file `cfg.state.path`.
pub fn process<P>(cfg: &Arc<Config>, provider: Arc<P>) -> Controller
where
    P: gpupool_provider::NodeGroupProvider + 'static,
{
    let cluster = VmCluster::new(cfg.clone(), provider.clone()).unwrap();
    let path = cfg.state.path.clone().expect("state.path set");
    Controller::new(
        cfg.clone(),
        provider,
        Box::new(cluster),
        Box::new(FixedDemand::new("llama", Arc::new(Mutex::new(1)))),
        Arc::new(Metrics::default()),
    )
    .with_state_store(Arc::new(gpupool::state::file::FileStore::new(path)))
}

/// Wall-clock time plus a virtual offset that grows by a tick interval (10 s) per tick.
pub struct Clock(pub i64);

impl Clock {
    pub fn next(&mut self) -> Timestamp {
        self.0 += 1;
        gpupool::server::wall_clock().plus_secs(self.0 as f64 * 10.0)
    }
}

pub async fn tick(ctl: &mut Controller, clock: &mut Clock) -> gpupool::controller::TickReport {
    ctl.tick(clock.next())
        .await
        .unwrap_or_else(|e| panic!("tick failed: {}", gpupool::controller::error_chain(&e)))
}

/// A scratch directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("gpupool-mark-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
