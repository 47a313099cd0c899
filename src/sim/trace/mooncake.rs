//! Mooncake's trace JSONL (kvcache-ai/Mooncake, `FAST25-release/traces/*.jsonl` and the
//! README's samples at 40ea55f809cfd8dad8a738d6b5c1c26d9e06a7cd): one JSON object a line,
//!
//! ```text
//! {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47]}
//! ```
//!
//! - `timestamp`: arrival in milliseconds since the trace's first request (several requests
//!   may share one); the trace's zero is that 0.
//! - `input_length` / `output_length`: prompt and output tokens.
//! - `hash_ids` (KV-cache block hashes) and any other key are not read.
//!
//! Blank lines are skipped.

use super::{Collector, Column, MAX_TIMESTAMP_S, Problem, RawRequest, TraceError, num};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};

/// Reads the lines in `out`'s window.
pub fn parse<R: Read>(r: R, file: &str, out: &mut Collector<'_>) -> Result<(), TraceError> {
    for (k, line) in BufReader::new(r).lines().enumerate() {
        let n = k as u64 + 1;
        let text = line.map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => TraceError::at(file, n, None, Problem::NotUtf8),
            _ => TraceError::Open {
                file: file.to_owned(),
                source: e,
            },
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let r = parse_line(&text)
            .map_err(|(column, problem)| TraceError::at(file, n, column, problem))?;
        out.push(r, n)?;
    }
    Ok(())
}

/// One line, or the column (1-based character) and problem.
fn parse_line(text: &str) -> Result<RawRequest, (Option<Column>, Problem)> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        let msg = e.to_string();
        // serde_json appends " at line L column C": the line is always 1 here, the column is
        // given separately.
        let message = msg
            .rfind(" at line ")
            .map_or(msg.as_str(), |i| &msg[..i])
            .to_owned();
        (
            Some(Column {
                number: e.column(),
                name: None,
            }),
            Problem::Json { message },
        )
    })?;
    let obj = v.as_object().ok_or((
        Some(Column {
            number: 1,
            name: None,
        }),
        Problem::NotAnObject,
    ))?;
    let get = |key: &'static str| -> Result<(&Value, Column), (Option<Column>, Problem)> {
        let v = obj.get(key).ok_or((None, Problem::MissingKey { key }))?;
        let number = text
            .find(&format!("\"{key}\""))
            .map_or(1, |i| text[..i].chars().count() + 1);
        Ok((
            v,
            Column {
                number,
                name: Some(key.to_owned()),
            },
        ))
    };
    let (ts, c) = get("timestamp")?;
    let ms = ts.as_f64().ok_or_else(|| {
        (
            Some(c.clone()),
            Problem::NotANumber {
                value: ts.to_string(),
            },
        )
    })?;
    let at_ms =
        num::checked(ms, &ts.to_string(), MAX_TIMESTAMP_S * 1000.0).map_err(|p| (Some(c), p))?;
    let tokens = |key: &'static str| -> Result<u32, (Option<Column>, Problem)> {
        let (v, c) = get(key)?;
        num::tokens(&v.to_string()).map_err(|p| (Some(c), p))
    };
    Ok(RawRequest {
        at_s: at_ms / 1000.0,
        input_tokens: tokens("input_length")?,
        output_tokens: tokens("output_length")?,
        exec_s: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{MAX_REQUESTS, Window};
    use super::*;

    fn load(text: &str) -> Result<Vec<(i64, u32, u32)>, String> {
        let mut c = Collector::new("m.jsonl", Window::ALL, MAX_REQUESTS);
        parse(text.as_bytes(), "m.jsonl", &mut c).map_err(|e| e.to_string())?;
        let t = c.finish().map_err(|e| e.to_string())?;
        Ok(t.requests
            .iter()
            .map(|r| (r.at_ms, r.input_tokens, r.output_tokens))
            .collect())
    }

    #[test]
    fn reads_the_upstream_samples() {
        let text = r#"{"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47]}
{"timestamp": 0, "input_length": 655, "output_length": 52, "hash_ids": [46, 47]}

{"timestamp": 27482.5, "output_length": 26, "input_length": 6472}
"#;
        assert_eq!(
            load(text).unwrap(),
            vec![(0, 655, 52), (27_482, 6955, 52), (27_483, 6472, 26)]
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let ok = r#"{"timestamp": 0, "input_length": 1, "output_length": 1}"#;
        let e = load(&format!("{ok}\n{{\"timestamp\": 5, \"input_length\": 1,\n")).unwrap_err();
        assert!(e.starts_with("m.jsonl line 2, column "), "{e}");
        assert!(e.contains("not JSON: EOF while parsing"), "{e}");
        let e = load(&format!(
            "{ok}\n{{\"timestamp\": 5, \"input_length\": -1, \"output_length\": 1}}\n"
        ))
        .unwrap_err();
        assert_eq!(
            e,
            "m.jsonl line 2, column 18 (input_length): `-1` is negative"
        );
        let e = load(&format!(
            "{ok}\n{{\"timestamp\": \"5\", \"input_length\": 1, \"output_length\": 1}}\n"
        ))
        .unwrap_err();
        assert_eq!(
            e,
            "m.jsonl line 2, column 2 (timestamp): `\"5\"` is not a number"
        );
        let e = load(&format!(
            "{ok}\n{{\"timestamp\": 5, \"input_length\": 1}}\n"
        ))
        .unwrap_err();
        assert_eq!(e, "m.jsonl line 2: missing key `output_length`");
        let e = load("[1,2]\n").unwrap_err();
        assert!(e.contains("expected a JSON object"), "{e}");
        let e = load(&format!(
            "{ok}\n{{\"timestamp\": -2, \"input_length\": 1, \"output_length\": 1}}\n"
        ))
        .unwrap_err();
        assert!(e.ends_with("`-2` is negative"), "{e}");
        let e = load(&format!(
            "{ok}\n{{\"timestamp\": 1, \"input_length\": 2.5, \"output_length\": 1}}\n"
        ))
        .unwrap_err();
        assert!(
            e.ends_with("`2.5` is not a whole number (0 or more)"),
            "{e}"
        );
    }
}
