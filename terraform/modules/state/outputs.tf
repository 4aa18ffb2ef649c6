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

output "artifact_bucket" {
  description = "Name of the Lambda package bucket; null when create_artifact_bucket = false."
  value       = var.create_artifact_bucket ? aws_s3_bucket.artifacts[0].bucket : null
}

output "artifact_bucket_arn" {
  description = "ARN of the Lambda package bucket; null when create_artifact_bucket = false."
  value       = var.create_artifact_bucket ? aws_s3_bucket.artifacts[0].arn : null
}

output "snowflake_stage_role_arn" {
  description = "STORAGE_AWS_ROLE_ARN of the Snowflake storage integration (known before the role is created)."
  value       = local.snowflake_role_arn
}

output "snowflake_stage_url" {
  description = "URL of the Snowflake external stage and STORAGE_ALLOWED_LOCATIONS of the storage integration."
  value       = "s3://${aws_s3_bucket.stage.bucket}/${local.snowflake_prefix}/"
}
