//! A fault-injecting HTTP proxy on 127.0.0.1 in front of moto, making moto behave the way AWS
//! does where moto does not (moto 5.x launches every instance at once, never fails a launch,
//! lists no scaling activities, keeps warm pools empty, puts instances in service past launch
//! hooks and answers `CompleteLifecycleAction` with a server error).
//!
//! Everything else goes to moto untouched. Faults, each one AWS's documented or observed
//! behaviour:
//! - **Late stockout** ([`FaultProxy::stockout`]): `SetDesiredCapacity` on the chosen group
//!   succeeds but launches nothing (it is not forwarded); `DescribeAutoScalingGroups` reports the
//!   raised desired capacity with no instance behind it; a configurable delay after the request,
//!   `DescribeScalingActivities` lists a `Failed` launch activity carrying the given status
//!   message. Shape of that activity (Description "Launching a new EC2 instance.  Status Reason:
//!   …", Cause "At … an instance was started in response to a difference between desired and
//!   actual capacity, increasing the capacity from 0 to 1.", StartTime ≈ EndTime, Details with
//!   subnet and zone) as in a real `aws autoscaling describe-scaling-activities` output quoted in
//!   public EKS notes; the spot message from AWS re:Post knowledge center
//!   "eks-troubleshoot-spot-instances". AWS retries the launch later and writes a new activity
//!   each time; this fake writes one per request (the provider reads only the newest).
//! - **Warm-pool members** ([`FaultProxy::add_warm`]): real moto instances listed by
//!   `DescribeWarmPool` as `Warmed:Stopped`. `TerminateInstanceInAutoScalingGroup` on them is
//!   refused ("This operation cannot be called on instances in a warm pool", API reference;
//!   the error's code and text are an assumption: the reference names none); EC2
//!   `TerminateInstances` removes them (user guide, "Warm pools": "you can terminate existing
//!   instances in the warm pool"). The replacement AWS then launches is not modelled.
//! - **Launch hook** ([`FaultProxy::hold`]): the instance is listed `Pending:Wait` until
//!   `CompleteLifecycleAction` names it with the holding hook; any other completion gets AWS's
//!   "No active Lifecycle Action found with instance ID …" (ValidationError).
//! - **Min size**: `TerminateInstanceInAutoScalingGroup` with decrement where desired equals the
//!   group's min size is refused with AWS's ValidationError ("Currently, desiredSize equals
//!   minSize (1). Terminating instance without replacement will violate group's min size
//!   constraint. …"); moto would allow it.
//!
//! - **Chaos** ([`FaultProxy::chaos`]): a share of Auto Scaling and EC2 calls, drawn from a
//!   seeded generator, is refused with throttling or a server error before it reaches moto
//!   (so a refused write is never applied). Auto Scaling throttles with code `Throttling`,
//!   "Rate exceeded", HTTP 400 and reports `InternalFailure` with HTTP 500 (API reference,
//!   "Common errors"); EC2 throttles with `RequestLimitExceeded`, HTTP 503, and reports
//!   `InternalError`, HTTP 500 (EC2 API reference, "Error codes"), in its own `<Response>
//!   <Errors>` envelope.
//! - **Hang** ([`FaultProxy::hang`]): Auto Scaling and EC2 calls are accepted and never
//!   answered, as an overloaded endpoint or a black-holed network path behaves.
//!
//! Every Auto Scaling and EC2 call is recorded ([`FaultProxy::calls`]) so tests can assert what
//! was, and was not, sent.

#![allow(dead_code)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const ASG_NS: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";

/// One recorded call: the service (`autoscaling`, `ec2`), the action and its form parameters.
#[derive(Clone, Debug)]
pub struct Call {
    pub service: String,
    pub action: String,
    pub params: Vec<(String, String)>,
}

impl Call {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A launch the fake accepted and will report failed at `fails_at`.
#[derive(Clone, Debug)]
struct FakeActivity {
    id: String,
    requested: SystemTime,
    fails_at: SystemTime,
    from: i32,
    to: i32,
}

#[derive(Clone, Debug)]
struct Stockout {
    desired: i32,
    delay: Duration,
    message: String,
    zone: String,
    subnet: String,
    activities: Vec<FakeActivity>,
}

#[derive(Clone, Debug)]
struct WarmMember {
    id: String,
    instance_type: String,
    zone: String,
}

/// Random refusals: percentages of calls throttled and failed with a 5xx.
#[derive(Clone, Copy, Debug)]
struct Chaos {
    throttle_pct: u32,
    error_pct: u32,
    rng: u64,
}

impl Chaos {
    /// xorshift64: a fixed sequence per seed, so a run can be repeated.
    fn next_pct(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x % 100) as u32
    }
}

