//! Warnings `check-config` prints without refusing the config:
//! - cron windows that will never open (or never close) from now on, e.g. `0 0 0 31 2 *`
//!   (31 February) or a year field in the past. Pure: `now` is an argument (`check-config`
//!   passes the wall clock);
//! - PromQL that does not parse, checked with the `promql-parser` crate (GreptimeTeam, a port
//!   of Prometheus's own yacc grammar). A warning, not an error: the server may speak a dialect
//!   or a newer PromQL than the parser (VictoriaMetrics' MetricsQL, experimental functions), and
//!   the server is the judge; a query it refuses makes the signal stale at run time anyway;
//! - AWS instance types with no shipped on-demand price in the configured region: their price
//!   comes from the Price List API at run time, and is an explicit unknown when that cannot be
//!   reached (ranked last, never launched under `max_cost_per_hour`).

use super::validate::Issue;
use super::{Config, SignalSource};
use crate::model::Timestamp;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use cron::Schedule;

/// How far ahead a window's start must fire to count as "will open". Eight years is the longest
/// gap between two 29 Februaries (2096 → 2104, no leap day in 2100); ten leaves margin.
pub const CRON_HORIZON_YEARS: i64 = 10;

/// The first firing of `schedule` in `tz` after `now`, if one falls within the horizon.
fn next_fire(schedule: &Schedule, tz: Tz, now: Timestamp) -> Option<DateTime<Tz>> {
    let utc = DateTime::<Utc>::from_timestamp_millis(now.millis())?;
    let local = tz.from_utc_datetime(&utc.naive_utc());
    let limit = utc + chrono::Duration::days(CRON_HORIZON_YEARS * 366);
    // The cron crate stops iterating at its last representable year, so an impossible date
    // ends the iterator instead of looping.
    schedule
        .after(&local)
        .next()
        .filter(|t| t.with_timezone(&Utc) <= limit)
}

/// Cron windows of `cfg` whose start (or end) never fires within the horizon after `now`.
pub(super) fn cron_windows(cfg: &Config, now: Timestamp) -> Vec<Issue> {
    let mut out = Vec::new();
    for (i, p) in cfg.pools.iter().enumerate() {
        for (j, s) in p.signals.iter().enumerate() {
            let SignalSource::Cron(c) = &s.source else {
                continue;
            };
            let (w, tz) = (&c.window, c.window.tz());
            let at = format!("pools[{i}].signals[{j}].cron");
            if next_fire(w.start(), tz, now).is_none() {
                out.push(Issue {
                    path: format!("{at}.start"),
                    message: format!(
                        "{:?} never fires in the next {CRON_HORIZON_YEARS} years, so the window \
                         never opens: check day-of-month against month (31 February, 31 April), \
                         and a year field in the past",
                        w.start_text()
                    ),
                });
            } else if next_fire(w.end(), tz, now).is_none() {
                out.push(Issue {
                    path: format!("{at}.end"),
                    message: format!(
                        "{:?} never fires in the next {CRON_HORIZON_YEARS} years, so once open \
                         the window never closes and the pool keeps {} replicas",
                        w.end_text(),
                        c.desired
                    ),
                });
            }
        }
    }
    out
}

/// Why `query` does not parse as PromQL, if it does not. `{instance}` and `{ip}` (the
/// in-flight query's placeholders) are replaced by sample values first.
pub fn promql_mistake(query: &str) -> Option<String> {
    let q = query
        .replace("{instance}", "i-0123456789abcdef0")
        .replace("{ip}", "10.0.0.1");
    promql_parser::parser::parse(&q).err()
}

