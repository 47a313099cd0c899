//! What one stopped warm-pool instance costs per hour: its EBS volumes, from the launch
//! template's block device mappings over the AMI's, priced per GB-month (plus provisioned IOPS
//! and throughput above the free baseline) ÷ 730 h. Pure: the provider reads the mappings and
//! the prices, this module decides.
//!
//! - **Only EBS is billed while stopped**: "We don't charge usage for a stopped instance … you
//!   are charged for Amazon EBS volume usage" (Amazon EC2 API Reference, `StopInstances`; EC2
//!   User Guide, "Stop and start Amazon EC2 instances"). Instance-store volumes cost nothing
//!   then: their data does not survive a stop (same guide), and instance storage is part of the
//!   instance's usage price, not billed apart (EC2 User Guide, "Instance store temporary block
//!   storage").
//! - **Which volumes**: the AMI's block device mapping, overridden device by device by the
//!   launch template's (EC2 User Guide, "Block device mappings": the instance's mapping "can
//!   override" the AMI's, a `NoDevice` entry suppresses an AMI device). A field the template
//!   leaves out of an overridden device is the AMI mapping's — the `EbsBlockDevice` reference
//!   says so for the size ("If you specify a snapshot, the default is the snapshot size");
//!   it is silent on an omitted type, and the AMI's is taken. A device the AMI does not map and
//!   the template gives no type or no size is [`Unpriced`] (no documented default gpupool can
//!   vouch for), never priced as something else.
//! - **How a volume is billed** (Amazon EBS pricing page, <https://aws.amazon.com/ebs/pricing/>):
//!   every type per provisioned GB-month; gp3 also per provisioned IOPS-month above 3,000 and
//!   per provisioned MB/s-month above 125 ("All gp3 volumes include a free baseline performance
//!   of 3,000 provisioned IOPS … and 125 provisioned MB/s throughput"); io1 and io2 per
//!   provisioned IOPS-month, all of them; magnetic (`standard`) also per million I/O requests,
//!   which a stopped instance does not make. io2 IOPS are tiered (the first 32,000 at one rate,
//!   then cheaper tiers): gpupool prices the first tier only and calls an io2 volume above
//!   32,000 IOPS [`Unpriced`] rather than over- or under-state it.
//! - **Unknown is not zero**: one volume without a price makes the whole instance's figure
//!   unknown; a partial sum is never returned.

use gpupool_provider::{Price, gp3};

/// Hours AWS bills a storage month at (the EBS pricing page's examples, and the
/// `warm_pool_standing_cost_per_hour` output of `terraform/modules/aws-gpu-node-group`).
pub use gpupool_provider::HOURS_PER_MONTH;
/// gp3's free baseline (EBS pricing page, quoted in the module docs).
pub use gpupool_provider::gp3::{FREE_IOPS as GP3_FREE_IOPS, FREE_MIBPS as GP3_FREE_MIBPS};
/// io2's first IOPS tier ("$0.065/provisioned IOPS-month up to 32,000 IOPS" in us-east-1, EBS
/// pricing page); above it the rate changes and gpupool does not price the volume.
pub const IO2_FIRST_TIER_IOPS: u32 = 32_000;
/// Largest EBS volume (io2 Block Express: 64 TiB, EC2 User Guide "Amazon EBS volume types").
/// A larger size in an API reply is malformed.
pub const MAX_VOLUME_GIB: i32 = 65_536;

/// An EBS volume type; a name this code does not know (a type added after it) is `Other` and
/// has no price.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VolumeType {
    Gp3,
    Gp2,
    Io1,
    Io2,
    St1,
    Sc1,
    /// Magnetic (previous generation).
    Standard,
    Other(String),
}

