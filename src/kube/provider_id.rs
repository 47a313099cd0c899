//! Node ↔ instance by `spec.providerID`.
//!
//! The kubelet's cloud provider writes `spec.providerID` once, when the node registers:
//! `aws:///us-east-1a/i-0abc…` on EKS (older clusters: `aws://us-east-1a/i-0abc…`) and
//! `gce://project/zone/instance-name` on GKE and kubeadm-on-GCE. It is the only link between a
//! node and the cloud instance behind it that survives renames of the node object.

use crate::model::{Instance, InstanceId};

/// A parsed provider id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderId {
    Aws {
        zone: Option<String>,
        instance: String,
    },
    Gce {
        project: String,
        zone: String,
        name: String,
    },
}

impl ProviderId {
    /// Parse `aws:///zone/i-…`, `aws://zone/i-…`, `aws:///i-…` or `gce://project/zone/name`.
    /// Other schemes (kind, kwok, azure…) are not gpupool's clouds: `None`.
    pub fn parse(s: &str) -> Option<ProviderId> {
        if let Some(rest) = s.strip_prefix("aws://") {
            let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
            return match parts.as_slice() {
                [zone, id] if id.starts_with("i-") => Some(ProviderId::Aws {
                    zone: Some((*zone).to_owned()),
                    instance: (*id).to_owned(),
                }),
                [id] if id.starts_with("i-") => Some(ProviderId::Aws {
                    zone: None,
                    instance: (*id).to_owned(),
                }),
                _ => None,
            };
        }
        if let Some(rest) = s.strip_prefix("gce://") {
            let parts: Vec<&str> = rest.split('/').collect();
            return match parts.as_slice() {
                [project, zone, name]
                    if !project.is_empty() && !zone.is_empty() && !name.is_empty() =>
                {
                    Some(ProviderId::Gce {
                        project: (*project).to_owned(),
                        zone: (*zone).to_owned(),
                        name: (*name).to_owned(),
                    })
                }
                _ => None,
            };
        }
        None
    }

    /// The instance id the providers use: the EC2 instance id, or the GCE instance name.
    pub fn instance_id(&self) -> InstanceId {
        match self {
            ProviderId::Aws { instance, .. } => InstanceId::new(instance.clone()),
            ProviderId::Gce { name, .. } => InstanceId::new(name.clone()),
        }
    }

    pub fn zone(&self) -> Option<&str> {
        match self {
            ProviderId::Aws { zone, .. } => zone.as_deref(),
            ProviderId::Gce { zone, .. } => Some(zone),
        }
    }
}

/// The instance behind a node's provider id: an instance whose own `provider_id` is the same
/// string wins; otherwise the parsed id must equal the instance id (a GCE instance id may also
/// be written `zone/name`, so a trailing `/name` matches too).
pub fn match_instance<'a>(provider_id: &str, instances: &'a [Instance]) -> Option<&'a Instance> {
    if let Some(i) = instances
        .iter()
        .find(|i| i.provider_id.as_deref() == Some(provider_id))
    {
        return Some(i);
    }
    let parsed = ProviderId::parse(provider_id)?;
    let id = parsed.instance_id();
    instances.iter().find(|i| {
        i.id == id
            || i.id
                .as_str()
                .rsplit_once('/')
                .is_some_and(|(_, tail)| tail == id.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CapacityType, LifecycleState, NodeGroupId, Timestamp};

    fn inst(id: &str, provider_id: Option<&str>) -> Instance {
        Instance {
            id: InstanceId::new(id),
            group: NodeGroupId::new("g"),
            instance_type: "p5.48xlarge".into(),
            capacity_type: CapacityType::OnDemand,
            zone: "us-east-1a".into(),
            state: LifecycleState::Ready,
            launched_at: Timestamp(0),
            model_cache: None,
            provider_id: provider_id.map(str::to_owned),
            protected_from_scale_in: false,
            awaiting_lifecycle_hook: false,
            private_ip: None,
            drain_deadline: None,
        }
    }

    #[test]
    fn parses_the_forms_clouds_write() {
        assert_eq!(
            ProviderId::parse("aws:///us-east-1a/i-0abc"),
            Some(ProviderId::Aws {
                zone: Some("us-east-1a".into()),
                instance: "i-0abc".into()
            })
        );
        assert_eq!(
            ProviderId::parse("aws://us-east-1a/i-0abc")
                .unwrap()
                .instance_id(),
            InstanceId::new("i-0abc")
        );
        assert_eq!(ProviderId::parse("aws:///i-0abc").unwrap().zone(), None);
        let g = ProviderId::parse("gce://proj-1/us-central1-b/gpu-mig-x7k2").unwrap();
        assert_eq!(g.instance_id(), InstanceId::new("gpu-mig-x7k2"));
        assert_eq!(g.zone(), Some("us-central1-b"));
        assert_eq!(ProviderId::parse("gce://proj/zone"), None);
        assert_eq!(ProviderId::parse("aws:///us-east-1a/vol-1"), None);
        assert_eq!(ProviderId::parse("kind://docker/kind/kind-worker"), None);
        assert_eq!(ProviderId::parse(""), None);
    }

    #[test]
    fn matches_instances_by_provider_id_then_by_id() {
        let instances = vec![
            inst("i-1", None),
            inst("i-2", Some("aws:///us-east-1b/i-2")),
            inst("us-central1-b/gpu-a", None),
        ];
        assert_eq!(
            match_instance("aws:///us-east-1a/i-1", &instances).map(|i| i.id.as_str()),
            Some("i-1")
        );
        assert_eq!(
            match_instance("aws:///us-east-1b/i-2", &instances).map(|i| i.id.as_str()),
            Some("i-2")
        );
        assert_eq!(
            match_instance("gce://p/us-central1-b/gpu-a", &instances).map(|i| i.id.as_str()),
            Some("us-central1-b/gpu-a")
        );
        assert!(match_instance("aws:///us-east-1a/i-9", &instances).is_none());
        assert!(match_instance("garbage", &instances).is_none());
    }
}