/// Every PromQL query of `cfg` (signals, latency guard-rails, in-flight queries) that does
/// not parse.
pub(super) fn promql(cfg: &Config) -> Vec<Issue> {
    let mut queries = Vec::new();
    for (i, p) in cfg.pools.iter().enumerate() {
        for (j, s) in p.signals.iter().enumerate() {
            match &s.source {
                SignalSource::Prometheus(q) => queries.push((
                    format!("pools[{i}].signals[{j}].prometheus.query"),
                    &q.query,
                )),
                SignalSource::Latency(l) => {
                    queries.push((format!("pools[{i}].signals[{j}].latency.query"), &l.query))
                }
                _ => {}
            }
        }
        if let Some(q) = &p.in_flight_query {
            queries.push((format!("pools[{i}].in_flight_query.query"), &q.query));
        }
        if let Some(q) = p.slo.as_ref().and_then(|s| s.attainment_query.as_ref()) {
            queries.push((format!("pools[{i}].slo.attainment_query.query"), &q.query));
            if let Some(c) = &q.count_query {
                queries.push((format!("pools[{i}].slo.attainment_query.count_query"), c));
            }
        }
        if let Some(q) = &p.disruption.request_duration_query {
            queries.push((
                format!("pools[{i}].disruption.request_duration_query.query"),
                &q.query,
            ));
        }
    }
    queries
        .into_iter()
        .filter(|(_, q)| !q.trim().is_empty())
        .filter_map(|(path, q)| {
            promql_mistake(q).map(|why| Issue {
                path,
                message: format!(
                    "does not parse as PromQL ({}); Prometheus would refuse it and the signal \
                     would stay stale (ignore this if your server speaks a PromQL dialect)",
                    why.trim()
                ),
            })
        })
        .collect()
}

/// Every `slo.attainment_query` without a `count_query`: its readings count however few
/// requests they cover, so on a quiet pool one slow request in three reads 67 % and raises the
/// headroom (with it, a reading over fewer than `1 / (1 − attainment)` is unknown).
pub(super) fn attainment_counts(cfg: &Config) -> Vec<Issue> {
    cfg.pools
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let slo = p.slo.as_ref()?;
            let q = slo.attainment_query.as_ref()?;
            q.count_query.is_none().then(|| Issue {
                path: format!("pools[{i}].slo.attainment_query.count_query"),
                message: format!(
                    "not set, so every reading counts however few requests it covers (one slow \
                     request in three reads 67 % and raises the headroom); set it to the number \
                     of requests the query covers, e.g. \
                     sum(increase(vllm:request_queue_time_seconds_count[10m])), and readings over \
                     fewer than {} requests are unknown",
                    crate::planner::headroom::min_observations(slo)
                ),
            })
        })
        .collect()
}

/// Every pool with an `slo` but no `slo.attainment_query`: gpupool cannot measure its SLO, so
/// the headroom is learnt from demand growth alone, feedback never corrects it (bursts shorter
/// than a scrape, slow nodes), and `GpupoolSloBurning` never fires. Valid — the growth learner
/// still runs — but rarely what an operator means by stating an SLO.
pub(super) fn attainment_unmeasured(cfg: &Config) -> Vec<Issue> {
    cfg.pools
        .iter()
        .enumerate()
        .filter(|(_, p)| p.slo.as_ref().is_some_and(|s| s.attainment_query.is_none()))
        .map(|(i, _)| Issue {
            path: format!("pools[{i}].slo.attainment_query"),
            message: "not set, so gpupool cannot measure this pool's SLO: its headroom is learnt \
                      from demand growth alone, feedback never corrects it, and the alert \
                      GpupoolSloBurning never fires; set it to the fraction of requests that \
                      waited at most queue_wait_s, e.g. for vLLM \
                      sum(rate(vllm:request_queue_time_seconds_bucket{le=\"1.0\"}[10m])) / \
                      sum(rate(vllm:request_queue_time_seconds_count[10m]))"
                .to_owned(),
        })
        .collect()
}

/// The AWS provider's shipped on-demand tables (`providers/aws/data`, provenance in its
/// README): compiled in here too so a build without the `aws` feature checks the same figures.
const AWS_ONDEMAND_US_EAST_1: &str =
    include_str!("../../providers/aws/data/ondemand_prices_us_east_1.csv");
const AWS_ONDEMAND_REGIONAL: &str =
    include_str!("../../providers/aws/data/ondemand_prices_regional.csv");

/// Whether the shipped tables have an on-demand price for `instance_type` in `region`, and
/// the regions they cover.
fn aws_table() -> (std::collections::BTreeSet<(String, String)>, Vec<String>) {
    let mut priced = std::collections::BTreeSet::new();
    for l in AWS_ONDEMAND_US_EAST_1.lines().skip(1) {
        if let Some((t, _)) = l.split_once(',') {
            priced.insert(("us-east-1".to_owned(), t.trim().to_owned()));
        }
    }
    for l in AWS_ONDEMAND_REGIONAL.lines().skip(1) {
        let mut f = l.split(',');
        if let (Some(r), Some(t)) = (f.next(), f.next()) {
            priced.insert((r.trim().to_owned(), t.trim().to_owned()));
        }
    }
    let mut regions: Vec<String> = priced.iter().map(|(r, _)| r.clone()).collect();
    regions.dedup();
    (priced, regions)
}

