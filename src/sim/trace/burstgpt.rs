//! The BurstGPT trace CSV (HPMLL/BurstGPT, `data/BurstGPT_*.csv`; README "Schema" section at
//! ff1a7c634d3743292b98ed8acfcdb986b96c7de5):
//!
//! ```text
//! Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
//! 5,ChatGPT,472,18,490,Conversation log
//! ```
//!
//! - `Timestamp`: "request submission time, seconds from 0:00:00 on the first day" — the
//!   trace's zero is that midnight, so `start_s: 86400` starts on the second day.
//! - `Request tokens` / `Response tokens`: prompt and output lengths.
//! - `Model` (`ChatGPT`, `GPT-4`) and `Log Type` (`Conversation log`, `API log`) can pick rows
//!   with `filter:`; `Total tokens` is not read.
//!
//! Failed requests are rows with `Response tokens` 0 (BurstGPT_1/2.csv; the `without_fails`
//! files drop them). They are replayed: they arrived and were prefilled.

use super::{Collector, Problem, RowFilter, TraceError, csvio, num};
use std::io::Read;

/// The upstream header (only the three request columns are required, in any order).
pub const HEADER: &str = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type";

fn at_s(s: &str) -> Result<f64, Problem> {
    num::seconds(s)
}

/// Reads the rows in `out`'s window (seconds from the first day's midnight).
pub fn parse<R: Read>(
    r: R,
    file: &str,
    filter: Option<&RowFilter>,
    out: &mut Collector<'_>,
) -> Result<(), TraceError> {
    csvio::read_requests(
        r,
        file,
        HEADER,
        ["Timestamp", "Request tokens", "Response tokens"],
        filter,
        at_s,
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::super::{MAX_REQUESTS, Window};
    use super::*;

    const TEXT: &str = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
                        5,ChatGPT,472,18,490,Conversation log\n\
                        45,GPT-4,1087,0,1087,API log\n\
                        12.5,ChatGPT,10,20,30,Conversation log\n";

    /// (at ms, input, output) per request.
    type Rows = Vec<(i64, u32, u32)>;

    fn load(text: &str, filter: Option<&RowFilter>, w: Window) -> Result<(Rows, i64), String> {
        let mut c = Collector::new("b.csv", w, MAX_REQUESTS);
        parse(text.as_bytes(), "b.csv", filter, &mut c).map_err(|e| e.to_string())?;
        let t = c.finish().map_err(|e| e.to_string())?;
        let v = t
            .requests
            .iter()
            .map(|r| (r.at_ms, r.input_tokens, r.output_tokens))
            .collect();
        Ok((v, t.span_ms))
    }

    #[test]
    fn keeps_the_days_zero_sorts_and_replays_failed_requests() {
        let (v, span) = load(TEXT, None, Window::ALL).unwrap();
        assert_eq!(
            v,
            vec![(5000, 472, 18), (12_500, 10, 20), (45_000, 1087, 0)]
        );
        assert_eq!(span, 45_001);
    }

    #[test]
    fn filter_and_window_pick_rows() {
        let f = RowFilter {
            column: "Model".into(),
            equals: "ChatGPT".into(),
        };
        let (v, _) = load(TEXT, Some(&f), Window::ALL).unwrap();
        assert_eq!(v.len(), 2);
        let w = Window {
            start_s: 10.0,
            end_s: Some(50.0),
        };
        let (v, span) = load(TEXT, None, w).unwrap();
        assert_eq!(v, vec![(12_500, 10, 20), (45_000, 1087, 0)]);
        assert_eq!(span, 45_001, "the span counts rows outside the window");
    }

    #[test]
    fn bad_values_and_columns_name_line_and_column() {
        let e = load(
            &format!("{TEXT}NaN,ChatGPT,1,1,2,API log\n"),
            None,
            Window::ALL,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "b.csv line 5, column 1 (Timestamp): `NaN` is not a finite number"
        );
        let e = load(
            &format!("{TEXT}-3,ChatGPT,1,1,2,API log\n"),
            None,
            Window::ALL,
        )
        .unwrap_err();
        assert!(e.ends_with("`-3` is negative"), "{e}");
        let e = load("Timestamp,Model,Request tokens\n1,a,2\n", None, Window::ALL).unwrap_err();
        assert!(e.starts_with("b.csv line 1"), "{e}");
        assert!(e.contains(HEADER), "{e}");
        let f = RowFilter {
            column: "model_name".into(),
            equals: "x".into(),
        };
        let e = load(TEXT, Some(&f), Window::ALL).unwrap_err();
        assert!(
            e.contains("trace.filter.column names the column `model_name`"),
            "{e}"
        );
    }
}
