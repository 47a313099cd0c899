//! The state as a local file (VM-only), replaced atomically: the new content goes to a
//! temporary file in the same directory, is fsynced, renamed over the old file, and the
//! directory is fsynced so the rename itself survives a power loss (rename(2) is atomic within
//! one file system, POSIX; the directory fsync is what ext4/xfs need to persist the new entry).
//! A reader therefore sees the old state or the new one, never half of one.

use super::{SavedState, StateError, StateStore, decode, encode};
use async_trait::async_trait;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The state file: `state.path` when configured, else [`super::FILE_NAME`] under systemd's
/// `$STATE_DIRECTORY` (set by `StateDirectory=`; it may list several directories separated by
/// `:`, systemd.exec(5) — the first is gpupool's), else none.
pub fn resolve_path(configured: Option<&str>, state_directory: Option<&str>) -> Option<PathBuf> {
    if let Some(p) = configured {
        return Some(PathBuf::from(p));
    }
    let dir = state_directory?.split(':').next()?.trim();
    (!dir.is_empty()).then(|| Path::new(dir).join(super::FILE_NAME))
}

/// Read `path`: `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> Result<Option<SavedState>, StateError> {
    let what = || path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                what: what(),
                source,
            });
        }
    };
    decode(&bytes, &what()).map(Some)
}

/// Replace `path` with `bytes` atomically (see the module doc).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let err = |source: std::io::Error| StateError::Write {
        what: path.display().to_string(),
        source: Box::new(source),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Persist the rename: fsync the directory (opening a directory read-only and calling
        // fsync on it is how POSIX systems flush its entries).
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[async_trait]
impl StateStore for FileStore {
    async fn load(&self) -> Result<Option<SavedState>, StateError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || read(&path))
            .await
            .map_err(|e| StateError::Read {
                what: self.describe(),
                source: std::io::Error::other(e),
            })?
    }

    async fn save(&self, state: &SavedState) -> Result<(), StateError> {
        let path = self.path.clone();
        let bytes = encode(state);
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| StateError::Write {
                what: self.describe(),
                source: Box::new(e),
            })?
    }

    fn describe(&self) -> String {
        format!("state file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gpupool-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_path_comes_from_the_config_then_systemd() {
        let p = |s: &str| Some(PathBuf::from(s));
        let table = [
            (
                Some("/etc/x.json"),
                Some("/var/lib/gpupool"),
                p("/etc/x.json"),
            ),
            (
                None,
                Some("/var/lib/gpupool"),
                p("/var/lib/gpupool/state.json"),
            ),
            (
                None,
                Some("/var/lib/gpupool:/var/lib/other"),
                p("/var/lib/gpupool/state.json"),
            ),
            (None, Some(""), None),
            (None, None, None),
        ];
        for (configured, env, want) in table {
            assert_eq!(
                resolve_path(configured, env),
                want,
                "{configured:?} {env:?}"
            );
        }
    }

    #[test]
    fn write_then_read_and_replace_leaves_no_temporary_file() {
        let d = dir("rw");
        let p = d.join("state.json");
        assert!(
            read(&p).unwrap().is_none(),
            "missing file: nothing saved yet"
        );
        for secs in [1, 2] {
            let s = SavedState {
                version: super::super::STATE_VERSION,
                saved_at: Timestamp::from_secs(secs),
                ..SavedState::default()
            };
            write_atomically(&p, &encode(&s)).unwrap();
            assert_eq!(read(&p).unwrap(), Some(s));
        }
        let names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["state.json".to_string()]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn unreadable_and_unwritable_paths_are_typed_errors() {
        let d = dir("bad");
        // A directory where the file should be: reading fails, and so does replacing it.
        let p = d.join("state.json");
        std::fs::create_dir(&p).unwrap();
        let e = read(&p).unwrap_err();
        assert!(matches!(e, StateError::Read { .. }), "{e}");
        assert!(e.start_fresh());
        let e = write_atomically(&p, b"{}").unwrap_err();
        assert!(matches!(e, StateError::Write { .. }), "{e}");
        // The failed write left no temporary file behind.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        // Garbage: corrupt, start fresh.
        let g = d.join("garbage.json");
        std::fs::write(&g, b"\x00garbage").unwrap();
        let e = read(&g).unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
