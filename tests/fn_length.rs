//! No new function over 120 lines in `src/` or `providers/`, and the long ones only shrink.
//!
//! A function's length is its lines from the `fn` line to its closing brace (rustfmt layout,
//! which `cargo fmt --check` enforces, puts that brace at the `fn` line's indentation). The
//! functions already longer are listed in `tests/data/long_functions.txt` with their current
//! length; a function not listed, or longer than listed, fails. One that shrank fails too until
//! its entry is lowered (or removed below the limit), so it cannot grow back:
//! `GPUPOOL_BLESS_LONG_FUNCTIONS=1 cargo test --test fn_length` rewrites the list when nothing
//! grew. (Clippy's `too_many_lines` would say the same at compile time, but it cannot be turned
//! on while these functions exist; issue #15 ends with the list empty and the lint on.)

use std::collections::BTreeMap;
use std::path::Path;

const LIMIT: usize = 120;
const ROOTS: &[&str] = &["src", "providers"];
const LIST: &str = "tests/data/long_functions.txt";

#[derive(Clone, Debug, PartialEq)]
struct LongFn {
    file: String,
    name: String,
    lines: usize,
}

/// `Some((indent, name))` when `line` starts a function item.
fn fn_start(line: &str) -> Option<(usize, String)> {
    let trimmed = line.trim_start();
    let indent = line.len() - trimmed.len();
    let mut rest = trimmed;
    if let Some(r) = rest.strip_prefix("pub") {
        rest = match r.strip_prefix('(') {
            Some(r) => r.split_once(')')?.1,
            None => r,
        };
        rest = rest.trim_start();
    }
    for q in ["async ", "const ", "unsafe ", "extern \"C\" "] {
        rest = rest.strip_prefix(q).unwrap_or(rest).trim_start();
    }
    let rest = rest.strip_prefix("fn ")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some((indent, name))
}

/// Every function of `src` with its length in lines.
fn functions(src: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((indent, name)) = fn_start(line) else {
            continue;
        };
        // The signature ends at the first line ending in `{` (a body) or `;` (a declaration).
        let Some(sig_end) = (i..lines.len()).find(|&j| {
            let t = lines[j].trim_end();
            t.ends_with('{') || t.ends_with(';') || (j == i && t.ends_with('}'))
        }) else {
            continue;
        };
        let t = lines[sig_end].trim_end();
        if t.ends_with(';') {
            continue;
        }
        if t.ends_with('}') {
            out.push((name, 1)); // `fn f() -> u32 { 1 }`
            continue;
        }
        let close = (sig_end + 1..lines.len()).find(|&j| {
            let l = lines[j];
            l.len() > indent && l[..indent].trim().is_empty() && l[indent..].starts_with('}')
        });
        if let Some(j) = close {
            out.push((name, j - i + 1));
        }
    }
    out
}

fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
    let mut names: Vec<String> = std::fs::read_dir(root.join(rel))
        .unwrap_or_else(|e| panic!("reading {rel}: {e}"))
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    for n in names {
        let child = format!("{rel}/{n}");
        if n == "target" || n.starts_with('.') {
            continue;
        }
        if root.join(&child).is_dir() {
            walk(root, &child, out);
        } else if n.ends_with(".rs") {
            out.push(child);
        }
    }
}

fn long_functions(root: &Path) -> Vec<LongFn> {
    let mut files = Vec::new();
    for r in ROOTS {
        walk(root, r, &mut files);
    }
    let mut out = Vec::new();
    for f in files {
        let src = std::fs::read_to_string(root.join(&f)).expect("readable source");
        for (name, lines) in functions(&src) {
            if lines > LIMIT {
                out.push(LongFn {
                    file: f.clone(),
                    name,
                    lines,
                });
            }
        }
    }
    out
}

fn parse_list(text: &str) -> Vec<LongFn> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut it = l.split_whitespace();
            let (Some(lines), Some(file), Some(name), None) =
                (it.next(), it.next(), it.next(), it.next())
            else {
                panic!("{LIST}: expected `<lines> <file> <function>`, got {l:?}");
            };
            LongFn {
                file: file.to_owned(),
                name: name.to_owned(),
                lines: lines
                    .parse()
                    .unwrap_or_else(|_| panic!("{LIST}: {lines:?} is not a line count")),
            }
        })
        .collect()
}

