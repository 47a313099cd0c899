//! An in-process fake Kubernetes API server on 127.0.0.1 speaking the real wire format for the
//! parts gpupool uses, so the tests drive the real `kube::Client` and kube-runtime watchers:
//!
//! - list (`GET /api/v1/pods`, `/api/v1/nodes`) with `labelSelector` (`k`, `k=v`, `!k`) and
//!   `fieldSelector` (`spec.nodeName`, `status.phase`, `metadata.name` with `=`/`!=`), returning
//!   `{"kind":"PodList","metadata":{"resourceVersion":…},"items":[…]}`;
//! - watch (`?watch=true&resourceVersion=N&allowWatchBookmarks=true&timeoutSeconds=S`):
//!   newline-delimited `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":…}`, replaying
//!   the event log after N, then live events; objects leaving or entering a selector are sent
//!   as DELETED / ADDED as the real server does; a resourceVersion older than the compacted log
//!   gets an ERROR event with a `410 Expired` Status;
//! - `PATCH /api/v1/nodes/{name}`: merge patch, strategic merge patch (applied as a merge
//!   patch: no patch-merge-keys for lists) and JSON patch (add/replace/remove/test);
//! - `POST …/pods/{name}/eviction` (policy/v1 Eviction) checked against PodDisruptionBudgets
//!   (`matchLabels` selector, `status.disruptionsAllowed`): `429 TooManyRequests` when the
//!   budget allows no disruption, otherwise the pod is deleted gracefully (deletionTimestamp
//!   set; the test plays the kubelet with [`FakeKube::finish_terminating`]). As the real
//!   handler does, Pending, Succeeded and Failed pods skip the budget, and a running pod that is
//!   not Ready skips it under `unhealthyPodEvictionPolicy: AlwaysAllow` or, by default, while
//!   `currentHealthy >= desiredHealthy > 0`;
//! - events: `events.k8s.io/v1` create + merge patch, core `v1` create;
//! - leases: get / create (409 AlreadyExists) / replace with resourceVersion preconditions
//!   (409 Conflict);
//! - configmaps: get / create (409 AlreadyExists) / merge patch (404 when missing) / replace
//!   (409 Conflict on a stale resourceVersion).
//!
//! Test controls: [`FakeKube::drop_watches`] (network drop), [`FakeKube::expire_watches`]
//! (etcd compaction: open watches get 410 and old resourceVersions are refused),
//! [`FakeKube::fail_lists`] (lists answer 500 until cleared: a watch error, then a relist that
//! cannot complete yet),
//! [`FakeKube::restart`] (API server restart on the same port, state kept as etcd would).

// Handlers answer with a ready HTTP response on error; boxing it buys nothing in a test fake.
#![allow(clippy::result_large_err)]
#![allow(dead_code)]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Pod,
    Node,
    Lease,
    Event,
    CoreEvent,
    Pdb,
    ConfigMap,
}

impl Kind {
    fn list_kind(self) -> &'static str {
        match self {
            Kind::Pod => "PodList",
            Kind::Node => "NodeList",
            Kind::Lease => "LeaseList",
            Kind::Event | Kind::CoreEvent => "EventList",
            Kind::Pdb => "PodDisruptionBudgetList",
            Kind::ConfigMap => "ConfigMapList",
        }
    }
    fn api_version(self) -> &'static str {
        match self {
            Kind::Pod | Kind::Node | Kind::CoreEvent | Kind::ConfigMap => "v1",
            Kind::Lease => "coordination.k8s.io/v1",
            Kind::Event => "events.k8s.io/v1",
            Kind::Pdb => "policy/v1",
        }
    }
    fn kind(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Node => "Node",
            Kind::Lease => "Lease",
            Kind::Event | Kind::CoreEvent => "Event",
            Kind::Pdb => "PodDisruptionBudget",
            Kind::ConfigMap => "ConfigMap",
        }
    }
    fn of(v: &Value) -> Option<Kind> {
        match (v["apiVersion"].as_str()?, v["kind"].as_str()?) {
            ("v1", "Pod") => Some(Kind::Pod),
            ("v1", "Node") => Some(Kind::Node),
            ("coordination.k8s.io/v1", "Lease") => Some(Kind::Lease),
            ("events.k8s.io/v1", "Event") => Some(Kind::Event),
            ("v1", "Event") => Some(Kind::CoreEvent),
            ("policy/v1", "PodDisruptionBudget") => Some(Kind::Pdb),
            ("v1", "ConfigMap") => Some(Kind::ConfigMap),
            _ => None,
        }
    }
}

