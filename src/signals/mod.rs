//! Demand signals → [`PoolDemand`]: Prometheus queries, the latency guard-rail, cron windows,
//! CloudWatch metrics and SQS queue depth, plus the forecast used for pre-warming.
//!
//! [`SignalDemand`] is the production [`DemandSource`]. Per pool, each signal becomes one
//! [`SignalReading`]; the pool wants the *largest* replicas any fresh signal asks for (as KEDA
//! does with several triggers). A signal that cannot be read — timeout, HTTP or parse error,
//! empty result, `NaN`/`Inf`, too old — is reported `stale` with no replicas: it never lowers
//! demand, and the planner holds scale-down while any signal of the pool is stale. The
//! controller exports staleness (`gpupool_signal_stale`) and logs each change once.
//!
//! Signal arithmetic:
//! - `prometheus`, `cloudwatch`, `sqs`: KEDA's, see [`keda::replicas`].
//! - `latency`: a guard-rail, see [`keda::latency_replicas`]; it scales from the pool's
//!   *serving replicas now*, which the cluster side publishes through [`ServingReplicas`]
//!   (the VM-only cluster does so every tick). Without a published count it starts from the
//!   largest demand the pool's other fresh signals report this tick (at least one).
//! - `cron`: `desired` replicas while the window is open, 0 outside it.
//!
//! All of a tick's queries run concurrently, each with its own timeout, so one slow endpoint
//! delays the tick by at most its `timeout_s`.

pub mod auth;
#[cfg(feature = "aws")]
pub mod aws;
pub mod external;
pub mod forecast;
pub mod keda;
pub mod prometheus;
pub mod schedule;

pub use external::{ExternalError, MetricReader};
pub use forecast::Forecaster;
pub use schedule::CronWindow;

