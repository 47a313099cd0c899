//! Pure translations from Compute resources to gpupool's provider types.

use crate::catalog::Catalog;
use crate::standby_cost::{DiskSize, TemplateDisk};
use crate::util::{encode_label_value, last_segment, parse_rfc3339, region_of_zone, segment_after};
use google_cloud_compute_v1::model::{
    AttachedDisk, Instance as GceInstance, InstanceTemplate, ManagedInstance,
};
use gpupool_provider::{CapacityType, InstanceTypeName, LifecycleState, Offering, Zone};

/// Error codes that mean "this VM cannot be created here now", classified the way Cluster
/// Autoscaler's gce provider does (`cluster-autoscaler/cloudprovider/gce/autoscaling_gce_client.go`,
/// `isResourcePoolExhaustedErrorCode`: `RESOURCE_POOL_EXHAUSTED`, `ZONE_RESOURCE_POOL_EXHAUSTED`,
/// `ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS`; `isQuotaExceededErrorCode`: any code containing
/// `QUOTA`, e.g. `QUOTA_EXCEEDED`, `REGION_QUOTA_EXCEEDED`). Anything else is not a capacity
/// signal (CA too treats other codes as "other" errors, not out-of-resources).
pub fn capacity_code(code: &str) -> Option<gpupool_provider::LaunchFailure> {
    match code {
        "RESOURCE_POOL_EXHAUSTED"
        | "ZONE_RESOURCE_POOL_EXHAUSTED"
        | "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS" => {
            Some(gpupool_provider::LaunchFailure::InsufficientCapacity)
        }
        c if c.contains("QUOTA") => Some(gpupool_provider::LaunchFailure::QuotaExceeded),
        _ => None,
    }
}

/// `currentAction` of a managed instance, `NONE` when absent.
pub fn current_action(mi: &ManagedInstance) -> &str {
    mi.current_action
        .as_ref()
        .and_then(|a| a.name())
        .unwrap_or("NONE")
}

/// `instanceStatus` of a managed instance, `""` while the VM does not exist yet.
pub fn instance_status(mi: &ManagedInstance) -> &str {
    mi.instance_status
        .as_ref()
        .and_then(|s| s.name())
        .unwrap_or("")
}

/// The MIG is (re)creating this VM and it is not running yet: Cluster Autoscaler's
/// `InstanceCreating` states (`CREATING`, `RECREATING`, `CREATING_WITHOUT_RETRIES`,
/// autoscaling_gce_client.go `FetchMigInstances`) with a status other than `RUNNING` (a VM that
/// runs but is still being verified is a launch making progress, not a stuck one).
pub fn not_yet_created(mi: &ManagedInstance) -> bool {
    matches!(
        current_action(mi),
        "CREATING" | "RECREATING" | "CREATING_WITHOUT_RETRIES"
    ) && instance_status(mi) != "RUNNING"
}

/// Why the MIG cannot create this VM: the first error of its `lastAttempt.errors` while it is
/// still being created, as `(failure, the cloud's words)`. Capacity codes are classified
/// ([`capacity_code`]), capacity codes first; any other code is `Other`, as Cluster Autoscaler
/// takes any error on an instance not running yet for a failed creation
/// (`autoscaling_gce_client.go` `FetchMigInstances`, `isInstanceNotRunningYet`). The Compute API
/// reference (`ManagedInstance.lastAttempt`: "Information about the last attempt to create or
/// delete the instance") gives the errors no time, so the caller dates them by when it first
/// saw them. Once the MIG succeeds the action leaves `CREATING` and the VM stops counting,
/// whatever `lastAttempt` still says.
pub fn creation_error(mi: &ManagedInstance) -> Option<(gpupool_provider::LaunchFailure, String)> {
    if !not_yet_created(mi) {
        return None;
    }
    let errors = &mi.last_attempt.as_ref()?.errors.as_ref()?.errors;
    let words = |e: &crate::mapping::LastAttemptError| {
        let code = e.code.as_deref().unwrap_or("");
        match e.message.as_deref() {
            Some(m) if !m.is_empty() => format!("{code}: {m}"),
            _ => code.to_owned(),
        }
    };
    errors
        .iter()
        .find_map(|e| Some((capacity_code(e.code.as_deref()?)?, words(e))))
        .or_else(|| {
            errors
                .first()
                .map(|e| (gpupool_provider::LaunchFailure::Other, words(e)))
        })
}

