//! `gpupool run --dump-snapshot DIR`: every plan's inputs written where `gpupool plan` can
//! replay them — `snapshot-<ms>.json`, `history-<ms>.json` and the plan the controller made,
//! `plan-<ms>.json` (`<ms>`: the tick's Unix milliseconds, zero-padded so names sort by time).
//!
//! Each file is written to a temporary name in the same directory and renamed into place, so a
//! reader never sees half a file (rename within one filesystem is atomic, POSIX `rename(2)`).
//! Only the newest `keep` ticks are kept.

use super::Planned;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("writing {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serialising the {what}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// The files of one dumped tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dumped {
    pub snapshot: PathBuf,
    pub history: PathBuf,
    pub plan: PathBuf,
}

pub struct Dumper {
    dir: PathBuf,
    keep: usize,
}

const KINDS: [&str; 3] = ["snapshot", "history", "plan"];

impl Dumper {
    /// Dump into `dir` (created if missing), keeping the newest `keep` ticks (at least 1).
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Result<Self, DumpError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| DumpError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Dumper {
            dir,
            keep: keep.max(1),
        })
    }

    pub fn write(&self, p: &Planned) -> Result<Dumped, DumpError> {
        let stamp = format!("{:015}", p.snapshot.taken_at.millis().max(0));
        let json = |what: &'static str, r: Result<Vec<u8>, serde_json::Error>| {
            r.map_err(|source| DumpError::Json { what, source })
        };
        let bodies = [
            json("snapshot", serde_json::to_vec_pretty(&p.snapshot))?,
            json("history", serde_json::to_vec_pretty(&p.history))?,
            json("plan", serde_json::to_vec_pretty(&p.plan))?,
        ];
        let mut paths = Vec::with_capacity(3);
        for (kind, body) in KINDS.iter().zip(bodies) {
            let path = self.dir.join(format!("{kind}-{stamp}.json"));
            write_atomically(&path, &body)?;
            paths.push(path);
        }
        self.prune()?;
        let [snapshot, history, plan]: [PathBuf; 3] = paths
            .try_into()
            .unwrap_or_else(|_| unreachable!("three kinds, three paths"));
        Ok(Dumped {
            snapshot,
            history,
            plan,
        })
    }

    /// Remove all but the newest `keep` ticks.
    fn prune(&self) -> Result<(), DumpError> {
        let io = |source| DumpError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut stamps: Vec<String> = std::fs::read_dir(&self.dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                Some(
                    name.strip_prefix("snapshot-")?
                        .strip_suffix(".json")?
                        .to_owned(),
                )
            })
            .collect();
        stamps.sort();
        let old = stamps.len().saturating_sub(self.keep);
        for stamp in &stamps[..old] {
            for kind in KINDS {
                let path = self.dir.join(format!("{kind}-{stamp}.json"));
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(DumpError::Io { path, source }),
                }
            }
        }
        Ok(())
    }
}

fn write_atomically(path: &Path, body: &[u8]) -> Result<(), DumpError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("dump");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DumpError::Io { path, source }
    };
    std::fs::write(&tmp, body).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{History, Plan, Snapshot, Timestamp};

    fn planned(s: i64) -> Planned {
        Planned {
            snapshot: Snapshot {
                taken_at: Timestamp::from_secs(s),
                ..Snapshot::default()
            },
            history: History::default(),
            plan: Plan::default(),
        }
    }

    #[test]
    fn keeps_the_newest_ticks_whole_and_readable() {
        let dir = std::env::temp_dir().join(format!("gpupool-dump-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = Dumper::new(&dir, 2).unwrap();
        for s in [10, 20, 30] {
            d.write(&planned(s)).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "history-000000000020000.json",
                "history-000000000030000.json",
                "plan-000000000020000.json",
                "plan-000000000030000.json",
                "snapshot-000000000020000.json",
                "snapshot-000000000030000.json",
            ]
        );
        let back: Snapshot = serde_json::from_slice(
            &std::fs::read(dir.join("snapshot-000000000030000.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(back.taken_at, Timestamp::from_secs(30));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
