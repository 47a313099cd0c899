# One gpupool pool on AWS: a launch template shared by
#   * one on-demand Auto Scaling group with a warm pool (fast, safe capacity), and
#   * one or more spot Auto Scaling groups with a mixed instances policy (cheap capacity).
#
# Why two kinds of group: AWS does not allow a warm pool on a group that has a mixed instances
# policy or requests spot instances. A warm pool needs a single on-demand instance type, while
# spot capacity for GPUs is only obtainable by spreading over several instance types. So the pool
# is backed by several node groups and gpupool splits capacity between them (DESIGN.md).
#
# Who changes what: Terraform owns the shape (template, types, subnets, min/max, hooks, tags);
# gpupool owns desired capacity, which instances are terminated, and the warm pool sizes. The
# `ignore_changes` below keeps `terraform apply` from undoing gpupool's decisions.

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

locals {
  name = "${var.name_prefix}${var.pool_name}"

  # gpupool's contract (src/contract.rs): gpupool discovers groups by gpupool.io/pool, and its
  # IAM policy lets it change only groups tagged gpupool.io/enabled = "true".
  # tests/terraform_contract.py checks these keys against `gpupool print-contract`.
  gpupool_asg_tags = {
    "gpupool.io/enabled" = "true"
    "gpupool.io/pool"    = var.pool_name
  }

  # Set by the instance itself once its model cache is warm, value "<model>@<version>". gpupool
  # reads it to release the lifecycle hook and to detect cache drift.
  model_cache_tag_key = "gpupool.io/model-cache"
  model_cache_value   = "${var.model_name}@${var.model_version}"

  # EKS needs kubernetes.io/cluster/<name> = owned on its self-managed nodes; an empty map in
  # VM-only mode (a for expression, so both cases have the same type).
  cluster_tags = { for c in(var.cluster_name == null ? [] : [var.cluster_name]) : "kubernetes.io/cluster/${c}" => "owned" }

  asg_tags = merge(var.tags, local.cluster_tags, local.gpupool_asg_tags)

  lifecycle_hook_name = "gpupool-model-cache"

  # Spot groups: one across all subnets, or one per subnet. Keys are list positions so they
  # are known at plan time even when the subnet ids are not yet.
  spot_groups = merge(
    { for i, s in var.subnet_ids : format("%d", i) => [s] if var.spot_group_per_subnet && length(var.spot_instance_types) > 0 },
    { for k in ["all"] : k => var.subnet_ids if !var.spot_group_per_subnet && length(var.spot_instance_types) > 0 },
  )

  # one() of the empty list is null, so this is valid whether or not the module made a profile.
  instance_profile_name = var.iam_instance_profile_name != null ? var.iam_instance_profile_name : one(aws_iam_instance_profile.node[*].name)

  # The node registers only after its cache is warm (user-data step 4 follows step 2), so it can
  # carry the model-cache label from the start. Label values cannot hold "@": the same encoding
  # gpupool compares against (lowercase, anything outside [a-z0-9_-] becomes "_").
  model_cache_label_value = substr(replace(lower(local.model_cache_value), "/[^a-z0-9_-]/", "_"), 0, 63)
  kubelet_node_labels = join(",", [for k, v in merge(var.node_labels, {
    "gpupool.io/pool"        = var.pool_name
    "gpupool.io/model-cache" = local.model_cache_label_value
  }) : "${k}=${v}"])
  kubelet_node_taints = join(",", [for t in var.node_taints : "${t.key}=${t.value}:${t.effect}"])

  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", {
    pool_name                 = var.pool_name
    model_name                = var.model_name
    model_version             = var.model_version
    model_cache_value         = local.model_cache_value
    model_cache_tag_key       = local.model_cache_tag_key
    model_source_uri          = var.model_source_uri
    cache_mount_path          = var.model_cache_mount_path
    cache_device_name         = var.model_cache_volume.device_name
    lifecycle_hook_name       = local.lifecycle_hook_name
    complete_lifecycle_action = var.complete_lifecycle_action_from_instance
    cluster_name              = var.cluster_name == null ? "" : var.cluster_name
    eks_bootstrap             = var.eks_bootstrap
    cluster_endpoint          = var.cluster_endpoint
    cluster_ca_data           = var.cluster_ca_data
    cluster_service_cidr      = var.cluster_service_cidr
    node_labels               = local.kubelet_node_labels
    node_taints               = local.kubelet_node_taints
    extra_user_data           = var.extra_user_data
  })

  # Group metrics worth having on a dashboard next to gpupool's own; warm pool ones only where
  # there is a warm pool.
  group_metrics = [
    "GroupDesiredCapacity", "GroupInServiceInstances", "GroupPendingInstances",
    "GroupTerminatingInstances", "GroupTotalInstances", "GroupMaxSize", "GroupMinSize",
  ]
  warm_pool_metrics = [
    "WarmPoolDesiredCapacity", "WarmPoolWarmedCapacity", "WarmPoolPendingCapacity",
    "WarmPoolTerminatingCapacity", "WarmPoolTotalCapacity", "GroupAndWarmPoolTotalCapacity",
  ]
}

