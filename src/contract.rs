//! The names gpupool shares with the outside world: tag and label keys, EventBridge
//! detail-types, IAM actions, GCP permissions, Kubernetes annotations.
//!
//! This module is the single source of truth. Providers use these constants, and
//! `gpupool print-contract` prints them as JSON so tests/terraform_contract.py can check that the
//! Terraform modules create exactly these tags, rules and permissions — the two cannot drift.

use serde::Serialize;

/// AWS tag / Kubernetes label key naming the pool a group or node belongs to.
pub const TAG_POOL: &str = "gpupool.io/pool";
/// AWS tag key that must be `true` on every group gpupool may act on (IAM conditions use it).
pub const TAG_ENABLED: &str = "gpupool.io/enabled";
/// AWS tag / Kubernetes node label set by an instance once its model cache is warm, with the
/// value `<model>@<version>`.
pub const TAG_MODEL_CACHE: &str = "gpupool.io/model-cache";

/// EC2 tag / GCP label marking a VM-only drain in progress: the drain deadline, Unix seconds
/// (`gpupool_provider::encode_drain_deadline`). Set by gpupool when it starts a VM-only drain,
/// removed when it gives the drain up; a new process resumes the drain it finds marked.
pub const TAG_DRAIN_DEADLINE: &str = gpupool_provider::DRAIN_DEADLINE_TAG;
pub const GCP_LABEL_DRAIN_DEADLINE: &str = gpupool_provider::DRAIN_DEADLINE_LABEL;

/// GCP label keys: GCP allows only lowercase letters, digits, `_` and `-` in label keys and
/// values, so `gpupool.io/pool` becomes `gpupool-io-pool` (every `.` and `/` becomes `-`).
pub const GCP_LABEL_POOL: &str = "gpupool-io-pool";
pub const GCP_LABEL_ENABLED: &str = "gpupool-io-enabled";
pub const GCP_LABEL_MODEL_CACHE: &str = "gpupool-io-model-cache";

/// Pod/node annotation: never disrupt this pod's node voluntarily.
pub const ANNOTATION_DO_NOT_DISRUPT: &str = "gpupool.io/do-not-disrupt";
/// Set by gpupool on a node it drains (with the cordon): the drain's deadline, Unix seconds.
/// A new leader (failover, restart) finds it and carries the drain on.
pub const ANNOTATION_DRAIN_DEADLINE: &str = "gpupool.io/drain-deadline";
/// Cluster Autoscaler's annotation, honoured the same way when `"false"`.
pub const ANNOTATION_CA_SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
/// Karpenter's opt-out (v1, "Disruption" docs: `karpenter.sh/do-not-disrupt: "true"` on a pod
/// blocks voluntary disruption of its node; on a node, of that node), honoured the same way so
/// workloads marked for Karpenter keep their protection under gpupool.
pub const ANNOTATION_KARPENTER_DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
/// Node annotation / tag: Cluster Autoscaler's scale-down opt-out, honoured on nodes.
pub const ANNOTATION_CA_SCALE_DOWN_DISABLED: &str =
    "cluster-autoscaler.kubernetes.io/scale-down-disabled";

/// The status ConfigMap the leader writes in its own namespace (Cluster Autoscaler's is
/// `cluster-autoscaler-status`): `status` (a table) and `status.json` (as `/status`).
pub const STATUS_CONFIGMAP: &str = "gpupool-status";
/// On the status ConfigMap: when it was last written (CA: `cluster-autoscaler.kubernetes.io/
/// last-updated`).
pub const ANNOTATION_STATUS_UPDATED: &str = "gpupool.io/last-updated";

/// CloudWatch namespace gpupool publishes to (IAM condition `cloudwatch:namespace`).
pub const CLOUDWATCH_NAMESPACE: &str = "gpupool";

/// EventBridge event sources and detail-types the interruption queue receives.
pub const EVENTBRIDGE_RULES: &[(&str, &str)] = &[
    ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
    ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
    ("aws.ec2", "EC2 Instance State-change Notification"),
    ("aws.health", "AWS Health Event"),
];

