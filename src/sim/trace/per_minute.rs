//! Request counts per time window (a CSV with a header), such as the Alibaba ServeGen
//! counts shipped in `data/traces/alibaba_servegen_llm_requests_by_10min.csv`
//! (`model,category,window_start_s,requests,…`), or a Prometheus/Grafana export of
//! `increase(requests_total[1m])`.
//!
//! - `count_column`: the column holding the count of each window.
//! - `window_s` (60 by default): each kept row is the next window, in file order, from the
//!   trace's zero: row k covers `[k·window_s, (k+1)·window_s)`. There is no time column, so
//!   a gap in the file is a gap in time only if it has its row of 0.
//! - `filter`: only rows whose column equals the value are windows (one model's rows of a
//!   file holding several).
//! - `scale`: multiplies every count (1 by default). The fractions carry over to the next
//!   window, so `scale: 0.01` keeps 1 % of the requests instead of rounding each window to 0.
//! - `max_per_minute`: caps the rate (after `scale`); the requests over the cap are dropped.
//! - `tokens_like`: the built-in trace whose requests' token sizes (or execution times) are
//!   drawn, uniformly, for each generated request, seeded by the scenario's `seed` and the
//!   window's index, so a window's requests are the same whatever slice is replayed.
//!
//! The n requests of a window arrive evenly spread: at `start + (i + ½)·window_s/n`.

use super::csvio::{self, Filter};
use super::{
    Collector, MAX_REQUESTS, Problem, RawRequest, RowFilter, Trace, TraceError, Window, num,
};
use crate::sim::data::{TraceRequest, TraceSource};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Read;

/// Largest count accepted in one window (before `scale`).
pub const MAX_COUNT: f64 = 1e12;

/// A per-minute trace's options, checked by the scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub count_column: String,
    pub window_s: f64,
    pub scale: f64,
    pub max_per_minute: Option<f64>,
    pub tokens_like: TraceSource,
}

