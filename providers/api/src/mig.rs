//! The built-in MIG (Multi-Instance GPU) catalog: which slices a GPU model can be partitioned
//! into, and how many of each one card yields.
//!
//! Neither cloud reports MIG profiles: EC2 `DescribeInstanceTypes` gives the GPU's name and
//! memory (`GpuInfo.Gpus[].Name/MemoryInfo.SizeInMiB`), the Compute API an accelerator type
//! (`nvidia-a100-80gb`). Partitioning is done on the node by the GPU operator's MIG manager, so
//! the profiles a node *can* expose follow from the GPU alone. Both providers attach this
//! catalog to the offerings of MIG-capable GPUs; a pool can narrow it in its config (the GPU
//! operator's `single`/`mixed` strategies, `requirements.mig`).
//!
//! Source: NVIDIA Multi-Instance GPU User Guide, "Supported GPUs" and "Supported MIG Profiles"
//! (docs.nvidia.com/datacenter/tesla/mig-user-guide/supported-mig-profiles.html). The count is
//! "Number of Instances Available" for one profile alone on an empty GPU. `+me` (media
//! extensions) profiles exist once per GPU. The guide names the A100-80GB profiles by analogy
//! ("the profile names will change according to the memory proportion – 1g.10gb, 1g.10gb+me,
//! 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb"); the same seven shapes hold for every 7-slice
//! GPU (Hopper, Blackwell), with the memory per slice of that product.

use crate::MigProfile;

/// One row of the catalog: a GPU product as the providers name it (normalised model + memory).
struct Row {
    model: &'static str,
    /// Memory of the product in GB as NVIDIA names it (40, 80, 94, 96, 141, 144, 180).
    gb: u32,
    profiles: &'static [(&'static str, u32)],
}

/// The seven-slice shapes (A100, H100, H200, GH200, B200): 1g ×7, 1g+me ×1, 1g (double
/// memory) ×4, 2g ×3, 3g ×2, 4g ×1, 7g ×1.
const CATALOG: &[Row] = &[
    Row {
        model: "A30",
        gb: 24,
        profiles: &[
            ("1g.6gb", 4),
            ("1g.6gb+me", 1),
            ("2g.12gb", 2),
            ("2g.12gb+me", 1),
            ("4g.24gb", 1),
        ],
    },
    Row {
        model: "A100",
        gb: 40,
        profiles: &[
            ("1g.5gb", 7),
            ("1g.5gb+me", 1),
            ("1g.10gb", 4),
            ("2g.10gb", 3),
            ("3g.20gb", 2),
            ("4g.20gb", 1),
            ("7g.40gb", 1),
        ],
    },
    Row {
        model: "A100",
        gb: 80,
        profiles: &[
            ("1g.10gb", 7),
            ("1g.10gb+me", 1),
            ("1g.20gb", 4),
            ("2g.20gb", 3),
            ("3g.40gb", 2),
            ("4g.40gb", 1),
            ("7g.80gb", 1),
        ],
    },
    Row {
        model: "H100",
        gb: 80,
        profiles: &[
            ("1g.10gb", 7),
            ("1g.10gb+me", 1),
            ("1g.20gb", 4),
            ("2g.20gb", 3),
            ("3g.40gb", 2),
            ("4g.40gb", 1),
            ("7g.80gb", 1),
        ],
    },
    // H100 NVL / H100 94 GB.
    Row {
        model: "H100",
        gb: 94,
        profiles: &[
            ("1g.12gb", 7),
            ("1g.12gb+me", 1),
            ("1g.24gb", 4),
            ("2g.24gb", 3),
            ("3g.47gb", 2),
            ("4g.47gb", 1),
            ("7g.94gb", 1),
        ],
    },
    // H100 on GH200 (96 GB).
    Row {
        model: "GH200",
        gb: 96,
        profiles: &[
            ("1g.12gb", 7),
            ("1g.12gb+me", 1),
            ("1g.24gb", 4),
            ("2g.24gb", 3),
            ("3g.48gb", 2),
            ("4g.48gb", 1),
            ("7g.96gb", 1),
        ],
    },
    // GH200 with 144 GB HBM3e.
    Row {
        model: "GH200",
        gb: 144,
        profiles: &[
            ("1g.18gb", 7),
            ("1g.18gb+me", 1),
            ("1g.36gb", 4),
            ("2g.36gb", 3),
            ("3g.72gb", 2),
            ("4g.72gb", 1),
            ("7g.144gb", 1),
        ],
    },
    Row {
        model: "H200",
        gb: 141,
        profiles: &[
            ("1g.18gb", 7),
            ("1g.18gb+me", 1),
            ("1g.35gb", 4),
            ("2g.35gb", 3),
            ("3g.71gb", 2),
            ("4g.71gb", 1),
            ("7g.141gb", 1),
        ],
    },
    Row {
        model: "B200",
        gb: 180,
        profiles: &[
            ("1g.23gb", 7),
            ("1g.23gb+me", 1),
            ("1g.45gb", 4),
            ("2g.45gb", 3),
            ("3g.90gb", 2),
            ("4g.90gb", 1),
            ("7g.180gb", 1),
        ],
    },
];

