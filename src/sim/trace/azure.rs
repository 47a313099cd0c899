//! The Azure LLM inference trace CSV (Azure/AzurePublicDataset, `AzureLLMInferenceTrace_*.csv`,
//! 2023; the same layout as `data/traces/azure_llm_2023_*.csv`):
//!
//! ```text
//! TIMESTAMP,ContextTokens,GeneratedTokens
//! 2023-11-16 18:15:46.6805900,374,44
//! ```
//!
//! `TIMESTAMP` is an absolute UTC date and time (fraction of a second optional), so the trace's
//! zero is its earliest request. Columns are found by name; others are ignored.

use super::{Collector, Problem, RowFilter, TraceError, csvio};
use crate::sim::data::parse_datetime_s;
use std::io::Read;

/// The header the format expects.
pub const HEADER: &str = "TIMESTAMP,ContextTokens,GeneratedTokens";

fn at_s(s: &str) -> Result<f64, Problem> {
    parse_datetime_s(s).ok_or_else(|| Problem::NotADateTime {
        value: s.to_owned(),
    })
}

/// Reads every row into `out` (seconds since the Unix epoch).
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
        ["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
        filter,
        at_s,
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::super::{MAX_ROWS, Window};
    use super::*;

    fn load(text: &str) -> Result<Vec<(i64, u32, u32)>, String> {
        let mut c = Collector::new("a.csv", Window::ALL, MAX_ROWS);
        parse(text.as_bytes(), "a.csv", None, &mut c).map_err(|e| e.to_string())?;
        let t = c.finish_rebased(Window::ALL).map_err(|e| e.to_string())?;
        Ok(t.requests
            .iter()
            .map(|r| (r.at_ms, r.input_tokens, r.output_tokens))
            .collect())
    }

    #[test]
    fn reads_rows_relative_to_the_earliest_sorting_out_of_order_ones() {
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
                    2023-11-16 18:15:47.5,10,2\n\
                    2023-11-16 18:15:46.0,374,44\n\
                    \n\
                    2023-11-16 18:15:49,5,1\n";
        assert_eq!(
            load(text).unwrap(),
            vec![(0, 374, 44), (1500, 10, 2), (3000, 5, 1)]
        );
    }

    #[test]
    fn a_byte_order_mark_and_crlf_line_ends_are_accepted() {
        // What a spreadsheet saving "CSV UTF-8" on Windows writes.
        let text = "\u{feff}TIMESTAMP,ContextTokens,GeneratedTokens\r\n2023-11-16 18:15:46,3,4\r\n";
        assert_eq!(load(text).unwrap(), vec![(0, 3, 4)]);
    }

    #[test]
    fn columns_are_found_by_name_with_extra_ones_ignored() {
        let text = "GeneratedTokens,TIMESTAMP,extra,ContextTokens\n7,2023-11-16 18:15:46,x,9\n";
        assert_eq!(load(text).unwrap(), vec![(0, 9, 7)]);
    }

    #[test]
    fn a_wrong_header_names_the_expected_one() {
        let e = load("time,in,out\n2023-11-16 18:15:46,1,1\n").unwrap_err();
        assert_eq!(
            e,
            "a.csv line 1, column 1 (time): expected the header \
             `TIMESTAMP,ContextTokens,GeneratedTokens`, found `time,in,out`"
        );
    }

    #[test]
    fn bad_values_name_line_and_column() {
        let h = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1,1\n";
        let e = load(&format!("{h}2023-11-16 18:15:47,12x,1\n")).unwrap_err();
        assert!(
            e.starts_with("a.csv line 3, column 2 (ContextTokens): `12x` is not a whole"),
            "{e}"
        );
        let e = load(&format!("{h}2023-13-16 18:15:47,1,1\n")).unwrap_err();
        assert!(
            e.starts_with("a.csv line 3, column 1 (TIMESTAMP): `2023-13-16"),
            "{e}"
        );
        let e = load(&format!("{h}2023-11-16 18:15:47,1,-4\n")).unwrap_err();
        assert!(
            e.contains("column 3 (GeneratedTokens): `-4` is negative"),
            "{e}"
        );
        let e = load(&format!("{h}2023-11-16 18:15:47,1\n")).unwrap_err();
        assert!(
            e.starts_with("a.csv line 3, column 3 (GeneratedTokens): missing field"),
            "{e}"
        );
    }

    #[test]
    fn a_header_only_file_has_no_requests() {
        assert_eq!(load(HEADER).unwrap_err(), "a.csv: no requests");
    }
}