use crate::config::{Config, PoolConfig, Signal, SignalSource};
use crate::controller::DemandSource;
use crate::model::{PoolDemand, PoolName, SignalReading, Timestamp};
use crate::planner::headroom::BackfillWindow;
use async_trait::async_trait;
use prometheus::Sample;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why one signal could not be read. Reported as a stale reading, never as a failed tick.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("{what} failed")]
    Http {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("query rejected ({kind}): {message}")]
    Query { kind: String, message: String },
    #[error("unparsable response: {0}")]
    Parse(String),
    #[error("query returned {0} series; aggregate it to one (e.g. sum(...))")]
    MultipleSeries(usize),
    #[error("no reader for {0} signals is configured (build with the `aws` feature)")]
    NoReader(&'static str),
    #[error(transparent)]
    External(#[from] ExternalError),
    #[error("building the HTTP client")]
    Client(#[source] reqwest::Error),
    /// The signal's credential or TLS client is unusable (secret file unreadable, CA bundle
    /// invalid, no cloud credentials). Shared: one failure serves every signal using it.
    #[error("Prometheus access")]
    Auth(#[source] Arc<auth::AuthError>),
}

/// Serving replicas per pool as the cluster side last saw them (the latency guard-rail's
/// base). Shared between the cluster (writer) and [`SignalDemand`] (reader).
#[derive(Debug, Default)]
pub struct ServingReplicas(Mutex<BTreeMap<PoolName, u32>>);

impl ServingReplicas {
    pub fn set(&self, pool: &PoolName, replicas: u32) {
        // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(pool.clone(), replicas);
    }
    pub fn get(&self, pool: &PoolName) -> Option<u32> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(pool).copied()
    }
}

/// Replicas one node of the pool serves, when the config says
/// ([`PoolConfig::configured_replicas_per_node`]).
pub fn replicas_per_node(pool: &PoolConfig) -> Option<u32> {
    pool.configured_replicas_per_node()
}

/// One value read from a source, before the signal's arithmetic.
type RawResult = Result<Option<Sample>, SignalError>;

/// The production demand source.
pub struct SignalDemand {
    http: reqwest::Client,
    forecasts: PoolForecasts,
    reader: Option<Arc<dyn MetricReader>>,
    serving: Arc<ServingReplicas>,
    endpoints: auth::Endpoints,
}

impl SignalDemand {
    pub fn new() -> Result<Self, SignalError> {
        let http = auth::client_builder()
            .build()
            .map_err(SignalError::Client)?;
        Ok(SignalDemand {
            http,
            forecasts: PoolForecasts::default(),
            reader: None,
            serving: Arc::new(ServingReplicas::default()),
            endpoints: auth::Endpoints::default(),
        })
    }

    /// Read CloudWatch and SQS signals through `reader` (the AWS provider implements it).
    pub fn with_reader(mut self, reader: Arc<dyn MetricReader>) -> Self {
        self.reader = Some(reader);
        self
    }

    /// Share serving-replica counts with the cluster side (see [`ServingReplicas`]).
    pub fn with_serving(mut self, serving: Arc<ServingReplicas>) -> Self {
        self.serving = serving;
        self
    }

    pub fn serving(&self) -> Arc<ServingReplicas> {
        self.serving.clone()
    }

    /// The pool's forecaster, if the pool has been read with forecasting enabled.
    pub fn forecaster(&self, pool: &PoolName) -> Option<&Forecaster> {
        self.forecasts.get(pool)
    }

    /// Start every remote read of the tick at once (local signals need no task).
    fn spawn_reads(
        &self,
        config: &Config,
        now: Timestamp,
        failed: &BTreeMap<auth::AccessKey, Arc<auth::AuthError>>,
    ) -> tokio::task::JoinSet<(usize, usize, RawResult)> {
        let mut set = tokio::task::JoinSet::new();
        for (pi, pool) in config.pools.iter().enumerate() {
            // The measured SLO attainment, in the slot after the pool's signals; the longest
            // recent request (the learnt spot-drain lead), in the slot after that; the number
            // of requests the attainment covers, in the slot after that.
            let attainment = pool.slo.as_ref().and_then(|s| s.attainment_query.as_ref());
            let queries = [
                attainment.map(|q| (q, q.query.as_str())),
                pool.disruption
                    .request_duration_query
                    .as_ref()
                    .map(|q| (q, q.query.as_str())),
                attainment.and_then(|q| q.count_query.as_deref().map(|c| (q, c))),
            ];
            for (k, q) in queries.into_iter().enumerate() {
                let Some((q, query)) = q else { continue };
                let (url, query, timeout) = (q.url.clone(), query.to_owned(), q.timeout);
                let (http, slot) = (self.http.clone(), pool.signals.len() + k);
                set.spawn(async move {
                    let r = prometheus::query(&http, &url, &query, now, timeout).await;
                    (pi, slot, r)
                });
            }
            for (si, sig) in pool.signals.iter().enumerate() {
                if !sig.source.is_remote() {
                    continue;
                }
                let endpoint = self.endpoint_for(config, &sig.source, failed);
                let reader = self.reader.clone();
                let sig = sig.clone();
                set.spawn(async move {
                    let r = match endpoint {
                        Ok(e) => read_remote(&e, reader.as_deref(), &sig, now).await,
                        Err(e) => Err(e),
                    };
                    (pi, si, r)
                });
            }
        }
        set
    }

    /// The client a signal's queries go through: its endpoint's (TLS, headers, credential)
    /// as [`auth::Endpoints::prepare`] built it, or why it could not be built.
    fn endpoint_for(
        &self,
        config: &Config,
        source: &SignalSource,
        failed: &BTreeMap<auth::AccessKey, Arc<auth::AuthError>>,
    ) -> Result<auth::Endpoint, SignalError> {
        let access = source
            .prometheus_access()
            .map(|a| auth::AccessKey::new(config, a));
        match &access {
            None => Ok(auth::Endpoint::plain(self.http.clone())),
            Some(k) => match (self.endpoints.get(k), failed.get(k)) {
                (Some(e), _) => Ok(e.clone()),
                (None, Some(err)) => Err(SignalError::Auth(err.clone())),
                // prepare() saw every key of this config: built or failed.
                (None, None) => Ok(auth::Endpoint::plain(self.http.clone())),
            },
        }
    }

    /// One range query per Prometheus signal of the pool over `window`, concurrently, each
    /// through its endpoint and within its `timeout_s`. `None` when any fails (logged once,
    /// with the pool, the signal and the error chain — never a credential: errors carry
    /// none, and URLs with `user:password@` are refused at load).
    async fn read_histories(
        &mut self,
        config: &Config,
        pool: &PoolConfig,
        signals: &[(&Signal, &crate::config::PrometheusSignal)],
        window: BackfillWindow,
    ) -> Option<Vec<Vec<Sample>>> {
        let failed = self.endpoints.prepare(config, &self.http).await;
        let mut set = tokio::task::JoinSet::new();
        for (i, (sig, p)) in signals.iter().enumerate() {
            let endpoint = self.endpoint_for(config, &sig.source, &failed);
            let (url, query, timeout) = (p.url.clone(), p.query.clone(), p.timeout);
            set.spawn(async move {
                let r = match endpoint {
                    Ok(e) => prometheus::query_range_at(&e, &url, &query, &window, timeout).await,
                    Err(e) => Err(e),
                };
                (i, r)
            });
        }
        let mut series: Vec<Option<Vec<Sample>>> = vec![None; signals.len()];
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, Ok(points))) => series[i] = Some(points),
                Ok((i, Err(e))) => {
                    tracing::warn!(
                        pool = %pool.name,
                        signal = %signals[i].0.name,
                        error = %crate::controller::error_chain(&e),
                        "reading the signal's history failed; the SLO learner keeps its prior"
                    );
                    // Dropping the set aborts the other queries: their answers would not be used.
                    return None;
                }
                // A query task only fails if it panicked: nothing known either.
                Err(e) => {
                    tracing::warn!(pool = %pool.name, error = %e, "reading the signals' history failed");
                    return None;
                }
            }
        }
        series.into_iter().collect()
    }
}

