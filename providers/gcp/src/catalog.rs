//! GPU facts, prices and spot reclaim risk for GCP machine types, from tables shipped in the
//! crate (`data/`, provenance in `data/README.md`).
//!
//! Why a table and not an API: Compute Engine has no price API (the Cloud Billing Catalog is a
//! separate service with its own permission), and `machineTypes.get` describes accelerators only
//! for types with bundled GPUs. The table gives both for the regions it covers; a machine type or
//! region it does not cover yields no offering, with a warning, rather than a made-up price.
//!
//! Coverage: bundled-GPU types (A2, A3, G2) and N1 hosts in the 40 regions the source prices
//! (`data/README.md` lists them), each at that region's own price; GPUs attached to N1 hosts
//! (T4, V100, P100, P4) in us-central1, us-east1, us-east4, us-west1, europe-west4 and
//! asia-northeast1 only. No region borrows another's figure.

use gpupool_provider::{CapacityType, GpuInfo, InstanceType, InstanceTypeName, Money};
use std::collections::BTreeMap;

const MACHINES_CSV: &str = include_str!("../data/gcp_machine_prices.csv");
const ATTACHMENTS_CSV: &str = include_str!("../data/gcp_gpu_attachment_prices.csv");
const RECLAIMS_CSV: &str = include_str!("../data/gcp_spot_reclaims_a100.csv");

/// Hourly reclaim rate of SPOT VMs where the trace has no figure for the zone: all reclaims over
/// all instance-hours of the SpotHedge GCP A100 trace (76 / 340.3 h, `data/README.md`). GCP
/// publishes no per-family advisor, so every GPU family uses this A100 measurement.
pub const DEFAULT_SPOT_RECLAIMS_PER_HOUR: f64 = 76.0 / 340.3;

/// One machine type in one region.
#[derive(Clone, Debug, PartialEq)]
pub struct MachinePrice {
    pub vcpu: u32,
    pub memory_mib: u64,
    /// Bundled GPUs (a2, a3, g2); `None` for n1 hosts of attached GPUs.
    pub gpu: Option<GpuInfo>,
    pub on_demand: Money,
    pub spot: Money,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AttachmentPrice {
    pub model: String,
    pub memory_mib: u64,
    pub on_demand_per_gpu: Money,
    pub spot_per_gpu: Money,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{table} line {line}: {message}")]
    Row {
        table: &'static str,
        line: usize,
        message: String,
    },
}

/// The shipped tables, parsed once.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    machines: BTreeMap<(String, String), MachinePrice>,
    attachments: BTreeMap<(String, String), AttachmentPrice>,
    reclaims_per_hour: BTreeMap<String, f64>,
}

fn rows(
    table: &'static str,
    text: &'static str,
    width: usize,
) -> impl Iterator<Item = Result<(usize, Vec<&'static str>), CatalogError>> {
    text.lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(move |(i, l)| {
            let cols: Vec<&str> = l.split(',').collect();
            if cols.len() == width {
                Ok((i + 1, cols))
            } else {
                Err(CatalogError::Row {
                    table,
                    line: i + 1,
                    message: format!("expected {width} columns, got {}", cols.len()),
                })
            }
        })
}

fn num<T: std::str::FromStr>(
    table: &'static str,
    line: usize,
    what: &str,
    s: &str,
) -> Result<T, CatalogError> {
    s.parse().map_err(|_| CatalogError::Row {
        table,
        line,
        message: format!("{what}: not a number: {s:?}"),
    })
}

const GIB_MIB: f64 = 1024.0;

/// A GPU as the catalog describes it, with the MIG profiles NVIDIA documents for that model and
/// memory (`gpupool_provider::mig`): the Compute API names only the accelerator type
/// (`nvidia-a100-80gb`), so every MIG-capable GPU the table lists — a2-highgpu/megagpu (A100
/// 40 GB), a2-ultragpu (A100 80 GB), a3 (H100 80 GB), and a3-ultra (H200) or a4 (B200) once the
/// table carries them — gets its profiles here; L4, T4, V100, P100 and P4 get none.
fn gpu_info(model: &str, count: u32, memory_mib_per_gpu: u64) -> GpuInfo {
    GpuInfo {
        model: model.to_owned(),
        count,
        memory_mib_per_gpu,
        mig_profiles: gpupool_provider::mig::profiles_for(model, memory_mib_per_gpu),
    }
}