type Key = (Kind, String, String);

#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    kind: Kind,
    old: Option<Value>,
    new: Option<Value>,
}

#[derive(Default)]
struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    /// Changes after `compacted_rv`, for watches resuming from a resourceVersion.
    log: VecDeque<Change>,
    compacted_rv: u64,
    /// `METHOD path?query` of every request, in order.
    requests: Vec<String>,
    uid: u64,
}

/// Signals to open watch streams: every bump of `generation` ends the streams opened before
/// it; with `expire_oldest` set they first send a `410 Expired` ERROR event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct WatchControl {
    generation: u64,
    expire_oldest: Option<u64>,
}

struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
    control: watch::Sender<WatchControl>,
    /// Bookmarks every this often on watches that asked for them.
    bookmark_every: Duration,
    /// Lists fail with a 500 (`FakeKube::fail_lists`), as when the API server cannot read
    /// etcd; watches already open carry on.
    fail_lists: std::sync::atomic::AtomicBool,
}

pub struct FakeKube {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    generation: u64,
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": if code < 300 { "Success" } else { "Failure" },
        "message": message, "reason": reason, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

fn not_found(kind: Kind, name: &str) -> Response {
    status(
        404,
        "NotFound",
        &format!("{}s \"{name}\" not found", kind.kind().to_lowercase()),
    )
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = json!({});
        }
        let t = target.as_object_mut().expect("made an object above");
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    } else {
        *target = patch.clone();
    }
}

fn pointer_parent<'a>(doc: &'a mut Value, path: &str) -> Option<(&'a mut Value, String)> {
    let (parent, last) = path.rsplit_once('/')?;
    let last = last.replace("~1", "/").replace("~0", "~");
    let p = if parent.is_empty() {
        Some(doc)
    } else {
        doc.pointer_mut(parent)
    }?;
    Some((p, last))
}

/// RFC 6902 JSON patch: add, replace, remove, test.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    for op in ops.as_array().ok_or("JSON patch must be an array")? {
        let path = op["path"].as_str().ok_or("op without path")?;
        match op["op"].as_str() {
            Some("test") => {
                if doc.pointer(path) != Some(&op["value"]) {
                    return Err(format!("test failed at {path}"));
                }
            }
            Some("remove") => {
                let (parent, last) = pointer_parent(doc, path).ok_or("bad path")?;
                match parent {
                    Value::Object(m) => {
                        m.remove(&last).ok_or(format!("no {path}"))?;
                    }
                    Value::Array(a) => {
                        let i: usize = last.parse().map_err(|_| "bad index")?;
                        if i >= a.len() {
                            return Err(format!("no {path}"));
                        }
                        a.remove(i);
                    }
                    _ => return Err(format!("no {path}")),
                }
            }
            Some(o @ ("add" | "replace")) => {
                let value = op["value"].clone();
                let (parent, last) = pointer_parent(doc, path).ok_or("bad path")?;
                match parent {
                    Value::Object(m) => {
                        if o == "replace" && !m.contains_key(&last) {
                            return Err(format!("no {path} to replace"));
                        }
                        m.insert(last, value);
                    }
                    Value::Array(a) => {
                        if last == "-" {
                            a.push(value);
                        } else {
                            let i: usize = last.parse().map_err(|_| "bad index")?;
                            if o == "replace" {
                                *a.get_mut(i).ok_or("bad index")? = value;
                            } else if i <= a.len() {
                                a.insert(i, value);
                            } else {
                                return Err("bad index".into());
                            }
                        }
                    }
                    _ => return Err(format!("parent of {path} is not a container")),
                }
            }
            other => return Err(format!("unsupported op {other:?}")),
        }
    }
    Ok(())
}

fn field(obj: &Value, path: &str) -> String {
    let ptr = format!("/{}", path.replace('.', "/"));
    obj.pointer(&ptr)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// `a=b,c!=d` over `spec.nodeName`, `status.phase`, `metadata.name`, `metadata.namespace`.
fn field_selector_matches(sel: &str, obj: &Value) -> bool {
    sel.split(',').filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            field(obj, k) != v
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            field(obj, k) == v
        } else {
            false
        }
    })
}