type LastAttemptError =
    google_cloud_compute_v1::model::managed_instance_last_attempt::errors::Errors;

/// What a template says about the VMs its MIG creates.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateShape {
    pub machine_type: String,
    /// `(acceleratorType short name, count)` from `guestAccelerators`.
    pub accelerators: Vec<(String, u32)>,
    pub capacity: CapacityType,
    pub labels: std::collections::BTreeMap<String, String>,
    /// `properties.disks`: what a standby VM of this template is billed for while stopped.
    pub disks: Vec<TemplateDisk>,
}

/// One entry of an instance template's `properties.disks` (Compute API reference,
/// `AttachedDisk`): `type` is `SCRATCH` (Local SSD) or `PERSISTENT`, "If not specified, the
/// default is PERSISTENT"; a disk is created from `initializeParams` or attached by `source`
/// ("mutually exclusive"); `initializeParams.diskSizeGb` (int64, a JSON string), `diskType`,
/// `sourceImage`/`sourceSnapshot` and `replicaZones` (a regional disk) say what is created.
pub fn template_disk(d: &AttachedDisk) -> TemplateDisk {
    if d.r#type.as_ref().and_then(|t| t.name()) == Some("SCRATCH") {
        return TemplateDisk::LocalSsd;
    }
    let Some(init) = d.initialize_params.as_ref() else {
        return if d.source.is_some() {
            TemplateDisk::Existing
        } else {
            // Neither created nor attached: a malformed entry. No type, so it prices as
            // unknown (`Unknown::NoDiskType`), never as free.
            TemplateDisk::Created {
                disk_type: None,
                size: DiskSize::Default,
            }
        };
    };
    if !init.replica_zones.is_empty() {
        return TemplateDisk::Regional;
    }
    let size = match init.disk_size_gb {
        Some(gb) => DiskSize::Gb(gb),
        None if init.source_image.is_some() || init.source_snapshot.is_some() => {
            DiskSize::FromSource
        }
        None => DiskSize::Default,
    };
    TemplateDisk::Created {
        // Templates give the short name; a URL is tolerated (its last segment).
        disk_type: init
            .disk_type
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| last_segment(t).to_owned()),
        size,
    }
}

pub fn template_shape(t: &InstanceTemplate) -> Option<TemplateShape> {
    let p = t.properties.as_ref()?;
    let machine_type = last_segment(p.machine_type.as_deref()?).to_owned();
    let accelerators = p
        .guest_accelerators
        .iter()
        .filter_map(|a| {
            let ty = last_segment(a.accelerator_type.as_deref()?).to_owned();
            Some((ty, u32::try_from(a.accelerator_count.unwrap_or(0)).ok()?))
        })
        .collect();
    // SPOT is `scheduling.provisioningModel`; the older `preemptible: true` means the same
    // reclaimable capacity with a 24 h cap.
    let spot = p.scheduling.as_ref().is_some_and(|s| {
        s.provisioning_model.as_ref().and_then(|m| m.name()) == Some("SPOT")
            || s.preemptible == Some(true)
    });
    Some(TemplateShape {
        machine_type,
        accelerators,
        capacity: if spot {
            CapacityType::Spot
        } else {
            CapacityType::OnDemand
        },
        labels: p
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        disks: p.disks.iter().map(template_disk).collect(),
    })
}

