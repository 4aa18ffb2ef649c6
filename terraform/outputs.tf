output "checkpoint_table" {
  description = "Value for CDC_CHECKPOINT_TABLE."
  value       = aws_dynamodb_table.checkpoints.name
}

output "stage_url" {
  description = "Value for CDC_STAGE_URL; the Snowflake external stage points at the same URL."
  value       = "s3://${aws_s3_bucket.stage.bucket}/cdc"
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dlq.url
}