/// `k`, `!k`, `k=v`, `k!=v`, comma-separated (no set-based `in (…)` forms).
fn label_selector_matches(sel: &str, obj: &Value) -> bool {
    let labels = &obj["metadata"]["labels"];
    sel.split(',').filter(|s| !s.is_empty()).all(|term| {
        if let Some(k) = term.strip_prefix('!') {
            labels.get(k).is_none()
        } else if let Some((k, v)) = term.split_once("!=") {
            labels.get(k).and_then(Value::as_str) != Some(v)
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels.get(k).and_then(Value::as_str) == Some(v)
        } else {
            labels.get(term).is_some()
        }
    })
}

#[derive(Clone, Default)]
struct Filter {
    namespace: Option<String>,
    labels: Option<String>,
    fields: Option<String>,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj["metadata"]["namespace"].as_str() != Some(ns)
        {
            return false;
        }
        self.labels
            .as_deref()
            .is_none_or(|s| label_selector_matches(s, obj))
            && self
                .fields
                .as_deref()
                .is_none_or(|s| field_selector_matches(s, obj))
    }
}

impl Store {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn put(&mut self, kind: Kind, mut obj: Value) -> (Value, Change) {
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let key = (kind, ns, name);
        let old = self.objects.get(&key).cloned();
        let rv = self.next_rv();
        obj["apiVersion"] = json!(kind.api_version());
        obj["kind"] = json!(kind.kind());
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if obj["metadata"]["uid"].is_null() {
            let uid = old
                .as_ref()
                .map(|o| o["metadata"]["uid"].clone())
                .unwrap_or_else(|| {
                    self.uid += 1;
                    json!(format!("00000000-0000-0000-0000-{:012}", self.uid))
                });
            obj["metadata"]["uid"] = uid;
        }
        if obj["metadata"]["creationTimestamp"].is_null() {
            obj["metadata"]["creationTimestamp"] = old
                .as_ref()
                .map(|o| o["metadata"]["creationTimestamp"].clone())
                .unwrap_or(json!("2026-01-01T00:00:00Z"));
        }
        self.objects.insert(key, obj.clone());
        let change = Change {
            rv,
            kind,
            old,
            new: Some(obj.clone()),
        };
        self.log.push_back(change.clone());
        (obj, change)
    }

    fn remove(&mut self, kind: Kind, ns: &str, name: &str) -> Option<Change> {
        let old = self
            .objects
            .remove(&(kind, ns.to_owned(), name.to_owned()))?;
        let rv = self.next_rv();
        let mut gone = old.clone();
        gone["metadata"]["resourceVersion"] = json!(rv.to_string());
        let change = Change {
            rv,
            kind,
            old: Some(old),
            new: None,
        };
        // DELETED carries the last state with the deletion's resourceVersion.
        let mut c = change.clone();
        c.old = Some(gone);
        self.log.push_back(c.clone());
        Some(c)
    }

    fn list(&self, kind: Kind, f: &Filter) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((k, _, _), v)| *k == kind && f.matches(v))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The watch event a change is for a watcher with filter `f`, if any.
fn event_for(change: &Change, kind: Kind, f: &Filter) -> Option<Value> {
    if change.kind != kind {
        return None;
    }
    let was = change.old.as_ref().is_some_and(|o| f.matches(o));
    match &change.new {
        None if was => Some(json!({"type": "DELETED", "object": change.old})),
        None => None,
        Some(n) => {
            let is = f.matches(n);
            match (change.old.is_some() && was, is) {
                (true, true) => Some(json!({"type": "MODIFIED", "object": n})),
                (false, true) => Some(json!({"type": "ADDED", "object": n})),
                (true, false) => {
                    // Left the selector: the real server sends DELETED with the new state.
                    let mut o = n.clone();
                    o["metadata"]["resourceVersion"] = json!(change.rv.to_string());
                    Some(json!({"type": "DELETED", "object": o}))
                }
                (false, false) => None,
            }
        }
    }
}

fn expired(rv: &str, oldest: u64) -> Value {
    json!({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {rv} ({oldest})"),
        "reason": "Expired", "code": 410}})
}

fn line(v: &Value) -> Bytes {
    let mut s = serde_json::to_vec(v).expect("JSON values serialise");
    s.push(b'\n');
    Bytes::from(s)
}

