//! Prometheus instant queries over the HTTP API (`GET /api/v1/query?query=…&time=…`), and
//! range queries (`GET /api/v1/query_range`) for the SLO learner's backfill.
//!
//! The query is evaluated at the tick's `now` (the `time` parameter), so every signal of a tick
//! sees the same instant and a replayed tick asks the same question. The answer is usable only
//! if it is one finite sample: an empty vector (the series is gone or went stale inside
//! Prometheus), several series (aggregate with `sum(…)`, as KEDA also requires), `NaN`/`±Inf`,
//! a timestamp older than `stale_after_s`, an HTTP error or a body that does not parse all
//! make the reading stale.
//!
//! Range checks (the answer is untrusted input): a sample timestamp must be a finite time in
//! the checked external range ([`Timestamp::try_from_secs_f64`]; `-1e300` is a parse error,
//! never a panic), and an instant query's sample carries the evaluation time it was asked for
//! (the HTTP API reference's example: `time=2015-07-01T20:10:51.781Z` answers
//! `[1435781451.781, "1"]`), so one more than [`MAX_SAMPLE_AHEAD_S`] after `now` is rejected
//! rather than read as fresh forever.
//!
//! Range queries ([`query_range_at`]): the HTTP API reference, "Range queries"
//! (<https://prometheus.io/docs/prometheus/latest/querying/api/#range-queries>), evaluates the
//! expression at `start`, `start + step`, … up to `end` (inclusive) and answers a `matrix`:
//! one entry per series, each with `values: [[<unix seconds>, "<value>"], …]`. The same
//! single-series rule as the instant query holds (several series are an error naming the
//! count, no series is nothing known), and a point whose value is `NaN` or `±Inf` is unknown:
//! it is left out, never read as zero.

use super::SignalError;
use super::auth::Endpoint;
use crate::model::Timestamp;
use crate::planner::headroom::BackfillWindow;
use serde::Deserialize;
use std::time::Duration;

/// How far after the evaluation time a sample's timestamp may lie (Prometheus answers with the
/// evaluation time itself; this only absorbs rounding of the `time` parameter).
pub const MAX_SAMPLE_AHEAD_S: f64 = 60.0;

/// One sample of an instant query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub value: f64,
    pub at: Timestamp,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorItem {
    value: (f64, String),
}

#[derive(Deserialize)]
struct MatrixItem {
    // A series of native histograms only has `histograms` instead (Prometheus ≥ 2.40); it
    // has no float values to read.
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Prometheus writes sample values as strings, including `NaN`, `+Inf` and `-Inf`.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// Parse an instant-query response body into at most one sample. `Ok(None)`: empty result.
pub fn parse_response(body: &[u8]) -> Result<Option<Sample>, SignalError> {
    let data = parse_envelope(body)?;
    let (ts, raw) = match data.result_type.as_str() {
        "vector" => {
            let items: Vec<VectorItem> = serde_json::from_value(data.result)
                .map_err(|e| SignalError::Parse(e.to_string()))?;
            match items.len() {
                0 => return Ok(None),
                1 => items
                    .into_iter()
                    .next()
                    .map(|i| i.value)
                    .ok_or_else(|| SignalError::Parse("empty".into()))?,
                n => return Err(SignalError::MultipleSeries(n)),
            }
        }
        "scalar" => serde_json::from_value::<(f64, String)>(data.result)
            .map_err(|e| SignalError::Parse(e.to_string()))?,
        other => {
            return Err(SignalError::Parse(format!(
                "unsupported result type {other:?}; use an instant vector or scalar"
            )));
        }
    };
    let value =
        parse_value(&raw).ok_or_else(|| SignalError::Parse(format!("sample value {raw:?}")))?;
    let at = Timestamp::try_from_secs_f64(ts)
        .map_err(|e| SignalError::Parse(format!("sample timestamp: {e}")))?;
    Ok(Some(Sample { value, at }))
}

/// The `data` of a successful answer; the API's error envelope as [`SignalError::Query`].
fn parse_envelope(body: &[u8]) -> Result<Data, SignalError> {
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| SignalError::Parse(e.to_string()))?;
    if env.status != "success" {
        return Err(SignalError::Query {
            kind: env.error_type.unwrap_or_else(|| "unknown".into()),
            message: env.error.unwrap_or_default(),
        });
    }
    env.data
        .ok_or_else(|| SignalError::Parse("success without data".into()))
}