impl VolumeType {
    /// From the API's `VolumeType` string (EC2 API Reference, `VolumeType` enum).
    pub fn parse(s: &str) -> VolumeType {
        match s {
            "gp3" => VolumeType::Gp3,
            "gp2" => VolumeType::Gp2,
            "io1" => VolumeType::Io1,
            "io2" => VolumeType::Io2,
            "st1" => VolumeType::St1,
            "sc1" => VolumeType::Sc1,
            "standard" => VolumeType::Standard,
            other => VolumeType::Other(other.to_owned()),
        }
    }
    /// The API name, which is also the price list's `volumeApiName` attribute.
    pub fn api_name(&self) -> &str {
        match self {
            VolumeType::Gp3 => "gp3",
            VolumeType::Gp2 => "gp2",
            VolumeType::Io1 => "io1",
            VolumeType::Io2 => "io2",
            VolumeType::St1 => "st1",
            VolumeType::Sc1 => "sc1",
            VolumeType::Standard => "standard",
            VolumeType::Other(s) => s,
        }
    }
    /// The billed parts of this type, storage first.
    pub fn parts(&self) -> &'static [RatePart] {
        match self {
            VolumeType::Gp3 => &[RatePart::Storage, RatePart::Iops, RatePart::Throughput],
            VolumeType::Io1 | VolumeType::Io2 => &[RatePart::Storage, RatePart::Iops],
            _ => &[RatePart::Storage],
        }
    }
}

/// One billed dimension of a volume type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RatePart {
    /// Per GB-month provisioned.
    Storage,
    /// Per provisioned IOPS-month (above the free baseline for gp3).
    Iops,
    /// Per provisioned MiB/s-month above the free baseline (gp3).
    Throughput,
}

impl RatePart {
    pub fn as_str(self) -> &'static str {
        match self {
            RatePart::Storage => "storage",
            RatePart::Iops => "iops",
            RatePart::Throughput => "throughput",
        }
    }
}

/// Key of one rate in the live price cache: `ebs/<volumeApiName>/<part>`.
pub fn rate_key(t: &VolumeType, part: RatePart) -> String {
    format!("ebs/{}/{}", t.api_name(), part.as_str())
}

/// Inverse of [`rate_key`].
pub fn parse_rate_key(key: &str) -> Option<(VolumeType, RatePart)> {
    let rest = key.strip_prefix("ebs/")?;
    let (t, part) = rest.rsplit_once('/')?;
    let part = match part {
        "storage" => RatePart::Storage,
        "iops" => RatePart::Iops,
        "throughput" => RatePart::Throughput,
        _ => return None,
    };
    Some((VolumeType::parse(t), part))
}

/// Published us-east-1 list prices, USD (Amazon EBS pricing page,
/// <https://aws.amazon.com/ebs/pricing/>, US East (N. Virginia); the same figures are what
/// infracost's golden test prices from the Price List, `internal/providers/terraform/aws/
/// testdata/ebs_volume_test/ebs_volume_test.golden`, and the defaults of the node-group
/// module's `ebs_gp3_price`). The fallback when the Price List API is off or fails; no other
/// region's figure is borrowed (regional EBS prices differ, e.g. gp3 $0.1047 in af-south-1).
pub fn table_rate(region: &str, t: &VolumeType, part: RatePart) -> Option<f64> {
    if region != "us-east-1" {
        return None;
    }
    use RatePart::{Iops, Storage, Throughput};
    Some(match (t, part) {
        (VolumeType::Gp3, Storage) => gp3::US_EAST_1_PER_GB_MONTH,
        (VolumeType::Gp3, Iops) => gp3::US_EAST_1_PER_IOPS_MONTH,
        (VolumeType::Gp3, Throughput) => gp3::US_EAST_1_PER_MIBPS_MONTH,
        (VolumeType::Gp2, Storage) => 0.10,
        (VolumeType::Io1 | VolumeType::Io2, Storage) => 0.125,
        // io2: the first tier (up to 32,000 IOPS).
        (VolumeType::Io1 | VolumeType::Io2, Iops) => 0.065,
        (VolumeType::St1, Storage) => 0.045,
        (VolumeType::Sc1, Storage) => 0.015,
        (VolumeType::Standard, Storage) => 0.05,
        _ => return None,
    })
}

/// The EBS fields of one mapping, raw as the API reports them (validated in [`volumes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EbsFields {
    pub volume_type: Option<String>,
    pub size_gib: Option<i32>,
    pub iops: Option<i32>,
    pub throughput_mibps: Option<i32>,
}

/// What one block device mapping attaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attach {
    Ebs(EbsFields),
    /// `VirtualName = ephemeralN`: an instance-store volume.
    InstanceStore,
    /// `NoDevice`: suppresses the AMI's mapping of this device.
    Suppressed,
    /// Neither of the three: a malformed reply.
    Nothing,
}

/// One entry of a launch template's or an AMI's `BlockDeviceMappings`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub device: String,
    pub attach: Attach,
}

