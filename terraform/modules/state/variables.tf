variable "name" {
  description = "Prefix for every resource name (e.g. cdc-prod)."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of an existing customer-managed KMS key for the stage bucket and the checkpoint table; null creates one (with rotation)."
  type        = string
  default     = null
}

variable "stage_retention_days" {
  description = "Days staged windows and snapshots are kept in the S3 stage (the replay log for `cdc replay`)."
  type        = number
  default     = 30

  validation {
    condition     = var.stage_retention_days >= 1
    error_message = "stage_retention_days must be at least 1."
  }
}

variable "noncurrent_retention_days" {
  description = "Days a replaced or deleted stage object version is kept (the bucket is versioned)."
  type        = number
  default     = 7
}

variable "deletion_protection" {
  description = "Protect the checkpoint table from `terraform destroy` and console deletes."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}

variable "create_artifact_bucket" {
  description = "Create the versioned, KMS-encrypted bucket the Lambda package is uploaded to (root package_source = \"upload\")."
  type        = bool
  default     = true
}

variable "package_noncurrent_retention_days" {
  description = "Days a replaced Lambda package version is kept in the artifact bucket (for rollbacks)."
  type        = number
  default     = 90
}

variable "snowflake_storage_iam_user_arn" {
  description = "STORAGE_AWS_IAM_USER_ARN of the Snowflake storage integration (DESC INTEGRATION); null: the role Snowflake reads the stage with is not created yet (step 1 of deploy/snowflake_admin.sql)."
  type        = string
  default     = null
}

variable "snowflake_storage_external_id" {
  description = "STORAGE_AWS_EXTERNAL_ID of the Snowflake storage integration; required with snowflake_storage_iam_user_arn."
  type        = string
  default     = null
}

variable "snowflake_stage_prefix" {
  description = "Key prefix Snowflake may read: the stage_prefix of the pipelines (the URL of the external stage is s3://<bucket>/<prefix>/)."
  type        = string
  default     = "cdc"
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary for the Snowflake stage role, if your account requires one."
  type        = string
  default     = null
}