/// The pool's signals whose past is read for the SLO learner's backfill: all of them when
/// every one is a Prometheus signal (a range query answers its past); otherwise `None` — the
/// pool's demand at a time is the largest any of its signals asked for, so one signal whose
/// past is not read leaves every point unknown:
/// - `latency`: its replicas scale from the pool's serving replicas *at the time*
///   ([`keda::latency_replicas`]), which no one recorded;
/// - `sqs`: queue depth is read live from the queue (`GetQueueAttributes`'
///   `ApproximateNumberOfMessages`, a count as of now); the queue keeps no past;
/// - `cloudwatch`: [`MetricReader`] asks `GetMetricData` for the newest datapoint only; it has
///   no range read (CloudWatch itself keeps history, so this one could be added);
/// - `cron`: a schedule the operator set, not measured demand; replaying its steps would be
///   learnt as demand growth.
///
/// A pool without signals has no past either.
fn history_signals(pool: &PoolConfig) -> Option<Vec<(&Signal, &crate::config::PrometheusSignal)>> {
    if pool.signals.is_empty() {
        return None;
    }
    pool.signals
        .iter()
        .map(|s| match &s.source {
            SignalSource::Prometheus(p) => Some((s, p)),
            SignalSource::CloudWatch(_)
            | SignalSource::Sqs(_)
            | SignalSource::Cron(_)
            | SignalSource::Latency(_) => None,
        })
        .collect()
}

/// A pool's past demand from its Prometheus signals' range-query points (`series[i]` answers
/// `signals[i]`): per point KEDA's arithmetic ([`keda::replicas`]); a time is kept only when
/// every signal has a value there — Prometheus evaluates a range query at `start + k·step`, so
/// the same window gives every signal the same times — and its replicas are the largest any
/// signal asks for, as [`SignalDemand`]'s `read` takes the max. Oldest first.
fn combine_history(
    signals: &[(&Signal, &crate::config::PrometheusSignal)],
    series: &[Vec<Sample>],
) -> Vec<(Timestamp, u32)> {
    let per_signal: Vec<BTreeMap<Timestamp, u32>> = signals
        .iter()
        .zip(series)
        .map(|((_, p), points)| {
            points
                .iter()
                .filter_map(|s| {
                    keda::replicas(s.value, p.target_per_replica, p.activation).map(|r| (s.at, r))
                })
                .collect()
        })
        .collect();
    let Some((first, rest)) = per_signal.split_first() else {
        return Vec::new();
    };
    first
        .iter()
        .filter_map(|(at, r)| {
            rest.iter()
                .try_fold(*r, |most, other| other.get(at).map(|o| most.max(*o)))
                .map(|r| (*at, r))
        })
        .collect()
}

/// Read one remote signal (prometheus, latency, cloudwatch, sqs).
async fn read_remote(
    endpoint: &auth::Endpoint,
    reader: Option<&dyn MetricReader>,
    sig: &Signal,
    now: Timestamp,
) -> RawResult {
    match &sig.source {
        SignalSource::Prometheus(p) => {
            prometheus::query_at(endpoint, &p.url, &p.query, now, p.timeout).await
        }
        SignalSource::Latency(l) => {
            prometheus::query_at(endpoint, &l.url, &l.query, now, l.timeout).await
        }
        SignalSource::CloudWatch(c) => {
            let r = reader.ok_or(SignalError::NoReader("cloudwatch"))?;
            Ok(r.cloudwatch(c, now).await?)
        }
        SignalSource::Sqs(q) => {
            let r = reader.ok_or(SignalError::NoReader("sqs"))?;
            Ok(r.sqs_depth(q, now).await?)
        }
        SignalSource::Cron(_) => Ok(None),
    }
}

/// A stale reading (nothing usable), keeping the value when there was one for the gauge.
fn stale(name: String, value: Option<f64>, observed_at: Option<Timestamp>) -> SignalReading {
    SignalReading {
        name,
        value: value.filter(|v| v.is_finite()),
        replicas: None,
        stale: true,
        observed_at,
    }
}

/// Turn a raw result into a reading with `arith` (value → replicas) and the freshness rules.
/// Also the simulator's, for its queue signals.
pub(crate) fn reading(
    name: String,
    raw: RawResult,
    now: Timestamp,
    stale_after: Duration,
    arith: impl Fn(f64) -> Option<u32>,
) -> SignalReading {
    match raw {
        Ok(Some(s)) => {
            let age_s = now.secs_since(s.at);
            if !s.value.is_finite() || age_s > stale_after.as_secs_f64() {
                return stale(name, Some(s.value), Some(s.at));
            }
            match arith(s.value) {
                Some(r) => SignalReading {
                    name,
                    value: Some(s.value),
                    replicas: Some(r),
                    stale: false,
                    observed_at: Some(s.at),
                },
                None => stale(name, Some(s.value), Some(s.at)),
            }
        }
        Ok(None) => stale(name, None, None),
        Err(e) => {
            tracing::debug!(signal = %name, error = %crate::controller::error_chain(&e), "signal read failed");
            stale(name, None, None)
        }
    }
}

#[async_trait]
impl DemandSource for SignalDemand {
    fn forecast_history(&self) -> BTreeMap<PoolName, crate::state::ForecastSteps> {
        self.forecasts.histories()
    }