# ---------------------------------------------------------------------------------------------
# Launch template, shared by every group of the pool
# ---------------------------------------------------------------------------------------------

resource "aws_launch_template" "this" {
  name_prefix = "${local.name}-"
  description = "gpupool pool ${var.pool_name}: GPU node with a ${local.model_cache_value} model cache"

  image_id = var.ami_id
  # The on-demand group uses this type; the spot groups override it with their own list.
  instance_type          = var.on_demand_instance_type
  vpc_security_group_ids = var.security_group_ids
  ebs_optimized          = true
  update_default_version = true

  iam_instance_profile {
    name = local.instance_profile_name
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = var.metadata_http_put_response_hop_limit
    # The user-data reads its group name from the aws:autoscaling:groupName instance tag.
    instance_metadata_tags = "enabled"
  }

  monitoring {
    enabled = true
  }

  # Root volume: OS and container images.
  block_device_mappings {
    device_name = var.root_device_name
    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_size_gib
      encrypted             = true
      kms_key_id            = var.ebs_kms_key_arn
      delete_on_termination = true
    }
  }

  # Model cache volume: filled once at first boot. It persists while the instance is stopped in
  # the warm pool, so a started warm instance skips the multi-minute download.
  block_device_mappings {
    device_name = var.model_cache_volume.device_name
    ebs {
      volume_type           = "gp3"
      volume_size           = var.model_cache_volume.size_gib
      iops                  = var.model_cache_volume.iops
      throughput            = var.model_cache_volume.throughput_mibps
      encrypted             = true
      kms_key_id            = var.ebs_kms_key_arn
      delete_on_termination = true
    }
  }

  user_data = base64encode(local.user_data)

  # Instances get their tags from the groups (propagate_at_launch); volumes only from here.
  tag_specifications {
    resource_type = "volume"
    tags          = merge(var.tags, { "gpupool.io/pool" = var.pool_name })
  }

  tags = merge(var.tags, { "gpupool.io/pool" = var.pool_name })

  lifecycle {
    precondition {
      condition     = var.cluster_name == null || var.eks_bootstrap != "al2023" || (var.cluster_endpoint != "" && var.cluster_ca_data != "")
      error_message = "eks_bootstrap = \"al2023\" (nodeadm) needs cluster_endpoint and cluster_ca_data."
    }
  }
}

# ---------------------------------------------------------------------------------------------
# On-demand group with the warm pool
# ---------------------------------------------------------------------------------------------

