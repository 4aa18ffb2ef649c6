variable "name" {
  description = "Prefix for every resource name (e.g. cdc-prod)."
  type        = string
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}

variable "create_network" {
  description = "Create the VPC of the architecture diagram (modules/network); false: use vpc_id and the subnet variables."
  type        = bool
  default     = true
}

variable "azs" {
  description = "Availability zones of the created network (create_network = true)."
  type        = list(string)
  default     = []
}

variable "vpc_id" {
  description = "Existing VPC (create_network = false)."
  type        = string
  default     = null
}

variable "lambda_subnet_ids" {
  description = "Existing private Lambda subnets (create_network = false)."
  type        = list(string)
  default     = []
}

variable "endpoint_subnet_ids" {
  description = "Existing private subnets for the interface endpoints (create_network = false)."
  type        = list(string)
  default     = []
}

variable "private_route_table_ids" {
  description = "Route tables of the existing Lambda subnets, for the S3/DynamoDB gateway endpoints (create_network = false)."
  type        = list(string)
  default     = []
}

variable "db_security_group_id" {
  description = "Security group of the Aurora cluster; each pipeline adds an ingress rule on the source port."
  type        = string
}

variable "vault_cidr_blocks" {
  description = "CIDR blocks of the Vault servers, reached on 443 through the NAT gateways."
  type        = list(string)
}

variable "vault_addr" {
  description = "CDC_VAULT_ADDR of every pipeline (https://...)."
  type        = string
}

variable "source_host" {
  description = "CDC_SOURCE_HOST: the Aurora writer endpoint."
  type        = string
}

variable "snowflake_account" {
  description = "CDC_SNOWFLAKE_ACCOUNT."
  type        = string
}

variable "snowflake_host" {
  description = "CDC_SNOWFLAKE_HOST: privatelink-account-url from SYSTEM$GET_PRIVATELINK_CONFIG()."
  type        = string
}

variable "snowflake_privatelink_service_name" {
  description = "privatelink-vpce-id from SYSTEM$GET_PRIVATELINK_CONFIG()."
  type        = string
}

variable "snowflake_privatelink_hostnames" {
  description = "Host names resolved to the Snowflake endpoint in the VPC (account URL, OCSP URL, regionless variants)."
  type        = list(string)
}

variable "snowflake_storage_iam_user_arn" {
  description = "STORAGE_AWS_IAM_USER_ARN of the Snowflake storage integration (DESC INTEGRATION); null until the integration exists (deploy/snowflake_admin.sql, step 1): the role Snowflake reads the stage with is created once it is set."
  type        = string
  default     = null
}

variable "snowflake_storage_external_id" {
  description = "STORAGE_AWS_EXTERNAL_ID of the Snowflake storage integration; required with snowflake_storage_iam_user_arn."
  type        = string
  default     = null
}

variable "stage_retention_days" {
  description = "Days staged windows and snapshots are kept in the S3 stage."
  type        = number
  default     = 30
}

variable "metrics_namespace" {
  description = "CDC_METRICS_NAMESPACE of every pipeline; the alarms read it."
  type        = string
  default     = "CDC"
}

variable "alert_emails" {
  description = "E-mail addresses subscribed to every pipeline's alert topic."
  type        = list(string)
  default     = []
}

variable "package_source" {
  description = <<-EOT
    Where the Lambda code comes from. upload (default): Terraform uploads package_path to S3 (the
    artifact bucket it creates, or package_s3_bucket) and deploys from there; s3: an object uploaded
    beforehand (package_s3_bucket, package_s3_key, optionally package_s3_object_version and
    package_source_hash); file: direct upload of package_path (only below Lambda's 50 MB limit);
    image: the container image image_uri.
  EOT
  type        = string
  default     = "upload"

  validation {
    condition     = contains(["upload", "s3", "file", "image"], var.package_source)
    error_message = "package_source must be upload, s3, file or image."
  }
}

variable "package_path" {
  description = "Lambda zip built by tools/package.sh (package_source upload or file)."
  type        = string
  default     = "../build/lambda.zip"
}

variable "package_s3_bucket" {
  description = "Bucket of the package: required with package_source = s3; with upload, an existing bucket to upload to instead of creating one."
  type        = string
  default     = null
}

variable "package_s3_key" {
  description = "S3 key of the package: required with package_source = s3; with upload, default lambda/<name>/lambda-<architecture>.zip."
  type        = string
  default     = null
}

variable "package_s3_object_version" {
  description = "package_source = s3: object version to deploy; null: the object's current version."
  type        = string
  default     = null
}

variable "package_source_hash" {
  description = "package_source = s3: base64 SHA-256 of the zip (build/lambda.zip.base64sha256); optional."
  type        = string
  default     = null
}

variable "image_uri" {
  description = "package_source = image: ECR image URI of the package (Lambda Python base image, tree in /var/task)."
  type        = string
  default     = null
}

variable "architecture" {
  description = "Lambda architecture, matching ARCH of tools/package.sh (x86_64 or arm64)."
  type        = string
  default     = "x86_64"
}

variable "pipelines" {
  description = <<-EOT
    One entry per pipeline, keyed by its name (CDC_PIPELINE). Attributes: source_database,
    vault_aws_role, vault_source_path, vault_snowflake_path, snowflake_database, snowflake_stage
    (required); source_tables (default all), snowflake_warehouse, snowflake_role,
    schedule_expression (rate(5 minutes)), timeout_s (900), memory_mb (2048), extra_environment
    (further non-secret CDC_* variables).
  EOT
  type = map(object({
    source_database      = string
    vault_aws_role       = string
    vault_source_path    = string
    vault_snowflake_path = string
    snowflake_database   = string
    snowflake_stage      = string
    source_tables        = optional(list(string), [])
    snowflake_warehouse  = optional(string)
    snowflake_role       = optional(string)
    schedule_expression  = optional(string, "rate(5 minutes)")
    timeout_s            = optional(number, 900)
    memory_mb            = optional(number, 2048)
    extra_environment    = optional(map(string), {})
  }))
}
