//! The Compute Engine calls gpupool makes, through Google's official Rust client
//! (`google-cloud-compute-v1`), each paginated fully and mapped onto [`ProviderError`].
//!
//! Every call here is covered by `GCP_PERMISSIONS` in the root crate's `src/contract.rs`:
//! `instanceGroupManagers.{get,list,update}` (resize, patch, deleteInstances, startInstances and
//! resumeInstances all require `compute.instanceGroupManagers.update`),
//! `instanceTemplates.get`, `instances.{list,delete,get,setLabels}`, `zoneOperations.{get,list}`,
//! `regionOperations.get`.

use crate::util::{last_segment, segment_after};
use google_cloud_compute_v1::client::{
    InstanceGroupManagers, InstanceTemplates, Instances, RegionInstanceGroupManagers,
    RegionOperations, ZoneOperations,
};
use google_cloud_compute_v1::model::{
    Instance, InstanceGroupManager, InstanceGroupManagersDeleteInstancesRequest,
    InstanceGroupManagersResumeInstancesRequest, InstanceGroupManagersStartInstancesRequest,
    InstanceTemplate, InstancesSetLabelsRequest, ManagedInstance, Operation,
    RegionInstanceGroupManagersDeleteInstancesRequest,
    RegionInstanceGroupManagersResumeInstancesRequest,
    RegionInstanceGroupManagersStartInstancesRequest,
};
use google_cloud_gax::error::rpc::StatusDetails;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use gpupool_provider::ProviderError;
use std::time::Duration;

/// Most items one list page asks for (Compute's own maximum is 500).
const PAGE_SIZE: u32 = 500;
/// Most pages one listing follows: a bound on a runaway `nextPageToken` loop (500 × 200 =
/// 100,000 items, far beyond any project's MIGs or a group's VMs).
const MAX_PAGES: usize = 200;

/// Where a MIG lives: zonal MIGs are `instanceGroupManagers`, regional ones
/// `regionInstanceGroupManagers`, with the same fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    Zone(String),
    Region(String),
}

/// A MIG as gpupool names it: `zones/<zone>/<name>` or `regions/<region>/<name>` (the tail of its
/// self-link, so the id alone says which API family to call).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupRef {
    pub location: Location,
    pub name: String,
}

impl GroupRef {
    pub fn id(&self) -> String {
        match &self.location {
            Location::Zone(z) => format!("zones/{z}/{}", self.name),
            Location::Region(r) => format!("regions/{r}/{}", self.name),
        }
    }

    pub fn parse(id: &str) -> Option<GroupRef> {
        let mut parts = id.splitn(3, '/');
        let (kind, loc, name) = (parts.next()?, parts.next()?, parts.next()?);
        if loc.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        let location = match kind {
            "zones" => Location::Zone(loc.to_owned()),
            "regions" => Location::Region(loc.to_owned()),
            _ => return None,
        };
        Some(GroupRef {
            location,
            name: name.to_owned(),
        })
    }

    /// From a MIG resource as listed.
    pub fn of(mig: &InstanceGroupManager) -> Option<GroupRef> {
        let name = mig.name.clone()?;
        let location = if let Some(z) = mig.zone.as_deref() {
            Location::Zone(last_segment(z).to_owned())
        } else {
            Location::Region(last_segment(mig.region.as_deref()?).to_owned())
        };
        Some(GroupRef { location, name })
    }
}

/// The clients, one per service, sharing endpoint, credentials and retry settings.
pub struct Compute {
    pub project: String,
    igm: InstanceGroupManagers,
    rigm: RegionInstanceGroupManagers,
    templates: InstanceTemplates,
    instances: Instances,
    zone_ops: ZoneOperations,
    region_ops: RegionOperations,
}

/// Client options common to every service.
pub struct ClientOptions {
    pub endpoint: Option<String>,
    pub credentials: google_cloud_auth::credentials::Credentials,
    pub api_timeout: Duration,
}

macro_rules! build_client {
    ($ty:ty, $name:literal, $o:expr) => {{
        let o: &ClientOptions = $o;
        let mut b = <$ty>::builder()
            // Retry only what AIP-194 calls safe (UNAVAILABLE), at most three attempts within the
            // per-call budget, so one tick never waits minutes on a sick API.
            .with_retry_policy(
                Aip194Strict
                    .with_attempt_limit(3)
                    .with_time_limit(o.api_timeout),
            )
            .with_attempt_timeout(o.api_timeout);
        if let Some(e) = &o.endpoint {
            b = b.with_endpoint(e.clone());
        }
        b.with_credentials(o.credentials.clone())
            .build()
            .await
            .map_err(|source| crate::GcpError::Client {
                client: $name,
                source,
            })?
    }};
}

