output "checkpoint_table_name" {
  description = "Value for CDC_CHECKPOINT_TABLE."
  value       = aws_dynamodb_table.checkpoints.name
}

output "checkpoint_table_arn" {
  description = "ARN of the checkpoint and lease table."
  value       = aws_dynamodb_table.checkpoints.arn
}

output "stage_bucket" {
  description = "Name of the S3 stage bucket."
  value       = aws_s3_bucket.stage.bucket
}

output "stage_bucket_arn" {
  description = "ARN of the S3 stage bucket."
  value       = aws_s3_bucket.stage.arn
}

output "kms_key_arn" {
  description = "KMS key encrypting the stage bucket and the checkpoint table."
  value       = local.kms_key_arn
}
