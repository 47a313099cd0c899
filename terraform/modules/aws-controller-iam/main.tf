# The gpupool controller's IAM policy: exactly the API calls gpupool makes (src/contract.rs),
# each scoped as tightly as the API allows. tests/terraform_contract.py fails if an action is
# added here that the controller does not call, or if the controller calls one not granted.
#
#   read (Describe*, GetMetricData, spot prices)  -> "*": these APIs have no resource-level
#                                                    permissions.
#   group writes (SetDesiredCapacity, Terminate,  -> only groups tagged gpupool.io/enabled=true:
#   PutWarmPool, CompleteLifecycleAction)            a group is opted in by its tag, so gpupool
#                                                    cannot touch any other group in the account.
#   ec2:TerminateInstances (warm-pool members)    -> only instances tagged gpupool.io/enabled=true.
#   ec2:CreateTags/DeleteTags (VM-only drain mark)-> only instances tagged gpupool.io/enabled=true,
#                                                    and only the tag key gpupool.io/drain-deadline.
#   PutMetricData                                 -> only the "gpupool" CloudWatch namespace.
#   SQS (Receive, Delete, GetQueueAttributes/Url) -> only the interruption queues given.
#   SQS depth of signal queues (GetQueueAttributes/Url) -> only the signal queues given; read-only.
#   kms:Decrypt                                   -> only the given customer managed keys of the
#                                                    interruption queues, only through SQS.
#
# The policy is attached to whichever roles are enabled: the Kubernetes role (IRSA and/or EKS
# Pod Identity trust) and the EC2 instance role for VM-only mode.

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id

  # Part of gpupool's contract: the namespace gpupool publishes its metrics to.
  cloudwatch_namespace = "gpupool"

  # Every Auto Scaling group of this account (any region); the tag condition narrows it down.
  account_asg_arns = "arn:${local.partition}:autoscaling:*:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/*"

  # oidc.eks.<region>.amazonaws.com/id/<id>: the prefix of the IRSA condition keys.
  oidc_issuer = var.oidc_provider_arn == null ? "" : element(split("oidc-provider/", var.oidc_provider_arn), 1)

  create_kubernetes_role = var.enable_irsa || var.enable_pod_identity
}