resource "aws_autoscaling_group" "on_demand" {
  name                = "${local.name}-on-demand"
  vpc_zone_identifier = var.subnet_ids

  min_size = var.on_demand_min_size
  max_size = var.on_demand_max_size
  # Initial value only: gpupool owns desired capacity from then on (see ignore_changes).
  desired_capacity = var.on_demand_min_size

  # A single instance type, no mixed instances policy, no spot: the conditions AWS puts on a
  # group that has a warm pool.
  launch_template {
    id      = aws_launch_template.this.id
    version = aws_launch_template.this.latest_version
  }

  health_check_type         = "EC2"
  health_check_grace_period = 300
  # Instances wait on the lifecycle hook for their model; Terraform must not wait for them.
  wait_for_capacity_timeout = "0"
  # gpupool chooses which instances go (drained, empty ones). AZRebalance would terminate
  # serving GPU nodes on its own to even out zones, so it is suspended.
  suspended_processes = ["AZRebalance"]
  enabled_metrics     = concat(local.group_metrics, var.warm_pool.enabled ? local.warm_pool_metrics : [])
  # A destroyed pool has nothing to protect in its stopped instances.
  force_delete_warm_pool = true

  # Every new instance (into service or into the warm pool) waits here until its model cache is
  # warm: the instance (or gpupool, when it sees the model-cache tag) completes the action.
  # ABANDON on timeout: a node that could not fetch its model is replaced, never served.
  initial_lifecycle_hook {
    name                 = local.lifecycle_hook_name
    lifecycle_transition = "autoscaling:EC2_INSTANCE_LAUNCHING"
    default_result       = "ABANDON"
    heartbeat_timeout    = var.lifecycle_hook_heartbeat_timeout
    notification_metadata = jsonencode({
      pool        = var.pool_name
      model_cache = local.model_cache_value
    })
  }

  # Stopped instances with a warm model cache: pay for EBS only, start in tens of seconds.
  dynamic "warm_pool" {
    for_each = var.warm_pool.enabled ? [var.warm_pool] : []
    content {
      pool_state                  = "Stopped"
      min_size                    = warm_pool.value.min_size
      max_group_prepared_capacity = coalesce(warm_pool.value.max_prepared_capacity, var.on_demand_min_size + warm_pool.value.min_size)
      instance_reuse_policy {
        reuse_on_scale_in = warm_pool.value.reuse_on_scale_in
      }
    }
  }

  dynamic "tag" {
    for_each = local.asg_tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  # The first instances must find the node policy in place (lifecycle hook, tag, S3 read).
  depends_on = [aws_iam_role_policy.node]

  lifecycle {
    # gpupool sets desired capacity (SetDesiredCapacity) and warm pool sizes (PutWarmPool);
    # Terraform setting them back on every apply would fight it.
    ignore_changes = [
      desired_capacity,
      warm_pool[0].min_size,
      warm_pool[0].max_group_prepared_capacity,
    ]
  }
}

# ---------------------------------------------------------------------------------------------
# Spot group(s)
# ---------------------------------------------------------------------------------------------

resource "aws_autoscaling_group" "spot" {
  for_each = local.spot_groups

  name                = each.key == "all" ? "${local.name}-spot" : "${local.name}-spot-${each.key}"
  vpc_zone_identifier = each.value

  min_size         = var.spot_min_size
  max_size         = var.spot_max_size
  desired_capacity = var.spot_min_size

  # Capacity Rebalancing stays off (var.spot_capacity_rebalance): with it on, AWS answers an EC2
  # rebalance recommendation by launching a replacement and then terminating the at-risk
  # instance itself — through the group's terminating lifecycle hooks only (there are none
  # here), not through gpupool's drain, disruption budget or do-not-disrupt pods. gpupool gets the
  # same recommendation from the interruption queue (EventBridge "EC2 Instance Rebalance
  # Recommendation") and moves the work under its own budget. Amazon EC2 Auto Scaling User Guide,
  # "Capacity Rebalancing in Auto Scaling to replace at-risk Spot Instances" (the old instance is
  # terminated once the new one passes its health checks; lifecycle hooks are the only way to
  # act first) and the CreateAutoScalingGroup CapacityRebalance reference.
  capacity_rebalance = var.spot_capacity_rebalance

  mixed_instances_policy {
    instances_distribution {
      # 100% spot: on-demand capacity lives in the on-demand group, where it can be warm.
      on_demand_base_capacity                  = 0
      on_demand_percentage_above_base_capacity = 0
      # Deepest pools at the lowest price: fewer interruptions than lowest-price.
      spot_allocation_strategy = "price-capacity-optimized"
    }

    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.this.id
        version            = aws_launch_template.this.latest_version
      }

      dynamic "override" {
        for_each = var.spot_instance_types
        content {
          instance_type = override.value
          # One instance = one replica of the pool, whatever its type.
          weighted_capacity = "1"
        }
      }
    }
  }

  health_check_type         = "EC2"
  health_check_grace_period = 300
  wait_for_capacity_timeout = "0"
  suspended_processes       = ["AZRebalance"]
  enabled_metrics           = local.group_metrics

  # Same hook as on-demand: a spot node serves only once its model is on disk.
  initial_lifecycle_hook {
    name                 = local.lifecycle_hook_name
    lifecycle_transition = "autoscaling:EC2_INSTANCE_LAUNCHING"
    default_result       = "ABANDON"
    heartbeat_timeout    = var.lifecycle_hook_heartbeat_timeout
    notification_metadata = jsonencode({
      pool        = var.pool_name
      model_cache = local.model_cache_value
    })
  }

  dynamic "tag" {
    for_each = local.asg_tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  depends_on = [aws_iam_role_policy.node]

  lifecycle {
    # gpupool owns desired capacity.
    ignore_changes = [desired_capacity]
  }
}
