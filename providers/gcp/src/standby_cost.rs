//! What one standby VM of a MIG costs per hour while it is stopped: its disks, read from the
//! instance template and priced from a small table of published Persistent Disk prices. Pure:
//! the provider reads the template and the MIG, this module only decides.
//!
//! What is billed:
//! - A stopped VM bills its disks, not its machine type: "Stopped instances do not incur
//!   per-minute, virtual machine usage charges while they are stopped, but any resources that the
//!   virtual machine is using, such as persistent disks and static IP addresses, will continue to
//!   be charged until they are deleted" (Compute API reference, `instances.stop`).
//! - Persistent Disk is billed on provisioned capacity, per GiB-month: "a 200 GB SSD Persistent
//!   Disk volume would cost $34.00 for the whole month … Provisioned disk space includes all used
//!   and unused space" ("Disk and image pricing", <https://cloud.google.com/compute/disks-image-pricing>).
//!   A month is 730 hours here, as in the Terraform module's `standby_standing_cost_per_hour`
//!   (`terraform/modules/gcp-gpu-mig/outputs.tf`), so both give the same figure for the same disks.
//! - A suspended VM also bills the storage of its memory and device state: "Suspended instances
//!   have no compute costs (cores or RAM), and incur only storage charges for the saved VM memory
//!   and localSSD data" (Compute API reference, `instances.suspend`). Neither that page nor
//!   "Suspend or resume a Compute Engine instance" (which says only that "Google only charges for
//!   the storage used to preserve the VM's memory") gives a rate we could find, so a pool that
//!   keeps suspended VMs is [`Unknown::SuspendedMemory`]: unknown, never its disks alone.
//! - Local SSD of a stopped VM: "Preserving the Local SSD disk data incurs costs and is subject
//!   to limitations" (`gcloud compute instances stop`, `--discard-local-ssd`); whether the MIG
//!   preserves or discards it is not in the template, so a template with Local SSD is
//!   [`Unknown::LocalSsd`].
//!
//! Anything not priced makes the whole instance unknown: a partial sum would read as a cheap
//! standby VM and hold the pool longer than the break-even.

use gpupool_provider::Money;

/// Hours in a billing month: Google prices disks per GiB-month and its pricing examples use a
/// 730-hour month ("a 30-day billing cycle (730 hours)", NetApp Cloud Volumes pricing on
/// cloud.google.com); the Terraform module divides by the same.
pub use gpupool_provider::HOURS_PER_MONTH;

/// Disk size Compute gives a disk created with neither `diskSizeGb` nor a source image: "If you
/// do not specify a sourceImage, the default disk size is 500 GB" (Compute API reference,
/// `AttachedDiskInitializeParams.diskSizeGb`).
pub const DEFAULT_DISK_SIZE_GB: i64 = 500;

/// Persistent Disk capacity prices, USD per GiB-month, by region. Only figures with a source:
/// - us-central1 (Iowa): pd-standard $0.04 and pd-ssd $0.17 — "based off US pricing, a 200 GB
///   standard Persistent Disk volume would cost $8.00 for the whole month … a 200 GB SSD
///   Persistent Disk volume would cost $34.00" ("Disk and image pricing"); pd-balanced $0.10 and
///   pd-ssd $0.17 — a Google Cloud Pricing Calculator estimate for Iowa ("Zonal balanced PD:
///   30 GiB USD 3.00", "Zonal SSD PD: 280 GiB USD 47.60"); the same three figures are the Cloud
///   Billing catalog's "Storage/Balanced/SSD backed PD Capacity" SKUs as read by third-party
///   cost tools (infracost, terrapod). They are the Terraform module's `pd_price_per_gb_month`
///   defaults.
/// - The Cloud Billing Catalog API (Compute Engine service `6F81-5844-456A`, OnDemand, USD) as
///   read and published by third parties, by SKU description: "Storage PD Capacity in Japan"
///   $0.052, "Balanced PD Capacity in Japan" $0.130, "SSD backed PD Capacity in Japan" $0.221
///   (asia-northeast1, effectiveTime 2026-09-26); "Balanced PD Capacity in Mumbai" $0.12
///   (asia-south1, read 2026-08-27); "Balanced PD Capacity in Montreal" $0.11
///   (northamerica-northeast1, effective 2026-09-18). The other types in those regions were not
///   in the published reads, so they are unknown there.
///
/// Not priced, so unknown: pd-extreme (it also bills provisioned IOPS, and no per-IOPS price was
/// found to source), every Hyperdisk type (provisioned IOPS and throughput are billed beside
/// capacity, "Disk and image pricing": "Additionally, you are billed for the following"), and
/// every other region: other regions' prices differ and none is borrowed.
const PD_PRICES: &[(&str, &str, f64)] = &[
    ("us-central1", "pd-standard", 0.04),
    ("us-central1", "pd-balanced", 0.10),
    ("us-central1", "pd-ssd", 0.17),
    ("asia-northeast1", "pd-standard", 0.052),
    ("asia-northeast1", "pd-balanced", 0.130),
    ("asia-northeast1", "pd-ssd", 0.221),
    ("asia-south1", "pd-balanced", 0.12),
    ("northamerica-northeast1", "pd-balanced", 0.11),
];