impl Catalog {
    /// Parse the tables compiled into the crate.
    pub fn shipped() -> Result<Catalog, CatalogError> {
        let mut c = Catalog::default();
        const M: &str = "gcp_machine_prices.csv";
        for row in rows(M, MACHINES_CSV, 9) {
            let (line, r) = row?;
            let gpu_count: f64 = num(M, line, "gpu_count", r[5])?;
            let gpu = if r[4].is_empty() || gpu_count < 1.0 {
                None
            } else {
                let mem_gb: f64 = num(M, line, "gpu_memory_gb_per_gpu", r[6])?;
                Some(gpu_info(r[4], gpu_count as u32, (mem_gb * GIB_MIB) as u64))
            };
            let mem_gb: f64 = num(M, line, "memory_gb", r[3])?;
            c.machines.insert(
                (r[0].to_owned(), r[1].to_owned()),
                MachinePrice {
                    vcpu: num(M, line, "vcpu", r[2])?,
                    memory_mib: (mem_gb * GIB_MIB) as u64,
                    gpu,
                    on_demand: Money::from_dollars(num(M, line, "ondemand", r[7])?),
                    spot: Money::from_dollars(num(M, line, "spot", r[8])?),
                },
            );
        }
        const A: &str = "gcp_gpu_attachment_prices.csv";
        for row in rows(A, ATTACHMENTS_CSV, 6) {
            let (line, r) = row?;
            let mem_gb: f64 = num(A, line, "gpu_memory_gb", r[2])?;
            c.attachments.insert(
                (r[0].to_owned(), r[3].to_owned()),
                AttachmentPrice {
                    model: r[1].to_owned(),
                    memory_mib: (mem_gb * GIB_MIB) as u64,
                    on_demand_per_gpu: Money::from_dollars(num(A, line, "ondemand", r[4])?),
                    spot_per_gpu: Money::from_dollars(num(A, line, "spot", r[5])?),
                },
            );
        }
        const R: &str = "gcp_spot_reclaims_a100.csv";
        for row in rows(R, RECLAIMS_CSV, 5) {
            let (line, r) = row?;
            // A zone where the trace never held an instance has no rate: it falls back to the
            // overall figure instead of claiming zero risk.
            if !r[4].is_empty() {
                c.reclaims_per_hour
                    .insert(r[0].to_owned(), num(R, line, "rate", r[4])?);
            }
        }
        Ok(c)
    }

    pub fn machine(&self, machine_type: &str, region: &str) -> Option<&MachinePrice> {
        self.machines
            .get(&(machine_type.to_owned(), region.to_owned()))
    }

    pub fn attachment(&self, accelerator_type: &str, region: &str) -> Option<&AttachmentPrice> {
        self.attachments
            .get(&(accelerator_type.to_owned(), region.to_owned()))
    }

    /// Probability that a SPOT VM in `zone` is reclaimed within an hour: `1 - e^(-rate)` for the
    /// zone's observed reclaim rate (a Poisson process), 0 for STANDARD.
    pub fn interruption_risk_per_hour(&self, capacity: CapacityType, zone: &str) -> f64 {
        match capacity {
            CapacityType::OnDemand => 0.0,
            CapacityType::Spot => {
                let rate = self
                    .reclaims_per_hour
                    .get(zone)
                    .copied()
                    .unwrap_or(DEFAULT_SPOT_RECLAIMS_PER_HOUR);
                1.0 - (-rate).exp()
            }
        }
    }

    /// The instance type and hourly price of `machine_type` with `accelerators` attached
    /// (`(acceleratorType short name, count)`, from the template's `guestAccelerators`), in
    /// `region`. `None` when the table lacks the type or one of its GPUs, or it has no GPU.
    pub fn price(
        &self,
        machine_type: &str,
        accelerators: &[(String, u32)],
        region: &str,
        capacity: CapacityType,
    ) -> Option<(InstanceType, Money)> {
        let m = self.machine(machine_type, region)?;
        let mut price = match capacity {
            CapacityType::OnDemand => m.on_demand,
            CapacityType::Spot => m.spot,
        };
        let mut gpu = m.gpu.clone();
        for (acc, count) in accelerators {
            if *count == 0 {
                continue;
            }
            // Bundled-GPU types (a2/a3/g2) list their accelerators in the template too; their
            // machine price already includes them.
            if let Some(g) = &m.gpu
                && g.count == *count
            {
                continue;
            }
            let a = self.attachment(acc, region)?;
            price += match capacity {
                CapacityType::OnDemand => a.on_demand_per_gpu,
                CapacityType::Spot => a.spot_per_gpu,
            } * *count;
            gpu = Some(gpu_info(&a.model, *count, a.memory_mib));
        }
        let gpu = gpu?;
        Some((
            InstanceType {
                name: InstanceTypeName::new(offering_type_name(machine_type, accelerators, &gpu)),
                vcpu: m.vcpu,
                memory_mib: m.memory_mib,
                gpu,
            },
            price,
        ))
    }
}

