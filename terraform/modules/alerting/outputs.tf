output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "dlq_url" {
  description = "URL of the dead-letter queue (CDC_DLQ_URL)."
  value       = aws_sqs_queue.dlq.url
}

output "topic_arn" {
  description = "ARN of the SNS topic the alarms notify."
  value       = aws_sns_topic.alerts.arn
}

output "alarm_names" {
  description = "Names of the pipeline's alarms."
  value = [
    aws_cloudwatch_metric_alarm.window_failures.alarm_name,
    aws_cloudwatch_metric_alarm.no_windows.alarm_name,
    aws_cloudwatch_metric_alarm.slot_lag.alarm_name,
    aws_cloudwatch_metric_alarm.slot_at_risk.alarm_name,
    aws_cloudwatch_metric_alarm.lambda_errors.alarm_name,
    aws_cloudwatch_metric_alarm.duration_near_timeout.alarm_name,
    aws_cloudwatch_metric_alarm.dlq_depth.alarm_name,
  ]
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.pipeline.dashboard_name
}