/// Parse a range-query response body into the points of its one series, oldest first as
/// Prometheus writes them. Empty: no series (nothing known). Points whose value is `NaN` or
/// `±Inf` are left out (unknown at that time).
pub fn parse_range_response(body: &[u8]) -> Result<Vec<Sample>, SignalError> {
    let data = parse_envelope(body)?;
    if data.result_type != "matrix" {
        return Err(SignalError::Parse(format!(
            "range query answered {:?}, not a matrix",
            data.result_type
        )));
    }
    let items: Vec<MatrixItem> =
        serde_json::from_value(data.result).map_err(|e| SignalError::Parse(e.to_string()))?;
    let series = match items.len() {
        0 => return Ok(Vec::new()),
        1 => items
            .into_iter()
            .next()
            .map(|i| i.values)
            .unwrap_or_default(),
        n => return Err(SignalError::MultipleSeries(n)),
    };
    let mut out = Vec::with_capacity(series.len());
    for (ts, raw) in series {
        let value =
            parse_value(&raw).ok_or_else(|| SignalError::Parse(format!("sample value {raw:?}")))?;
        let at = Timestamp::try_from_secs_f64(ts)
            .map_err(|e| SignalError::Parse(format!("sample timestamp: {e}")))?;
        if value.is_finite() {
            out.push(Sample { value, at });
        }
    }
    Ok(out)
}

/// `<base>/api/v1/query`, keeping a path prefix (`http://h/prometheus` →
/// `http://h/prometheus/api/v1/query`; a plain `Url::join` would drop the last segment).
fn query_url(base_url: &str) -> Result<reqwest::Url, SignalError> {
    api_url(base_url, "api/v1/query")
}

/// `<base>/<path>`, keeping a path prefix (see [`query_url`]).
fn api_url(base_url: &str, path: &str) -> Result<reqwest::Url, SignalError> {
    let mut base = reqwest::Url::parse(base_url)
        .map_err(|e| SignalError::Parse(format!("Prometheus URL {base_url:?}: {e}")))?;
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join(path)
        .map_err(|e| SignalError::Parse(format!("Prometheus URL {base_url:?}: {e}")))
}

/// Run one instant query at `now` with a timeout, without credentials or extra headers.
pub async fn query(
    http: &reqwest::Client,
    base_url: &str,
    promql: &str,
    now: Timestamp,
    timeout: Duration,
) -> Result<Option<Sample>, SignalError> {
    query_at(
        &Endpoint::plain(http.clone()),
        base_url,
        promql,
        now,
        timeout,
    )
    .await
}

/// Run one instant query at `now` with a timeout through `endpoint` (its TLS settings,
/// headers and credential, see [`super::auth`]).
pub async fn query_at(
    endpoint: &Endpoint,
    base_url: &str,
    promql: &str,
    now: Timestamp,
    timeout: Duration,
) -> Result<Option<Sample>, SignalError> {
    let mut url = query_url(base_url)?;
    url.query_pairs_mut()
        .append_pair("query", promql)
        .append_pair("time", &format!("{:.3}", now.secs_f64()));
    match fetch(endpoint, url, timeout, parse_response).await {
        Ok(Some(s)) => check_sample_time(s, now).map(Some),
        other => other,
    }
}

/// Run one range query over `window` (`start = from`, `end = to`, `step`) with a timeout
/// through `endpoint`, as [`query_at`] does. The answer's points are those of
/// [`parse_range_response`]; a point outside `[from, to)` (Prometheus includes `end` itself)
/// is dropped: it does not answer the question asked.
pub async fn query_range_at(
    endpoint: &Endpoint,
    base_url: &str,
    promql: &str,
    window: &BackfillWindow,
    timeout: Duration,
) -> Result<Vec<Sample>, SignalError> {
    let mut url = api_url(base_url, "api/v1/query_range")?;
    // `step` accepts a float number of seconds (the API reference's `<duration | float>`).
    url.query_pairs_mut()
        .append_pair("query", promql)
        .append_pair("start", &format!("{:.3}", window.from.secs_f64()))
        .append_pair("end", &format!("{:.3}", window.to.secs_f64()))
        .append_pair("step", &format!("{:.3}", window.step.as_secs_f64()));
    let points = fetch(endpoint, url, timeout, parse_range_response).await?;
    Ok(points
        .into_iter()
        .filter(|s| window.from <= s.at && s.at < window.to)
        .collect())
}

