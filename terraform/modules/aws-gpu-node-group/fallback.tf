# Fallback scale-out while gpupool is down (optional, `fallback_scaling`).
#
# A metric only gpupool publishes cannot drive scaling while gpupool is down, so the trigger is
# AWS's own queue metric: SQS publishes `ApproximateNumberOfMessagesVisible` to CloudWatch every
# minute whether or not gpupool runs (Amazon SQS Developer Guide, "Available CloudWatch metrics
# for Amazon SQS"). To keep the fallback from fighting gpupool, the alarm also requires
# gpupool's heartbeat for this group to be absent: gpupool publishes `DesiredNodes` (namespace
# `gpupool`) every tick when `aws.publish_cloudwatch: true`, per pool (dimension `Pool`) and per
# group (dimension `AutoScalingGroupName`, the dimension EC2 Auto Scaling's own group metrics
# use). The alarm watches the on-demand group's own series: it arms when gpupool is down, and
# also when gpupool runs but no longer manages this group (untagged, pool renamed), which the
# pool-wide series would hide. `FILL(heartbeat, 0)` turns
# "no datapoint" into 0 (CloudWatch metric math, FILL function). A metric-math alarm can carry
# an Auto Scaling policy as its action (CloudWatch User Guide, "Create a CloudWatch alarm based
# on a metric math expression"; PutMetricAlarm `AlarmActions`).
#
# The policy only adds on-demand instances (step scaling, +step_instances per evaluation while
# the alarm stays in ALARM, up to the group's max size); it never removes any: scale-in waits
# for gpupool, which drains properly when it is back.

resource "aws_autoscaling_policy" "fallback" {
  count = var.fallback_scaling == null ? 0 : 1

  name                      = "${local.name}-fallback-scale-out"
  autoscaling_group_name    = aws_autoscaling_group.on_demand.name
  policy_type               = "StepScaling"
  adjustment_type           = "ChangeInCapacity"
  estimated_instance_warmup = var.fallback_scaling.instance_warmup_s

  step_adjustment {
    scaling_adjustment          = var.fallback_scaling.step_instances
    metric_interval_lower_bound = 0
  }
}

resource "aws_cloudwatch_metric_alarm" "fallback" {
  count = var.fallback_scaling == null ? 0 : 1

  alarm_name          = "${local.name}-fallback-queue-without-gpupool"
  alarm_description   = "Queue ${var.fallback_scaling.queue_name} holds more than ${var.fallback_scaling.queue_depth_threshold} messages and gpupool has published nothing for group ${aws_autoscaling_group.on_demand.name} (pool ${var.pool_name}): add on-demand capacity until gpupool is back."
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = var.fallback_scaling.evaluation_periods
  datapoints_to_alarm = var.fallback_scaling.evaluation_periods
  # No data at all (both metrics missing) is not a reason to scale.
  treat_missing_data = "notBreaching"
  alarm_actions      = [aws_autoscaling_policy.fallback[0].arn]
  tags               = var.tags

  metric_query {
    id = "queue"
    metric {
      namespace   = "AWS/SQS"
      metric_name = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = var.fallback_scaling.queue_name }
      period      = 60
      stat        = "Maximum"
    }
  }

  metric_query {
    id = "heartbeat"
    metric {
      namespace   = "gpupool"
      metric_name = "DesiredNodes"
      dimensions  = { AutoScalingGroupName = aws_autoscaling_group.on_demand.name }
      period      = 60
      stat        = "SampleCount"
    }
  }

  metric_query {
    id          = "silent_and_deep"
    expression  = "IF(FILL(heartbeat, 0) == 0 AND FILL(queue, 0) > ${var.fallback_scaling.queue_depth_threshold}, 1, 0)"
    label       = "queue deep while gpupool is silent"
    return_data = true
  }
}
