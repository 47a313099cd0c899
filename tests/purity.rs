//! The pure core stays pure: no path in `src/model`, `src/config` or `src/planner` (nor in the
//! pure signal modules the core may use) names the shell (`crate::controller`, `kube`, `cli`,
//! `sim`, `server`, `vmonly`, the signal fetchers), an async runtime, a network or cloud client,
//! files, the environment, processes, threads, randomness or a clock.
//!
//! Replaces the grep that `tests/run.sh` ran on `src/planner`. This reads Rust, not text:
//! comments and string literals are skipped, `use` trees are expanded (`use crate::{model,
//! controller::Controller}`), `self`/`super` are resolved against the file's (and inline
//! `mod`'s) module path, and a name brought in by `use` is followed where it is used
//! (`use std::time::Instant; … Instant::now()`). It cannot see through macros that expand to
//! such paths, `crate`-level re-exports under another name, or method calls on values handed
//! in; the compiler-enforced guard for those is a separate core crate (issue #15).
//!
//! Why not clippy: `disallowed-methods`/`disallowed-types` in `clippy.toml` apply to the whole
//! crate, and the shell in the same crate needs tokio, files and the network; a lint cannot be
//! scoped to three modules without the core being its own crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Files and directories (relative to the crate root) that must stay pure.
const CORE: &[&str] = &[
    "src/model",
    "src/config",
    "src/planner",
    // Pure signal arithmetic the core may use (KEDA's rules, cron windows, the forecaster).
    "src/signals/keda.rs",
    "src/signals/schedule.rs",
    "src/signals/forecast.rs",
];

/// Path prefixes the core must not name, with why. A segment ending in `*` matches by prefix
/// (`aws_sdk_*`).
const FORBIDDEN: &[(&str, &str)] = &[
    ("crate::controller", "the shell (controller)"),
    ("crate::kube", "the shell (Kubernetes)"),
    ("crate::cli", "the shell (command line)"),
    ("crate::sim", "the simulator"),
    ("crate::server", "the shell (HTTP server)"),
    ("crate::vmonly", "the shell (VM-only mode)"),
    ("crate::signals", "the signal fetchers (shell)"),
    ("tokio", "async runtime"),
    ("futures", "async runtime"),
    ("async_trait", "async runtime"),
    ("reqwest", "network client"),
    ("hyper", "network"),
    ("hyper_util", "network"),
    ("axum", "network"),
    ("kube", "Kubernetes client"),
    ("k8s_openapi", "Kubernetes client"),
    ("aws_sdk_*", "cloud SDK"),
    ("aws_config", "cloud SDK"),
    ("aws_smithy_*", "cloud SDK"),
    ("google_cloud_*", "cloud SDK"),
    ("gpupool_aws", "cloud provider"),
    ("gpupool_gcp", "cloud provider"),
    ("prometheus_client", "metrics registry (shell)"),
    ("tracing_subscriber", "logging setup (shell)"),
    ("rand", "randomness"),
    ("rand_chacha", "randomness"),
    ("rand_distr", "randomness"),
    ("getrandom", "randomness"),
    ("std::fs", "files"),
    ("std::env", "environment"),
    ("std::process", "processes"),
    ("std::thread", "threads"),
    ("std::net::TcpStream", "network"),
    ("std::net::TcpListener", "network"),
    ("std::net::UdpSocket", "network"),
    ("std::io::stdin", "terminal I/O"),
    ("std::io::stdout", "terminal I/O"),
    ("std::io::stderr", "terminal I/O"),
    ("std::time::Instant", "clock"),
    ("std::time::SystemTime", "clock"),
    ("gpupool_provider::clock", "clock"),
    ("chrono::Utc::now", "clock"),
    ("chrono::Local", "clock (and the host's time zone)"),
    ("chrono::offset::Local", "clock (and the host's time zone)"),
];