/// What chaos did to one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Throttle,
    ServerError,
}

#[derive(Default)]
struct Faults {
    chaos: Option<Chaos>,
    hang: bool,
    /// Calls refused by chaos so far: (throttled, failed).
    refused: (usize, usize),
    stockouts: HashMap<String, Stockout>,
    warm: HashMap<String, Vec<WarmMember>>,
    /// instance id → the hook holding it.
    held: HashMap<String, String>,
    calls: Vec<Call>,
    seq: u64,
}

struct Shared {
    upstream: Mutex<String>,
    http: reqwest::Client,
    faults: Mutex<Faults>,
}

impl Shared {
    fn upstream(&self) -> String {
        self.upstream.lock().expect("upstream poisoned").clone()
    }
}

/// The proxy; stops when dropped.
pub struct FaultProxy {
    pub endpoint: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    shutdown: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    stopped: tokio::sync::watch::Receiver<bool>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listen on a free loopback port and forward to `upstream` (moto's endpoint).
    pub async fn start(upstream: &str) -> FaultProxy {
        Self::start_on(upstream, 0).await
    }

    /// Listen on `port` (0: a free one) — the same port again after [`FaultProxy::stop`], as a
    /// restarted endpoint comes back at its address.
    pub async fn start_on(upstream: &str, port: u16) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the fault proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream.trim_end_matches('/').to_owned()),
            http: reqwest::Client::new(),
            faults: Mutex::new(Faults::default()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            // Graceful shutdown closes idle keep-alive connections too (hyper), so after `stop`
            // a client's pooled connection is gone as well, not only the listener.
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            let _ = done_tx.send(true);
        });
        FaultProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            shared,
            task,
            shutdown: Mutex::new(Some(tx)),
            stopped,
        }
    }

    /// Stop listening and close idle connections, as a killed endpoint: connections are
    /// refused from now on. Returns once the listener is closed.
    pub async fn stop(&self) {
        if let Some(tx) = self.shutdown.lock().expect("shutdown poisoned").take() {
            let _ = tx.send(());
        }
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|s| *s).await;
    }

    /// Forward to another upstream from now on (a restarted, empty endpoint).
    pub fn set_upstream(&self, upstream: &str) {
        *self.shared.upstream.lock().expect("upstream poisoned") =
            upstream.trim_end_matches('/').to_owned();
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.shared.faults.lock().expect("fault state poisoned")
    }

    /// From now on launches of `group` fail late: accepted, never fulfilled, reported failed
    /// `delay` after each request with `message`. `desired` is the group's desired capacity now
    /// (moto's, which the fake then stops updating).
    pub fn stockout(&self, group: &str, desired: i32, delay: Duration, message: &str, zone: &str) {
        self.faults().stockouts.insert(
            group.to_owned(),
            Stockout {
                desired,
                delay,
                message: message.to_owned(),
                zone: zone.to_owned(),
                subnet: "subnet-0853b684808f1ad07".to_owned(),
                activities: Vec::new(),
            },
        );
    }

    /// From now on refuse `throttle_pct` % of Auto Scaling / EC2 calls with throttling and a
    /// further `error_pct` % with a server error (each call draws once from a generator seeded
    /// with `seed`). `chaos(0, 0, _)` ends it.
    pub fn chaos(&self, throttle_pct: u32, error_pct: u32, seed: u64) {
        self.faults().chaos = (throttle_pct + error_pct > 0).then_some(Chaos {
            throttle_pct,
            error_pct,
            rng: seed.max(1),
        });
    }

    /// Calls refused by chaos so far: (throttled, failed with a 5xx).
    pub fn refused(&self) -> (usize, usize) {
        self.faults().refused
    }

    /// Accept Auto Scaling / EC2 calls and never answer them (`false` ends it; calls already
    /// hanging stay hung until their client gives up).
    pub fn hang(&self, on: bool) {
        self.faults().hang = on;
    }

    /// Failed launch activities of a stocked-out group visible by now.
    pub fn failed_launches(&self, group: &str) -> usize {
        let now = SystemTime::now();
        self.faults().stockouts.get(group).map_or(0, |s| {
            s.activities.iter().filter(|a| a.fails_at <= now).count()
        })
    }

    /// Let the delay of every launch of `group` not yet reported run out now: its failure is
    /// listed from this moment on (a test that must not race a wall-clock delay).
    pub fn elapse(&self, group: &str) {
        let now = SystemTime::now();
        if let Some(s) = self.faults().stockouts.get_mut(group) {
            for a in s.activities.iter_mut().filter(|a| a.fails_at > now) {
                a.fails_at = now;
            }
        }
    }

    /// Desired capacity of a stocked-out group as the fake reports it.
    pub fn desired(&self, group: &str) -> Option<i32> {
        self.faults().stockouts.get(group).map(|s| s.desired)
    }

    /// Launches requested of a stocked-out group (failed or not yet).
    pub fn requested_launches(&self, group: &str) -> usize {
        self.faults()
            .stockouts
            .get(group)
            .map_or(0, |s| s.activities.len())
    }

    /// List the moto instance `id` as a `Warmed:Stopped` member of `group`'s warm pool.
    pub fn add_warm(&self, group: &str, id: &str, instance_type: &str, zone: &str) {
        self.faults()
            .warm
            .entry(group.to_owned())
            .or_default()
            .push(WarmMember {
                id: id.to_owned(),
                instance_type: instance_type.to_owned(),
                zone: zone.to_owned(),
            });
    }

    /// Hold `instance` in `Pending:Wait` on the launch hook `hook`.
    pub fn hold(&self, instance: &str, hook: &str) {
        self.faults()
            .held
            .insert(instance.to_owned(), hook.to_owned());
    }

    pub fn is_held(&self, instance: &str) -> bool {
        self.faults().held.contains_key(instance)
    }

    /// Every Auto Scaling / EC2 call seen so far.
    pub fn calls(&self) -> Vec<Call> {
        self.faults().calls.clone()
    }

    /// Calls of one action.
    pub fn calls_of(&self, action: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.action == action)
            .collect()
    }
}