impl Mapping {
    /// From one `LaunchTemplateData.BlockDeviceMappings` entry (`DescribeLaunchTemplateVersions`).
    /// `NoDevice` wins over the rest (EC2 API Reference, `LaunchTemplateBlockDeviceMapping`:
    /// "To omit the device from the block device mapping, specify an empty string"), then an
    /// instance-store `VirtualName`, then `Ebs`.
    pub fn from_template(m: &aws_sdk_ec2::types::LaunchTemplateBlockDeviceMapping) -> Mapping {
        let ebs = m.ebs().map(|e| EbsFields {
            volume_type: e.volume_type().map(|t| t.as_str().to_owned()),
            size_gib: e.volume_size(),
            iops: e.iops(),
            throughput_mibps: e.throughput(),
        });
        Mapping::new(m.device_name(), m.no_device(), m.virtual_name(), ebs)
    }

    /// From one `Image.BlockDeviceMappings` entry (`DescribeImages`).
    pub fn from_image(m: &aws_sdk_ec2::types::BlockDeviceMapping) -> Mapping {
        let ebs = m.ebs().map(|e| EbsFields {
            volume_type: e.volume_type().map(|t| t.as_str().to_owned()),
            size_gib: e.volume_size(),
            iops: e.iops(),
            throughput_mibps: e.throughput(),
        });
        Mapping::new(m.device_name(), m.no_device(), m.virtual_name(), ebs)
    }

    fn new(
        device: Option<&str>,
        no_device: Option<&str>,
        virtual_name: Option<&str>,
        ebs: Option<EbsFields>,
    ) -> Mapping {
        let attach = match (device, no_device, virtual_name, ebs) {
            (None, ..) => Attach::Nothing,
            (_, Some(_), _, _) => Attach::Suppressed,
            (_, _, Some(v), _) if v.starts_with("ephemeral") => Attach::InstanceStore,
            (_, _, _, Some(e)) => Attach::Ebs(e),
            _ => Attach::Nothing,
        };
        Mapping {
            device: device.unwrap_or("?").to_owned(),
            attach,
        }
    }
}

/// One EBS volume a stopped instance keeps, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub device: String,
    pub volume_type: VolumeType,
    pub size_gib: u32,
    pub iops: Option<u32>,
    pub throughput_mibps: Option<u32>,
}

/// Why a stopped instance's cost is unknown.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unpriced {
    #[error("device {device}: no volume type in the launch template nor the AMI")]
    NoType { device: String },
    #[error("device {device}: no volume size in the launch template nor the AMI")]
    NoSize { device: String },
    #[error("device {device}: {field} {value} is out of range")]
    OutOfRange {
        device: String,
        field: &'static str,
        value: i32,
    },
    #[error("device {device}: {volume_type} volume without provisioned IOPS")]
    NoIops { device: String, volume_type: String },
    #[error("device {device}: mapping names no EBS volume, instance store or NoDevice")]
    EmptyMapping { device: String },
    #[error(
        "device {device}: io2 with {iops} IOPS is above the first price tier ({IO2_FIRST_TIER_IOPS}); tiered IOPS are not priced"
    )]
    TieredIops { device: String, iops: u32 },
    #[error("no {} price for {volume_type} volumes in {region}", part.as_str())]
    NoPrice {
        volume_type: String,
        part: RatePart,
        region: String,
    },
    #[error("volume type {0} is unknown to gpupool: its billed dimensions are not known")]
    UnknownType(String),
    #[error("the launch template names no AMI")]
    NoImage,
    #[error("the AMI is given as {0:?}, an SSM parameter gpupool does not resolve")]
    SsmImage(String),
    #[error("the AMI {image} cannot be read ({why})")]
    ImageUnreadable { image: String, why: &'static str },
    #[error("the group has no launch template gpupool reads")]
    NoTemplate,
}

impl Unpriced {
    /// Log label.
    pub fn kind(&self) -> &'static str {
        match self {
            Unpriced::NoType { .. } => "no_type",
            Unpriced::NoSize { .. } => "no_size",
            Unpriced::OutOfRange { .. } => "out_of_range",
            Unpriced::NoIops { .. } => "no_iops",
            Unpriced::EmptyMapping { .. } => "empty_mapping",
            Unpriced::TieredIops { .. } => "tiered_iops",
            Unpriced::NoPrice { .. } => "no_price",
            Unpriced::UnknownType(_) => "unknown_type",
            Unpriced::NoImage => "no_image",
            Unpriced::SsmImage(_) => "ssm_image",
            Unpriced::ImageUnreadable { .. } => "image_unreadable",
            Unpriced::NoTemplate => "no_template",
        }
    }
}