/// Prefixes allowed although a [`FORBIDDEN`] one matches: the pure signal modules (scanned
/// themselves, see [`CORE`]) and their error type.
const ALLOWED: &[&str] = &[
    "crate::signals::keda",
    "crate::signals::schedule",
    "crate::signals::forecast",
    "crate::signals::SignalError",
];

/// Known impurities that are still in the core: `(file, path, why it is still there)`. Each
/// must still occur (the list only shrinks); remove the entry when the code moves out.
const EXCEPTIONS: &[(&str, &str, &str)] = &[(
    "src/config/mod.rs",
    "std::fs::read_to_string",
    "Config::load_file reads the file; belongs in the shell that loads the config",
)];

#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    path: String,
    why: &'static str,
}

// ---------------------------------------------------------------------------------------------
// lexing: identifiers, `::` and the punctuation that shapes paths; comments, strings, chars,
// lifetimes and numbers skipped.

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

fn lex(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if let Some(end) = raw_string_end(&c, i) {
            line += c[i..end].iter().filter(|x| **x == '\n').count();
            i = end;
        } else if ch == '"' || (ch == 'b' && at(i + 1) == '"') {
            i += if ch == 'b' { 2 } else { 1 };
            while i < c.len() && c[i] != '"' {
                line += usize::from(c[i] == '\n');
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if ch == '\'' || (ch == 'b' && at(i + 1) == '\'') {
            i += if ch == 'b' { 1 } else { 0 };
            if at(i + 1) == '\\' {
                // escaped char literal ('\'', '\n', '\u{…}'): skip to the closing quote
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3; // 'x'
            } else {
                // a lifetime or label: skip the quote and its name
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.') {
                if c[i] == '.' && !at(i + 1).is_ascii_digit() {
                    break;
                }
                i += 1;
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let mut id: String = c[start..i].iter().collect();
            if id == "r" && at(i) == '#' {
                // raw identifier r#name
                let s = i + 1;
                i = s;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                id = c[s..i].iter().collect();
            }
            out.push((Tok::Ident(id), line));
        } else if ch == ':' && at(i + 1) == ':' {
            out.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// End (exclusive) of a raw string literal starting at `i` (`r"…"`, `r#"…"#`, `br#"…"#`).
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if c.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < c.len() {
        if c[j] == '"' && (1..=hashes).all(|k| c.get(j + k) == Some(&'#')) {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(c.len())
}

// ---------------------------------------------------------------------------------------------
// paths

/// The module path of a source file: `src/planner/binpack.rs` → `crate::planner::binpack`.
fn module_of(rel: &str) -> Vec<String> {
    let mut segs = vec!["crate".to_owned()];
    let rel = rel.strip_prefix("src/").unwrap_or(rel);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    for s in rel.split('/') {
        if s != "mod" && s != "lib" && s != "main" {
            segs.push(s.to_owned());
        }
    }
    segs
}

/// Expand one `use` tree (`a::{b, c::d as e, f::*}`) from `toks[i]` into `(path, bound name)`
/// pairs; returns the index after the tree.
fn use_tree(
    toks: &[(Tok, usize)],
    mut i: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Option<String>)>,
) -> usize {
    let mut path = prefix.to_vec();
    loop {
        match toks.get(i).map(|t| &t.0) {
            Some(Tok::Ident(id)) => {
                path.push(id.clone());
                i += 1;
            }
            Some(Tok::PathSep) => i += 1,
            Some(Tok::Punct('*')) => {
                out.push((path, None));
                return i + 1;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                while !matches!(toks.get(i).map(|t| &t.0), Some(Tok::Punct('}')) | None) {
                    i = use_tree(toks, i, &path, out);
                    if matches!(toks.get(i).map(|t| &t.0), Some(Tok::Punct(','))) {
                        i += 1;
                    }
                }
                return i + 1;
            }
            _ => break,
        }
        // `as alias` ends a leaf.
        if let Some((Tok::Ident(a), _)) = toks.get(i)
            && a == "as"
            && let Some((Tok::Ident(alias), _)) = toks.get(i + 1)
        {
            out.push((path, Some(alias.clone())));
            return i + 2;
        }
    }
    let name = match path.last().map(String::as_str) {
        Some("self") => {
            path.pop();
            path.last().cloned()
        }
        other => other.map(str::to_owned),
    };
    out.push((path, name));
    i
}

/// `path` made absolute: `crate`/`self`/`super` against `module`, a name bound by `use`
/// replaced by what it names; anything else is an external crate's path as written.
fn resolve(
    path: &[String],
    module: &[String],
    names: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let Some(first) = path.first() else {
        return Vec::new();
    };
    let (mut base, mut rest): (Vec<String>, &[String]) = match first.as_str() {
        "crate" => (vec!["crate".to_owned()], &path[1..]),
        "self" => (module.to_vec(), &path[1..]),
        "super" => (module.to_vec(), path),
        _ => match names.get(first) {
            Some(full) => (full.clone(), &path[1..]),
            None => (Vec::new(), path),
        },
    };
    while rest.first().map(String::as_str) == Some("super") {
        if base.len() > 1 {
            base.pop();
        }
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    base
}

fn matches_prefix(path: &[String], prefix: &str) -> bool {
    let segs: Vec<&str> = prefix.split("::").collect();
    segs.len() <= path.len()
        && segs
            .iter()
            .zip(path)
            .all(|(p, s)| match p.strip_suffix('*') {
                Some(stem) => s.starts_with(stem),
                None => p == s,
            })
}

fn judge(path: &[String]) -> Option<&'static str> {
    if ALLOWED.iter().any(|a| matches_prefix(path, a)) {
        return None;
    }
    FORBIDDEN
        .iter()
        .find(|(p, _)| matches_prefix(path, p))
        .map(|(_, why)| *why)
}

/// Every forbidden path named in `src` (the file at crate-relative path `rel`).
fn check_source(rel: &str, src: &str) -> Vec<Violation> {
    let toks = lex(src);
    let file_module = module_of(rel);
    let mut module = file_module.clone();
    let mut mod_depths: Vec<usize> = Vec::new();
    let mut depth = 0;
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut found = Vec::new();
    let report = |path: Vec<String>, line: usize, found: &mut Vec<Violation>| {
        if let Some(why) = judge(&path) {
            found.push(Violation {
                file: rel.to_owned(),
                line,
                path: path.join("::"),
                why,
            });
        }
    };
    let mut i = 0;
    while i < toks.len() {
        if let Some(end) = cfg_test_item_end(&toks, i) {
            i = end;
            continue;
        }
        let (tok, line) = (&toks[i].0, toks[i].1);
        match tok {
            Tok::Ident(k) if k == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Punct('{'), _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    module.push(name.clone());
                    depth += 1;
                    mod_depths.push(depth);
                    i += 3;
                    continue;
                }
                i += 1;
            }
            Tok::Ident(k) if k == "use" => {
                let mut leaves = Vec::new();
                let start = if matches!(toks.get(i + 1).map(|t| &t.0), Some(Tok::PathSep)) {
                    i + 2
                } else {
                    i + 1
                };
                i = use_tree(&toks, start, &[], &mut leaves);
                for (path, name) in leaves {
                    let full = resolve(&path, &module, &names);
                    report(full.clone(), line, &mut found);
                    if let Some(n) = name {
                        names.insert(n, full);
                    }
                }
            }
            Tok::Ident(_)
                if !matches!(
                    toks.get(i.wrapping_sub(1)).map(|t| &t.0),
                    Some(Tok::PathSep)
                ) =>
            {
                // `a::b::c`, ending before the first token that is not `ident ::`.
                let mut path = Vec::new();
                let mut j = i;
                while let Some((Tok::Ident(id), _)) = toks.get(j) {
                    path.push(id.clone());
                    j += 1;
                    if matches!(toks.get(j).map(|t| &t.0), Some(Tok::PathSep)) {
                        j += 1;
                    } else {
                        break;
                    }
                }
                if path.len() > 1 || names.contains_key(&path[0]) {
                    report(resolve(&path, &module, &names), line, &mut found);
                }
                i = j;
            }
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                if mod_depths.last() == Some(&depth) {
                    mod_depths.pop();
                    module.pop();
                }
                depth -= 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    // A name used many times is one import: keep each (line, path) once.
    found.dedup_by(|a, b| a.line == b.line && a.path == b.path);
    found
}

/// With `#[cfg(test)]` at `i`, the index after the item it gates (a test module reading test
/// data is not the core reading files at run time).
fn cfg_test_item_end(toks: &[(Tok, usize)], i: usize) -> Option<usize> {
    let attr = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    if toks.len() < i + attr.len()
        || toks[i..i + attr.len()]
            .iter()
            .zip(&attr)
            .any(|(t, a)| t.0 != *a)
    {
        return None;
    }
    let mut j = i + attr.len();
    let mut depth = 0usize;
    while j < toks.len() {
        match toks[j].0 {
            Tok::Punct(';') if depth == 0 => return Some(j + 1),
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    return Some(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
    Some(j)
}

fn rust_files(root: &Path, rel: &str, out: &mut Vec<PathBuf>) {
    let p = root.join(rel);
    if p.is_file() {
        out.push(PathBuf::from(rel));
        return;
    }
    let mut entries: Vec<_> = std::fs::read_dir(&p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .into_string()
                .expect("UTF-8 name")
        })
        .collect();
    entries.sort();
    for name in entries {
        let child = format!("{rel}/{name}");
        if root.join(&child).is_dir() || name.ends_with(".rs") {
            rust_files(root, &child, out);
        }
    }
}

#[test]
fn the_core_names_nothing_of_the_shell_io_randomness_or_clocks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for c in CORE {
        rust_files(root, c, &mut files);
    }
    assert!(
        files.len() >= 10,
        "the core was found ({} files)",
        files.len()
    );
    let mut bad = Vec::new();
    let mut used = vec![false; EXCEPTIONS.len()];
    for f in &files {
        let rel = f.to_string_lossy().replace('\\', "/");
        let src = std::fs::read_to_string(root.join(f)).expect("readable source");
        for v in check_source(&rel, &src) {
            match EXCEPTIONS
                .iter()
                .position(|(file, path, _)| *file == v.file && *path == v.path)
            {
                Some(k) => used[k] = true,
                None => bad.push(format!("{}:{}: {} ({})", v.file, v.line, v.path, v.why)),
            }
        }
    }
    let stale: Vec<_> = EXCEPTIONS
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|((f, p, _), _)| format!("{f}: {p}"))
        .collect();
    assert!(
        bad.is_empty(),
        "the pure core names impure paths:\n{}",
        bad.join("\n")
    );
    assert!(
        stale.is_empty(),
        "exceptions no longer needed (remove them from EXCEPTIONS in tests/purity.rs):\n{}",
        stale.join("\n")
    );
}

#[cfg(test)]
mod guard {
    use super::*;

    fn paths(rel: &str, src: &str) -> Vec<String> {
        check_source(rel, src).into_iter().map(|v| v.path).collect()
    }

    #[test]
    fn each_kind_of_impure_line_is_caught() {
        let f = "src/planner/x.rs";
        let cases: &[(&str, &str)] = &[
            (
                "use crate::controller::Controller;",
                "crate::controller::Controller",
            ),
            (
                "use crate::{model::Snapshot, controller};",
                "crate::controller",
            ),
            ("use super::super::kube::drain;", "crate::kube::drain"),
            ("fn f() { let _ = std::fs::read(\"x\"); }", "std::fs::read"),
            ("use std::fs; fn f() { fs::read(\"x\"); }", "std::fs"),
            (
                "use std::time::Instant; fn f() { Instant::now(); }",
                "std::time::Instant",
            ),
            (
                "use chrono::Utc; fn f() { Utc::now(); }",
                "chrono::Utc::now",
            ),
            (
                "async fn f() { tokio::time::sleep(d).await; }",
                "tokio::time::sleep",
            ),
            ("fn f() { tokio::select! {} }", "tokio::select"),
            ("use ::reqwest::Client;", "reqwest::Client"),
            ("use aws_sdk_ec2 as ec2;", "aws_sdk_ec2"),
            (
                "use crate::signals::prometheus::Fetcher;",
                "crate::signals::prometheus::Fetcher",
            ),
            ("fn f() { let s = std::env::var(\"X\"); }", "std::env::var"),
            (
                "fn f() { gpupool_provider::clock::wall_clock(); }",
                "gpupool_provider::clock::wall_clock",
            ),
            ("use rand::Rng;", "rand::Rng"),
            (
                "mod tests { use super::super::super::sim::World; }",
                "crate::sim::World",
            ),
        ];
        for (src, want) in cases {
            let got = paths(f, src);
            assert!(
                got.iter().any(|p| p == want),
                "{src:?}: expected {want}, got {got:?}"
            );
        }
    }

    #[test]
    fn comments_strings_and_pure_paths_are_not_violations() {
        let src = r####"
            //! Unlike [`crate::controller`], this module reads no `std::fs`.
            /* tokio::spawn in a /* nested */ block comment */
            use crate::model::{Snapshot, Timestamp};
            use crate::signals::keda::{self, Trigger};
            use crate::signals::SignalError;
            use std::collections::BTreeMap;
            use chrono::{DateTime, Utc};
            const HELP: &str = "set std::env::var(\"X\") and crate::cli";
            const RAW: &str = r#"tokio::spawn "quoted" std::fs"#;
            fn f<'a>(x: &'a str) -> char { let _ = DateTime::<Utc>::from_timestamp(0, 0); 'x' }
            fn g() -> char { '\'' }
            fn h() { let n = 1.5e3_f64; let m = std::net::SocketAddr::from(([0, 0, 0, 0], 1)); }
        "####;
        assert_eq!(paths("src/planner/x.rs", src), Vec::<String>::new());
    }

    #[test]
    fn test_only_code_may_read_files_and_the_code_after_it_is_still_checked() {
        let src = "#[cfg(test)]\nmod tests {\n    fn f() { std::fs::read(\"x\"); }\n}\n\
                   #[cfg(test)] use std::env;\nfn g() { std::env::var(\"X\"); }\n";
        assert_eq!(paths("src/planner/x.rs", src), ["std::env::var"]);
    }

    #[test]
    fn lines_are_reported_where_the_path_is() {
        let v = check_source(
            "src/model/a.rs",
            "use crate::model::X;\n\n// x\nuse std::process::Command;\n",
        );
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].line, v[0].why), (4, "processes"));
    }

    #[test]
    fn super_and_self_resolve_against_the_file_and_inline_modules() {
        let m = module_of("src/planner/binpack.rs");
        assert_eq!(m, ["crate", "planner", "binpack"]);
        assert_eq!(module_of("src/config/mod.rs"), ["crate", "config"]);
        // From src/planner/mod.rs, `super::controller` is crate::controller.
        assert_eq!(
            paths("src/planner/mod.rs", "use super::controller;"),
            ["crate::controller"]
        );
        // Inside `mod tests` of src/planner/mod.rs, `super::fixtures` stays in the planner.
        assert!(
            paths(
                "src/planner/mod.rs",
                "mod tests { use super::fixtures::*; }"
            )
            .is_empty()
        );
        assert!(paths("src/planner/fit.rs", "use self::inner::X;").is_empty());
    }
}