type Q = Query<HashMap<String, String>>;

impl Shared {
    fn emit(&self, change: Change) {
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(change);
    }

    fn record(&self, method: &Method, uri: &Uri) {
        self.store
            .lock()
            .unwrap()
            .requests
            .push(format!("{method} {uri}"));
    }

    fn list_or_watch(
        self: &Arc<Self>,
        kind: Kind,
        ns: Option<String>,
        q: &HashMap<String, String>,
    ) -> Response {
        let f = Filter {
            namespace: ns,
            labels: q.get("labelSelector").cloned(),
            fields: q.get("fieldSelector").cloned(),
        };
        let watching = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
        if !watching {
            if self.fail_lists.load(std::sync::atomic::Ordering::Relaxed) {
                // What kube-apiserver answers when its etcd read times out.
                return status(500, "InternalError", "etcdserver: request timed out");
            }
            let st = self.store.lock().unwrap();
            let body = json!({
                "kind": kind.list_kind(), "apiVersion": kind.api_version(),
                "metadata": {"resourceVersion": st.rv.to_string()},
                "items": st.list(kind, &f),
            });
            return axum::Json(body).into_response();
        }
        let from = q.get("resourceVersion").cloned().unwrap_or_default();
        let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
        let timeout = q
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map(Duration::from_secs);
        let (tx, rx) = mpsc::channel::<Bytes>(1024);
        let mut control = self.control.subscribe();
        let start_control = *control.borrow_and_update();
        let (replay, mut live, current_rv) = {
            let st = self.store.lock().unwrap();
            let from_rv: u64 = if from.is_empty() || from == "0" {
                // "Any": start from now, with synthetic ADDED for current objects.
                0
            } else {
                from.parse().unwrap_or(0)
            };
            if from_rv != 0 && from_rv < st.compacted_rv {
                let err = expired(&from, st.compacted_rv);
                let _ = tx.try_send(line(&err));
                drop(tx);
                return stream_response(rx);
            }
            let replay: Vec<Value> = if from_rv == 0 {
                st.list(kind, &f)
                    .into_iter()
                    .map(|o| json!({"type": "ADDED", "object": o}))
                    .collect()
            } else {
                st.log
                    .iter()
                    .filter(|c| c.rv > from_rv)
                    .filter_map(|c| event_for(c, kind, &f))
                    .collect()
            };
            // Subscribe under the lock: no change can fall between replay and live.
            (replay, self.changes.subscribe(), st.rv)
        };
        let shared = self.clone();
        tokio::spawn(async move {
            for ev in replay {
                if tx.send(line(&ev)).await.is_err() {
                    return;
                }
            }
            let bookmark = |rv: u64| {
                json!({"type": "BOOKMARK", "object": {"kind": kind.kind(), "apiVersion": kind.api_version(),
                        "metadata": {"resourceVersion": rv.to_string()}}})
            };
            let mut last_rv = current_rv;
            if bookmarks && tx.send(line(&bookmark(last_rv))).await.is_err() {
                return;
            }
            let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
            let mut tick = tokio::time::interval(shared.bookmark_every);
            tick.tick().await;
            loop {
                let until_deadline = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = until_deadline => return,
                    changed = control.changed() => {
                        if changed.is_err() { return; }
                        let c = *control.borrow_and_update();
                        if c.generation == start_control.generation { continue; }
                        if let Some(oldest) = c.expire_oldest {
                            let _ = tx.send(line(&expired(&last_rv.to_string(), oldest))).await;
                        }
                        return;
                    }
                    _ = tick.tick(), if bookmarks => {
                        let rv = shared.store.lock().unwrap().rv;
                        last_rv = last_rv.max(rv);
                        if tx.send(line(&bookmark(last_rv))).await.is_err() { return; }
                    }
                    msg = live.recv() => match msg {
                        Ok(change) => {
                            last_rv = change.rv;
                            if let Some(ev) = event_for(&change, kind, &f)
                                && tx.send(line(&ev)).await.is_err()
                            {
                                return;
                            }
                        }
                        // Fell behind: a real server would close the watch too.
                        Err(_) => return,
                    }
                }
            }
        });
        stream_response(rx)
    }
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .expect("static response parts are valid")
}

type S = State<Arc<Shared>>;
type Route = MethodRouter<Arc<Shared>>;