fn checked(device: &str, field: &'static str, v: i32, min: i32, max: i32) -> Result<u32, Unpriced> {
    if (min..=max).contains(&v) {
        Ok(v as u32)
    } else {
        Err(Unpriced::OutOfRange {
            device: device.to_owned(),
            field,
            value: v,
        })
    }
}

/// The EBS volumes an instance launched from `template` over the AMI's `ami` mappings keeps
/// while stopped (see the module docs for the override rule).
pub fn volumes(template: &[Mapping], ami: &[Mapping]) -> Result<Vec<Volume>, Unpriced> {
    // Device → what is attached, AMI first, in the AMI's order, then the template's new devices.
    let mut merged: Vec<(String, Attach)> = ami
        .iter()
        .map(|m| (m.device.clone(), m.attach.clone()))
        .collect();
    for m in template {
        match merged.iter_mut().find(|(d, _)| *d == m.device) {
            Some(slot) => {
                slot.1 = match (&slot.1, &m.attach) {
                    (Attach::Ebs(base), Attach::Ebs(t)) => Attach::Ebs(EbsFields {
                        volume_type: t.volume_type.clone().or_else(|| base.volume_type.clone()),
                        size_gib: t.size_gib.or(base.size_gib),
                        iops: t.iops.or(base.iops),
                        throughput_mibps: t.throughput_mibps.or(base.throughput_mibps),
                    }),
                    (_, a) => a.clone(),
                }
            }
            None => merged.push((m.device.clone(), m.attach.clone())),
        }
    }
    let mut out = Vec::new();
    for (device, attach) in merged {
        let e = match attach {
            Attach::Ebs(e) => e,
            Attach::InstanceStore | Attach::Suppressed => continue,
            Attach::Nothing => return Err(Unpriced::EmptyMapping { device }),
        };
        let volume_type =
            VolumeType::parse(e.volume_type.as_deref().ok_or_else(|| Unpriced::NoType {
                device: device.clone(),
            })?);
        let size = e.size_gib.ok_or_else(|| Unpriced::NoSize {
            device: device.clone(),
        })?;
        let size_gib = checked(&device, "VolumeSize", size, 1, MAX_VOLUME_GIB)?;
        let iops = e
            .iops
            .map(|v| checked(&device, "Iops", v, 0, i32::MAX))
            .transpose()?;
        let throughput_mibps = e
            .throughput_mibps
            .map(|v| checked(&device, "Throughput", v, 0, i32::MAX))
            .transpose()?;
        out.push(Volume {
            device,
            volume_type,
            size_gib,
            iops,
            throughput_mibps,
        });
    }
    Ok(out)
}

/// Monthly USD of one volume, or why it has no price. `rate` gives one figure of a type in the
/// region (live, else the table), `None` when no source has it.
fn monthly(
    v: &Volume,
    region: &str,
    rate: &impl Fn(&VolumeType, RatePart) -> Option<f64>,
) -> Result<f64, Unpriced> {
    let priced = |part: RatePart, quantity: f64| -> Result<f64, Unpriced> {
        if quantity <= 0.0 {
            return Ok(0.0);
        }
        // A rate that is not a positive number is a broken source, not a free volume.
        rate(&v.volume_type, part)
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(|r| r * quantity)
            .ok_or_else(|| Unpriced::NoPrice {
                volume_type: v.volume_type.api_name().to_owned(),
                part,
                region: region.to_owned(),
            })
    };
    let mut dollars = priced(RatePart::Storage, f64::from(v.size_gib))?;
    match v.volume_type {
        VolumeType::Gp3 => {
            let iops = v
                .iops
                .unwrap_or(GP3_FREE_IOPS)
                .saturating_sub(GP3_FREE_IOPS);
            let mibps = v
                .throughput_mibps
                .unwrap_or(GP3_FREE_MIBPS)
                .saturating_sub(GP3_FREE_MIBPS);
            dollars += priced(RatePart::Iops, f64::from(iops))?;
            dollars += priced(RatePart::Throughput, f64::from(mibps))?;
        }
        VolumeType::Io1 | VolumeType::Io2 => {
            // Required for io1 and io2 (EC2 API Reference, `EbsBlockDevice.Iops`).
            let iops = v.iops.ok_or_else(|| Unpriced::NoIops {
                device: v.device.clone(),
                volume_type: v.volume_type.api_name().to_owned(),
            })?;
            if v.volume_type == VolumeType::Io2 && iops > IO2_FIRST_TIER_IOPS {
                return Err(Unpriced::TieredIops {
                    device: v.device.clone(),
                    iops,
                });
            }
            dollars += priced(RatePart::Iops, f64::from(iops))?;
        }
        // gp2, st1, sc1: storage only (their performance is not provisioned); standard also
        // bills I/O requests, none while stopped. `Other` never gets here without a storage
        // price, and even with one its other billed dimensions are not known: refuse it.
        VolumeType::Other(ref t) => return Err(Unpriced::UnknownType(t.clone())),
        _ => {}
    }
    Ok(dollars)
}