/// The MIG profiles a GPU of `model` (normalised upper case: `A100`, `H100`, …) with
/// `memory_mib_per_gpu` can expose; empty for GPUs without MIG (T4, L4, A10G, V100, L40S …)
/// and for memory sizes the guide does not list.
///
/// Clouds report usable memory, a little below the product's name (EC2 lists the A100-40GB at
/// 40960 MiB, the H100 at 81920 MiB, the H200 at 143771 MiB; GCP's catalog has the nominal
/// size), so the product is the catalog row of that model whose nominal size is nearest to the
/// reported size, and only within 10 %.
pub fn profiles_for(model: &str, memory_mib_per_gpu: u64) -> Vec<MigProfile> {
    let model = model.to_ascii_uppercase();
    let gib = memory_mib_per_gpu as f64 / 1024.0;
    CATALOG
        .iter()
        .filter(|r| r.model == model)
        .map(|r| (r, (f64::from(r.gb) - gib).abs() / f64::from(r.gb)))
        .filter(|(_, rel)| *rel <= 0.10)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(r, _)| {
            r.profiles
                .iter()
                .map(|(name, per_gpu)| MigProfile {
                    name: (*name).to_owned(),
                    per_gpu: *per_gpu,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every profile name in the catalog (for config validation).
pub fn all_profile_names() -> std::collections::BTreeSet<String> {
    CATALOG
        .iter()
        .flat_map(|r| r.profiles.iter().map(|(n, _)| (*n).to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[MigProfile]) -> Vec<&str> {
        v.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn a100_sizes_are_told_apart_by_memory() {
        // p4d.24xlarge: A100 40 GB (EC2 reports 40960 MiB); p4de: A100 80 GB.
        let p4d = profiles_for("A100", 40960);
        assert!(names(&p4d).contains(&"1g.5gb"), "{p4d:?}");
        assert_eq!(p4d.iter().find(|p| p.name == "1g.5gb").unwrap().per_gpu, 7);
        let p4de = profiles_for("A100", 81920);
        assert!(names(&p4de).contains(&"1g.10gb"));
        assert_eq!(
            p4de.iter().find(|p| p.name == "1g.10gb").unwrap().per_gpu,
            7
        );
        assert_eq!(
            p4de.iter().find(|p| p.name == "3g.40gb").unwrap().per_gpu,
            2
        );
    }

    #[test]
    fn hopper_and_blackwell_have_seven_slices() {
        assert_eq!(profiles_for("H100", 81559).len(), 7);
        assert_eq!(profiles_for("h200", 143771)[0].name, "1g.18gb");
        assert_eq!(profiles_for("B200", 184320)[0].name, "1g.23gb");
        assert_eq!(profiles_for("A30", 24576)[0].per_gpu, 4);
    }

    #[test]
    fn gpus_without_mig_and_unknown_sizes_have_none() {
        for (m, mib) in [
            ("T4", 15360),
            ("L4", 23034),
            ("A10G", 23028),
            ("V100", 16384),
        ] {
            assert!(profiles_for(m, mib).is_empty(), "{m}");
        }
        // An A100 of a size NVIDIA does not list is not guessed at.
        assert!(profiles_for("A100", 16 * 1024).is_empty());
    }
}
