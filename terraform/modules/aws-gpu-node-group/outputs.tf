# What the gpupool config and the controller IAM module need from this pool.

output "pool_name" {
  description = "gpupool pool name (pools[].name in the gpupool config)."
  value       = var.pool_name
}

output "on_demand_asg_name" {
  description = "Name of the on-demand Auto Scaling group (the one with the warm pool)."
  value       = aws_autoscaling_group.on_demand.name
}

output "on_demand_asg_arn" {
  description = "ARN of the on-demand Auto Scaling group."
  value       = aws_autoscaling_group.on_demand.arn
}

output "spot_asg_names" {
  description = "Names of the spot Auto Scaling groups (empty without spot_instance_types)."
  value       = [for g in aws_autoscaling_group.spot : g.name]
}

output "asg_names" {
  description = "Every group of the pool. gpupool finds them by their gpupool.io/pool tag; this list is for dashboards and alarms."
  value       = concat([aws_autoscaling_group.on_demand.name], [for g in aws_autoscaling_group.spot : g.name])
}

output "launch_template_id" {
  description = "ID of the launch template shared by the pool's groups."
  value       = aws_launch_template.this.id
}

output "launch_template_latest_version" {
  description = "Latest version of the launch template."
  value       = aws_launch_template.this.latest_version
}

output "lifecycle_hook_name" {
  description = "Name of the launching lifecycle hook on every group of the pool."
  value       = local.lifecycle_hook_name
}

output "model_cache" {
  description = "<model>@<version> the nodes tag themselves with (gpupool.io/model-cache); pools[].model_cache in the gpupool config."
  value       = local.model_cache_value
}

output "interruption_queue_url" {
  description = "URL of the interruption queue: aws.interruption_queue_url in the gpupool config. null when create_interruption_queue = false."
  value       = one(aws_sqs_queue.interruption[*].url)
}

output "interruption_queue_arn" {
  description = "ARN of the interruption queue, for the controller IAM module (queue_arns). null when create_interruption_queue = false."
  value       = one(aws_sqs_queue.interruption[*].arn)
}

output "interruption_dead_letter_queue_arn" {
  description = "ARN of the dead-letter queue (alarm on its depth)."
  value       = one(aws_sqs_queue.interruption_dlq[*].arn)
}

output "node_role_arn" {
  description = "ARN of the node role the module created (null with iam_instance_profile_name). For EKS, map it in aws-auth or an access entry of type EC2_LINUX."
  value       = one(aws_iam_role.node[*].arn)
}

output "instance_profile_name" {
  description = "Instance profile of the nodes."
  value       = local.instance_profile_name
}

output "interruption_queue_kms_key_id" {
  description = "The customer managed KMS key of the interruption queues (null with SSE-SQS): its ARN goes to aws-controller-iam queue_kms_key_arns."
  value       = var.interruption_queue_kms_key_id
}

output "fallback_alarm_name" {
  description = "Name of the fallback alarm (null without fallback_scaling)."
  value       = one(aws_cloudwatch_metric_alarm.fallback[*].alarm_name)
}

output "warm_pool_standing_cost_per_hour" {
  description = "What one stopped warm-pool instance costs per hour, USD: its two gp3 volumes (a stopped instance is billed for EBS only, EC2 StopInstances). pools[].warm_pool.standing_cost_per_hour in the gpupool config: the warm pool then shrinks at the ski-rental break-even instead of after unneeded_time_s. 730 hours a month, as AWS prices storage."
  value = (
    (var.root_volume_size_gib + var.model_cache_volume.size_gib) * var.ebs_gp3_price.per_gib_month +
    max(0, var.model_cache_volume.iops - 3000) * var.ebs_gp3_price.per_iops_month +
    max(0, var.model_cache_volume.throughput_mibps - 125) * var.ebs_gp3_price.per_mibps_month
  ) / 730
}