/// IAM actions gpupool calls that only read.
pub const AWS_IAM_READ_ACTIONS: &[&str] = &[
    "autoscaling:DescribeAutoScalingGroups",
    // Whether an instance left to a spot reclaim is still in a group (the sweep of those the
    // reclaim did not take); no resource-level permissions exist for it.
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLifecycleHooks",
    "autoscaling:DescribeScalingActivities",
    "autoscaling:DescribeWarmPool",
    "cloudwatch:GetMetricData",
    // The AMI's block device mappings: a stopped warm-pool instance's volumes
    // (gpupool_aws::ebs); no resource-level permissions exist for Describe* actions.
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeInstances",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:DescribeSpotPriceHistory",
    // Live on-demand prices per region (gpupool_aws::price_list); no resource-level
    // permissions exist for it (Service Authorization Reference, AWS Price List).
    "pricing:GetProducts",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
];

/// IAM actions that change a group; the policy scopes them to resources tagged
/// `gpupool.io/enabled = true` with an `aws:ResourceTag` condition.
pub const AWS_IAM_GROUP_WRITE_ACTIONS: &[&str] = &[
    "autoscaling:CompleteLifecycleAction",
    // A drained spot instance under notice in its first hour leaves its group with a decrement
    // and is left to the reclaim, which AWS does not bill (`release_to_reclaim`).
    "autoscaling:DetachInstances",
    "autoscaling:PutWarmPool",
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    // Warm-pool members (TerminateInstanceInAutoScalingGroup refuses them), and a spot instance
    // left to a reclaim that did not come (the sweep); the instances carry the group's
    // propagated gpupool.io/enabled tag, so the same resource-tag condition scopes it.
    "ec2:TerminateInstances",
];

/// Other write actions, scoped by their own resource or condition: `PutMetricData` by the
/// `cloudwatch:namespace` condition, `DeleteMessage` by the interruption queue's ARN.
pub const AWS_IAM_OTHER_WRITE_ACTIONS: &[&str] = &["cloudwatch:PutMetricData", "sqs:DeleteMessage"];

/// EC2 tag writes for the VM-only drain mark ([`TAG_DRAIN_DEADLINE`]): the policy allows them on
/// instances of opted-in groups (`aws:ResourceTag/gpupool.io/enabled = true`) and for that one tag
/// key only (`ForAllValues:StringEquals aws:TagKeys` with `Null aws:TagKeys = false`, so a
/// `DeleteTags` naming no key — which deletes every user tag, EC2 API reference `DeleteTags` — is
/// refused). IAM User Guide, "Controlling access to AWS resources using tags" / "aws:TagKeys":
/// `ForAllValues` alone is also true for a request with no tag keys, hence the `Null` test.
pub const AWS_IAM_DRAIN_MARK_ACTIONS: &[&str] = &["ec2:CreateTags", "ec2:DeleteTags"];

/// GCP IAM permissions for the controller's custom role.
pub const GCP_PERMISSIONS: &[&str] = &[
    "compute.instanceGroupManagers.get",
    "compute.instanceGroupManagers.list",
    "compute.instanceGroupManagers.update",
    "compute.instanceTemplates.get",
    "compute.instances.delete",
    "compute.instances.get",
    "compute.instances.list",
    // The VM-only drain mark (`instances.setLabels`, after an `instances.get` for the label
    // fingerprint). GCP IAM has no condition on the label key, so the role allows any label of
    // the project's VMs; the controller writes only GCP_LABEL_DRAIN_DEADLINE.
    "compute.instances.setLabels",
    "compute.machineTypes.get",
    "compute.regionOperations.get",
    "compute.zoneOperations.get",
    "compute.zoneOperations.list",
];