/// The AWS service a SigV4-signed request is for, from its credential scope.
fn service_of(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    scope.split('/').nth(3).map(str::to_owned)
}

/// The form parameters of an awsQuery / ec2Query request body.
fn form(body: &[u8]) -> Vec<(String, String)> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Vec::new();
    };
    let Ok(uri) = format!("/?{text}").parse::<Uri>() else {
        return Vec::new();
    };
    Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn iso(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn xml(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/xml"));
    r
}

fn asg_ok(action: &str, result: &str) -> Response {
    xml(
        StatusCode::OK,
        format!(
            "<{action}Response xmlns=\"{ASG_NS}\">{result}<ResponseMetadata><RequestId>fault-proxy</RequestId></ResponseMetadata></{action}Response>"
        ),
    )
}

fn refusal(service: &str, r: Refusal) -> Response {
    match (service, r) {
        ("ec2", Refusal::Throttle) => ec2_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "RequestLimitExceeded",
            "Request limit exceeded.",
        ),
        ("ec2", Refusal::ServerError) => ec2_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "An internal error has occurred.",
        ),
        (_, Refusal::Throttle) => xml(
            StatusCode::BAD_REQUEST,
            format!(
                "<ErrorResponse xmlns=\"{ASG_NS}\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
            ),
        ),
        (_, Refusal::ServerError) => xml(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "<ErrorResponse xmlns=\"{ASG_NS}\"><Error><Type>Receiver</Type><Code>InternalFailure</Code><Message>An internal error occurred.</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
            ),
        ),
    }
}

fn ec2_error(status: StatusCode, code: &str, message: &str) -> Response {
    xml(
        status,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"
        ),
    )
}

fn asg_error(code: &str, message: &str) -> Response {
    xml(
        StatusCode::BAD_REQUEST,
        format!(
            "<ErrorResponse xmlns=\"{ASG_NS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>",
            xml_escape(message)
        ),
    )
}

