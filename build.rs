//! Build facts for `gpupool --version` (and anything else that wants them, e.g. a build-info
//! metric), as compile-time environment variables of the `gpupool` crate:
//!
//! - `GPUPOOL_GIT_COMMIT`: the commit built. `GPUPOOL_GIT_COMMIT` in the build environment wins
//!   (container builds: `.dockerignore` keeps `.git` out of the context, so deploy/Dockerfile
//!   passes it as a build argument); else `git rev-parse` in the source tree; else `unknown` —
//!   never a made-up value.
//! - `GPUPOOL_FEATURES`: the cargo features enabled (`aws,gcp,kube`), or `none`.
//! - `GPUPOOL_VERSION_LINE`: `0.1.0 (commit <sha>, features <list>)`, what `--version` prints
//!   after the program name.
//!
//! No dependencies: only `git` (when present) and the variables cargo sets for build scripts
//! (`CARGO_FEATURE_<NAME>`, `CARGO_PKG_VERSION`; the Cargo book, "Environment variables Cargo
//! sets for build scripts").

use std::path::{Path, PathBuf};
use std::process::Command;

/// The features of this crate worth reporting: the ones that decide what the binary can drive.
const FEATURES: &[&str] = &["aws", "gcp", "kube"];

fn main() {
    println!("cargo:rerun-if-env-changed=GPUPOOL_GIT_COMMIT");

    let commit = std::env::var("GPUPOOL_GIT_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());

    let enabled: Vec<&str> = FEATURES
        .iter()
        .copied()
        .filter(|f| std::env::var_os(format!("CARGO_FEATURE_{}", f.to_uppercase())).is_some())
        .collect();
    let features = if enabled.is_empty() {
        "none".to_owned()
    } else {
        enabled.join(",")
    };
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| "unknown".to_owned());

    println!("cargo:rustc-env=GPUPOOL_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=GPUPOOL_FEATURES={features}");
    println!(
        "cargo:rustc-env=GPUPOOL_VERSION_LINE={version} (commit {commit}, features {features})"
    );
}

/// `git rev-parse --short=12 HEAD`, and rerun the build script when HEAD moves. `None` outside a
/// git checkout or without git.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (!s.is_empty()).then_some(s)
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // HEAD lives in the (worktree's) git dir; the branch it points to in the common dir
    // (`git worktree` keeps refs there). Rerun when either changes, i.e. on every commit or
    // checkout. A ref that was packed (`packed-refs`) is watched through that file.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]).map(PathBuf::from) {
        watch(&git_dir.join("HEAD"));
        let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
            .map(PathBuf::from)
            .unwrap_or_else(|| git_dir.clone());
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch(&common.join(head_ref));
        }
        watch(&common.join("packed-refs"));
    }
    Some(commit)
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