/// The offerings of a MIG: its template's shape in each of its zones, priced from the table.
/// Zones the table has no price for are left out (logged by the caller).
pub fn offerings(
    catalog: &Catalog,
    shape: &TemplateShape,
    zones: &[String],
) -> (Vec<Offering>, Vec<String>) {
    let mut out = Vec::new();
    let mut unpriced = Vec::new();
    for zone in zones {
        let region = region_of_zone(zone);
        match catalog.price(
            &shape.machine_type,
            &shape.accelerators,
            region,
            shape.capacity,
        ) {
            Some((instance_type, price)) => out.push(Offering {
                instance_type,
                capacity_type: shape.capacity,
                zone: Zone::new(zone.clone()),
                price_per_hour: price.into(),
                interruption_risk_per_hour: catalog
                    .interruption_risk_per_hour(shape.capacity, zone),
                available: true,
            }),
            None => unpriced.push(zone.clone()),
        }
    }
    (out, unpriced)
}

/// The offering name instances of this shape carry (same as [`Catalog::price`] gives).
pub fn instance_type_name(
    catalog: &Catalog,
    shape: &TemplateShape,
    zone: &str,
) -> InstanceTypeName {
    catalog
        .price(
            &shape.machine_type,
            &shape.accelerators,
            region_of_zone(zone),
            shape.capacity,
        )
        .map(|(t, _)| t.name)
        .unwrap_or_else(|| InstanceTypeName::new(shape.machine_type.clone()))
}

/// Lifecycle state of a managed instance from `currentAction` and `instanceStatus`
/// (enum values as documented for `instanceGroupManagers.listManagedInstances`).
///
/// Stopped/suspended VMs with no action pending are the standby pool (`Warm`). A VM the MIG is
/// starting or resuming is `Starting`. A VM that is being created, or is running but not yet
/// verified, is `Launching`; the caller re-labels the surplus over the running target as
/// `Warming` (they are new standby VMs in their initial delay).
pub fn lifecycle(mi: &ManagedInstance) -> LifecycleState {
    let action = current_action(mi);
    let status = instance_status(mi);
    match action {
        "DELETING" | "ABANDONING" => return LifecycleState::Terminating,
        "STARTING" | "RESUMING" => return LifecycleState::Starting,
        // stopInstances/suspendInstances, or a standby VM at the end of its initial delay.
        "STOPPING" | "SUSPENDING" => return LifecycleState::Warming,
        "CREATING" | "CREATING_WITHOUT_RETRIES" | "RECREATING" | "VERIFYING" => {
            return LifecycleState::Launching;
        }
        _ => {}
    }
    match status {
        "STOPPED" | "SUSPENDED" | "TERMINATED" => LifecycleState::Warm,
        "STOPPING" | "SUSPENDING" | "PENDING_STOP" => LifecycleState::Warming,
        "RUNNING" => LifecycleState::Ready,
        "DEPROVISIONING" => LifecycleState::Terminating,
        // PROVISIONING, STAGING, PENDING, REPAIRING, or not yet created.
        _ => LifecycleState::Launching,
    }
}

/// The zone of a managed instance, from its instance URL.
pub fn instance_zone(mi: &ManagedInstance) -> Option<String> {
    segment_after(mi.instance.as_deref()?, "zones").map(str::to_owned)
}

/// Details only the VM itself carries: creation time, model-cache label, address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VmDetails {
    pub created_ms: Option<i64>,
    pub model_cache_label: Option<String>,
    pub private_ip: Option<String>,
    /// The drain-deadline label as found (decoded by the provider).
    pub drain_deadline_label: Option<String>,
}

pub fn vm_details(vm: &GceInstance, model_cache_key: &str) -> VmDetails {
    VmDetails {
        created_ms: vm
            .creation_timestamp
            .as_deref()
            .and_then(parse_rfc3339)
            .map(|t| t.millis()),
        model_cache_label: vm.labels.get(model_cache_key).cloned(),
        drain_deadline_label: vm
            .labels
            .get(gpupool_provider::DRAIN_DEADLINE_LABEL)
            .cloned(),
        private_ip: vm
            .network_interfaces
            .iter()
            .find_map(|n| n.network_ip.clone()),
    }
}