/// The price of one GiB-month of `disk_type` in `region`, if the table has it.
pub fn pd_price_per_gb_month(region: &str, disk_type: &str) -> Option<f64> {
    PD_PRICES
        .iter()
        .find(|(r, t, _)| *r == region && *t == disk_type)
        .map(|(_, _, p)| *p)
}

/// How the template says a disk's size is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskSize {
    /// `initializeParams.diskSizeGb` (base-2 GB); may be malformed (≤ 0).
    Gb(i64),
    /// No size, but a source image or snapshot: the disk takes that image's size ("If you
    /// specify a sourceImage … the default size is the size of the sourceImage",
    /// `AttachedDiskInitializeParams.diskSizeGb`). gpupool does not read images (no
    /// `images.get` call, no `compute.images.get` permission), so this is unknown.
    FromSource,
    /// No size and no source: Compute's documented default, [`DEFAULT_DISK_SIZE_GB`].
    Default,
}

/// One disk of an instance template, as the template states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateDisk {
    /// A disk each VM creates (`initializeParams`). `disk_type` is the short name instance
    /// templates use ("you specify the disk type without a URL, for example,
    /// hyperdisk-balanced", `AttachedDiskInitializeParams.diskType`); `None` when the template
    /// leaves it out, and then the type "depends on the instance's machine series" (same
    /// field) — not inferred here.
    Created {
        disk_type: Option<String>,
        size: DiskSize,
    },
    /// `type: SCRATCH`: a Local SSD.
    LocalSsd,
    /// A regional Persistent Disk (`initializeParams.replicaZones`), replicated in two zones
    /// and priced apart from zonal disks; not in the table.
    Regional,
    /// An existing disk attached by `source` (read-only, shared by the MIG's VMs): its size is
    /// not in the template and it is billed once, not per VM.
    Existing,
}

/// Whether the standby pool keeps stopped or suspended VMs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandbyKind {
    Stopped,
    /// Some or all of the pool is suspended (`targetSuspendedSize` > 0).
    Suspended,
}

/// Why a standby VM's hourly cost is unknown. `index` is the disk's position in
/// `properties.disks`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum Unknown {
    #[error("suspended standby VMs also bill their saved memory, at a rate the docs do not give")]
    SuspendedMemory,
    #[error("the template lists no disks (every VM has a boot disk): malformed reply")]
    NoDisks,
    #[error("disk {index} is a Local SSD: preserved or discarded on stop is not in the template")]
    LocalSsd { index: usize },
    #[error("disk {index} is a regional Persistent Disk, which the price table does not cover")]
    RegionalDisk { index: usize },
    #[error("disk {index} attaches an existing disk: its size is not in the template")]
    ExistingDisk { index: usize },
    #[error("disk {index} takes its source image's size, which gpupool does not read")]
    SizeFromSource { index: usize },
    #[error("disk {index} has no diskType: the default depends on the machine series")]
    NoDiskType { index: usize },
    #[error("disk {index} has diskSizeGb {size}: malformed reply")]
    BadSize { index: usize, size: i64 },
    #[error("no published capacity-only price for {disk_type} in {region}")]
    Unpriced { disk_type: String, region: String },
}

impl Unknown {
    /// The reply itself is wrong (not merely something gpupool does not price).
    pub fn is_malformed(&self) -> bool {
        matches!(self, Unknown::NoDisks | Unknown::BadSize { .. })
    }
}