/// Every request is recorded (`METHOD path?query`) before it is handled.
async fn record(State(s): S, req: Request, next: Next) -> Response {
    s.record(req.method(), req.uri());
    next.run(req).await
}

/// List or watch every object of `kind`.
fn list_all(kind: Kind) -> Route {
    get(move |State(s): S, Query(q): Q| async move { s.list_or_watch(kind, None, &q) })
}

async fn pods_ns(State(s): S, Path(ns): Path<String>, Query(q): Q) -> Response {
    s.list_or_watch(Kind::Pod, Some(ns), &q)
}

fn get_one(s: &Shared, kind: Kind, ns: &str, name: &str) -> Response {
    let st = s.store.lock().unwrap();
    match st.objects.get(&(kind, ns.to_owned(), name.to_owned())) {
        Some(v) => axum::Json(v.clone()).into_response(),
        None => not_found(kind, name),
    }
}

/// GET of one namespaced object of `kind`.
fn get_namespaced(kind: Kind) -> Route {
    get(
        move |State(s): S, Path((ns, name)): Path<(String, String)>| async move {
            get_one(&s, kind, &ns, &name)
        },
    )
}

async fn node_get(State(s): S, Path(name): Path<String>) -> Response {
    get_one(&s, Kind::Node, "", &name)
}

fn parse_body(body: &Bytes, what: &str) -> Result<Value, Response> {
    serde_json::from_slice(body)
        .map_err(|_| status(400, "BadRequest", &format!("{what} is not JSON")))
}

impl Shared {
    /// Replace the stored object with `f(current)` (404 when there is none; `f` may refuse with
    /// an error response). The object keeps its uid; the change is emitted.
    fn update(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        f: impl FnOnce(&Value) -> Result<Value, Response>,
    ) -> Response {
        let change = {
            let mut st = self.store.lock().unwrap();
            let Some(current) = st.objects.get(&(kind, ns.to_owned(), name.to_owned())) else {
                return not_found(kind, name);
            };
            let mut obj = match f(current) {
                Ok(obj) => obj,
                Err(refused) => return refused,
            };
            obj["metadata"]["uid"] = current["metadata"]["uid"].clone();
            st.put(kind, obj)
        };
        self.emit(change.1);
        axum::Json(change.0).into_response()
    }
}

async fn node_patch(
    State(s): S,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let patch = match parse_body(&body, "patch") {
        Ok(p) => p,
        Err(r) => return r,
    };
    s.update(Kind::Node, "", &name, |current| {
        let mut obj = current.clone();
        match ct {
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                merge_patch(&mut obj, &patch)
            }
            "application/json-patch+json" => {
                json_patch(&mut obj, &patch).map_err(|e| status(422, "Invalid", &e))?
            }
            other => {
                return Err(status(
                    415,
                    "UnsupportedMediaType",
                    &format!("the body of the request was in an unknown format: {other}"),
                ));
            }
        }
        Ok(obj)
    })
}

