# Alerting of one pipeline: its dead-letter queue, the SNS topic the alarms notify, the alarms and
# a dashboard. The window metrics (namespace var.metrics_namespace, dimension Pipeline) are those
# of README "Failures, alerts and metrics".

data "aws_region" "current" {}

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.function_name}-dlq"
  message_retention_seconds = var.dlq_retention_seconds
  kms_master_key_id         = var.kms_key_arn
  sqs_managed_sse_enabled   = var.kms_key_arn == null ? true : null
  tags                      = var.tags
}

data "aws_iam_policy_document" "dlq" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.dlq.arn]
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

  # The EventBridge rule's own dead-letter target (an invocation EventBridge could not deliver).
  statement {
    sid       = "AllowScheduleDeadLetters"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [var.schedule_rule_arn]
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.dlq.json
}

resource "aws_sns_topic" "alerts" {
  name              = "${var.function_name}-alerts"
  kms_master_key_id = var.sns_kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  for_each  = toset(var.alert_emails)
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

locals {
  window_dimensions = { Pipeline = var.pipeline }
  lambda_dimensions = { FunctionName = var.function_name }
  actions           = [aws_sns_topic.alerts.arn]
  # A scheduled window that runs this close to the timeout is about to be killed mid-window.
  duration_threshold_ms = floor(var.lambda_timeout_s * 1000 * var.duration_alarm_fraction)
}

resource "aws_cloudwatch_metric_alarm" "window_failures" {
  alarm_name          = "${var.function_name}-window-failures"
  alarm_description   = "A window of pipeline ${var.pipeline} failed for good; the DLQ message says what to do."
  namespace           = var.metrics_namespace
  metric_name         = "WindowFailures"
  dimensions          = local.window_dimensions
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "no_windows" {
  alarm_name          = "${var.function_name}-no-windows"
  alarm_description   = "Pipeline ${var.pipeline} ran no window for ${var.stalled_after_minutes} minutes (schedule disabled, throttled, or failing before it starts)."
  namespace           = var.metrics_namespace
  metric_name         = "WindowDuration" # one datum per window, dimension Pipeline only
  dimensions          = local.window_dimensions
  statistic           = "SampleCount"
  period              = 60 * var.stalled_after_minutes
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "slot_lag" {
  alarm_name          = "${var.function_name}-slot-lag"
  alarm_description   = "The replication slot of ${var.pipeline} retains more than ${var.slot_lag_threshold_bytes} bytes of WAL: the pipeline is falling behind and Aurora storage grows."
  namespace           = var.metrics_namespace
  metric_name         = "SlotLagBytes"
  dimensions          = local.window_dimensions
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  threshold           = var.slot_lag_threshold_bytes
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "slot_at_risk" {
  alarm_name          = "${var.function_name}-slot-at-risk"
  alarm_description   = "The replication slot of ${var.pipeline} nears invalidation by max_slot_wal_keep_size (or retains too much WAL where there is no limit): let the pipeline catch up or raise the limit before the slot is lost and a full re-snapshot is needed."
  namespace           = var.metrics_namespace
  metric_name         = "SlotAtRisk"
  dimensions          = local.window_dimensions
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  alarm_name          = "${var.function_name}-lambda-errors"
  alarm_description   = "The Lambda of ${var.pipeline} raised (crash, timeout, out of memory) instead of returning a result."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = local.lambda_dimensions
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "duration_near_timeout" {
  alarm_name          = "${var.function_name}-duration-near-timeout"
  alarm_description   = "A run of ${var.function_name} took more than ${var.duration_alarm_fraction * 100}% of its ${var.lambda_timeout_s} s timeout: raise the timeout or lower CDC_WINDOW_MAX_CHANGES."
  namespace           = "AWS/Lambda"
  metric_name         = "Duration"
  dimensions          = local.lambda_dimensions
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = local.duration_threshold_ms
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  alarm_name          = "${var.function_name}-dlq-depth"
  alarm_description   = "Messages wait in the dead-letter queue of ${var.pipeline}: read them, fix the cause, then delete them."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
  tags                = var.tags
}

resource "aws_cloudwatch_dashboard" "pipeline" {
  dashboard_name = var.function_name
  dashboard_body = jsonencode({
    widgets = [
      for i, w in [
        { title = "Windows / failures", metrics = [
          [var.metrics_namespace, "WindowDuration", "Pipeline", var.pipeline, { stat = "SampleCount", label = "Windows" }],
          [var.metrics_namespace, "WindowFailures", "Pipeline", var.pipeline, { stat = "Sum" }],
        ] },
        { title = "Slot lag (bytes)", metrics = [
          [var.metrics_namespace, "SlotLagBytes", "Pipeline", var.pipeline, { stat = "Maximum" }],
        ] },
        { title = "Window duration (s)", metrics = [
          [var.metrics_namespace, "WindowDuration", "Pipeline", var.pipeline, { stat = "Maximum" }],
        ] },
        { title = "Bytes staged / retries", metrics = [
          [var.metrics_namespace, "BytesStaged", "Pipeline", var.pipeline, { stat = "Sum" }],
          [var.metrics_namespace, "Retries", "Pipeline", var.pipeline, { stat = "Sum", yAxis = "right" }],
        ] },
        { title = "Lambda errors / throttles", metrics = [
          ["AWS/Lambda", "Errors", "FunctionName", var.function_name, { stat = "Sum" }],
          ["AWS/Lambda", "Throttles", "FunctionName", var.function_name, { stat = "Sum" }],
        ] },
        { title = "Lambda duration (ms)", metrics = [
          ["AWS/Lambda", "Duration", "FunctionName", var.function_name, { stat = "Maximum" }],
        ] },
        { title = "Dead-letter queue", metrics = [
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.dlq.name, { stat = "Maximum" }],
        ] },
        ] : {
        type   = "metric"
        x      = (i % 2) * 12
        y      = floor(i / 2) * 6
        width  = 12
        height = 6
        properties = {
          title   = w.title
          metrics = w.metrics
          region  = data.aws_region.current.name
          period  = 300
          view    = "timeSeries"
        }
      }
    ]
  })
}
