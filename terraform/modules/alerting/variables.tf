variable "pipeline" {
  description = "Pipeline name (CDC_PIPELINE); the value of the Pipeline dimension of the window metrics."
  type        = string
}

variable "function_name" {
  description = "Name of the pipeline's Lambda function; also the prefix of the queue, topic, alarms and dashboard."
  type        = string
}

variable "lambda_timeout_s" {
  description = "The Lambda's timeout in seconds (for the duration-near-timeout alarm)."
  type        = number
}

variable "schedule_rule_arn" {
  description = "ARN of the pipeline's EventBridge rule, allowed to send its undeliverable invocations to the DLQ."
  type        = string
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the window metrics (CDC_METRICS_NAMESPACE)."
  type        = string
  default     = "CDC"
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for the dead-letter queue; null uses SQS-managed encryption (SSE-SQS)."
  type        = string
  default     = null
}

variable "sns_kms_key_arn" {
  description = "KMS key for the SNS topic; null leaves the topic unencrypted at rest. The key policy must let cloudwatch.amazonaws.com use it (the AWS-managed alias/aws/sns key does not)."
  type        = string
  default     = null
}

variable "dlq_retention_seconds" {
  description = "How long a dead-letter message is kept (max 14 days)."
  type        = number
  default     = 1209600
}

variable "alert_emails" {
  description = "E-mail addresses subscribed to the alert topic (each must confirm the subscription)."
  type        = list(string)
  default     = []
}

variable "slot_lag_threshold_bytes" {
  description = "Alarm when the replication slot retains more WAL than this for 15 minutes."
  type        = number
  default     = 10737418240
}

variable "duration_alarm_fraction" {
  description = "Alarm when one run takes more than this fraction of the Lambda timeout."
  type        = number
  default     = 0.9

  validation {
    condition     = var.duration_alarm_fraction > 0 && var.duration_alarm_fraction < 1
    error_message = "duration_alarm_fraction must be between 0 and 1."
  }
}

variable "stalled_after_minutes" {
  description = "Alarm when no window ran for this many minutes (must exceed the schedule interval)."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