/// What one standby VM with these template disks costs per hour in `region`. Every disk must
/// be priced, or the figure is unknown (see the module doc for what is and is not priced).
pub fn standing_cost_per_hour(
    disks: &[TemplateDisk],
    region: &str,
    kind: StandbyKind,
) -> Result<Money, Unknown> {
    if kind == StandbyKind::Suspended {
        return Err(Unknown::SuspendedMemory);
    }
    if disks.is_empty() {
        return Err(Unknown::NoDisks);
    }
    let mut dollars_per_month = 0.0;
    for (index, disk) in disks.iter().enumerate() {
        let (disk_type, size) = match disk {
            TemplateDisk::LocalSsd => return Err(Unknown::LocalSsd { index }),
            TemplateDisk::Existing => return Err(Unknown::ExistingDisk { index }),
            TemplateDisk::Regional => return Err(Unknown::RegionalDisk { index }),
            TemplateDisk::Created { disk_type, size } => (disk_type, size),
        };
        let gb = match *size {
            DiskSize::Gb(g) if g > 0 => g,
            DiskSize::Gb(size) => return Err(Unknown::BadSize { index, size }),
            DiskSize::FromSource => return Err(Unknown::SizeFromSource { index }),
            DiskSize::Default => DEFAULT_DISK_SIZE_GB,
        };
        let Some(disk_type) = disk_type else {
            return Err(Unknown::NoDiskType { index });
        };
        let price = pd_price_per_gb_month(region, disk_type).ok_or_else(|| Unknown::Unpriced {
            disk_type: disk_type.clone(),
            region: region.to_owned(),
        })?;
        dollars_per_month += gb as f64 * price;
    }
    Ok(Money::from_dollars(dollars_per_month / HOURS_PER_MONTH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use StandbyKind::{Stopped, Suspended};

    const IOWA: &str = "us-central1";

    fn pd(t: &str, gb: i64) -> TemplateDisk {
        sized(Some(t), DiskSize::Gb(gb))
    }

    fn sized(t: Option<&str>, size: DiskSize) -> TemplateDisk {
        TemplateDisk::Created {
            disk_type: t.map(str::to_owned),
            size,
        }
    }

    fn cost(disks: &[TemplateDisk], region: &str, kind: StandbyKind) -> Result<i64, Unknown> {
        standing_cost_per_hour(disks, region, kind).map(Money::micros)
    }

    fn unpriced(disk_type: &str, region: &str) -> Result<i64, Unknown> {
        Err(Unknown::Unpriced {
            disk_type: disk_type.into(),
            region: region.into(),
        })
    }

    #[test]
    fn a_stopped_vm_costs_its_disks_per_gib_month_over_730_hours() {
        let cases = [
            // The Terraform module's defaults: (50 × 0.10 + 200 × 0.17) / 730 = 0.053425 $/h.
            (vec![pd("pd-balanced", 50), pd("pd-ssd", 200)], IOWA, 53_425),
            (vec![pd("pd-standard", 730)], IOWA, 40_000),
            // No size and no image: Compute's 500 GB default, (500 × 0.04) / 730.
            (
                vec![sized(Some("pd-standard"), DiskSize::Default)],
                IOWA,
                27_397,
            ),
            // Tokyo's own prices: (50 × 0.130 + 200 × 0.221) / 730 = 0.069452.
            (
                vec![pd("pd-balanced", 50), pd("pd-ssd", 200)],
                "asia-northeast1",
                69_452,
            ),
        ];
        for (disks, region, want) in cases {
            assert_eq!(
                cost(&disks, region, Stopped),
                Ok(want),
                "{disks:?} in {region}"
            );
        }
    }

    #[test]
    fn anything_unpriced_makes_the_whole_vm_unknown() {
        let boot = || pd("pd-balanced", 50);
        let cases = [
            (
                vec![boot(), pd("hyperdisk-balanced", 200)],
                IOWA,
                unpriced("hyperdisk-balanced", IOWA),
            ),
            (
                vec![pd("pd-extreme", 500)],
                IOWA,
                unpriced("pd-extreme", IOWA),
            ),
            (
                vec![pd("pd-quantum", 50)],
                IOWA,
                unpriced("pd-quantum", IOWA),
            ),
            (
                vec![boot()],
                "europe-west4",
                unpriced("pd-balanced", "europe-west4"),
            ),
            // A region whose row lacks the type borrows nothing.
            (
                vec![boot(), pd("pd-ssd", 200)],
                "asia-south1",
                unpriced("pd-ssd", "asia-south1"),
            ),
            (
                vec![boot(), TemplateDisk::LocalSsd],
                IOWA,
                Err(Unknown::LocalSsd { index: 1 }),
            ),
            (
                vec![boot(), TemplateDisk::Existing],
                IOWA,
                Err(Unknown::ExistingDisk { index: 1 }),
            ),
            (
                vec![TemplateDisk::Regional],
                IOWA,
                Err(Unknown::RegionalDisk { index: 0 }),
            ),
            (
                vec![
                    sized(Some("pd-balanced"), DiskSize::FromSource),
                    pd("pd-ssd", 200),
                ],
                IOWA,
                Err(Unknown::SizeFromSource { index: 0 }),
            ),
            (
                vec![sized(None, DiskSize::Gb(50))],
                IOWA,
                Err(Unknown::NoDiskType { index: 0 }),
            ),
        ];
        for (disks, region, want) in cases {
            assert_eq!(cost(&disks, region, Stopped), want, "{disks:?} in {region}");
        }
    }

    #[test]
    fn malformed_replies_and_suspended_pools_are_unknown() {
        let bad = |index, size| Err(Unknown::BadSize { index, size });
        assert_eq!(
            cost(&[pd("pd-balanced", 50), pd("pd-ssd", -200)], IOWA, Stopped),
            bad(1, -200)
        );
        assert_eq!(cost(&[pd("pd-ssd", 0)], IOWA, Stopped), bad(0, 0));
        assert_eq!(cost(&[], IOWA, Stopped), Err(Unknown::NoDisks));
        assert_eq!(
            cost(&[pd("pd-balanced", 50)], IOWA, Suspended),
            Err(Unknown::SuspendedMemory)
        );
        assert!(Unknown::NoDisks.is_malformed());
        assert!(Unknown::BadSize { index: 0, size: -1 }.is_malformed());
        assert!(!Unknown::SuspendedMemory.is_malformed());
        assert!(!Unknown::LocalSsd { index: 0 }.is_malformed());
    }
}