/// What is wrong with `found` against the allowance `listed`: new or grown functions (which
/// blessing cannot fix) and shrunk or gone ones (which it can).
fn compare(found: &[LongFn], listed: &[LongFn]) -> (Vec<String>, Vec<String>) {
    let mut allowance: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for l in listed {
        allowance
            .entry((&l.file, &l.name))
            .or_default()
            .push(l.lines);
    }
    for v in allowance.values_mut() {
        v.sort_unstable();
    }
    let (mut grown, mut shrunk) = (Vec::new(), Vec::new());
    let mut sorted = found.to_vec();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.lines));
    for f in &sorted {
        let slots = allowance.entry((&f.file, &f.name)).or_default();
        // The largest allowance of that name covers the largest function, and so on.
        match slots.pop() {
            None => grown.push(format!(
                "{} {}: {} lines, over {LIMIT} and not in {LIST}: split it",
                f.file, f.name, f.lines
            )),
            Some(allowed) if f.lines > allowed => grown.push(format!(
                "{} {}: {} lines, {LIST} allows {allowed}: it may only shrink",
                f.file, f.name, f.lines
            )),
            Some(allowed) if f.lines < allowed => shrunk.push(format!(
                "{} {}: shrank from {allowed} to {} lines: lower its entry",
                f.file, f.name, f.lines
            )),
            Some(_) => {}
        }
    }
    for ((file, name), slots) in &allowance {
        for l in slots {
            shrunk.push(format!(
                "{file} {name}: listed at {l} lines, now within {LIMIT} or gone: remove its entry"
            ));
        }
    }
    (grown, shrunk)
}

fn render(found: &[LongFn]) -> String {
    let mut sorted = found.to_vec();
    sorted.sort_by(|a, b| b.lines.cmp(&a.lines).then(a.file.cmp(&b.file)));
    let mut s = String::from(
        "# Functions over 120 lines in src/ and providers/ (fn line to closing brace), checked by\n\
         # tests/fn_length.rs. This list only shrinks: no new entry, no entry raised. After\n\
         # splitting a function, rewrite it with\n\
         #   GPUPOOL_BLESS_LONG_FUNCTIONS=1 cargo test --test fn_length\n\
         # lines  file  function\n",
    );
    for f in sorted {
        s.push_str(&format!("{} {} {}\n", f.lines, f.file, f.name));
    }
    s
}

#[test]
fn no_function_grows_past_120_lines_and_the_long_ones_only_shrink() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = long_functions(root);
    let text = std::fs::read_to_string(root.join(LIST)).unwrap_or_default();
    let (grown, shrunk) = compare(&found, &parse_list(&text));
    assert!(grown.is_empty(), "long functions:\n{}", grown.join("\n"));
    if !shrunk.is_empty() && std::env::var_os("GPUPOOL_BLESS_LONG_FUNCTIONS").is_some() {
        std::fs::write(root.join(LIST), render(&found)).expect("writing the list");
        return;
    }
    assert!(
        shrunk.is_empty(),
        "{LIST} allows more than the code needs (GPUPOOL_BLESS_LONG_FUNCTIONS=1 rewrites it):\n{}",
        shrunk.join("\n")
    );
}

#[cfg(test)]
mod checker {
    use super::*;

    fn body(name: &str, n: usize) -> String {
        let mut s = format!("    pub(crate) async fn {name}(\n        x: u32,\n    ) -> u32 {{\n");
        for _ in 0..n {
            s.push_str("        let _ = x;\n");
        }
        s.push_str("        x\n    }\n");
        s
    }

    #[test]
    fn functions_are_measured_from_fn_line_to_closing_brace() {
        let src = format!(
            "impl A {{\n{}    fn short() -> u32 {{ 1 }}\n}}\ntrait T {{\n    fn decl(\n        a: u32,\n    ) -> u32;\n}}\n",
            body("long", 130)
        );
        let got = functions(&src);
        assert_eq!(got, [("long".to_owned(), 130 + 5), ("short".to_owned(), 1)]);
    }

    #[test]
    fn a_new_or_grown_long_function_fails_and_a_shrunk_one_asks_for_its_entry_lowered() {
        let f = |name: &str, lines| LongFn {
            file: "src/a.rs".into(),
            name: name.into(),
            lines,
        };
        let listed = [f("old", 200), f("gone", 150)];
        let (grown, shrunk) = compare(&[f("old", 201), f("new", 121)], &listed);
        assert_eq!(grown.len(), 2, "{grown:?}");
        assert_eq!(shrunk.len(), 1, "{shrunk:?}"); // `gone` can be removed
        let (grown, shrunk) = compare(&[f("old", 180), f("gone", 150)], &listed);
        assert!(grown.is_empty());
        assert_eq!(shrunk.len(), 1, "{shrunk:?}"); // `old` shrank: lower it
        let (grown, shrunk) = compare(&listed, &listed);
        assert!(grown.is_empty() && shrunk.is_empty());
    }

    #[test]
    fn the_rendered_list_parses_back() {
        let found = vec![LongFn {
            file: "src/x.rs".into(),
            name: "f".into(),
            lines: 130,
        }];
        assert_eq!(parse_list(&render(&found)), found);
    }
}