    fn restore_forecast_history(
        &mut self,
        config: &Config,
        saved: BTreeMap<PoolName, crate::state::ForecastSteps>,
    ) {
        self.forecasts.restore(config, saved);
    }

    /// The pool's past demand from range queries of its Prometheus signals; nothing when any
    /// signal is of another kind ([`history_signals`] says why) or any query fails.
    async fn demand_history(
        &mut self,
        config: &Config,
        pool: &PoolConfig,
        window: BackfillWindow,
    ) -> Vec<(Timestamp, u32)> {
        let Some(signals) = history_signals(pool) else {
            return Vec::new();
        };
        match self.read_histories(config, pool, &signals, window).await {
            Some(series) => combine_history(&signals, &series),
            None => Vec::new(),
        }
    }

    async fn read(&mut self, config: &Config, now: Timestamp) -> BTreeMap<PoolName, PoolDemand> {
        let mut raw: BTreeMap<(usize, usize), RawResult> = BTreeMap::new();
        let failed = self.endpoints.prepare(config, &self.http).await;
        let mut set = self.spawn_reads(config, now, &failed);
        while let Some(joined) = set.join_next().await {
            // A read task only fails if it panicked; its signal then stays missing (stale).
            if let Ok((pi, si, r)) = joined {
                raw.insert((pi, si), r);
            }
        }
        // Forget pools removed from the config so history stays bounded by configuration.
        self.forecasts.forget_removed(config);

        let mut out = BTreeMap::new();
        for (pi, pool) in config.pools.iter().enumerate() {
            let mut readings = Vec::with_capacity(pool.signals.len());
            let mut latency: Vec<(usize, String, RawResult, Duration, f64)> = Vec::new();
            for (si, sig) in pool.signals.iter().enumerate() {
                let name = sig.name.clone();
                let r = raw.remove(&(pi, si)).unwrap_or(Ok(None));
                match &sig.source {
                    SignalSource::Prometheus(p) => {
                        let (t, a) = (p.target_per_replica, p.activation);
                        readings.push(reading(name, r, now, p.stale_after, |v| {
                            keda::replicas(v, t, a)
                        }));
                    }
                    SignalSource::CloudWatch(c) => {
                        let (t, a) = (c.target_per_replica, c.activation);
                        readings.push(reading(name, r, now, c.stale_after, |v| {
                            keda::replicas(v, t, a)
                        }));
                    }
                    SignalSource::Sqs(q) => {
                        let (t, a) = (q.target_per_replica, q.activation);
                        // Queue depth is read live from the queue: fresh when it answered at all.
                        readings.push(reading(name, r, now, Duration::MAX, |v| {
                            keda::replicas(v, t, a)
                        }));
                    }
                    SignalSource::Cron(c) => readings.push(cron_reading(name, c, now)),
                    SignalSource::Latency(l) => {
                        // Evaluated after the others: it may scale from their demand.
                        latency.push((readings.len(), name, r, l.stale_after, l.target));
                        readings.push(stale(String::new(), None, None));
                    }
                }
            }
            let others = fresh_replicas(&readings);
            let base = self.serving.get(&pool.name).or(others).unwrap_or(0);
            for (slot, name, r, stale_after, target) in latency {
                let mut rd = reading(name, r, now, stale_after, |v| {
                    Some(keda::latency_replicas(v, target, base).unwrap_or(0))
                });
                // Under target the guard-rail is fresh but asks for nothing.
                if rd.replicas == Some(0) {
                    rd.replicas = None;
                }
                readings[slot] = rd;
            }
            let mut d = self.forecasts.pool_demand(pool, readings, now);
            if let Some((slo, q)) = pool
                .slo
                .as_ref()
                .and_then(|s| s.attainment_query.as_ref().map(|q| (s, q)))
            {
                let r = raw.remove(&(pi, pool.signals.len())).unwrap_or(Ok(None));
                let count = q.count_query.as_ref().map(|_| {
                    let r = raw
                        .remove(&(pi, pool.signals.len() + 2))
                        .unwrap_or(Ok(None));
                    fresh_value(r, now, q.stale_after, "slo attainment count")
                });
                d.slo_attainment = measured_attainment(r, now, q.stale_after)
                    .filter(|_| enough_requests(slo, count))
                    .map(|fraction| crate::model::Attainment {
                        fraction,
                        window_s: q.window.as_secs_f64(),
                    });
            }
            if let Some(q) = &pool.disruption.request_duration_query {
                let r = raw
                    .remove(&(pi, pool.signals.len() + 1))
                    .unwrap_or(Ok(None));
                d.request_duration = measured_request_duration(r, now, q);
            }
            out.insert(pool.name.clone(), d);
        }
        out
    }
}