/// The instance-type name offerings carry: the machine type for bundled GPUs
/// (`a2-highgpu-1g`), `machine+NxMODEL` for attached ones (`n1-standard-8+1xT4`, the same
/// spelling as `../shared/data/gcp/gcp_n1_gpu_shapes_us_central1.csv`), so two MIGs with the
/// same host but different GPUs are different offerings.
fn offering_type_name(machine_type: &str, accelerators: &[(String, u32)], gpu: &GpuInfo) -> String {
    let attached = machine_type.starts_with("n1-") && accelerators.iter().any(|(_, n)| *n > 0);
    if attached {
        format!("{machine_type}+{}x{}", gpu.count, gpu.model)
    } else {
        machine_type.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat() -> Catalog {
        Catalog::shipped().expect("shipped tables parse")
    }

    #[test]
    fn every_region_has_its_own_price() {
        let c = cat();
        let regions: std::collections::BTreeSet<&str> =
            c.machines.keys().map(|(_, r)| r.as_str()).collect();
        assert_eq!(regions.len(), 40, "{regions:?}");
        let od = |r: &str| c.machine("a2-highgpu-1g", r).map(|m| m.on_demand);
        assert_eq!(
            od("asia-northeast1"),
            Some(Money::from_dollars(4.049590926))
        );
        assert!(
            od("asia-northeast1") > od("us-central1"),
            "regional, not us-central1's"
        );
        assert_eq!(od("mars-1"), None);
    }

    #[test]
    fn bundled_gpu_types_price_from_the_machine_row() {
        let c = cat();
        let (it, od) = c
            .price(
                "a2-highgpu-1g",
                &[("nvidia-tesla-a100".into(), 1)],
                "us-central1",
                CapacityType::OnDemand,
            )
            .expect("a2-highgpu-1g is in the table");
        assert_eq!(it.name.as_str(), "a2-highgpu-1g");
        assert_eq!(it.gpu.model, "A100");
        assert_eq!(it.gpu.count, 1);
        assert_eq!(it.gpu.memory_mib_per_gpu, 40 * 1024);
        let (_, spot) = c
            .price("a2-highgpu-1g", &[], "us-central1", CapacityType::Spot)
            .expect("spot price");
        assert!(spot < od, "spot {spot} must be below on-demand {od}");
    }

    #[test]
    fn mig_capable_gpus_carry_their_profiles() {
        let c = cat();
        let it = |machine: &str| {
            c.price(machine, &[], "us-central1", CapacityType::OnDemand)
                .unwrap_or_else(|| panic!("{machine} is in the table"))
                .0
                .gpu
        };
        let a100_40 = it("a2-highgpu-1g");
        let p = a100_40
            .mig_profiles
            .iter()
            .find(|p| p.name == "1g.5gb")
            .expect("A100 40 GB has 1g.5gb");
        assert_eq!(p.per_gpu, 7);
        let a100_80 = it("a2-ultragpu-1g");
        assert!(a100_80.mig_profiles.iter().any(|p| p.name == "1g.10gb"));
        assert!(!a100_80.mig_profiles.iter().any(|p| p.name == "1g.5gb"));
        let h100 = it("a3-highgpu-8g");
        assert!(h100.mig_profiles.iter().any(|p| p.name == "7g.80gb"));
        assert!(it("g2-standard-8").mig_profiles.is_empty(), "L4 has no MIG");
        let (t4, _) = c
            .price(
                "n1-standard-8",
                &[("nvidia-tesla-t4".into(), 1)],
                "us-central1",
                CapacityType::OnDemand,
            )
            .unwrap();
        assert!(t4.gpu.mig_profiles.is_empty());
    }

    #[test]
    fn attached_gpus_add_their_price_to_the_host() {
        let c = cat();
        let host = c.machine("n1-standard-8", "us-central1").expect("n1 host");
        let t4 = c
            .attachment("nvidia-tesla-t4", "us-central1")
            .expect("T4 price");
        let (it, price) = c
            .price(
                "n1-standard-8",
                &[("nvidia-tesla-t4".into(), 2)],
                "us-central1",
                CapacityType::OnDemand,
            )
            .expect("n1 + T4 priced");
        assert_eq!(it.name.as_str(), "n1-standard-8+2xT4");
        assert_eq!(it.gpu.count, 2);
        assert_eq!(price, host.on_demand + t4.on_demand_per_gpu * 2);
    }

    #[test]
    fn unknown_types_and_gpu_less_hosts_have_no_price() {
        let c = cat();
        assert!(
            c.price("a2-highgpu-1g", &[], "mars-north1", CapacityType::OnDemand)
                .is_none()
        );
        assert!(
            c.price("n1-standard-8", &[], "us-central1", CapacityType::OnDemand)
                .is_none()
        );
    }

    #[test]
    fn spot_risk_uses_the_zone_rate_and_falls_back_to_the_overall_rate() {
        let c = cat();
        assert_eq!(
            c.interruption_risk_per_hour(CapacityType::OnDemand, "us-west1-b"),
            0.0
        );
        let hot = c.interruption_risk_per_hour(CapacityType::Spot, "us-west1-b");
        let calm = c.interruption_risk_per_hour(CapacityType::Spot, "europe-west4-a");
        assert!(hot > 0.8 && calm < 0.05, "hot {hot} calm {calm}");
        let unknown = c.interruption_risk_per_hour(CapacityType::Spot, "us-east1-b");
        assert!((unknown - (1.0 - (-DEFAULT_SPOT_RECLAIMS_PER_HOUR).exp())).abs() < 1e-12);
    }
}
