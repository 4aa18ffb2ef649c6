variable "name" {
  description = "Prefix for every resource name (e.g. cdc-prod); part of the default key."
  type        = string
}

variable "bucket" {
  description = "S3 bucket of the package, in the functions' region (the state module's artifact_bucket, or your own)."
  type        = string

  validation {
    condition     = var.bucket != null && var.bucket != ""
    error_message = "No package bucket: with package_source = \"s3\" set package_s3_bucket (and package_s3_key) to where the zip was uploaded."
  }
}

variable "package_path" {
  description = "Local zip built by tools/package.sh (build/lambda.zip) to upload; null: use the object already at key."
  type        = string
  default     = null
}

variable "key" {
  description = "S3 key of the zip; default lambda/<name>/lambda-<architecture>.zip. Required when package_path is null."
  type        = string
  default     = null
}

variable "object_version" {
  description = "Version of a pre-uploaded object to deploy (versioned bucket); null: its current version. Ignored when uploading."
  type        = string
  default     = null
}

variable "source_hash" {
  description = "Base64 SHA-256 of a pre-uploaded zip (tools/package.sh writes it to build/lambda.zip.base64sha256); null: changes are detected by the object version only."
  type        = string
  default     = null
}

variable "architecture" {
  description = "Architecture the zip was built for (ARCH of tools/package.sh: x86_64 or arm64); part of the default key."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64, as ARCH of tools/package.sh."
  }
}

variable "kms_key_arn" {
  description = "KMS key the uploaded object is encrypted with; null: the bucket's default key."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags applied to the uploaded object."
  type        = map(string)
  default     = {}
}
