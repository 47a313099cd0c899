# The node role, created unless var.iam_instance_profile_name names an existing profile.
#
# What the instance itself needs for the model-cache protocol, and nothing else:
#   * complete the launching lifecycle hook of its own pool's groups,
#   * tag instances of its own pool with gpupool.io/model-cache (and no other key),
#   * read the model from its S3 prefix.
# EKS worker permissions come from var.node_policy_arns (AWS managed policies).
#
# The controller's own permissions are a separate module (aws-controller-iam).

locals {
  create_node_role = var.iam_instance_profile_name == null

  model_bucket = split("/", trimprefix(var.model_source_uri, "s3://"))[0]
  model_prefix = trimprefix(trimprefix(var.model_source_uri, "s3://${local.model_bucket}"), "/")

  # Group ARNs carry a random id, so they are matched by name; the names of this pool's groups
  # all start with "<name>-". The gpupool.io/pool condition below rules out another pool whose
  # name merely shares the prefix.
  own_asg_arn_pattern = "arn:${data.aws_partition.current.partition}:autoscaling:${data.aws_region.current.id}:${data.aws_caller_identity.current.account_id}:autoScalingGroup:*:autoScalingGroupName/${local.name}-*"
}

data "aws_iam_policy_document" "node_assume" {
  count = local.create_node_role ? 1 : 0

  statement {
    sid     = "EC2AssumeRole"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "node" {
  count = local.create_node_role ? 1 : 0

  statement {
    sid       = "CompleteOwnLaunchHook"
    actions   = ["autoscaling:CompleteLifecycleAction"]
    resources = [local.own_asg_arn_pattern]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/gpupool.io/pool"
      values   = [var.pool_name]
    }
  }

  statement {
    sid       = "TagModelCacheOnOwnPool"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:${data.aws_partition.current.partition}:ec2:${data.aws_region.current.id}:${data.aws_caller_identity.current.account_id}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/gpupool.io/pool"
      values   = [var.pool_name]
    }
    # Only the model-cache tag: an instance must not be able to re-tag itself into another pool
    # or flip gpupool.io/enabled.
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "aws:TagKeys"
      values   = [local.model_cache_tag_key]
    }
  }

  statement {
    sid       = "ReadModelObjects"
    actions   = ["s3:GetObject"]
    resources = ["arn:${data.aws_partition.current.partition}:s3:::${local.model_bucket}/${local.model_prefix}*"]
  }

  statement {
    sid       = "ListModelPrefix"
    actions   = ["s3:ListBucket"]
    resources = ["arn:${data.aws_partition.current.partition}:s3:::${local.model_bucket}"]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.model_prefix}*"]
    }
  }
}

resource "aws_iam_role" "node" {
  count = local.create_node_role ? 1 : 0

  name_prefix        = substr("${local.name}-node-", 0, 38)
  description        = "gpupool pool ${var.pool_name}: GPU node instances"
  assume_role_policy = data.aws_iam_policy_document.node_assume[0].json
  tags               = merge(var.tags, { "gpupool.io/pool" = var.pool_name })
}

resource "aws_iam_role_policy" "node" {
  count = local.create_node_role ? 1 : 0

  name   = "gpupool-model-cache"
  role   = aws_iam_role.node[0].id
  policy = data.aws_iam_policy_document.node[0].json
}

resource "aws_iam_role_policy_attachment" "node_extra" {
  for_each = local.create_node_role ? toset(var.node_policy_arns) : toset([])

  role       = aws_iam_role.node[0].name
  policy_arn = each.value
}

resource "aws_iam_instance_profile" "node" {
  count = local.create_node_role ? 1 : 0

  name_prefix = substr("${local.name}-node-", 0, 38)
  role        = aws_iam_role.node[0].name
  tags        = merge(var.tags, { "gpupool.io/pool" = var.pool_name })
}
