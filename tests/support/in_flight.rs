//! A fake Prometheus for the VM-only drain tests: it answers the pool's in-flight query
//! `vllm_in_flight{instance="<id>"}` with the count a test sets per instance.

use std::collections::BTreeMap;
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