/// Reads the windows, generates the requests of those overlapping `window`.
pub fn load<R: Read>(
    r: R,
    file: &str,
    spec: &Spec,
    filter: Option<&RowFilter>,
    window: Window,
    seed: u64,
    pool: &[TraceRequest],
) -> Result<Trace, TraceError> {
    let mut rdr = csvio::reader(r);
    let expected = format!("a header naming `{}`", spec.count_column);
    let h = csvio::header(&mut rdr, file, &expected)?;
    let count_idx = csvio::find(&h, &spec.count_column)
        .ok_or_else(|| csvio::unknown(&h, "count_column", &spec.count_column, file))?;
    let keep = Filter::new(&h, filter, file)?;
    let cap = spec.max_per_minute.map(|m| m * spec.window_s / 60.0);
    let mut out = Collector::new(file, window, MAX_REQUESTS);
    let mut rec = csv::StringRecord::new();
    let (mut k, mut carry) = (0u64, 0.0f64);
    while rdr
        .read_record(&mut rec)
        .map_err(|e| csvio::from_csv(e, file, &expected))?
    {
        if !keep.matches(&rec) {
            continue;
        }
        let line = csvio::line(&rec);
        let v = csvio::field(&rec, &h, count_idx, file)?;
        let count = num::non_negative(v, MAX_COUNT)
            .map_err(|p| TraceError::at(file, line, Some(csvio::col(&h, count_idx)), p))?;
        let n = window_requests(count * spec.scale, &mut carry, cap);
        let t0 = k as f64 * spec.window_s;
        if window.overlaps(t0, t0 + spec.window_s) {
            if n > MAX_REQUESTS as u64 {
                return Err(TraceError::at(
                    file,
                    line,
                    Some(csvio::col(&h, count_idx)),
                    Problem::TooManyRequests { max: MAX_REQUESTS },
                ));
            }
            spread(t0, spec.window_s, n, k, seed, pool, line, &mut out)?;
        }
        k += 1;
    }
    if k == 0 {
        return Err(TraceError::Empty {
            file: file.to_owned(),
        });
    }
    let span_ms = (k as f64 * spec.window_s * 1000.0).round() as i64;
    // Windows of 0 (or none in the slice) are a quiet replay, not an error.
    let requests = match out.finish() {
        Ok(t) => t.requests,
        Err(TraceError::Empty { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(Trace { requests, span_ms })
}

/// Requests in a window whose scaled count is `scaled`: the whole part of the count plus the
/// fraction carried from earlier windows, then capped at `cap`.
pub fn window_requests(scaled: f64, carry: &mut f64, cap: Option<f64>) -> u64 {
    let total = scaled + *carry;
    let n = total.floor();
    *carry = total - n;
    let n = cap.map_or(n, |c| n.min(c.floor()));
    n as u64
}

/// The `n` requests of window `k` starting at `t0`, evenly spread, tokens drawn from `pool`.
#[allow(clippy::too_many_arguments)]
fn spread(
    t0: f64,
    window_s: f64,
    n: u64,
    k: u64,
    seed: u64,
    pool: &[TraceRequest],
    line: u64,
    out: &mut Collector<'_>,
) -> Result<(), TraceError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(k);
    for i in 0..n {
        let like = &pool[rng.random_range(0..pool.len())];
        out.push(
            RawRequest {
                at_s: t0 + (i as f64 + 0.5) * window_s / n as f64,
                input_tokens: like.input_tokens,
                output_tokens: like.output_tokens,
                exec_s: like.exec_s,
            },
            line,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scale: f64, max_per_minute: Option<f64>) -> Spec {
        Spec {
            count_column: "requests".into(),
            window_s: 60.0,
            scale,
            max_per_minute,
            tokens_like: TraceSource::AzureConv,
        }
    }

    const TEXT: &str = "model,window_start_s,requests\n\
                        a,0,3\n\
                        b,0,100\n\
                        a,60,0\n\
                        a,120,2\n";

    fn pool() -> Vec<TraceRequest> {
        (1..=4)
            .map(|k| TraceRequest {
                at_ms: 0,
                input_tokens: k * 100,
                output_tokens: k,
                exec_s: None,
            })
            .collect()
    }

    fn a() -> RowFilter {
        RowFilter {
            column: "model".into(),
            equals: "a".into(),
        }
    }

    #[test]
    fn counts_spread_evenly_in_their_windows() {
        let t = load(
            TEXT.as_bytes(),
            "p.csv",
            &spec(1.0, None),
            Some(&a()),
            Window::ALL,
            1,
            &pool(),
        )
        .unwrap();
        let at: Vec<i64> = t.requests.iter().map(|r| r.at_ms).collect();
        assert_eq!(at, vec![10_000, 30_000, 50_000, 135_000, 165_000]);
        assert_eq!(t.span_ms, 180_000);
        assert!(
            t.requests
                .iter()
                .all(|r| r.input_tokens == r.output_tokens * 100)
        );
    }

    #[test]
    fn scale_carries_fractions_and_the_cap_drops_the_excess() {
        let mut carry = 0.0;
        let got: Vec<u64> = [0.4, 0.4, 0.4, 5.0]
            .iter()
            .map(|&x| window_requests(x, &mut carry, None))
            .collect();
        assert_eq!(got, vec![0, 0, 1, 5]);
        let mut carry = 0.0;
        assert_eq!(window_requests(100.0, &mut carry, Some(7.5)), 7);
        let t = load(
            TEXT.as_bytes(),
            "p.csv",
            &spec(1.0, Some(60.0)),
            None,
            Window::ALL,
            1,
            &pool(),
        )
        .unwrap();
        // b's 100 in the second window are capped at 60 a minute.
        assert_eq!(t.requests.len(), 3 + 60 + 2);
    }

    #[test]
    fn token_draws_depend_on_seed_and_window_not_on_the_slice() {
        let tok = |w: Window, seed: u64| -> Vec<(i64, u32)> {
            load(
                TEXT.as_bytes(),
                "p.csv",
                &spec(1.0, None),
                Some(&a()),
                w,
                seed,
                &pool(),
            )
            .unwrap()
            .requests
            .iter()
            .map(|r| (r.at_ms, r.input_tokens))
            .collect()
        };
        let all = tok(Window::ALL, 3);
        let late = tok(
            Window {
                start_s: 120.0,
                end_s: None,
            },
            3,
        );
        assert_eq!(&all[3..], &late[..]);
        assert_eq!(all, tok(Window::ALL, 3));
        let other: Vec<Vec<(i64, u32)>> = (4..10).map(|s| tok(Window::ALL, s)).collect();
        assert!(
            other.iter().any(|o| *o != all),
            "the seed changes the draws"
        );
    }

    #[test]
    fn bad_counts_and_columns_name_line_and_column() {
        let e = load(
            format!("{TEXT}a,180,-1\n").as_bytes(),
            "p.csv",
            &spec(1.0, None),
            Some(&a()),
            Window::ALL,
            1,
            &pool(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "p.csv line 6, column 3 (requests): `-1` is negative");
        let mut s = spec(1.0, None);
        s.count_column = "count".into();
        let e = load(TEXT.as_bytes(), "p.csv", &s, None, Window::ALL, 1, &pool())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("p.csv line 1: trace.count_column names the column `count`"),
            "{e}"
        );
        let e = load(
            format!("{TEXT}a,180,1e13\n").as_bytes(),
            "p.csv",
            &spec(1.0, None),
            Some(&a()),
            Window::ALL,
            1,
            &pool(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("above the limit"), "{e}");
    }

    #[test]
    fn a_huge_window_in_the_slice_is_refused_not_generated() {
        let e = load(
            "requests\n1000000000\n".as_bytes(),
            "p.csv",
            &spec(1.0, None),
            None,
            Window::ALL,
            1,
            &pool(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("p.csv line 2, column 1 (requests): more than"),
            "{e}"
        );
        // Outside the slice it costs nothing.
        let t = load(
            "requests\n1000000000\n2\n".as_bytes(),
            "p.csv",
            &spec(1.0, None),
            None,
            Window {
                start_s: 60.0,
                end_s: None,
            },
            1,
            &pool(),
        )
        .unwrap();
        assert_eq!(t.requests.len(), 2);
    }
}