/// Byte ranges of the `<member>…</member>` elements directly inside the first `<{list}>`
/// element (moto writes plain `<member>` tags, no attributes). Nested lists are skipped by
/// depth.
fn members(doc: &str, list: &str) -> Vec<std::ops::Range<usize>> {
    let open = format!("<{list}>");
    let close = format!("</{list}>");
    let Some(start) = doc.find(&open) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut member_start = 0;
    let mut i = start + open.len();
    while i < doc.len() {
        let rest = &doc[i..];
        if rest.starts_with("<member>") {
            if depth == 0 {
                member_start = i;
            }
            depth += 1;
            i += "<member>".len();
        } else if rest.starts_with("</member>") {
            depth = depth.saturating_sub(1);
            i += "</member>".len();
            if depth == 0 {
                out.push(member_start..i);
            }
        } else if depth == 0 && rest.starts_with(&close) {
            break;
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

/// The text of the first `<tag>…</tag>` in `doc`.
fn text_of<'a>(doc: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let s = doc.find(&open)? + open.len();
    let e = doc[s..].find(&close)? + s;
    Some(&doc[s..e])
}

/// `doc` with the first `<tag>…</tag>` text replaced.
fn replace_text(doc: &str, tag: &str, value: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let Some(s) = doc.find(&open).map(|s| s + open.len()) else {
        return doc.to_owned();
    };
    let Some(e) = doc[s..].find(&close).map(|e| e + s) else {
        return doc.to_owned();
    };
    format!("{}{value}{}", &doc[..s], &doc[e..])
}

/// Rewrite a `DescribeAutoScalingGroups` reply: stocked-out groups' desired capacity, held
/// instances' lifecycle state.
fn rewrite_groups(doc: &str, faults: &Faults) -> String {
    let mut out = String::with_capacity(doc.len());
    let mut last = 0;
    for r in members(doc, "AutoScalingGroups") {
        let mut group = doc[r.clone()].to_owned();
        let name = text_of(&group, "AutoScalingGroupName")
            .unwrap_or_default()
            .to_owned();
        if let Some(s) = faults.stockouts.get(&name) {
            group = replace_text(&group, "DesiredCapacity", &s.desired.to_string());
        }
        let mut rewritten = String::new();
        let mut at = 0;
        for ir in members(&group, "Instances") {
            let inst = &group[ir.clone()];
            let id = text_of(inst, "InstanceId").unwrap_or_default();
            rewritten.push_str(&group[at..ir.start]);
            if faults.held.contains_key(id) {
                rewritten.push_str(&replace_text(inst, "LifecycleState", "Pending:Wait"));
            } else {
                rewritten.push_str(inst);
            }
            at = ir.end;
        }
        rewritten.push_str(&group[at..]);
        out.push_str(&doc[last..r.start]);
        out.push_str(&rewritten);
        last = r.end;
    }
    out.push_str(&doc[last..]);
    out
}

fn activities_xml(group: &str, s: &Stockout, now: SystemTime) -> String {
    let mut visible: Vec<&FakeActivity> =
        s.activities.iter().filter(|a| a.fails_at <= now).collect();
    // Newest first, as the API lists them.
    visible.sort_by_key(|a| std::cmp::Reverse(a.fails_at));
    let msg = xml_escape(&s.message);
    let mut members = String::new();
    for a in visible {
        let start = iso(a.fails_at);
        members.push_str(&format!(
            "<member><ActivityId>{id}</ActivityId><AutoScalingGroupName>{group}</AutoScalingGroupName>\
             <Description>Launching a new EC2 instance.  Status Reason: {msg}</Description>\
             <Cause>At {req} an instance was started in response to a difference between desired and actual capacity, increasing the capacity from {from} to {to}.</Cause>\
             <StartTime>{start}</StartTime><EndTime>{start}</EndTime><StatusCode>Failed</StatusCode>\
             <StatusMessage>{msg}</StatusMessage><Progress>100</Progress>\
             <Details>{{&quot;Subnet ID&quot;:&quot;{subnet}&quot;,&quot;Availability Zone&quot;:&quot;{zone}&quot;}}</Details></member>",
            id = a.id,
            req = iso(a.requested),
            from = a.from,
            to = a.to,
            subnet = s.subnet,
            zone = s.zone,
        ));
    }
    format!(
        "<DescribeScalingActivitiesResult><Activities>{members}</Activities></DescribeScalingActivitiesResult>"
    )
}

fn warm_xml(members: &[WarmMember]) -> String {
    let mut out = String::from("<Instances>");
    for m in members {
        out.push_str(&format!(
            "<member><InstanceId>{}</InstanceId><InstanceType>{}</InstanceType><AvailabilityZone>{}</AvailabilityZone>\
             <LifecycleState>Warmed:Stopped</LifecycleState><HealthStatus>Healthy</HealthStatus><ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>",
            m.id, m.instance_type, m.zone
        ));
    }
    out.push_str("</Instances>");
    out
}

/// A bare awsQuery call to moto (moto does not check signatures; the credential scope tells it
/// the service).
async fn upstream_query(shared: &Shared, service: &str, params: &[(&str, &str)]) -> String {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    );
    let body: String = params
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    match shared
        .http
        .post(format!("{}/", shared.upstream()))
        .header("authorization", auth)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn forward(
    shared: &Shared,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Bytes) {
    let url = format!(
        "{}{}",
        shared.upstream(),
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut req = shared.http.request(method, url);
    for (k, v) in headers {
        if k == "host" || k == "content-length" {
            continue;
        }
        req = req.header(k, v);
    }
    match req.body(body).send().await {
        Ok(r) => {
            let status = r.status();
            let mut h = HeaderMap::new();
            for (k, v) in r.headers() {
                if k == "content-length" || k == "transfer-encoding" || k == "connection" {
                    continue;
                }
                h.insert(k.clone(), v.clone());
            }
            let b = r.bytes().await.unwrap_or_default();
            (status, h, b)
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            HeaderMap::new(),
            Bytes::from(format!("fault proxy: upstream failed: {e}")),
        ),
    }
}

fn respond(status: StatusCode, headers: HeaderMap, body: impl Into<axum::body::Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let service = service_of(&headers).unwrap_or_default();
    let is_query = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_query || !(service == "autoscaling" || service == "ec2") {
        let (s, h, b) = forward(&shared, method, &uri, &headers, body).await;
        return respond(s, h, b);
    }
    let params = form(&body);
    let action = param(&params, "Action").unwrap_or_default().to_owned();
    let (refused, hang) = {
        let mut f = shared.faults.lock().expect("fault state poisoned");
        f.calls.push(Call {
            service: service.clone(),
            action: action.clone(),
            params: params.clone(),
        });
        let refused = f.chaos.as_mut().and_then(|c| {
            let draw = c.next_pct();
            if draw < c.throttle_pct {
                Some(Refusal::Throttle)
            } else if draw < c.throttle_pct + c.error_pct {
                Some(Refusal::ServerError)
            } else {
                None
            }
        });
        match refused {
            Some(Refusal::Throttle) => f.refused.0 += 1,
            Some(Refusal::ServerError) => f.refused.1 += 1,
            None => {}
        }
        (refused, f.hang)
    };
    if hang {
        std::future::pending::<()>().await;
    }
    if let Some(r) = refused {
        return refusal(&service, r);
    }
    match (service.as_str(), action.as_str()) {
        ("autoscaling", "SetDesiredCapacity") => {
            let group = param(&params, "AutoScalingGroupName").unwrap_or_default();
            let desired: i32 = param(&params, "DesiredCapacity")
                .and_then(|d| d.parse().ok())
                .unwrap_or(-1);
            let mut f = shared.faults.lock().expect("fault state poisoned");
            let seq = f.seq;
            if let Some(s) = f.stockouts.get_mut(group) {
                let now = SystemTime::now();
                if desired > s.desired {
                    s.activities.push(FakeActivity {
                        id: format!("96f5e2df-604d-9ad0-1598-{seq:012}"),
                        requested: now,
                        fails_at: now + s.delay,
                        from: s.desired,
                        to: desired,
                    });
                }
                s.desired = desired;
                f.seq += 1;
                return asg_ok("SetDesiredCapacity", "");
            }
        }
        ("autoscaling", "DescribeScalingActivities") => {
            let group = param(&params, "AutoScalingGroupName").unwrap_or_default();
            let f = shared.faults.lock().expect("fault state poisoned");
            if let Some(s) = f.stockouts.get(group) {
                let result = activities_xml(group, s, SystemTime::now());
                return asg_ok("DescribeScalingActivities", &result);
            }
        }
        ("autoscaling", "CompleteLifecycleAction") => {
            let instance = param(&params, "InstanceId").unwrap_or_default();
            let hook = param(&params, "LifecycleHookName").unwrap_or_default();
            let mut f = shared.faults.lock().expect("fault state poisoned");
            if f.held.get(instance).is_some_and(|h| h == hook) {
                f.held.remove(instance);
                return asg_ok(
                    "CompleteLifecycleAction",
                    "<CompleteLifecycleActionResult/>",
                );
            }
            return asg_error(
                "ValidationError",
                &format!("No active Lifecycle Action found with instance ID {instance}"),
            );
        }
        ("autoscaling", "TerminateInstanceInAutoScalingGroup") => {
            let instance = param(&params, "InstanceId").unwrap_or_default().to_owned();
            let decrement = param(&params, "ShouldDecrementDesiredCapacity") == Some("true");
            let warm = {
                let f = shared.faults.lock().expect("fault state poisoned");
                f.warm.values().flatten().any(|m| m.id == instance)
            };
            if warm {
                return asg_error(
                    "ValidationError",
                    &format!(
                        "The instance {instance} is in a warm pool; this operation cannot be called on instances in a warm pool."
                    ),
                );
            }
            if decrement {
                let inst = upstream_query(
                    &shared,
                    "autoscaling",
                    &[
                        ("Action", "DescribeAutoScalingInstances"),
                        ("Version", "2011-01-01"),
                        ("InstanceIds.member.1", &instance),
                    ],
                )
                .await;
                if let Some(group) = text_of(&inst, "AutoScalingGroupName").map(str::to_owned) {
                    let g = upstream_query(
                        &shared,
                        "autoscaling",
                        &[
                            ("Action", "DescribeAutoScalingGroups"),
                            ("Version", "2011-01-01"),
                            ("AutoScalingGroupNames.member.1", &group),
                        ],
                    )
                    .await;
                    // The warm pool's own MinSize must not be taken for the group's.
                    let g = match (
                        g.find("<WarmPoolConfiguration>"),
                        g.find("</WarmPoolConfiguration>"),
                    ) {
                        (Some(s), Some(e)) => format!("{}{}", &g[..s], &g[e..]),
                        _ => g,
                    };
                    let min: i32 = text_of(&g, "MinSize")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let desired: i32 = {
                        let f = shared.faults.lock().expect("fault state poisoned");
                        f.stockouts.get(&group).map(|s| s.desired)
                    }
                    .or_else(|| text_of(&g, "DesiredCapacity").and_then(|v| v.parse().ok()))
                    .unwrap_or(0);
                    if desired <= min {
                        return asg_error(
                            "ValidationError",
                            &format!(
                                "Currently, desiredSize equals minSize ({min}). Terminating instance without replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag to false or lower group's min size."
                            ),
                        );
                    }
                }
            }
        }
        ("ec2", "TerminateInstances") => {
            let ids: Vec<String> = params
                .iter()
                .filter(|(k, _)| k.starts_with("InstanceId."))
                .map(|(_, v)| v.clone())
                .collect();
            let mut f = shared.faults.lock().expect("fault state poisoned");
            for members in f.warm.values_mut() {
                members.retain(|m| !ids.contains(&m.id));
            }
        }
        _ => {}
    }
    let (status, h, b) = forward(&shared, method, &uri, &headers, body).await;
    if !status.is_success() {
        return respond(status, h, b);
    }
    let text = String::from_utf8_lossy(&b).into_owned();
    let rewritten = match action.as_str() {
        "DescribeAutoScalingGroups" => {
            let f = shared.faults.lock().expect("fault state poisoned");
            rewrite_groups(&text, &f)
        }
        "DescribeWarmPool" => {
            let group = param(&params, "AutoScalingGroupName").unwrap_or_default();
            let f = shared.faults.lock().expect("fault state poisoned");
            match f.warm.get(group) {
                Some(m) if !m.is_empty() => {
                    let inst = warm_xml(m);
                    if text.contains("<Instances/>") {
                        text.replacen("<Instances/>", &inst, 1)
                    } else if let (Some(s), Some(e)) =
                        (text.find("<Instances>"), text.find("</Instances>"))
                    {
                        format!("{}{inst}{}", &text[..s], &text[e + "</Instances>".len()..])
                    } else {
                        text
                    }
                }
                _ => text,
            }
        }
        _ => text,
    };
    respond(status, h, rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_found_by_depth() {
        let doc = "<R><AutoScalingGroups><member><A><member>x</member></A><AutoScalingGroupName>g</AutoScalingGroupName></member><member><AutoScalingGroupName>h</AutoScalingGroupName></member></AutoScalingGroups></R>";
        let m = members(doc, "AutoScalingGroups");
        assert_eq!(m.len(), 2);
        assert_eq!(
            text_of(&doc[m[1].clone()], "AutoScalingGroupName"),
            Some("h")
        );
    }
}
