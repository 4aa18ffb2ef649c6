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