/// The longest recent request a `disruption.request_duration_query` returned, when it is
/// usable: fresh, finite, not negative and at most an hour
/// ([`crate::model::RequestDuration::measured`]). Anything else — no request in the window
/// (a quantile of nothing is NaN), an error, an empty result, an old or implausible value —
/// is unknown, and the spot drain starts at the notice.
fn measured_request_duration(
    raw: RawResult,
    now: Timestamp,
    q: &crate::config::AttainmentQuery,
) -> Option<crate::model::RequestDuration> {
    let v = fresh_value(raw, now, q.stale_after, "request duration")?;
    let d = crate::model::RequestDuration::measured(v, q.window.as_secs());
    if d.is_none() {
        tracing::debug!(
            value = v,
            "request duration query returned no plausible duration; unknown"
        );
    }
    d
}

/// The value a pool's own query (`slo.attainment_query`, `disruption.request_duration_query`)
/// returned, if it came back and is no older than `stale_after`; anything else is unknown,
/// logged at debug with `what` the query is for.
fn fresh_value(raw: RawResult, now: Timestamp, stale_after: Duration, what: &str) -> Option<f64> {
    match raw {
        Ok(Some(s)) if now.secs_since(s.at) <= stale_after.as_secs_f64() => Some(s.value),
        Ok(Some(s)) => {
            tracing::debug!(at = %s.at, "{what} query answer is stale; unknown");
            None
        }
        Ok(None) => {
            tracing::debug!("{what} query returned nothing; unknown");
            None
        }
        Err(e) => {
            tracing::debug!(error = %crate::controller::error_chain(&e), "{what} query failed; unknown");
            None
        }
    }
}

/// A cron signal's reading: `desired` replicas while its window (parsed at load) is open, 0
/// outside it; always fresh.
fn cron_reading(name: String, c: &crate::config::CronSignal, now: Timestamp) -> SignalReading {
    let open = c.window.contains(now);
    SignalReading {
        name,
        value: Some(if open { 1.0 } else { 0.0 }),
        replicas: Some(if open { c.desired } else { 0 }),
        stale: false,
        observed_at: Some(now),
    }
}

/// The attainment an `slo.attainment_query` returned, when it is usable: fresh, finite and a
/// fraction. Anything else (no requests in the window gives 0/0 = NaN, an error, an empty
/// result) is unknown, never "met".
fn measured_attainment(raw: RawResult, now: Timestamp, stale_after: Duration) -> Option<f64> {
    fresh_value(raw, now, stale_after, "slo attainment")
        .filter(|v| v.is_finite() && (0.0..=1.0).contains(v))
}

/// Whether an attainment reading covers enough requests to say anything about the SLO's
/// tail: at least `1 / (1 − attainment)` of them (100 for 0.99), the simulator's rule
/// (`sim::gpupool::measured_attainment`). `count`: `None` when the pool has no
/// `count_query` (every reading counts: the number cannot be told); `Some(None)` when the
/// count query gave no usable answer — unknown, so the reading is too.
fn enough_requests(slo: &crate::config::SloPolicy, count: Option<Option<f64>>) -> bool {
    let Some(count) = count else { return true };
    match count.filter(|n| n.is_finite() && *n >= 0.0) {
        Some(n) if crate::planner::headroom::enough_requests(slo, n) => true,
        Some(n) => {
            tracing::debug!(
                requests = n,
                "slo attainment covers too few requests to tell; unknown"
            );
            false
        }
        None => {
            tracing::debug!("slo attainment count unknown; attainment unknown");
            false
        }
    }
}

/// The most replicas any fresh reading asks for (KEDA with several triggers: the largest).
fn fresh_replicas(readings: &[SignalReading]) -> Option<u32> {
    readings
        .iter()
        .filter(|r| !r.stale)
        .filter_map(|r| r.replicas)
        .max()
}

/// Per-pool forecasters of a demand source, shared by production [`SignalDemand`] and the
/// simulator's, so forecasting behaves the same in both.
#[derive(Debug, Default)]
pub struct PoolForecasts(BTreeMap<PoolName, Forecaster>);

impl PoolForecasts {
    /// Forget pools removed from the config (history stays bounded by configuration).
    pub fn forget_removed(&mut self, config: &Config) {
        self.0.retain(|name, _| config.pool(name).is_some());
    }

    /// The pool's forecaster, if the pool has been read with forecasting enabled.
    pub fn get(&self, pool: &PoolName) -> Option<&Forecaster> {
        self.0.get(pool)
    }

    /// Every pool's forecast history, for the durable state (`crate::state`).
    pub fn histories(&self) -> BTreeMap<PoolName, crate::state::ForecastSteps> {
        self.0
            .iter()
            .filter(|(_, f)| !f.is_empty())
            .map(|(p, f)| (p.clone(), (f.step_s(), f.steps())))
            .collect()
    }

    /// Rebuild the forecasters of `saved` pools that still forecast ([`Forecaster::replay`]);
    /// the others are ignored.
    pub fn restore(
        &mut self,
        config: &Config,
        saved: BTreeMap<PoolName, crate::state::ForecastSteps>,
    ) {
        for (name, (step_s, steps)) in saved {
            let Some(pool) = config.pool(&name).filter(|p| p.forecast.enabled) else {
                continue;
            };
            let mut f = Forecaster::for_pool(pool);
            f.replay(step_s, &steps);
            self.0.insert(name, f);
        }
    }