async fn evict(State(s): S, Path((ns, name)): Path<(String, String)>, body: Bytes) -> Response {
    let ev = match parse_body(&body, "eviction body") {
        Ok(ev) => ev,
        Err(r) => return r,
    };
    if ev["kind"] != "Eviction" || ev["apiVersion"] != "policy/v1" {
        return status(400, "BadRequest", "expected a policy/v1 Eviction");
    }
    if ev["metadata"]["name"] != name.as_str() {
        return status(400, "BadRequest", "name in body does not match the URL");
    }
    let changes = {
        let mut st = s.store.lock().unwrap();
        let key = (Kind::Pod, ns.clone(), name.clone());
        let Some(pod) = st.objects.get(&key).cloned() else {
            return not_found(Kind::Pod, &name);
        };
        let labels = pod["metadata"]["labels"].clone();
        let pdbs: Vec<Value> = st
            .objects
            .iter()
            .filter(|((k, pns, _), _)| *k == Kind::Pdb && *pns == ns)
            .map(|(_, v)| v.clone())
            .filter(|pdb| {
                pdb["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .is_some_and(|ml| ml.iter().all(|(k, v)| labels.get(k) == Some(v)))
            })
            .collect();
        if pdbs.len() > 1 {
            return status(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            );
        }
        let mut changes = Vec::new();
        if pod["metadata"]["deletionTimestamp"].is_null() {
            // Which budget the eviction is checked against, as the API server's eviction REST
            // handler decides (kubernetes `pkg/registry/core/pod/storage/eviction.go`):
            // `canIgnorePDB` skips it for Succeeded, Failed and Pending pods (and terminating
            // ones, above); a running pod that is not Ready is deleted without touching the
            // budget under `unhealthyPodEvictionPolicy: AlwaysAllow`, and under the default
            // `IfHealthyBudget` when the application is not disrupted
            // (`currentHealthy >= desiredHealthy > 0`; PodDisruptionBudgetSpec API reference).
            let phase = pod["status"]["phase"].as_str().unwrap_or("");
            let ignore_pdb = matches!(phase, "Succeeded" | "Failed" | "Pending");
            let ready = pod["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            let pdb = pdbs.into_iter().next().filter(|_| !ignore_pdb);
            let pdb = pdb.filter(|pdb| {
                if ready {
                    return true;
                }
                let st = &pdb["status"];
                let (current, desired) = (
                    st["currentHealthy"].as_i64().unwrap_or(0),
                    st["desiredHealthy"].as_i64().unwrap_or(0),
                );
                let always = pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow";
                !(always || (current >= desired && desired > 0))
            });
            if let Some(mut pdb) = pdb {
                let allowed = pdb["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
                if allowed <= 0 {
                    let pdb_name = pdb["metadata"]["name"].as_str().unwrap_or("").to_owned();
                    let body = json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                        "reason": "TooManyRequests", "code": 429,
                        "details": {"causes": [{"reason": "DisruptionBudget",
                            "message": format!("The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
                                pdb["status"]["desiredHealthy"], pdb["status"]["currentHealthy"])}]}
                    });
                    return (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
                }
                pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
                changes.push(st.put(Kind::Pdb, pdb).1);
            }
            let grace = pod["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(30);
            if grace == 0 {
                changes.extend(st.remove(Kind::Pod, &ns, &name));
            } else {
                let mut p = pod;
                p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:30Z");
                p["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                changes.push(st.put(Kind::Pod, p).1);
            }
        }
        changes
    };
    for c in changes {
        s.emit(c);
    }
    status(201, "", "")
}

fn create(s: &Shared, kind: Kind, ns: &str, body: &Bytes) -> Response {
    let mut obj = match parse_body(body, "body") {
        Ok(o) => o,
        Err(r) => return r,
    };
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    if name.is_empty() {
        return status(422, "Invalid", "metadata.name: Required value");
    }
    obj["metadata"]["namespace"] = json!(ns);
    let change = {
        let mut st = s.store.lock().unwrap();
        if st
            .objects
            .contains_key(&(kind, ns.to_owned(), name.clone()))
        {
            return status(
                409,
                "AlreadyExists",
                &format!("{}s \"{name}\" already exists", kind.kind().to_lowercase()),
            );
        }
        st.put(kind, obj)
    };
    s.emit(change.1);
    (StatusCode::CREATED, axum::Json(change.0)).into_response()
}

/// POST of a new namespaced object of `kind`.
fn create_in(kind: Kind) -> Route {
    post(
        move |State(s): S, Path(ns): Path<String>, body: Bytes| async move {
            create(&s, kind, &ns, &body)
        },
    )
}

async fn lease_replace(
    State(s): S,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    replace_checked(s, Kind::Lease, "leases.coordination.k8s.io", ns, name, body)
}

/// `PUT` of a ConfigMap (the state store's update): same optimistic concurrency as a Lease.
async fn configmap_replace(
    State(s): S,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    replace_checked(s, Kind::ConfigMap, "configmaps", ns, name, body)
}

/// Replace an object; 409 Conflict when the body's resourceVersion is not the current one (the
/// API server's optimistic concurrency), 404 when it does not exist.
fn replace_checked(
    s: Arc<Shared>,
    kind: Kind,
    resource: &str,
    ns: String,
    name: String,
    body: Bytes,
) -> Response {
    let mut obj = match parse_body(&body, "body") {
        Ok(o) => o,
        Err(r) => return r,
    };
    obj["metadata"]["namespace"] = json!(ns);
    s.update(kind, &ns, &name, |current| {
        let want = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
        let have = current["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("");
        if !want.is_empty() && want != have {
            return Err(status(
                409,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                ),
            ));
        }
        Ok(obj)
    })
}

async fn event_patch(
    State(s): S,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let patch = match parse_body(&body, "patch") {
        Ok(p) => p,
        Err(r) => return r,
    };
    s.update(Kind::Event, &ns, &name, |current| {
        let mut obj = current.clone();
        merge_patch(&mut obj, &patch);
        Ok(obj)
    })
}

/// `PATCH` of a ConfigMap: only a JSON merge patch (what gpupool sends); 404 when there is
/// none, as the real server answers a patch of a missing object.
async fn configmap_patch(
    State(s): S,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct != "application/merge-patch+json" {
        return status(
            415,
            "UnsupportedMediaType",
            &format!("this fake takes merge patches of configmaps only, got {ct}"),
        );
    }
    let patch = match parse_body(&body, "patch") {
        Ok(p) => p,
        Err(r) => return r,
    };
    s.update(Kind::ConfigMap, &ns, &name, |current| {
        let mut obj = current.clone();
        merge_patch(&mut obj, &patch);
        Ok(obj)
    })
}

async fn fallback(m: Method, u: Uri) -> Response {
    status(
        404,
        "NotFound",
        &format!("the server could not find the requested resource ({m} {u})"),
    )
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/pods", list_all(Kind::Pod))
        .route("/api/v1/namespaces/{ns}/pods", get(pods_ns))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}",
            get_namespaced(Kind::Pod),
        )
        .route("/api/v1/namespaces/{ns}/pods/{name}/eviction", post(evict))
        .route("/api/v1/nodes", list_all(Kind::Node))
        .route("/api/v1/nodes/{name}", get(node_get).patch(node_patch))
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
            create_in(Kind::Lease),
        )
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
            get_namespaced(Kind::Lease).put(lease_replace),
        )
        .route(
            "/apis/events.k8s.io/v1/namespaces/{ns}/events",
            create_in(Kind::Event),
        )
        .route(
            "/apis/events.k8s.io/v1/namespaces/{ns}/events/{name}",
            axum::routing::patch(event_patch),
        )
        .route("/api/v1/namespaces/{ns}/events", create_in(Kind::CoreEvent))
        .route(
            "/api/v1/namespaces/{ns}/configmaps",
            create_in(Kind::ConfigMap),
        )
        .route(
            "/api/v1/namespaces/{ns}/configmaps/{name}",
            get_namespaced(Kind::ConfigMap)
                .patch(configmap_patch)
                .put(configmap_replace),
        )
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

impl FakeKube {
    /// Start on a free loopback port.
    pub async fn start() -> FakeKube {
        let (changes, _) = broadcast::channel(4096);
        let (control, _) = watch::channel(WatchControl::default());
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changes,
            control,
            bookmark_every: Duration::from_millis(500),
            fail_lists: std::sync::atomic::AtomicBool::new(false),
        });
        let mut fk = FakeKube {
            shared,
            addr: "127.0.0.1:0".parse().unwrap(),
            shutdown: None,
            server: None,
            generation: 0,
        };
        fk.listen().await;
        fk
    }

    async fn listen(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener = socket.listen(128).unwrap();
        self.addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(self.shared.clone());
        self.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        }));
        self.shutdown = Some(tx);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Client configuration for this server (plain http, no auth).
    pub fn config(&self) -> kube::Config {
        kube::Config::new(self.url().parse().unwrap())
    }

    /// A real kube client pointed at this server, built the way gpupool builds its own.
    pub fn client(&self) -> kube::Client {
        gpupool::kube::client(self.config()).unwrap()
    }

    /// End every open watch stream, as a dropped connection would.
    pub fn drop_watches(&mut self) {
        self.generation += 1;
        self.shared.control.send_replace(WatchControl {
            generation: self.generation,
            expire_oldest: None,
        });
    }

    /// Make every list fail (500) until called again with `false`; open watches carry on.
    pub fn fail_lists(&self, fail: bool) {
        self.shared
            .fail_lists
            .store(fail, std::sync::atomic::Ordering::Relaxed);
    }

    /// Compact the event log: open watches get a `410 Expired` ERROR event and every
    /// resourceVersion seen so far is too old to resume from, forcing a relist.
    pub fn expire_watches(&mut self) {
        let oldest = {
            let mut st = self.shared.store.lock().unwrap();
            st.compacted_rv = st.rv + 1;
            st.log.clear();
            st.compacted_rv
        };
        self.generation += 1;
        self.shared.control.send_replace(WatchControl {
            generation: self.generation,
            expire_oldest: Some(oldest),
        });
    }

    /// Stop serving (connections and watches end), then listen again on the same port with
    /// the same state, like an API server restart in front of the same etcd.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.listen().await;
    }

    /// Stop serving; `restart` or `resume` brings it back on the same port.
    pub async fn stop(&mut self) {
        self.drop_watches();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            // Watches were ended above, so graceful shutdown finishes quickly; if a connection
            // lingers past the bound, the listener is closed anyway once the task is aborted.
            let abort = h.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), h)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    pub async fn resume(&mut self) {
        self.listen().await;
    }

    /// Create or replace an object (apiVersion/kind decide the collection).
    pub fn apply(&self, obj: Value) -> Value {
        let kind = Kind::of(&obj).expect("object with a supported apiVersion/kind");
        let (v, change) = self.shared.store.lock().unwrap().put(kind, obj);
        self.shared.emit(change);
        v
    }

    pub fn delete(&self, kind: Kind, ns: &str, name: &str) -> bool {
        let change = self.shared.store.lock().unwrap().remove(kind, ns, name);
        match change {
            Some(c) => {
                self.shared.emit(c);
                true
            }
            None => false,
        }
    }

    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<Value> {
        self.shared
            .store
            .lock()
            .unwrap()
            .objects
            .get(&(kind, ns.to_owned(), name.to_owned()))
            .cloned()
    }

    pub fn list(&self, kind: Kind) -> Vec<Value> {
        self.shared
            .store
            .lock()
            .unwrap()
            .list(kind, &Filter::default())
    }

    /// Play the kubelet: pods whose grace period started are gone.
    pub fn finish_terminating(&self) -> usize {
        let terminating: Vec<(String, String)> = self
            .list(Kind::Pod)
            .into_iter()
            .filter(|p| !p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| {
                (
                    p["metadata"]["namespace"].as_str().unwrap_or("").to_owned(),
                    p["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        for (ns, name) in &terminating {
            self.delete(Kind::Pod, ns, name);
        }
        terminating.len()
    }

    /// Every request so far, `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.store.lock().unwrap().requests.clone()
    }

    pub fn count_requests(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.requests().iter().filter(|r| pred(r)).count()
    }
}

/// Poll `f` until it returns `Some`, or panic with `what` after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- object builders ----

pub fn gpu_node(name: &str, provider_id: &str, pool: &str, gpus: u32, labels: Value) -> Value {
    let mut l = json!({"gpupool.io/pool": pool, "kubernetes.io/hostname": name});
    merge_patch(&mut l, &labels);
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": l,
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                     "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
                     "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
        "spec": {"providerID": provider_id},
        "status": {
            "capacity": {"cpu": "96", "memory": "1000Gi", "nvidia.com/gpu": gpus.to_string()},
            "allocatable": {"cpu": "95", "memory": "990Gi", "nvidia.com/gpu": gpus.to_string()},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "images": [{"names": ["registry/vllm:latest"], "sizeBytes": 12_000_000_000u64}]
        }
    })
}

pub fn pending_pod(ns: &str, name: &str, resources: Value, node_selector: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"containers": [{"name": "server", "image": "vllm", "resources": {"limits": resources}}],
                 "nodeSelector": node_selector},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}
    })
}

pub fn running_pod(
    ns: &str,
    name: &str,
    node: &str,
    app: &str,
    grace_s: i64,
    annotations: Value,
) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}, "annotations": annotations,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": app,
                                          "uid": "rs-1", "controller": true}]},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": grace_s,
                 "containers": [{"name": "server", "image": "vllm",
                                 "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
        "status": {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"},
                                                      {"type": "Ready", "status": "True"}]}
    })
}

pub fn daemon_pod(ns: &str, name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "dcgm",
                                          "uid": "ds-1", "controller": true}]},
        "spec": {"nodeName": node, "containers": [{"name": "exporter", "image": "dcgm"}]},
        "status": {"phase": "Running"}
    })
}

pub fn pdb(ns: &str, name: &str, app: &str, allowed: i64) -> Value {
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}},
        "status": {"disruptionsAllowed": allowed, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
    })
}
