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

variable "package_path" {
  description = "Lambda zip built by tools/package.sh."
  type        = string
  default     = "../build/lambda.zip"
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