    /// The pool's demand from this tick's readings: `replicas_now` is the largest any fresh
    /// reading asks for; `replicas_forecast` comes from [`forecast_pool`] when the pool's
    /// `forecast.enabled`.
    pub fn pool_demand(
        &mut self,
        pool: &PoolConfig,
        readings: Vec<SignalReading>,
        now: Timestamp,
    ) -> PoolDemand {
        let replicas_now = fresh_replicas(&readings);
        let replicas_forecast = if pool.forecast.enabled {
            let f = self
                .0
                .entry(pool.name.clone())
                .or_insert_with(|| Forecaster::for_pool(pool));
            forecast_pool(f, pool, replicas_now, now)
        } else {
            None
        };
        PoolDemand {
            replicas_now,
            replicas_forecast,
            readings,
            slo_attainment: None,
            request_duration: None,
        }
    }
}

/// One tick of a pool's forecast, shared by every demand source (production [`SignalDemand`]
/// and the simulator's), so the simulator measures exactly what production does: feed
/// `replicas_now` to the pool's forecaster and add the growth it expects over
/// `pool.forecast_horizon_s()` ([`Forecaster::forecast_growth`]) to `replicas_now`, capped at
/// what `limits.max_nodes` nodes can serve when that is known (never below `replicas_now`). `None` when forecasting is disabled for the pool or the demand is unknown (stale
/// demand is not observed: the gap is filled by the last value when forecasting).
pub fn forecast_pool(
    forecaster: &mut Forecaster,
    pool: &PoolConfig,
    replicas_now: Option<u32>,
    now: Timestamp,
) -> Option<u32> {
    if !pool.forecast.enabled {
        return None;
    }
    let now_replicas = replicas_now?;
    forecaster.observe(now, now_replicas);
    let growth = forecaster
        .forecast_growth(now, pool.forecast_horizon().as_secs())
        .unwrap_or(0);
    let f = now_replicas.saturating_add(growth);
    let cap = replicas_per_node(pool).map(|r| r.saturating_mul(pool.limits.max_nodes));
    Some(match cap {
        Some(cap) => f.min(cap).max(now_replicas),
        None => f.max(now_replicas),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_rules() {
        let now = Timestamp::from_secs(1000);
        let keda = |v: f64| keda::replicas(v, 10.0, 0.0);
        let ok = reading(
            "q".into(),
            Ok(Some(Sample {
                value: 25.0,
                at: now,
            })),
            now,
            Duration::from_secs(60),
            keda,
        );
        assert_eq!((ok.replicas, ok.stale), (Some(3), false));
        let old = reading(
            "q".into(),
            Ok(Some(Sample {
                value: 25.0,
                at: Timestamp::from_secs(900),
            })),
            now,
            Duration::from_secs(60),
            keda,
        );
        assert_eq!(
            (old.replicas, old.stale, old.value),
            (None, true, Some(25.0))
        );
        let nan = reading(
            "q".into(),
            Ok(Some(Sample {
                value: f64::NAN,
                at: now,
            })),
            now,
            Duration::from_secs(60),
            keda,
        );
        assert_eq!((nan.replicas, nan.stale, nan.value), (None, true, None));
        let empty = reading("q".into(), Ok(None), now, Duration::from_secs(60), keda);
        assert!(empty.stale);
        let err = reading(
            "q".into(),
            Err(SignalError::Status(503)),
            now,
            Duration::from_secs(60),
            keda,
        );
        assert!(err.stale && err.replicas.is_none());
    }

    #[test]
    fn measured_attainment_is_unknown_unless_fresh_finite_and_a_fraction() {
        let now = Timestamp::from_secs(1000);
        let at = |v: f64, age: i64| {
            Ok(Some(Sample {
                value: v,
                at: Timestamp::from_secs(1000 - age),
            }))
        };
        let cases: [(RawResult, Option<f64>); 7] = [
            (at(0.985, 0), Some(0.985)),
            (at(1.0, 30), Some(1.0)),
            (at(0.985, 120), None),
            (at(f64::NAN, 0), None),
            (at(1.5, 0), None),
            (Ok(None), None),
            (Err(SignalError::Status(503)), None),
        ];
        for (raw, want) in cases {
            assert_eq!(measured_attainment(raw, now, Duration::from_secs(60)), want);
        }
    }

    #[test]
    fn an_attainment_counts_only_over_enough_requests() {
        let slo = |attainment| crate::config::SloPolicy {
            queue_wait_s: 1.0,
            attainment,
            attainment_query: None,
        };
        // (target, count read, counts?) — `None`: no count query; `Some(None)`: no answer.
        let cases: [(f64, Option<Option<f64>>, bool); 8] = [
            (0.99, None, true),
            (0.99, Some(Some(100.0)), true),
            (0.99, Some(Some(99.0)), false),
            (0.99, Some(Some(3.0)), false),
            (0.999, Some(Some(500.0)), false),
            (0.999, Some(Some(1000.0)), true),
            (0.99, Some(None), false),
            (0.99, Some(Some(f64::NAN)), false),
        ];
        for (target, count, want) in cases {
            assert_eq!(
                enough_requests(&slo(target), count),
                want,
                "{target} {count:?}"
            );
        }
    }

    #[test]
    fn measured_request_duration_is_unknown_unless_fresh_finite_and_plausible() {
        let now = Timestamp::from_secs(1000);
        let q = crate::config::AttainmentQuery {
            url: "http://p:9090".into(),
            query: "q".into(),
            window: Duration::from_secs(3600),
            stale_after: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            count_query: None,
        };
        let at = |v: f64, age: i64| {
            Ok(Some(Sample {
                value: v,
                at: Timestamp::from_secs(1000 - age),
            }))
        };
        let known = |s: f64| {
            Some(crate::model::RequestDuration {
                longest_s: s,
                window_s: 3600,
            })
        };
        #[rustfmt::skip]
        let cases: [(&str, RawResult, Option<crate::model::RequestDuration>); 10] = [
            ("fresh", at(40.6, 0), known(40.6)),
            ("a scrape old, within stale_after", at(40.0, 30), known(40.0)),
            ("nothing served in a while: zero is a duration", at(0.0, 0), known(0.0)),
            ("an hour is plausible", at(3600.0, 0), known(3600.0)),
            ("older than stale_after", at(40.6, 120), None),
            ("no requests in the window: NaN", at(f64::NAN, 0), None),
            ("+Inf", at(f64::INFINITY, 0), None),
            ("negative", at(-1.0, 0), None),
            ("longer than an hour: a broken query, not a request", at(7680.0, 0), None),
            ("failed", Err(SignalError::Status(503)), None),
        ];
        for (name, raw, want) in cases {
            assert_eq!(measured_request_duration(raw, now, &q), want, "{name}");
        }
        assert_eq!(measured_request_duration(Ok(None), now, &q), None);
    }

    fn history_config(signals: &str) -> Config {
        Config::load(&format!(
            "mode: vm-only\naws: {{ region: us-east-1 }}\npools:\n  - name: a\n    requirements: {{}}\n    replica: {{ replicas_per_instance: 1 }}\n    limits: {{ min_nodes: 1, max_nodes: 5 }}\n{signals}"
        ))
        .unwrap()
    }

    const PROM_A: &str = "      - name: waiting\n        prometheus: { url: \"http://p:9090\", query: q1, target_per_replica: 5, activation: 2 }\n";
    const PROM_B: &str = "      - name: running\n        prometheus: { url: \"http://p:9090\", query: q2, target_per_replica: 10 }\n";

    #[test]
    fn only_pools_of_prometheus_signals_have_a_past() {
        let cases = [
            ("", None),
            (PROM_A, Some(vec!["waiting"])),
            (
                &*format!("{PROM_A}{PROM_B}"),
                Some(vec!["waiting", "running"]),
            ),
            (
                &*format!(
                    "{PROM_A}      - name: office\n        cron: {{ start: \"0 0 8 * * *\", end: \"0 0 18 * * *\", desired: 7, timezone: UTC }}\n"
                ),
                None,
            ),
            (
                &*format!(
                    "{PROM_A}      - name: ttft\n        latency: {{ url: \"http://p:9090\", query: p95, target: 1.0 }}\n"
                ),
                None,
            ),
            (
                &*format!(
                    "{PROM_A}      - name: queue\n        sqs: {{ queue_url: \"https://sqs.us-east-1.amazonaws.com/1/q\", target_per_replica: 5 }}\n"
                ),
                None,
            ),
        ];
        for (signals, want) in cases {
            let sigs = if signals.is_empty() {
                String::new()
            } else {
                format!("    signals:\n{signals}")
            };
            let cfg = history_config(&sigs);
            let got = history_signals(&cfg.pools[0])
                .map(|v| v.iter().map(|(s, _)| s.name.clone()).collect::<Vec<_>>());
            assert_eq!(
                got,
                want.map(|w| w.into_iter().map(String::from).collect()),
                "{signals}"
            );
        }
    }

    #[test]
    fn history_points_need_every_signal_and_take_the_max() {
        let cfg = history_config(&format!("    signals:\n{PROM_A}{PROM_B}"));
        let signals = history_signals(&cfg.pools[0]).unwrap();
        let pts = |v: &[(i64, f64)]| -> Vec<Sample> {
            v.iter()
                .map(|&(t, value)| Sample {
                    value,
                    at: Timestamp::from_secs(t),
                })
                .collect()
        };
        let at = Timestamp::from_secs;
        // waiting: target 5, activation 2; running: target 10, no activation.
        type Case = (Vec<Sample>, Vec<Sample>, Vec<(Timestamp, u32)>);
        let cases: [Case; 5] = [
            // KEDA per point, then the max: ceil(12/5)=3 vs ceil(45/10)=5 → 5; 2 ≤ activation → 0
            // vs ceil(3/10)=1 → 1; ceil(31/5)=7 vs 0 → 7.
            (
                pts(&[(10, 12.0), (20, 2.0), (30, 31.0)]),
                pts(&[(10, 45.0), (20, 3.0), (30, 0.0)]),
                vec![(at(10), 5), (at(20), 1), (at(30), 7)],
            ),
            // A time one signal has no value at is unknown, not zero.
            (
                pts(&[(10, 12.0), (30, 31.0)]),
                pts(&[(10, 45.0), (20, 3.0), (30, 0.0)]),
                vec![(at(10), 5), (at(30), 7)],
            ),
            // A signal with no series at all: nothing known.
            (pts(&[(10, 12.0)]), Vec::new(), Vec::new()),
            // Negative values (a bad query) are KEDA's: inactive, zero replicas.
            (pts(&[(10, -4.0)]), pts(&[(10, -1.0)]), vec![(at(10), 0)]),
            // Both empty.
            (Vec::new(), Vec::new(), Vec::new()),
        ];
        for (a, b, want) in cases {
            assert_eq!(
                combine_history(&signals, &[a.clone(), b.clone()]),
                want,
                "{a:?} {b:?}"
            );
        }
        // One signal: its own points, KEDA applied.
        let one = history_signals(&history_config(&format!("    signals:\n{PROM_A}")).pools[0])
            .unwrap()
            .into_iter()
            .map(|(s, p)| (s.clone(), p.clone()))
            .collect::<Vec<_>>();
        let one: Vec<_> = one.iter().map(|(s, p)| (s, p)).collect();
        assert_eq!(
            combine_history(&one, &[pts(&[(10, 12.0), (20, 0.0)])]),
            vec![(at(10), 3), (at(20), 0)]
        );
    }

    #[tokio::test]
    async fn unreachable_history_is_nothing_known() {
        let cfg = history_config(
            "    signals:\n      - name: waiting\n        prometheus: { url: \"http://127.0.0.1:9\", query: up, target_per_replica: 1, timeout_s: 2 }\n",
        );
        let mut d = SignalDemand::new().unwrap();
        let now = Timestamp::from_secs(1_741_176_000);
        let w = BackfillWindow::before(now, Duration::from_secs(10));
        assert!(d.demand_history(&cfg, &cfg.pools[0], w).await.is_empty());
    }

    #[test]
    fn replicas_per_node_from_config() {
        let cfg = Config::load(
            "mode: vm-only\npools:\n  - name: a\n    requirements: { gpus_per_node: 8 }\n    replica: { gpus: 2 }\n    limits: { min_nodes: 1 }\n  - name: b\n    requirements: {}\n    replica: { replicas_per_instance: 3 }\n    limits: { min_nodes: 1 }\n  - name: c\n    requirements: {}\n    limits: { min_nodes: 1 }\n",
        )
        .unwrap();
        assert_eq!(replicas_per_node(&cfg.pools[0]), Some(4));
        assert_eq!(replicas_per_node(&cfg.pools[1]), Some(3));
        assert_eq!(replicas_per_node(&cfg.pools[2]), None);
    }

    fn cron_config(extra: &str) -> Config {
        Config::load(&format!(
            "mode: vm-only\npools:\n  - name: a\n    requirements: {{}}\n    replica: {{ replicas_per_instance: 1 }}\n    limits: {{ max_nodes: 5 }}\n    signals:\n      - name: office\n        cron: {{ start: \"0 0 8 * * *\", end: \"0 0 18 * * *\", desired: 7, timezone: UTC }}\n{extra}"
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn cron_demand_forecast_capped_by_max_nodes() {
        let cfg = cron_config("");
        let mut d = SignalDemand::new().unwrap();
        // 2025-03-05 12:00 UTC: inside the window.
        let noon = Timestamp::from_secs(1_741_176_000);
        let out = d.read(&cfg, noon).await;
        let a = &out[&PoolName::from("a")];
        assert_eq!(a.replicas_now, Some(7));
        assert_eq!(a.readings[0].name, "office");
        assert!(!a.readings[0].stale);
        // The forecast is capped at max_nodes × replicas_per_instance = 5 … but never below now.
        assert_eq!(a.replicas_forecast, Some(7));
        let night = Timestamp::from_secs(1_741_176_000 + 10 * 3600);
        let out = d.read(&cfg, night).await;
        assert_eq!(out[&PoolName::from("a")].replicas_now, Some(0));
    }

    #[tokio::test]
    async fn unreachable_signal_is_stale_and_never_lowers_demand() {
        // Port 9 on loopback: nothing listens, the connection is refused at once.
        let cfg = cron_config(
            "      - prometheus: { url: \"http://127.0.0.1:9\", query: \"up\", target_per_replica: 1, timeout_s: 2 }\n      - latency: { url: \"http://127.0.0.1:9\", query: \"p95\", target: 1.0, timeout_s: 2 }\n",
        );
        let mut d = SignalDemand::new().unwrap();
        let noon = Timestamp::from_secs(1_741_176_000);
        let out = d.read(&cfg, noon).await;
        let a = &out[&PoolName::from("a")];
        assert_eq!(
            a.replicas_now,
            Some(7),
            "the fresh cron signal still counts"
        );
        assert_eq!(a.stale_signals(), vec!["prometheus-1", "latency-2"]);
    }
}