/// AWS on-demand prices the shipped tables lack for the configured region: one warning per
/// instance type a pool names (`requirements.instance_types`) that has neither a table price
/// there nor an `aws.price_overrides` entry; and, when the region has no table at all, one
/// for the region (the groups' types are only known at run time).
pub(super) fn aws_prices(cfg: &Config) -> Vec<Issue> {
    let Some(aws) = cfg
        .aws
        .as_ref()
        .filter(|_| cfg.provider == super::ProviderKind::Aws)
    else {
        return Vec::new();
    };
    let region = aws.region.as_str();
    let (priced, regions) = aws_table();
    let fallback = if aws.price_list_api {
        "gpupool uses the AWS Price List API's live price; if that cannot be reached"
    } else {
        "aws.price_list_api is off, so"
    };
    let consequence = "the price is unknown: ranked last, never launched under \
                       limits.max_cost_per_hour, left out of estimated costs";
    let mut out = Vec::new();
    if !regions.iter().any(|r| r == region) {
        out.push(Issue {
            path: "aws.region".into(),
            message: format!(
                "gpupool ships on-demand prices for {} only: in {region} {fallback} {consequence} \
                 (set aws.price_overrides to pin prices)",
                regions.join(", ")
            ),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in cfg.pools.iter().enumerate() {
        for (j, t) in p.requirements.instance_types.iter().enumerate() {
            let known = priced.contains(&(region.to_owned(), t.clone()))
                || aws.price_overrides.contains_key(t);
            if known || !seen.insert(t.clone()) {
                continue;
            }
            out.push(Issue {
                path: format!("pools[{i}].requirements.instance_types[{j}]"),
                message: format!(
                    "no shipped on-demand price for {t} in {region}: {fallback} {consequence} \
                     (set aws.price_overrides.{t})"
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-01-15 00:00 UTC.
    const NOW: Timestamp = Timestamp::from_secs(1_768_435_200);

    #[test]
    fn next_fire_finds_possible_dates_and_rejects_impossible_ones() {
        for (expr, opens) in [
            ("0 0 8 * * Mon-Fri", true),
            ("0 0 0 29 2 *", true),      // leap day: 2028
            ("0 0 0 31 2 *", false),     // 31 February
            ("0 0 0 31 4 *", false),     // 31 April
            ("0 0 8 * * * 2020", false), // a year in the past
            ("0 0 8 1 1 * 2031", true),
        ] {
            let schedule = super::super::cron::parse_cron(expr).unwrap();
            assert_eq!(
                next_fire(&schedule, chrono_tz::UTC, NOW).is_some(),
                opens,
                "{expr}"
            );
        }
    }

    /// One pool `a` with these lines under it (an `slo:` block, or nothing).
    fn one_pool(lines: &str) -> Config {
        Config::load(&format!(
            "pools:\n  - name: a\n    requirements: {{}}\n{lines}    signals:\n      - cron: {{ start: '0 0 9 * * *', end: '0 0 17 * * *', desired: 1 }}\n"
        ))
        .unwrap()
    }

    #[test]
    fn an_slo_nothing_measures_is_named_and_one_that_is_measured_is_not() {
        let cfg = one_pool;
        let unmeasured = cfg("    slo: { queue_wait_s: 1.0, attainment: 0.99 }\n");
        let w = attainment_unmeasured(&unmeasured);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].path, "pools[0].slo.attainment_query");
        assert!(
            w[0].message.contains("GpupoolSloBurning never fires"),
            "{}",
            w[0].message
        );
        // What the message proposes is PromQL that parses.
        let example = w[0].message.split("for vLLM ").nth(1).unwrap();
        assert!(promql_parser::parser::parse(example).is_ok(), "{example}");
        let measured = cfg(
            "    slo:\n      queue_wait_s: 1.0\n      attainment: 0.99\n      attainment_query: { url: \"http://p:9090\", query: 'x', count_query: 'y', window_s: 600 }\n",
        );
        assert!(attainment_unmeasured(&measured).is_empty());
        assert!(
            attainment_unmeasured(&cfg("")).is_empty(),
            "no slo, nothing to measure"
        );
    }

    #[test]
    fn an_attainment_query_without_a_count_is_named_and_its_queries_are_parsed() {
        let cfg = |query: &str| {
            one_pool(&format!(
                "    slo:\n      queue_wait_s: 1.0\n      attainment: 0.999\n      attainment_query: {{ url: \"http://p:9090\", query: 'x', window_s: 600{query} }}\n"
            ))
        };
        let uncounted = cfg("");
        let w = attainment_counts(&uncounted);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].path, "pools[0].slo.attainment_query.count_query");
        assert!(
            w[0].message.contains("fewer than 1000 requests"),
            "{}",
            w[0].message
        );
        let counted = cfg(", count_query: 'sum(increase(c[10m]))'");
        assert!(attainment_counts(&counted).is_empty());
        // A count query that does not parse is named like any other query.
        let broken = cfg(", count_query: 'sum(increase(c[10m])'");
        let paths: Vec<String> = promql(&broken).into_iter().map(|i| i.path).collect();
        assert_eq!(paths, vec!["pools[0].slo.attainment_query.count_query"]);
    }

    #[test]
    fn promql_that_does_not_parse_is_named() {
        for ok in [
            "sum(vllm:num_requests_waiting{model_name=\"llama\"})",
            "histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[5m])))",
            "sum(vllm:num_requests_running{instance=\"{ip}:8000\"})",
            "vector(1)",
        ] {
            assert_eq!(promql_mistake(ok), None, "{ok}");
        }
        for bad in [
            "sum(rate(x[5m])",
            "sum(x{job=\"a\"}) by",
            "rate(x[5 m])",
            "x{job=a}",
        ] {
            assert!(promql_mistake(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn aws_types_without_a_price_in_the_region_are_named() {
        let cfg = |region: &str, extra: &str| {
            let c = Config::load(&format!(
                "provider: aws\nmode: vm-only\naws: {{ region: {region}{extra} }}\npools:\n  - name: a\n    requirements: {{ instance_types: [g5.xlarge, g4dn.xlarge] }}\n    limits: {{ min_nodes: 1 }}\n"
            ))
            .unwrap();
            aws_prices(&c)
                .into_iter()
                .map(|i| format!("{}: {}", i.path, i.message))
                .collect::<Vec<_>>()
        };
        // (region, extra aws keys, warnings expected: (path prefix, text))
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
        let cases: [Case<'_>; 5] = [
            ("us-east-1", "", &[]),
            // GovCloud West: g4dn.xlarge is in the table, g5.xlarge is not.
            (
                "us-gov-west-1",
                "",
                &[(
                    "pools[0].requirements.instance_types[0]",
                    "g5.xlarge in us-gov-west-1",
                )],
            ),
            (
                "eu-west-1",
                "",
                &[
                    (
                        "aws.region",
                        "in eu-west-1 gpupool uses the AWS Price List API",
                    ),
                    (
                        "pools[0].requirements.instance_types[0]",
                        "g5.xlarge in eu-west-1",
                    ),
                    (
                        "pools[0].requirements.instance_types[1]",
                        "g4dn.xlarge in eu-west-1",
                    ),
                ],
            ),
            (
                "eu-west-1",
                ", price_overrides: { g5.xlarge: 1.1, g4dn.xlarge: 0.6 }",
                &[("aws.region", "in eu-west-1")],
            ),
            (
                "eu-west-1",
                ", price_list_api: false, price_overrides: { g5.xlarge: 1.1 }",
                &[
                    ("aws.region", "aws.price_list_api is off"),
                    (
                        "pools[0].requirements.instance_types[1]",
                        "g4dn.xlarge in eu-west-1",
                    ),
                ],
            ),
        ];
        for (region, extra, want) in cases {
            let got = cfg(region, extra);
            assert_eq!(got.len(), want.len(), "{region}{extra}: {got:#?}");
            for (g, (path, text)) in got.iter().zip(want) {
                assert!(
                    g.starts_with(path) && g.contains(text),
                    "{g} should name {text}"
                );
                assert!(g.contains("unknown"), "{g}");
            }
        }
    }
}
