//! A loopback fake of the Prometheus HTTP API's instant query (`GET <prefix>/api/v1/query`)
//! that demands one kind of authentication, as a Mimir, Thanos, Amazon Managed Service for
//! Prometheus or Google Managed Prometheus front end does. A request without it gets 401 (the
//! status those front ends answer; its body is not the API's JSON envelope). An accepted query
//! answers one sample, `value`, at the requested evaluation `time`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What the fake demands.
#[derive(Clone, Debug)]
pub enum Require {
    Nothing,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic base64(user:password)`.
    Basic(String, String),
    /// A header with this exact value (`X-Scope-OrgID`).
    Header(String, String),
    /// An AWS SigV4 `Authorization` header for this access key, region and service, with an
    /// `x-amz-date` the credential scope's date agrees with and a 64-hex-digit signature.
    Sigv4 {
        access_key: String,
        region: String,
        service: String,
    },
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Path and query exactly as sent.
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub accepted: bool,
}

pub struct PromApi {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn basic(user: &str, pw: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

/// Whether the SigV4 `Authorization` header has the documented shape (AWS General Reference,
/// "Signature Version 4 signing process": `AWS4-HMAC-SHA256 Credential=<key>/<yyyymmdd>/
/// <region>/<service>/aws4_request, SignedHeaders=<…>, Signature=<64 hex>`).
pub fn sigv4_ok(h: &axum::http::HeaderMap, key: &str, region: &str, service: &str) -> bool {
    let (Some(auth), Some(date)) = (
        h.get("authorization").and_then(|v| v.to_str().ok()),
        h.get("x-amz-date").and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    let Some(day) = date.get(..8) else {
        return false;
    };
    let prefix = format!(
        "AWS4-HMAC-SHA256 Credential={key}/{day}/{region}/{service}/aws4_request, SignedHeaders="
    );
    let Some(rest) = auth.strip_prefix(&prefix) else {
        return false;
    };
    let Some((signed, sig)) = rest.split_once(", Signature=") else {
        return false;
    };
    let signed: Vec<&str> = signed.split(';').collect();
    signed.contains(&"host")
        && signed.contains(&"x-amz-date")
        && sig.len() == 64
        && sig.bytes().all(|b| b.is_ascii_hexdigit())
}

fn accepted(req: &Require, h: &axum::http::HeaderMap) -> bool {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    match req {
        Require::Nothing => true,
        Require::Bearer(t) => get("authorization") == Some(format!("Bearer {t}")),
        Require::Basic(u, p) => get("authorization") == Some(basic(u, p)),
        Require::Header(n, v) => get(n).as_deref() == Some(v.as_str()),
        Require::Sigv4 {
            access_key,
            region,
            service,
        } => sigv4_ok(h, access_key, region, service),
    }
}

impl PromApi {
    pub async fn start(require: Require, value: &str) -> PromApi {
        use axum::extract::{Query, State};
        use axum::http::{HeaderMap, StatusCode, Uri};
        type St = (Require, String, Arc<Mutex<Vec<Seen>>>);
        async fn query(
            State((req, value, seen)): State<St>,
            uri: Uri,
            headers: HeaderMap,
            Query(q): Query<std::collections::HashMap<String, String>>,
        ) -> (StatusCode, String) {
            let ok = accepted(&req, &headers);
            seen.lock().unwrap().push(Seen {
                uri: uri.to_string(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                    .collect(),
                accepted: ok,
            });
            if !ok {
                return (StatusCode::UNAUTHORIZED, "unauthorized\n".into());
            }
            let time = q.get("time").cloned().unwrap_or_else(|| "0".into());
            (
                StatusCode::OK,
                format!(
                    r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[{time},"{value}"]}}]}}}}"#
                ),
            )
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/api/v1/query", axum::routing::get(query))
            .with_state((require, value.to_owned(), seen.clone()));
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
        PromApi {
            addr,
            seen,
            stop: Some(tx),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for PromApi {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