/// What a failed call becomes. The controller acts on the variant, so the mapping follows the
/// documented Compute error reasons, never the message text.
pub fn api_error(
    call: &'static str,
    target: &str,
    err: google_cloud_compute_v1::Error,
) -> ProviderError {
    let http = err.http_status_code();
    let reasons: Vec<String> = err
        .status()
        .map(|s| {
            s.details
                .iter()
                .filter_map(|d| match d {
                    StatusDetails::ErrorInfo(i) => Some(i.reason.clone()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let has = |r: &str| reasons.iter().any(|x| x == r);
    if http == Some(404) || has("notFound") {
        return ProviderError::NotFound {
            what: target.to_owned(),
        };
    }
    // A rate quota: "a 403 error with the reason rateLimitExceeded" (Compute Engine rate
    // quotas), "403 RATE_LIMIT_EXCEEDED" in the newer ErrorInfo form (Cloud Quotas,
    // "Troubleshoot quota errors") — the client reads `details` when a body has them and the
    // legacy `errors` array only otherwise, so both spellings are checked — or HTTP 429.
    if http == Some(429)
        || has("rateLimitExceeded")
        || has("userRateLimitExceeded")
        || has("RATE_LIMIT_EXCEEDED")
    {
        let retry_after_ms = err
            .http_headers()
            .and_then(|h| h.get("retry-after"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(1000, |s| s * 1000);
        return ProviderError::Throttled { retry_after_ms };
    }
    if has("quotaExceeded") || has("QUOTA_EXCEEDED") {
        return ProviderError::QuotaExceeded {
            what: format!("{call} on {target}"),
        };
    }
    ProviderError::Transient {
        call,
        target: target.to_owned(),
        source: Box::new(err),
    }
}

/// Send a list request page by page, following `nextPageToken` until the listing ends (bounded
/// by [`MAX_PAGES`]), and collect the pages' `$items`. `$req` is the request without paging
/// fields; it is rebuilt for every page.
macro_rules! paginate {
    ($call:expr, $target:expr, $req:expr, $items:ident) => {{
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = $req
                .set_max_results(PAGE_SIZE)
                .set_or_clear_page_token(token.take())
                .send()
                .await
                .map_err(|e| api_error($call, $target, e))?;
            out.extend(page.$items);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
        Err(ProviderError::Transient {
            call: $call,
            target: $target.to_owned(),
            source: format!("more than {MAX_PAGES} pages").into(),
        })
    }};
}

/// A call on the MIG `$g` through the service that owns it: `instanceGroupManagers` for a zonal
/// MIG, `regionInstanceGroupManagers` for a regional one. The two take the same requests through
/// separate client and model types, so the request is written once and expanded for each scope:
/// `$b` is the `$method` builder with project, zone or region and group name set. `send` sends
/// it once; `pages(items)` follows its listing. A request whose types differ between the scopes
/// (deleteInstances' body) gives a zonal and a regional expression.
macro_rules! on_mig {
    (@send $call:expr, $id:expr, $req:expr) => {
        $req.send().await.map_err(|e| api_error($call, $id, e))
    };
    (@pages($items:ident) $call:expr, $id:expr, $req:expr) => {
        paginate!($call, $id, $req, $items)
    };
    ($self:ident, $g:expr, $how:ident $(($items:ident))?, $method:ident, $call:literal,
     |$b:ident| $req:expr) => {
        on_mig!($self, $g, $how $(($items))?, $method, $call, |$b| $req, $req)
    };
    ($self:ident, $g:expr, $how:ident $(($items:ident))?, $method:ident, $call:literal,
     |$b:ident| $zonal:expr, $regional:expr) => {{
        let g: &GroupRef = $g;
        let id = g.id();
        match &g.location {
            Location::Zone(z) => on_mig!(
                @$how $(($items))? concat!("instanceGroupManagers.", $call),
                &id,
                {
                    let $b = $self
                        .igm
                        .$method()
                        .set_project(&$self.project)
                        .set_zone(z)
                        .set_instance_group_manager(&g.name);
                    $zonal
                }
            ),
            Location::Region(r) => on_mig!(
                @$how $(($items))? concat!("regionInstanceGroupManagers.", $call),
                &id,
                {
                    let $b = $self
                        .rigm
                        .$method()
                        .set_project(&$self.project)
                        .set_region(r)
                        .set_instance_group_manager(&g.name);
                    $regional
                }
            ),
        }
    }};
}

impl Compute {
    pub async fn new(project: String, o: &ClientOptions) -> Result<Compute, crate::GcpError> {
        Ok(Compute {
            project,
            igm: build_client!(InstanceGroupManagers, "instanceGroupManagers", o),
            rigm: build_client!(
                RegionInstanceGroupManagers,
                "regionInstanceGroupManagers",
                o
            ),
            templates: build_client!(InstanceTemplates, "instanceTemplates", o),
            instances: build_client!(Instances, "instances", o),
            zone_ops: build_client!(ZoneOperations, "zoneOperations", o),
            region_ops: build_client!(RegionOperations, "regionOperations", o),
        })
    }

    /// The MIGs of a zone (zonal MIGs) or of a region (regional MIGs).
    pub async fn list_migs(
        &self,
        location: &Location,
    ) -> Result<Vec<InstanceGroupManager>, ProviderError> {
        match location {
            Location::Zone(z) => paginate!(
                "instanceGroupManagers.list",
                z,
                self.igm.list().set_project(&self.project).set_zone(z),
                items
            ),
            Location::Region(r) => paginate!(
                "regionInstanceGroupManagers.list",
                r,
                self.rigm.list().set_project(&self.project).set_region(r),
                items
            ),
        }
    }

    pub async fn get_mig(&self, g: &GroupRef) -> Result<InstanceGroupManager, ProviderError> {
        on_mig!(self, g, send, get, "get", |b| b)
    }

    /// A global instance template by URL. Regional templates (`/regions/…/instanceTemplates/`)
    /// need `regionInstanceTemplates.get`, which gpupool's role does not grant: reported as
    /// `InvalidConfig` so the operator sees why the group is skipped.
    pub async fn get_template(&self, url: &str) -> Result<InstanceTemplate, ProviderError> {
        if segment_after(url, "regions").is_some() {
            return Err(ProviderError::InvalidConfig(format!(
                "instance template {url} is regional; gpupool reads global templates only \
                 (compute.instanceTemplates.get)"
            )));
        }
        self.templates
            .get()
            .set_project(&self.project)
            .set_instance_template(last_segment(url))
            .send()
            .await
            .map_err(|e| api_error("instanceTemplates.get", url, e))
    }

    pub async fn list_managed(&self, g: &GroupRef) -> Result<Vec<ManagedInstance>, ProviderError> {
        on_mig!(
            self,
            g,
            pages(managed_instances),
            list_managed_instances,
            "listManagedInstances",
            |b| b
        )
    }

    /// VMs of a zone matching a filter (`labels.gpupool-io-pool = "llama-70b"`).
    pub async fn list_instances(
        &self,
        zone: &str,
        filter: &str,
    ) -> Result<Vec<Instance>, ProviderError> {
        paginate!(
            "instances.list",
            zone,
            self.instances
                .list()
                .set_project(&self.project)
                .set_zone(zone)
                .set_filter(filter),
            items
        )
    }

    /// One VM (`instances.get`): its labels and their fingerprint.
    pub async fn get_instance(&self, zone: &str, name: &str) -> Result<Instance, ProviderError> {
        self.instances
            .get()
            .set_project(&self.project)
            .set_zone(zone)
            .set_instance(name)
            .send()
            .await
            .map_err(|e| api_error("instances.get", name, e))
    }

    /// Replace a VM's labels (`instances.setLabels`). The request carries the *whole* label set
    /// and the `labelFingerprint` read with it (Compute API reference, `instances.setLabels`:
    /// "labelFingerprint: Fingerprint of the previous set of labels for this resource, used to
    /// prevent conflicts. Provide the latest fingerprint value when making a request to add or
    /// change labels"): a write racing another one fails (HTTP 412) instead of dropping the
    /// other writer's labels.
    /// `read` is the VM as last read: its fingerprint goes with the request.
    pub async fn set_labels(
        &self,
        zone: &str,
        name: &str,
        labels: std::collections::HashMap<String, String>,
        read: &Instance,
    ) -> Result<Operation, ProviderError> {
        let mut body = InstancesSetLabelsRequest::new().set_labels(labels);
        body.label_fingerprint = read.label_fingerprint.clone();
        self.instances
            .set_labels()
            .set_project(&self.project)
            .set_zone(zone)
            .set_instance(name)
            .set_body(body)
            .send()
            .await
            .map_err(|e| api_error("instances.setLabels", name, e))
    }

    pub async fn resize(&self, g: &GroupRef, size: i32) -> Result<Operation, ProviderError> {
        on_mig!(self, g, send, resize, "resize", |b| b.set_size(size))
    }

    /// PATCH (JSON merge) of the fields set in `body`: used for `targetStoppedSize` /
    /// `targetSuspendedSize` (the standby pool), which resize cannot change.
    pub async fn patch(
        &self,
        g: &GroupRef,
        body: InstanceGroupManager,
    ) -> Result<Operation, ProviderError> {
        on_mig!(self, g, send, patch, "patch", |b| b.set_body(body))
    }

    /// Delete exactly these VMs (instance URLs) and lower the target size by as many.
    /// `skipInstancesOnValidationError`: a VM already gone (or being deleted) is skipped instead
    /// of failing the whole call — the trait's "already gone is not an error".
    pub async fn delete_instances(
        &self,
        g: &GroupRef,
        urls: Vec<String>,
    ) -> Result<Operation, ProviderError> {
        on_mig!(
            self,
            g,
            send,
            delete_instances,
            "deleteInstances",
            |b| b.set_body(
                InstanceGroupManagersDeleteInstancesRequest::new()
                    .set_instances(urls)
                    .set_skip_instances_on_validation_error(true)
            ),
            b.set_body(
                RegionInstanceGroupManagersDeleteInstancesRequest::new()
                    .set_instances(urls)
                    .set_skip_instances_on_validation_error(true)
            )
        )
    }

    /// Start these stopped VMs (instance URLs): "increases the targetSize and decreases the
    /// targetStoppedSize of the managed instance group by the number of instances that you
    /// start" (`instanceGroupManagers.startInstances`). At most 1000 per request; gpupool never
    /// starts more than a pool's maximum at once.
    pub async fn start_instances(
        &self,
        g: &GroupRef,
        urls: Vec<String>,
    ) -> Result<Operation, ProviderError> {
        on_mig!(
            self,
            g,
            send,
            start_instances,
            "startInstances",
            |b| b.set_body(InstanceGroupManagersStartInstancesRequest::new().set_instances(urls)),
            b.set_body(RegionInstanceGroupManagersStartInstancesRequest::new().set_instances(urls))
        )
    }

    /// Resume these suspended VMs: raises `targetSize` and lowers `targetSuspendedSize` by as
    /// many (`instanceGroupManagers.resumeInstances`).
    pub async fn resume_instances(
        &self,
        g: &GroupRef,
        urls: Vec<String>,
    ) -> Result<Operation, ProviderError> {
        on_mig!(
            self,
            g,
            send,
            resume_instances,
            "resumeInstances",
            |b| b.set_body(InstanceGroupManagersResumeInstancesRequest::new().set_instances(urls)),
            b.set_body(
                RegionInstanceGroupManagersResumeInstancesRequest::new().set_instances(urls)
            )
        )
    }

    /// Re-read an operation from the service that owns it (its `zone` or `region` field).
    pub async fn get_operation(&self, op: &Operation) -> Result<Operation, ProviderError> {
        let name = op.name.clone().unwrap_or_default();
        if let Some(z) = op.zone.as_deref() {
            self.zone_ops
                .get()
                .set_project(&self.project)
                .set_zone(last_segment(z))
                .set_operation(&name)
                .send()
                .await
                .map_err(|e| api_error("zoneOperations.get", &name, e))
        } else if let Some(r) = op.region.as_deref() {
            self.region_ops
                .get()
                .set_project(&self.project)
                .set_region(last_segment(r))
                .set_operation(&name)
                .send()
                .await
                .map_err(|e| api_error("regionOperations.get", &name, e))
        } else {
            Err(ProviderError::Transient {
                call: "operations.get",
                target: name,
                source: "operation names neither a zone nor a region".into(),
            })
        }
    }

    /// Zone operations matching `filter`, oldest first.
    pub async fn list_zone_operations(
        &self,
        zone: &str,
        filter: &str,
    ) -> Result<Vec<Operation>, ProviderError> {
        paginate!(
            "zoneOperations.list",
            zone,
            self.zone_ops
                .list()
                .set_project(&self.project)
                .set_zone(zone)
                .set_filter(filter),
            items
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_round_trip() {
        for id in ["zones/us-central1-a/gpu-spot", "regions/us-central1/gpu-od"] {
            assert_eq!(GroupRef::parse(id).map(|g| g.id()).as_deref(), Some(id));
        }
        for bad in ["gpu", "zones//x", "zones/a", "projects/p/x", "zones/a/b/c"] {
            assert_eq!(GroupRef::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn group_ref_of_a_listed_mig_uses_its_scope() {
        let m = InstanceGroupManager::new()
            .set_name("g")
            .set_zone("https://x/compute/v1/projects/p/zones/us-central1-b");
        assert_eq!(GroupRef::of(&m).unwrap().id(), "zones/us-central1-b/g");
        let m = InstanceGroupManager::new()
            .set_name("g")
            .set_region("https://x/compute/v1/projects/p/regions/us-east4");
        assert_eq!(GroupRef::of(&m).unwrap().id(), "regions/us-east4/g");
    }
}