data "aws_iam_policy_document" "controller" {
  statement {
    sid    = "Read"
    effect = "Allow"
    actions = [
      "autoscaling:DescribeAutoScalingGroups",
      # Whether an instance left to a spot reclaim is still in a group (the sweep).
      "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLifecycleHooks",
      "autoscaling:DescribeScalingActivities",
      "autoscaling:DescribeWarmPool",
      "cloudwatch:GetMetricData",
      # The AMI's block device mappings: the volumes a stopped warm-pool instance pays for.
      "ec2:DescribeImages",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeInstances",
      "ec2:DescribeLaunchTemplateVersions",
      "ec2:DescribeSpotPriceHistory",
      # Live on-demand prices per region (Price List Query API); no resource-level permissions.
      "pricing:GetProducts",
    ]
    resources = ["*"]
  }

  statement {
    sid    = "WriteOptedInGroups"
    effect = "Allow"
    actions = [
      "autoscaling:CompleteLifecycleAction",
      # A drained spot instance in its first hour leaves its group (with a decrement) for the
      # reclaim, which AWS does not bill.
      "autoscaling:DetachInstances",
      "autoscaling:PutWarmPool",
      "autoscaling:SetDesiredCapacity",
      "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    resources = [local.account_asg_arns]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/gpupool.io/enabled"
      values   = ["true"]
    }
  }

  # Warm-pool members cannot be removed with TerminateInstanceInAutoScalingGroup; the Auto
  # Scaling user guide ("Warm pools", "Terminate instances in a warm pool") has them terminated
  # with EC2 TerminateInstances. The same call ends a spot instance gpupool detached for the
  # reclaim when the reclaim did not come. Only instances of opted-in groups: the group's
  # gpupool.io/enabled tag propagates to its instances at launch.
  statement {
    sid       = "TerminateOptedInWarmPoolInstances"
    effect    = "Allow"
    actions   = ["ec2:TerminateInstances"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/gpupool.io/enabled"
      values   = ["true"]
    }
  }

  # The VM-only drain mark: gpupool tags an instance it drains with gpupool.io/drain-deadline
  # (the deadline, Unix seconds) so a restart that lost its state file resumes the drain, and
  # removes the tag when it gives the drain up. Only instances of opted-in groups, and only that
  # one tag key: ForAllValues:StringEquals on aws:TagKeys (IAM User Guide, "Controlling access
  # during AWS requests" / condition key aws:TagKeys; EC2 User Guide, "Grant permission to tag
  # Amazon EC2 resources") — plus Null aws:TagKeys = false, because ForAllValues is also true for
  # a request that names no tag key at all, and a DeleteTags naming none deletes every tag of the
  # instance (EC2 API reference, DeleteTags: "If you omit this parameter, we delete all
  # user-defined tags for the specified resources").
  statement {
    sid       = "MarkDrainsOnOptedInInstances"
    effect    = "Allow"
    actions   = ["ec2:CreateTags", "ec2:DeleteTags"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/gpupool.io/enabled"
      values   = ["true"]
    }
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "aws:TagKeys"
      values   = ["gpupool.io/drain-deadline"]
    }
    condition {
      test     = "Null"
      variable = "aws:TagKeys"
      values   = ["false"]
    }
  }

  statement {
    sid       = "PublishMetricsToGpupoolNamespace"
    effect    = "Allow"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [local.cloudwatch_namespace]
    }
  }

  statement {
    sid    = "ConsumeInterruptionQueues"
    effect = "Allow"
    actions = [
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
      "sqs:ReceiveMessage",
    ]
    resources = var.queue_arns
  }

  # Queues gpupool only measures (pools[].signals[].sqs: ApproximateNumberOfMessages[NotVisible]
  # through GetQueueAttributes, GetQueueUrl for a queue given by name). Read-only: gpupool must
  # never receive or delete the messages of a queue that belongs to the workload.
  dynamic "statement" {
    for_each = length(var.signal_queue_arns) > 0 ? [1] : []
    content {
      sid       = "ReadSignalQueueDepth"
      effect    = "Allow"
      actions   = ["sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
      resources = var.signal_queue_arns
    }
  }

  # An interruption queue encrypted with a customer managed KMS key: SQS decrypts each message
  # for the consumer with the consumer's permission, so ReceiveMessage needs kms:Decrypt on the
  # key (Amazon SQS Developer Guide, "Amazon SQS key management": consumers need kms:Decrypt;
  # AWS CDK's Queue.grantConsumeMessages adds it likewise). Only through SQS (kms:ViaService).
  # Not needed with SSE-SQS (the node-group module's default) or the AWS managed key.
  dynamic "statement" {
    for_each = length(var.queue_kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "DecryptInterruptionQueueMessages"
      effect    = "Allow"
      actions   = ["kms:Decrypt"]
      resources = var.queue_kms_key_arns
      condition {
        test     = "StringLike"
        variable = "kms:ViaService"
        values   = ["sqs.*.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_policy" "controller" {
  name        = var.name
  path        = "/gpupool/"
  description = "gpupool controller: scale GPU Auto Scaling groups tagged gpupool.io/enabled=true, read interruption queues, publish metrics"
  policy      = data.aws_iam_policy_document.controller.json
  tags        = var.tags
}

# ---------------------------------------------------------------------------------------------
# Kubernetes role: IRSA and/or EKS Pod Identity
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "kubernetes_trust" {
  count = local.create_kubernetes_role ? 1 : 0

  # IRSA: the cluster's OIDC provider vouches for the pod's projected service-account token;
  # only gpupool's own service account, and only tokens minted for STS.
  dynamic "statement" {
    for_each = var.enable_irsa ? [1] : []
    content {
      sid     = "IRSA"
      effect  = "Allow"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [var.oidc_provider_arn]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:sub"
        values   = ["system:serviceaccount:${var.namespace}:${var.service_account}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }

  # EKS Pod Identity: the EKS auth service assumes the role on the pod's behalf and tags the
  # session (cluster, namespace, service account); which pod gets it is set by the association.
  dynamic "statement" {
    for_each = var.enable_pod_identity ? [1] : []
    content {
      sid     = "EKSPodIdentity"
      effect  = "Allow"
      actions = ["sts:AssumeRole", "sts:TagSession"]
      principals {
        type        = "Service"
        identifiers = ["pods.eks.amazonaws.com"]
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }
}

resource "aws_iam_role" "kubernetes" {
  count = local.create_kubernetes_role ? 1 : 0

  name                 = var.name
  description          = "gpupool controller in Kubernetes (${var.namespace}/${var.service_account})"
  assume_role_policy   = data.aws_iam_policy_document.kubernetes_trust[0].json
  permissions_boundary = var.permissions_boundary_arn
  max_session_duration = 3600
  tags                 = var.tags

  lifecycle {
    precondition {
      condition     = !var.enable_irsa || var.oidc_provider_arn != null
      error_message = "enable_irsa needs oidc_provider_arn."
    }
  }
}

resource "aws_iam_role_policy_attachment" "kubernetes" {
  count = local.create_kubernetes_role ? 1 : 0

  role       = aws_iam_role.kubernetes[0].name
  policy_arn = aws_iam_policy.controller.arn
}

resource "aws_eks_pod_identity_association" "controller" {
  count = var.enable_pod_identity && var.pod_identity_cluster_name != null ? 1 : 0

  cluster_name    = var.pod_identity_cluster_name
  namespace       = var.namespace
  service_account = var.service_account
  role_arn        = aws_iam_role.kubernetes[0].arn
  tags            = var.tags
}

# ---------------------------------------------------------------------------------------------
# VM-only mode: EC2 instance profile for the instance running gpupool under systemd
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "instance_trust" {
  count = var.enable_instance_profile ? 1 : 0

  statement {
    sid     = "EC2AssumeRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  count = var.enable_instance_profile ? 1 : 0

  name                 = "${var.name}-instance"
  description          = "gpupool controller running on EC2 (VM-only mode)"
  assume_role_policy   = data.aws_iam_policy_document.instance_trust[0].json
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags
}

resource "aws_iam_role_policy_attachment" "instance" {
  count = var.enable_instance_profile ? 1 : 0

  role       = aws_iam_role.instance[0].name
  policy_arn = aws_iam_policy.controller.arn
}

resource "aws_iam_instance_profile" "instance" {
  count = var.enable_instance_profile ? 1 : 0

  name = "${var.name}-instance"
  role = aws_iam_role.instance[0].name
  tags = var.tags
}