/// Kubernetes RBAC rules the controller needs: (apiGroup, resource, verbs), each for a call the
/// code makes and nothing more:
/// - pods, nodes `list` + `watch`: kube-runtime watchers behind the reflectors (src/kube/watch.rs)
///   and the drain's pod list by `spec.nodeName` (src/kube/drain.rs); no single-object `get`;
/// - nodes `patch`: cordon + drain-deadline annotation (src/kube/drain.rs);
/// - pods/eviction `create`: the Eviction API (src/kube/drain.rs);
/// - events.k8s.io events `create` + `patch`: kube-runtime 5's `Recorder` writes
///   `events.k8s.io/v1` Events only, patching a repeated one into a series (kube-runtime
///   src/events.rs); no core/v1 Events;
/// - leases `get`, `create`, `update` (a replace): leader election (src/kube/lease.rs). The
///   manifests limit `get`/`update` to gpupool's own Lease by name; `create` cannot be limited so;
/// - configmaps `patch` + `create`: the status ConfigMap `gpupool-status` (src/kube/status_map.rs),
///   in the controller's namespace; `patch` limited to it by name, `create` cannot be;
/// - configmaps `get` + `update` (+ the same `create`): the state ConfigMap `gpupool-state`
///   (src/state/configmap.rs: read on start and failover, replaced with the resourceVersion
///   read), limited to it by name.
pub const KUBE_RBAC: &[(&str, &str, &[&str])] = &[
    ("", "pods", &["list", "watch"]),
    ("", "nodes", &["list", "watch", "patch"]),
    ("", "pods/eviction", &["create"]),
    ("events.k8s.io", "events", &["create", "patch"]),
    (
        "coordination.k8s.io",
        "leases",
        &["get", "create", "update"],
    ),
    ("", "configmaps", &["create", "get", "patch", "update"]),
];

#[derive(Serialize)]
struct AwsContract {
    tags: Tags,
    eventbridge: Vec<EventRule>,
    cloudwatch_namespace: &'static str,
    iam_read_actions: &'static [&'static str],
    iam_group_write_actions: &'static [&'static str],
    iam_other_write_actions: &'static [&'static str],
    iam_drain_mark_actions: &'static [&'static str],
    write_condition_tag: &'static str,
    drain_mark_tag: &'static str,
}

#[derive(Serialize)]
struct Tags {
    pool: &'static str,
    enabled: &'static str,
    model_cache: &'static str,
}

#[derive(Serialize)]
struct EventRule {
    source: &'static str,
    detail_type: &'static str,
}

#[derive(Serialize)]
struct GcpContract {
    labels: Tags,
    drain_mark_label: &'static str,
    permissions: &'static [&'static str],
}

#[derive(Serialize)]
struct KubeRule {
    api_group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
}

#[derive(Serialize)]
struct KubeContract {
    labels: Tags,
    annotations: Vec<&'static str>,
    rbac: Vec<KubeRule>,
}

#[derive(Serialize)]
struct Contract {
    aws: AwsContract,
    gcp: GcpContract,
    kubernetes: KubeContract,
}