/// GET `url` through `endpoint` and parse the body with `parse`, mapping HTTP failures the
/// same way for instant and range queries.
async fn fetch<T>(
    endpoint: &Endpoint,
    url: reqwest::Url,
    timeout: Duration,
    parse: impl Fn(&[u8]) -> Result<T, SignalError>,
) -> Result<T, SignalError> {
    let resp = endpoint
        .get(url, timeout)
        .await
        .map_err(|e| SignalError::Auth(std::sync::Arc::new(e)))?
        .send()
        .await
        .map_err(|source| SignalError::Http {
            what: "Prometheus query",
            source,
        })?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|source| SignalError::Http {
        what: "Prometheus response",
        source,
    })?;
    // 401/403: the server refused the credential (its body is not the API's envelope).
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(SignalError::Status(status.as_u16()));
    }
    // 400/422/503 carry the API's error envelope; anything else non-2xx is reported by status.
    match parse(&body) {
        Err(SignalError::Parse(_)) if !status.is_success() => {
            Err(SignalError::Status(status.as_u16()))
        }
        other => other,
    }
}

/// A sample from after the evaluation time is not an answer to the question asked.
fn check_sample_time(s: Sample, now: Timestamp) -> Result<Sample, SignalError> {
    let ahead_s = s.at.secs_since(now);
    if ahead_s > MAX_SAMPLE_AHEAD_S {
        return Err(SignalError::Parse(format!(
            "sample timestamp {} is {ahead_s:.0} s after the evaluation time {now}",
            s.at
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vector_scalar_and_special_values() {
        let one = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.5,"12"]}]}}"#;
        assert_eq!(
            parse_response(one).unwrap(),
            Some(Sample {
                value: 12.0,
                at: Timestamp::from_millis(1_700_000_000_500)
            })
        );
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_response(empty).unwrap(), None);
        let scalar =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"3.5"]}}"#;
        assert_eq!(parse_response(scalar).unwrap().unwrap().value, 3.5);
        let nan = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert!(parse_response(nan).unwrap().unwrap().value.is_nan());
        let inf = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#;
        assert_eq!(parse_response(inf).unwrap().unwrap().value, f64::INFINITY);
    }

    #[test]
    fn out_of_range_sample_timestamps_are_errors_not_panics() {
        for ts in [
            "-1e300",
            "1e300",
            "-1",
            "1.7976931348623157e308",
            "253402300800",
        ] {
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[{ts},"1"]}}]}}}}"#
            );
            assert!(
                matches!(parse_response(body.as_bytes()), Err(SignalError::Parse(_))),
                "{ts}"
            );
            let scalar = format!(
                r#"{{"status":"success","data":{{"resultType":"scalar","result":[{ts},"1"]}}}}"#
            );
            assert!(matches!(
                parse_response(scalar.as_bytes()),
                Err(SignalError::Parse(_))
            ));
        }
        // A number too large for f64 is a JSON error, not a panic either.
        let huge = br#"{"status":"success","data":{"resultType":"scalar","result":[1e999,"1"]}}"#;
        assert!(parse_response(huge).is_err());
        let now = Timestamp::from_secs(1_700_000_000);
        let sample = |at: Timestamp| Sample { value: 1.0, at };
        assert!(check_sample_time(sample(now), now).is_ok());
        assert!(check_sample_time(sample(now.plus_secs(-3600.0)), now).is_ok());
        assert!(check_sample_time(sample(now.plus_secs(30.0)), now).is_ok());
        assert!(matches!(
            check_sample_time(sample(now.plus_secs(7200.0)), now),
            Err(SignalError::Parse(_))
        ));
    }

    #[test]
    fn parses_range_matrices() {
        // Expected points as (milliseconds, value), or a part of the error's message.
        type Want = Result<Vec<(i64, f64)>, &'static str>;
        let cases: [(&[u8], Want); 7] = [
            // One series (the shape of the API reference's example), values as strings.
            (
                br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"node"},"values":[[1435781430.781,"1"],[1435781445.781,"2.5"],[1435781460,"0"]]}]}}"#,
                Ok(vec![
                    (1_435_781_430_781, 1.0),
                    (1_435_781_445_781, 2.5),
                    (1_435_781_460_000, 0.0),
                ]),
            ),
            // No series: nothing known.
            (
                br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                Ok(vec![]),
            ),
            // NaN and ±Inf points are unknown: left out, the others kept.
            (
                br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[10,"NaN"],[20,"3"],[30,"+Inf"],[40,"-Inf"],[50,"4"]]}]}}"#,
                Ok(vec![(20_000, 3.0), (50_000, 4.0)]),
            ),
            // A series of native histograms only: no float points.
            (
                br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"histograms":[[10,{"count":"1"}]]}]}}"#,
                Ok(vec![]),
            ),
            (
                br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[1,"1"]]},{"metric":{"a":"2"},"values":[[1,"2"]]},{"metric":{"a":"3"},"values":[]}]}}"#,
                Err("3 series"),
            ),
            (
                br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
                Err("not a matrix"),
            ),
            (
                br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[-1e300,"1"]]}]}}"#,
                Err("timestamp"),
            ),
        ];
        for (body, want) in cases {
            let got = parse_range_response(body);
            match (got, want) {
                (Ok(points), Ok(want)) => {
                    let want: Vec<Sample> = want
                        .into_iter()
                        .map(|(ms, value)| Sample {
                            value,
                            at: Timestamp::from_millis(ms),
                        })
                        .collect();
                    assert_eq!(points, want);
                }
                (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{e} vs {part}"),
                (got, want) => panic!("{got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn range_errors_are_typed() {
        let two = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[1,"1"]]},{"metric":{"a":"2"},"values":[[1,"2"]]}]}}"#;
        assert!(matches!(
            parse_range_response(two),
            Err(SignalError::MultipleSeries(2))
        ));
        // The answer to more than 11,000 points per series (web/api/v1/api.go).
        let bad = br#"{"status":"error","errorType":"bad_data","error":"exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"}"#;
        match parse_range_response(bad) {
            Err(SignalError::Query { kind, message }) => {
                assert_eq!(kind, "bad_data");
                assert!(message.contains("11,000"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_range_response(b"<html>"),
            Err(SignalError::Parse(_))
        ));
        let bad_value = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"many"]]}]}}"#;
        assert!(matches!(
            parse_range_response(bad_value),
            Err(SignalError::Parse(_))
        ));
        assert_eq!(
            api_url("http://h/prometheus", "api/v1/query_range")
                .unwrap()
                .as_str(),
            "http://h/prometheus/api/v1/query_range"
        );
    }

    #[test]
    fn query_urls_keep_path_prefixes() {
        for (base, want) in [
            ("http://p:9090", "http://p:9090/api/v1/query"),
            ("http://p:9090/", "http://p:9090/api/v1/query"),
            ("http://h/prometheus", "http://h/prometheus/api/v1/query"),
            ("https://h/api/prom/", "https://h/api/prom/api/v1/query"),
        ] {
            assert_eq!(query_url(base).unwrap().as_str(), want, "{base}");
        }
        assert!(matches!(query_url("not a url"), Err(SignalError::Parse(_))));
    }

    #[test]
    fn errors_are_typed() {
        let two = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}}"#;
        assert!(matches!(
            parse_response(two),
            Err(SignalError::MultipleSeries(2))
        ));
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        match parse_response(bad) {
            Err(SignalError::Query { kind, message }) => {
                assert_eq!(kind, "bad_data");
                assert!(message.contains("parse error"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_response(b"<html>"),
            Err(SignalError::Parse(_))
        ));
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(parse_response(matrix), Err(SignalError::Parse(_))));
    }
}
