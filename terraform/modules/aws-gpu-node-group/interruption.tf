# The interruption queue: EventBridge rules -> SQS -> gpupool (aws.interruption_queue_url).
#
# gpupool long-polls this queue to learn, within seconds, that
#   * a spot instance will be reclaimed in 2 minutes (drain it now, launch a replacement),
#   * EC2 recommends rebalancing a spot instance away (move work early),
#   * an instance changed state (stopped, terminated outside gpupool),
#   * AWS Health scheduled a maintenance event for an instance.
# It deletes a message once handled; a message that keeps failing ends in the dead-letter queue.
#
# EventBridge rules match the whole account and region (not just this pool): gpupool ignores
# events about instances it does not manage. With several pools create the queue once
# (var.create_interruption_queue = false in the others).

locals {
  # gpupool's contract (src/contract.rs EVENTBRIDGE_RULES): exactly these (source, detail-type)
  # pairs. tests/terraform_contract.py checks the set against `gpupool print-contract`.
  interruption_events = {
    spot-interruption = {
      source      = "aws.ec2"
      detail_type = "EC2 Spot Instance Interruption Warning"
    }
    rebalance-recommendation = {
      source      = "aws.ec2"
      detail_type = "EC2 Instance Rebalance Recommendation"
    }
    instance-state-change = {
      source      = "aws.ec2"
      detail_type = "EC2 Instance State-change Notification"
    }
    scheduled-health-event = {
      source      = "aws.health"
      detail_type = "AWS Health Event"
    }
  }

  interruption_rules = var.create_interruption_queue ? local.interruption_events : {}

  # SSE-SQS unless a customer managed key is given: the queues are encrypted either way. null
  # (not false) when a key is given: the provider rejects both arguments set together.
  queue_kms_key_id         = var.interruption_queue_kms_key_id
  queue_sqs_managed_sse_on = var.interruption_queue_kms_key_id == null ? true : null
}

resource "aws_sqs_queue" "interruption_dlq" {
  count = var.create_interruption_queue ? 1 : 0

  name                      = "${local.name}-interruptions-dlq"
  message_retention_seconds = 1209600 # 14 days, the SQS maximum: time to look at what failed
  sqs_managed_sse_enabled   = local.queue_sqs_managed_sse_on
  kms_master_key_id         = local.queue_kms_key_id
  tags                      = merge(var.tags, { "gpupool.io/pool" = var.pool_name })
}

resource "aws_sqs_queue" "interruption" {
  count = var.create_interruption_queue ? 1 : 0

  name                      = "${local.name}-interruptions"
  message_retention_seconds = var.interruption_message_retention_seconds
  # gpupool long-polls (ReceiveMessage WaitTimeSeconds up to 20).
  receive_wait_time_seconds = 20
  # Long enough for gpupool to act on a message before it becomes visible again.
  visibility_timeout_seconds = 60
  sqs_managed_sse_enabled    = local.queue_sqs_managed_sse_on
  kms_master_key_id          = local.queue_kms_key_id

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.interruption_dlq[0].arn
    maxReceiveCount     = var.interruption_max_receive_count
  })

  tags = merge(var.tags, { "gpupool.io/pool" = var.pool_name })
}

# Only the interruption queue may use the dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "interruption_dlq" {
  count = var.create_interruption_queue ? 1 : 0

  queue_url = aws_sqs_queue.interruption_dlq[0].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.interruption[0].arn]
  })
}

resource "aws_cloudwatch_event_rule" "interruption" {
  for_each = local.interruption_rules

  name        = "${local.name}-${each.key}"
  description = "gpupool: ${each.value.detail_type} events to the interruption queue"
  event_pattern = jsonencode({
    source        = [each.value.source]
    "detail-type" = [each.value.detail_type]
  })
  tags = merge(var.tags, { "gpupool.io/pool" = var.pool_name })
}

resource "aws_cloudwatch_event_target" "interruption" {
  for_each = local.interruption_rules

  rule      = aws_cloudwatch_event_rule.interruption[each.key].name
  target_id = "gpupool-interruption-queue"
  arn       = aws_sqs_queue.interruption[0].arn

  # An interruption warning is useless after its 2 minutes: retry briefly, then park the
  # event in the dead-letter queue rather than deliver it late.
  retry_policy {
    maximum_event_age_in_seconds = 120
    maximum_retry_attempts       = 10
  }

  dead_letter_config {
    arn = aws_sqs_queue.interruption_dlq[0].arn
  }
}

# EventBridge may send to the queues, and only from this module's rules (aws:SourceArn).
data "aws_iam_policy_document" "interruption_queue" {
  count = var.create_interruption_queue ? 1 : 0

  statement {
    sid       = "EventBridgeRulesSendMessage"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.interruption[0].arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [for r in aws_cloudwatch_event_rule.interruption : r.arn]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.interruption[0].arn]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

data "aws_iam_policy_document" "interruption_dlq" {
  count = var.create_interruption_queue ? 1 : 0

  # Events EventBridge could not deliver within the retry policy land here (target DLQ).
  statement {
    sid       = "EventBridgeRulesDeadLetter"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.interruption_dlq[0].arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [for r in aws_cloudwatch_event_rule.interruption : r.arn]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.interruption_dlq[0].arn]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "interruption" {
  count = var.create_interruption_queue ? 1 : 0

  queue_url = aws_sqs_queue.interruption[0].id
  policy    = data.aws_iam_policy_document.interruption_queue[0].json
}

resource "aws_sqs_queue_policy" "interruption_dlq" {
  count = var.create_interruption_queue ? 1 : 0

  queue_url = aws_sqs_queue.interruption_dlq[0].id
  policy    = data.aws_iam_policy_document.interruption_dlq[0].json
}