/// The whole contract as JSON, as printed by `gpupool print-contract`.
pub fn contract_json() -> serde_json::Value {
    let c = Contract {
        aws: AwsContract {
            tags: Tags {
                pool: TAG_POOL,
                enabled: TAG_ENABLED,
                model_cache: TAG_MODEL_CACHE,
            },
            eventbridge: EVENTBRIDGE_RULES
                .iter()
                .map(|&(source, detail_type)| EventRule {
                    source,
                    detail_type,
                })
                .collect(),
            cloudwatch_namespace: CLOUDWATCH_NAMESPACE,
            iam_read_actions: AWS_IAM_READ_ACTIONS,
            iam_group_write_actions: AWS_IAM_GROUP_WRITE_ACTIONS,
            iam_other_write_actions: AWS_IAM_OTHER_WRITE_ACTIONS,
            iam_drain_mark_actions: AWS_IAM_DRAIN_MARK_ACTIONS,
            write_condition_tag: TAG_ENABLED,
            drain_mark_tag: TAG_DRAIN_DEADLINE,
        },
        gcp: GcpContract {
            labels: Tags {
                pool: GCP_LABEL_POOL,
                enabled: GCP_LABEL_ENABLED,
                model_cache: GCP_LABEL_MODEL_CACHE,
            },
            drain_mark_label: GCP_LABEL_DRAIN_DEADLINE,
            permissions: GCP_PERMISSIONS,
        },
        kubernetes: KubeContract {
            labels: Tags {
                pool: TAG_POOL,
                enabled: TAG_ENABLED,
                model_cache: TAG_MODEL_CACHE,
            },
            annotations: vec![
                ANNOTATION_DO_NOT_DISRUPT,
                ANNOTATION_DRAIN_DEADLINE,
                ANNOTATION_CA_SAFE_TO_EVICT,
                ANNOTATION_CA_SCALE_DOWN_DISABLED,
            ],
            rbac: KUBE_RBAC
                .iter()
                .map(|&(api_group, resource, verbs)| KubeRule {
                    api_group,
                    resource,
                    verbs,
                })
                .collect(),
        },
    };
    // Serialising plain structs of strings cannot fail.
    serde_json::to_value(c).expect("contract is plain data")
}

/// The label-value form of `<model>@<version>` (Kubernetes and GCP), defined once in the
/// provider API crate so the GCP provider uses the very same encoding.
pub use gpupool_provider::model_cache_label_value;

/// GCP label form of an AWS-style key: `gpupool.io/pool` → `gpupool-io-pool`.
pub fn gcp_label_key(key: &str) -> String {
    key.chars()
        .map(|c| if c == '.' || c == '/' { '-' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcp_labels_follow_the_documented_mapping() {
        assert_eq!(gcp_label_key(TAG_POOL), GCP_LABEL_POOL);
        assert_eq!(gcp_label_key(TAG_ENABLED), GCP_LABEL_ENABLED);
        assert_eq!(gcp_label_key(TAG_MODEL_CACHE), GCP_LABEL_MODEL_CACHE);
        assert_eq!(gcp_label_key(TAG_DRAIN_DEADLINE), GCP_LABEL_DRAIN_DEADLINE);
    }

    #[test]
    fn model_cache_label_values_are_valid_everywhere() {
        assert_eq!(model_cache_label_value("llama-70b@v3.1"), "llama-70b_v3_1");
        assert_eq!(
            model_cache_label_value("Mixtral@2024-01"),
            "mixtral_2024-01"
        );
    }

    #[test]
    fn iam_lists_are_sorted_and_disjoint() {
        for list in [
            AWS_IAM_READ_ACTIONS,
            AWS_IAM_GROUP_WRITE_ACTIONS,
            AWS_IAM_OTHER_WRITE_ACTIONS,
            AWS_IAM_DRAIN_MARK_ACTIONS,
        ] {
            let mut sorted = list.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, list, "keep IAM lists sorted so diffs stay readable");
        }
        for a in AWS_IAM_GROUP_WRITE_ACTIONS
            .iter()
            .chain(AWS_IAM_DRAIN_MARK_ACTIONS)
        {
            assert!(!AWS_IAM_READ_ACTIONS.contains(a));
        }
        for a in AWS_IAM_DRAIN_MARK_ACTIONS {
            assert!(!AWS_IAM_GROUP_WRITE_ACTIONS.contains(a));
            assert!(!AWS_IAM_OTHER_WRITE_ACTIONS.contains(a));
        }
    }

    #[test]
    fn contract_json_has_every_section() {
        let v = contract_json();
        assert_eq!(v["aws"]["tags"]["pool"], TAG_POOL);
        assert_eq!(
            v["aws"]["eventbridge"].as_array().unwrap().len(),
            EVENTBRIDGE_RULES.len()
        );
        assert_eq!(v["gcp"]["labels"]["pool"], GCP_LABEL_POOL);
        assert!(v["kubernetes"]["rbac"].as_array().unwrap().len() >= 5);
    }
}