/// What one stopped instance with `volumes` costs per hour in `region`: the sum of every
/// volume's monthly price ÷ [`HOURS_PER_MONTH`], or why it is unknown (one unpriced volume
/// makes the whole figure unknown). No volumes at all (an instance-store-only AMI) cost zero —
/// a known zero, stated by the mappings.
pub fn cost_per_hour(
    volumes: &[Volume],
    region: &str,
    rate: impl Fn(&VolumeType, RatePart) -> Option<f64>,
) -> Result<Price, Unpriced> {
    let mut dollars = 0.0;
    for v in volumes {
        dollars += monthly(v, region, &rate)?;
    }
    Ok(Price::from_dollars(dollars / HOURS_PER_MONTH))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ebs(device: &str, t: Option<&str>, size: Option<i32>) -> Mapping {
        Mapping {
            device: device.into(),
            attach: Attach::Ebs(EbsFields {
                volume_type: t.map(str::to_owned),
                size_gib: size,
                ..Default::default()
            }),
        }
    }

    fn perf(m: Mapping, iops: Option<i32>, tput: Option<i32>) -> Mapping {
        let Attach::Ebs(mut e) = m.attach else {
            unreachable!()
        };
        e.iops = iops;
        e.throughput_mibps = tput;
        Mapping {
            device: m.device,
            attach: Attach::Ebs(e),
        }
    }

    fn other(device: &str, attach: Attach) -> Mapping {
        Mapping {
            device: device.into(),
            attach,
        }
    }

    /// moto's and a typical AMI: a 15 GB magnetic root at /dev/sda1.
    fn ami() -> Vec<Mapping> {
        vec![ebs("/dev/sda1", Some("standard"), Some(15))]
    }

    fn table(region: &'static str) -> impl Fn(&VolumeType, RatePart) -> Option<f64> {
        move |t, p| table_rate(region, t, p)
    }

    fn usd_h(monthly: f64) -> Price {
        Price::from_dollars(monthly / HOURS_PER_MONTH)
    }

    /// (name, template mappings, AMI mappings, region, expected $/h or the error kind)
    type Case = (
        &'static str,
        Vec<Mapping>,
        Vec<Mapping>,
        &'static str,
        Result<Price, &'static str>,
    );

    /// Known figures, zero included where the mappings say so.
    fn priced_cases() -> Vec<Case> {
        vec![
            (
                "100 GB + 200 GB gp3, root overridden",
                vec![
                    ebs("/dev/sda1", Some("gp3"), Some(100)),
                    ebs("/dev/sdf", Some("gp3"), Some(200)),
                ],
                ami(),
                "us-east-1",
                Ok(usd_h(300.0 * 0.08)),
            ),
            (
                "the AMI root is kept when the template does not map it",
                vec![ebs("/dev/sdf", Some("gp3"), Some(200))],
                ami(),
                "us-east-1",
                Ok(usd_h(200.0 * 0.08 + 15.0 * 0.05)),
            ),
            (
                "size from the AMI when the template gives only the type",
                vec![ebs("/dev/sda1", Some("gp3"), None)],
                ami(),
                "us-east-1",
                Ok(usd_h(15.0 * 0.08)),
            ),
            (
                "gp3 IOPS and throughput above the baseline",
                vec![perf(
                    ebs("/dev/sda1", Some("gp3"), Some(500)),
                    Some(10_000),
                    Some(500),
                )],
                ami(),
                "us-east-1",
                Ok(usd_h(500.0 * 0.08 + 7_000.0 * 0.005 + 375.0 * 0.04)),
            ),
            (
                "gp3 at the baseline costs storage only",
                vec![perf(
                    ebs("/dev/sda1", Some("gp3"), Some(100)),
                    Some(3_000),
                    Some(125),
                )],
                ami(),
                "us-east-1",
                Ok(usd_h(100.0 * 0.08)),
            ),
            (
                "io1 bills every provisioned IOPS",
                vec![perf(
                    ebs("/dev/sda1", Some("io1"), Some(30)),
                    Some(300),
                    None,
                )],
                ami(),
                "us-east-1",
                Ok(usd_h(30.0 * 0.125 + 300.0 * 0.065)),
            ),
            (
                "io2 within the first tier",
                vec![perf(
                    ebs("/dev/sda1", Some("io2"), Some(30)),
                    Some(32_000),
                    None,
                )],
                ami(),
                "us-east-1",
                Ok(usd_h(30.0 * 0.125 + 32_000.0 * 0.065)),
            ),
            (
                "st1, sc1, gp2",
                vec![
                    ebs("/dev/sda1", Some("gp2"), Some(10)),
                    ebs("/dev/sdf", Some("st1"), Some(500)),
                    ebs("/dev/sdg", Some("sc1"), Some(500)),
                ],
                ami(),
                "us-east-1",
                Ok(usd_h(10.0 * 0.10 + 500.0 * 0.045 + 500.0 * 0.015)),
            ),
            (
                "instance store and NoDevice cost nothing",
                vec![
                    other("/dev/sda1", Attach::Suppressed),
                    other("/dev/sdb", Attach::InstanceStore),
                    ebs("/dev/xvda", Some("gp3"), Some(50)),
                ],
                ami(),
                "us-east-1",
                Ok(usd_h(50.0 * 0.08)),
            ),
            (
                "an instance-store-only instance: a known zero",
                vec![other("/dev/sda1", Attach::InstanceStore)],
                ami(),
                "us-east-1",
                Ok(Price::from_dollars(0.0)),
            ),
        ]
    }

    /// Unknown, never zero and never a partial sum.
    fn unknown_cases() -> Vec<Case> {
        vec![
            (
                "a type no source prices",
                vec![
                    ebs("/dev/sda1", Some("gp3"), Some(100)),
                    ebs("/dev/sdf", Some("io9"), Some(200)),
                ],
                ami(),
                "us-east-1",
                Err("no_price"),
            ),
            (
                "a region without a table figure",
                vec![ebs("/dev/sda1", Some("gp3"), Some(100))],
                ami(),
                "eu-west-1",
                Err("no_price"),
            ),
            (
                "a new device without a size",
                vec![ebs("/dev/sdf", Some("gp3"), None)],
                ami(),
                "us-east-1",
                Err("no_size"),
            ),
            (
                "a new device without a type",
                vec![ebs("/dev/sdf", None, Some(100))],
                ami(),
                "us-east-1",
                Err("no_type"),
            ),
            (
                "a negative size",
                vec![ebs("/dev/sda1", Some("gp3"), Some(-5))],
                ami(),
                "us-east-1",
                Err("out_of_range"),
            ),
            (
                "a zero size",
                vec![ebs("/dev/sda1", Some("gp3"), Some(0))],
                ami(),
                "us-east-1",
                Err("out_of_range"),
            ),
            (
                "negative IOPS",
                vec![perf(
                    ebs("/dev/sda1", Some("gp3"), Some(10)),
                    Some(-1),
                    None,
                )],
                ami(),
                "us-east-1",
                Err("out_of_range"),
            ),
            (
                "io1 without IOPS",
                vec![ebs("/dev/sda1", Some("io1"), Some(10))],
                ami(),
                "us-east-1",
                Err("no_iops"),
            ),
            (
                "io2 above the first tier",
                vec![perf(
                    ebs("/dev/sda1", Some("io2"), Some(100)),
                    Some(40_000),
                    None,
                )],
                ami(),
                "us-east-1",
                Err("tiered_iops"),
            ),
            (
                "an empty mapping",
                vec![other("/dev/sdf", Attach::Nothing)],
                ami(),
                "us-east-1",
                Err("empty_mapping"),
            ),
            (
                "an AMI volume without a size (snapshot size not reported)",
                vec![],
                vec![ebs("/dev/sda1", Some("gp3"), None)],
                "us-east-1",
                Err("no_size"),
            ),
        ]
    }

    #[test]
    fn standing_cost_table() {
        for (name, template, ami, region, want) in priced_cases().into_iter().chain(unknown_cases())
        {
            let got = volumes(&template, &ami)
                .and_then(|v| cost_per_hour(&v, region, table(region)))
                .map_err(|e| e.kind());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_missing_extra_rate_is_unknown_only_when_used() {
        // Live storage price, no IOPS price anywhere.
        let rate = |t: &VolumeType, p: RatePart| {
            (*t == VolumeType::Gp3 && p == RatePart::Storage).then_some(0.1)
        };
        let base = [Volume {
            device: "/dev/sda1".into(),
            volume_type: VolumeType::Gp3,
            size_gib: 100,
            iops: Some(3_000),
            throughput_mibps: None,
        }];
        assert_eq!(
            cost_per_hour(&base, "eu-west-1", rate),
            Ok(usd_h(10.0)),
            "baseline IOPS are free: no IOPS price needed"
        );
        let more = [Volume {
            iops: Some(4_000),
            ..base[0].clone()
        }];
        assert_eq!(
            cost_per_hour(&more, "eu-west-1", rate).map_err(|e| e.kind()),
            Err("no_price")
        );
        // A zero storage rate is a broken source, not a free volume.
        let zero = |_: &VolumeType, _: RatePart| Some(0.0);
        assert!(cost_per_hour(&base, "us-east-1", zero).is_err());
    }

    #[test]
    fn mappings_from_the_sdk() {
        use aws_sdk_ec2::types::{
            BlockDeviceMapping, EbsBlockDevice, LaunchTemplateBlockDeviceMapping,
            LaunchTemplateEbsBlockDevice, VolumeType as Sdk,
        };
        let t = LaunchTemplateBlockDeviceMapping::builder()
            .device_name("/dev/sda1")
            .ebs(
                LaunchTemplateEbsBlockDevice::builder()
                    .volume_type(Sdk::Gp3)
                    .volume_size(100)
                    .iops(4000)
                    .throughput(200)
                    .build(),
            )
            .build();
        assert_eq!(
            Mapping::from_template(&t),
            perf(
                ebs("/dev/sda1", Some("gp3"), Some(100)),
                Some(4000),
                Some(200)
            )
        );
        let gone = LaunchTemplateBlockDeviceMapping::builder()
            .device_name("/dev/sdc")
            .no_device("")
            .build();
        assert_eq!(Mapping::from_template(&gone).attach, Attach::Suppressed);
        let eph = BlockDeviceMapping::builder()
            .device_name("/dev/sdb")
            .virtual_name("ephemeral0")
            .build();
        assert_eq!(Mapping::from_image(&eph).attach, Attach::InstanceStore);
        let root = BlockDeviceMapping::builder()
            .device_name("/dev/xvda")
            .ebs(
                EbsBlockDevice::builder()
                    .volume_type(Sdk::from("io9"))
                    .volume_size(8)
                    .build(),
            )
            .build();
        assert_eq!(
            Mapping::from_image(&root),
            ebs("/dev/xvda", Some("io9"), Some(8))
        );
        let nameless = BlockDeviceMapping::builder().build();
        assert_eq!(Mapping::from_image(&nameless).attach, Attach::Nothing);
    }

    #[test]
    fn rate_keys_round_trip() {
        for t in ["gp3", "io2", "standard", "io9"] {
            let t = VolumeType::parse(t);
            for p in t.parts() {
                assert_eq!(parse_rate_key(&rate_key(&t, *p)), Some((t.clone(), *p)));
            }
        }
        assert_eq!(parse_rate_key("g5.xlarge"), None);
        assert_eq!(parse_rate_key("ebs/gp3/bogus"), None);
    }

    #[test]
    fn the_table_covers_every_known_type_in_us_east_1_only() {
        for t in ["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"] {
            let t = VolumeType::parse(t);
            for p in t.parts() {
                let r = table_rate("us-east-1", &t, *p).expect("priced");
                assert!(r > 0.0 && r < 1.0, "{t:?} {p:?}");
                assert_eq!(table_rate("us-west-2", &t, *p), None);
            }
        }
        assert_eq!(
            table_rate("us-east-1", &VolumeType::parse("io9"), RatePart::Storage),
            None
        );
    }
}
