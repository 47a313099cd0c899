//! The VM-only deregistration hook of the AWS integration tests: `deregister_command: ["touch",
//! "DIR/deregistered-{id}"]` leaves one marker file per instance taken out of service.

use std::path::Path;

/// The instances whose deregistration marker is in `dir`, sorted.
pub fn deregistered(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().to_string_lossy().into_owned();
            n.strip_prefix("deregistered-").map(str::to_owned)
        })
        .collect();
    v.sort();
    v
}