/// A VM's labels with the drain mark set to `deadline` (`Some`) or removed (`None`); every
/// other label kept as read, since `instances.setLabels` replaces the whole set. `None` when
/// nothing would change (no call needed).
pub fn with_drain_mark(
    labels: &std::collections::HashMap<String, String>,
    deadline: Option<gpupool_provider::Timestamp>,
) -> Option<std::collections::HashMap<String, String>> {
    let key = gpupool_provider::DRAIN_DEADLINE_LABEL;
    let want = deadline.map(gpupool_provider::encode_drain_deadline);
    if labels.get(key) == want.as_ref() {
        return None;
    }
    let mut out = labels.clone();
    match want {
        Some(v) => out.insert(key.to_owned(), v),
        None => out.remove(key),
    };
    Some(out)
}

/// The model-cache string an instance reports. Labels hold the encoded form
/// (`llama-70b_v3`); when it matches the pool's configured `<model>@<version>`, report that
/// string so the planner's drift check compares like with like; otherwise the raw label (it
/// differs from the expected value either way, which is what drift detection needs).
pub fn model_cache(label: Option<&str>, expected: Option<&str>) -> Option<String> {
    let label = label?;
    match expected {
        Some(e) if encode_label_value(e) == label => Some(e.to_owned()),
        _ => Some(label.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_mark_is_set_and_removed_keeping_every_other_label() {
        use gpupool_provider::{DRAIN_DEADLINE_LABEL, Timestamp};
        let base: std::collections::HashMap<String, String> =
            [("gpupool-io-pool".to_owned(), "llama".to_owned())].into();
        let t = Timestamp::from_secs(1_767_225_600);
        let marked = with_drain_mark(&base, Some(t)).expect("a change");
        assert_eq!(marked["gpupool-io-pool"], "llama");
        assert_eq!(marked[DRAIN_DEADLINE_LABEL], "1767225600");
        // Same value again: no call.
        assert_eq!(with_drain_mark(&marked, Some(t)), None);
        // A deadline brought forward overwrites.
        let earlier = with_drain_mark(&marked, Some(t.plus_secs(-60.0))).unwrap();
        assert_eq!(earlier[DRAIN_DEADLINE_LABEL], "1767225540");
        let cleared = with_drain_mark(&marked, None).unwrap();
        assert_eq!(cleared, base);
        assert_eq!(with_drain_mark(&base, None), None);
    }
    use google_cloud_compute_v1::model::{
        AcceleratorConfig, InstanceProperties, Scheduling, managed_instance, scheduling,
    };

    fn template(machine: &str, acc: Option<(&str, i32)>, spot: bool) -> InstanceTemplate {
        let mut p = InstanceProperties::new()
            .set_machine_type(machine)
            .set_labels([("gpupool-io-pool", "llama")]);
        if let Some((ty, n)) = acc {
            p = p.set_guest_accelerators([AcceleratorConfig::new()
                .set_accelerator_type(ty)
                .set_accelerator_count(n)]);
        }
        if spot {
            p = p.set_scheduling(
                Scheduling::new().set_provisioning_model(scheduling::ProvisioningModel::Spot),
            );
        }
        InstanceTemplate::new().set_properties(p)
    }

    #[test]
    fn template_shape_reads_machine_gpus_and_provisioning() {
        let s = template_shape(&template(
            "n1-standard-8",
            Some(("nvidia-tesla-t4", 1)),
            true,
        ))
        .expect("shape");
        assert_eq!(s.machine_type, "n1-standard-8");
        assert_eq!(s.accelerators, vec![("nvidia-tesla-t4".to_owned(), 1)]);
        assert_eq!(s.capacity, CapacityType::Spot);
        assert_eq!(
            s.labels.get("gpupool-io-pool").map(String::as_str),
            Some("llama")
        );
        let s = template_shape(&template("a2-highgpu-1g", None, false)).expect("shape");
        assert_eq!(s.capacity, CapacityType::OnDemand);
    }

    #[test]
    fn template_disks_are_read_as_the_api_states_them() {
        use crate::standby_cost::{DiskSize, TemplateDisk as D};
        use google_cloud_compute_v1::model::{AttachedDiskInitializeParams as Init, attached_disk};
        let created = |init: Init| AttachedDisk::new().set_initialize_params(init);
        let cases = [
            (
                created(Init::new().set_disk_type("pd-ssd").set_disk_size_gb(200)),
                D::Created {
                    disk_type: Some("pd-ssd".into()),
                    size: DiskSize::Gb(200),
                },
            ),
            (
                created(
                    Init::new()
                        .set_disk_type("projects/p/zones/z/diskTypes/pd-balanced")
                        .set_source_image("projects/debian-cloud/global/images/family/debian-12"),
                ),
                D::Created {
                    disk_type: Some("pd-balanced".into()),
                    size: DiskSize::FromSource,
                },
            ),
            (
                created(Init::new().set_disk_type("pd-standard")),
                D::Created {
                    disk_type: Some("pd-standard".into()),
                    size: DiskSize::Default,
                },
            ),
            (
                created(Init::new().set_disk_size_gb(-5)),
                D::Created {
                    disk_type: None,
                    size: DiskSize::Gb(-5),
                },
            ),
            (
                created(Init::new().set_disk_type("local-ssd"))
                    .set_type(attached_disk::Type::Scratch),
                D::LocalSsd,
            ),
            (
                created(
                    Init::new()
                        .set_disk_type("pd-balanced")
                        .set_replica_zones(["zones/us-central1-a", "zones/us-central1-b"]),
                ),
                D::Regional,
            ),
            (
                AttachedDisk::new().set_source("projects/p/zones/z/disks/weights"),
                D::Existing,
            ),
            (
                AttachedDisk::new(),
                D::Created {
                    disk_type: None,
                    size: DiskSize::Default,
                },
            ),
        ];
        for (disk, want) in cases {
            assert_eq!(template_disk(&disk), want, "{disk:?}");
        }
    }

    #[test]
    fn offerings_are_priced_per_zone_and_unpriced_zones_reported() {
        let c = Catalog::shipped().unwrap();
        let s = template_shape(&template("g2-standard-8", None, true)).unwrap();
        let (offs, missing) = offerings(
            &c,
            &s,
            &[
                "us-central1-a".into(),
                "us-central1-b".into(),
                "mars-1-a".into(),
            ],
        );
        assert_eq!(offs.len(), 2);
        assert_eq!(missing, vec!["mars-1-a".to_owned()]);
        assert_eq!(offs[0].instance_type.gpu.model, "L4");
        assert!(offs[0].interruption_risk_per_hour > offs[1].interruption_risk_per_hour);
    }

    #[test]
    fn lifecycle_follows_action_then_status() {
        use managed_instance::{CurrentAction as A, InstanceStatus as S};
        let mi = |a: A, s: Option<S>| {
            let m = ManagedInstance::new().set_current_action(a);
            match s {
                Some(s) => m.set_instance_status(s),
                None => m,
            }
        };
        assert_eq!(lifecycle(&mi(A::Creating, None)), LifecycleState::Launching);
        assert_eq!(
            lifecycle(&mi(A::None, Some(S::Running))),
            LifecycleState::Ready
        );
        assert_eq!(
            lifecycle(&mi(A::None, Some(S::Stopped))),
            LifecycleState::Warm
        );
        assert_eq!(
            lifecycle(&mi(A::None, Some(S::Suspended))),
            LifecycleState::Warm
        );
        assert_eq!(
            lifecycle(&mi(A::Starting, Some(S::Stopped))),
            LifecycleState::Starting
        );
        assert_eq!(
            lifecycle(&mi(A::Stopping, Some(S::Running))),
            LifecycleState::Warming
        );
        assert_eq!(
            lifecycle(&mi(A::Deleting, Some(S::Running))),
            LifecycleState::Terminating
        );
        assert_eq!(
            lifecycle(&mi(A::Recreating, Some(S::Terminated))),
            LifecycleState::Launching
        );
    }

    #[test]
    fn capacity_codes_are_the_documented_ones() {
        use gpupool_provider::LaunchFailure::*;
        assert_eq!(
            capacity_code("ZONE_RESOURCE_POOL_EXHAUSTED"),
            Some(InsufficientCapacity)
        );
        assert_eq!(
            capacity_code("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"),
            Some(InsufficientCapacity)
        );
        assert_eq!(
            capacity_code("RESOURCE_POOL_EXHAUSTED"),
            Some(InsufficientCapacity)
        );
        assert_eq!(capacity_code("QUOTA_EXCEEDED"), Some(QuotaExceeded));
        assert_eq!(capacity_code("REGION_QUOTA_EXCEEDED"), Some(QuotaExceeded));
        assert_eq!(capacity_code("RESOURCE_NOT_FOUND"), None);
        assert_eq!(capacity_code("IP_SPACE_EXHAUSTED"), None);
    }

    #[test]
    fn only_vms_still_being_created_are_stuck() {
        use google_cloud_compute_v1::model::managed_instance::{
            CurrentAction as A, InstanceStatus as S,
        };
        use google_cloud_compute_v1::model::{
            ManagedInstanceLastAttempt, managed_instance_last_attempt,
        };
        let errors = |code: &str| {
            ManagedInstanceLastAttempt::new().set_errors(
                managed_instance_last_attempt::Errors::new().set_errors([
                    managed_instance_last_attempt::errors::Errors::new()
                        .set_code("CONDITION_NOT_MET")
                        .set_message("unrelated"),
                    managed_instance_last_attempt::errors::Errors::new()
                        .set_code(code)
                        .set_message("The zone does not have enough resources"),
                ]),
            )
        };
        let stuck = ManagedInstance::new()
            .set_current_action(A::Creating)
            .set_last_attempt(errors("ZONE_RESOURCE_POOL_EXHAUSTED"));
        let (kind, msg) = creation_error(&stuck).expect("stuck");
        assert_eq!(kind, gpupool_provider::LaunchFailure::InsufficientCapacity);
        assert!(
            msg.starts_with("ZONE_RESOURCE_POOL_EXHAUSTED: The zone"),
            "{msg}"
        );
        let quota = ManagedInstance::new()
            .set_current_action(A::Recreating)
            .set_instance_status(S::Terminated)
            .set_last_attempt(errors("QUOTA_EXCEEDED"));
        assert_eq!(
            creation_error(&quota).map(|s| s.0),
            Some(gpupool_provider::LaunchFailure::QuotaExceeded)
        );
        // The same errors on a VM that is running, or no longer being created, are history.
        let running = stuck.clone().set_instance_status(S::Running);
        assert_eq!(creation_error(&running), None);
        let done = stuck.clone().set_current_action(A::None);
        assert_eq!(creation_error(&done), None);
        // Any other error on a VM not created yet is a failure too, unclassified (CA's OTHER).
        let other = ManagedInstance::new()
            .set_current_action(A::Creating)
            .set_last_attempt(errors("PERMISSIONS_ERROR"));
        let (kind, msg) = creation_error(&other).expect("failed");
        assert_eq!(kind, gpupool_provider::LaunchFailure::Other);
        assert!(msg.starts_with("CONDITION_NOT_MET: unrelated"), "{msg}");
        // Still being created with no error: on its way.
        let fresh = ManagedInstance::new().set_current_action(A::Creating);
        assert_eq!(creation_error(&fresh), None);
    }

    #[test]
    fn model_cache_label_maps_back_to_the_configured_string() {
        assert_eq!(
            model_cache(Some("llama-70b_v3"), Some("llama-70b@v3")).as_deref(),
            Some("llama-70b@v3")
        );
        assert_eq!(
            model_cache(Some("llama-70b_v2"), Some("llama-70b@v3")).as_deref(),
            Some("llama-70b_v2")
        );
        assert_eq!(model_cache(None, Some("x@1")), None);
    }
}
