variable "name" {
  description = "Prefix for every resource name (e.g. cdc-prod); the function is <name>-<pipeline>."
  type        = string
}

variable "pipeline" {
  description = "Pipeline name (CDC_PIPELINE): [a-z0-9][a-z0-9_-]{0,47}; keys its checkpoint, lease, slot and stage prefix."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{0,47}$", var.pipeline))
    error_message = "Invalid pipeline: Pipeline name (CDC_PIPELINE): [a-z0-9][a-z0-9_-]{0,47}; keys its checkpoint, lease, slot and stage prefix."
  }
}

variable "package_s3_bucket" {
  description = "Code source 1 (usual): S3 bucket of the zip built by tools/package.sh (modules/package output s3_bucket)."
  type        = string
  default     = null
}

variable "package_s3_key" {
  description = "S3 key of the zip (modules/package output s3_key); required with package_s3_bucket."
  type        = string
  default     = null
}

variable "package_s3_object_version" {
  description = "Object version of the zip (modules/package output s3_object_version); a new version updates the function."
  type        = string
  default     = null
}

variable "package_source_hash" {
  description = "Base64 SHA-256 of the zip (build/lambda.zip.base64sha256), so that a changed zip updates the function; null with package_path: computed from the file."
  type        = string
  default     = null
}

variable "package_path" {
  description = "Code source 2: local zip uploaded directly with the function; only below Lambda's 50 MB direct-upload limit."
  type        = string
  default     = null
}

variable "image_uri" {
  description = "Code source 3: ECR image URI (a Lambda Python base image with the package tree in /var/task); the command is handler.handler."
  type        = string
  default     = null
}

variable "runtime" {
  description = "Lambda runtime of a zip package; must match PYTHON_VERSION of tools/package.sh."
  type        = string
  default     = "python3.11"

  validation {
    condition     = can(regex("^python3\\.1[1-9]$", var.runtime))
    error_message = "runtime must be a Python 3.11+ Lambda runtime (python3.11, python3.12, ...), matching PYTHON_VERSION of tools/package.sh."
  }
}

variable "create_operator_policy" {
  description = "Create an IAM policy (output operator_policy_arn) allowing the manual invocations and reading the logs."
  type        = bool
  default     = true
}

variable "architecture" {
  description = "Lambda architecture; must match ARCH of tools/package.sh (x86_64 or arm64)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "Invalid architecture: Lambda architecture; must match ARCH of tools/package.sh (x86_64 or arm64)."
  }
}

variable "timeout_s" {
  description = "Lambda timeout in seconds (max 900); a window ends CDC_WINDOW_SAFETY_MARGIN_S before it."
  type        = number
  default     = 900

  validation {
    condition     = var.timeout_s >= 60 && var.timeout_s <= 900
    error_message = "Invalid timeout_s: Lambda timeout in seconds (max 900); a window ends CDC_WINDOW_SAFETY_MARGIN_S before it."
  }
}

variable "memory_mb" {
  description = "Lambda memory in MB (also sets the CPU share)."
  type        = number
  default     = 2048

  validation {
    condition     = var.memory_mb >= 512 && var.memory_mb <= 10240
    error_message = "Invalid memory_mb: Lambda memory in MB (also sets the CPU share)."
  }
}

variable "ephemeral_storage_mb" {
  description = "Size of /tmp in MB, where Parquet parts are spooled."
  type        = number
  default     = 2048
}

variable "log_retention_days" {
  description = "Days the Lambda's log group keeps its logs."
  type        = number
  default     = 30
}

variable "log_kms_key_arn" {
  description = "KMS key for the log group; null uses CloudWatch Logs' own encryption."
  type        = string
  default     = null
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary for the execution role, if your account requires one."
  type        = string
  default     = null
}

variable "schedule_expression" {
  description = "EventBridge schedule of the incremental windows, e.g. rate(5 minutes)."
  type        = string
  default     = "rate(5 minutes)"
}

variable "schedule_enabled" {
  description = "Whether the schedule is enabled (disable it to pause the pipeline)."
  type        = bool
  default     = true
}

variable "schedule_max_event_age_s" {
  description = "Seconds a scheduled invocation may wait (e.g. throttled behind a running window) before it is dropped to the DLQ."
  type        = number
  default     = 300
}

variable "vpc_id" {
  description = "VPC of the Lambda."
  type        = string
}

variable "lambda_subnet_ids" {
  description = "Private subnets of the Lambda ENIs (no route from the internet; outbound through NAT)."
  type        = list(string)

  validation {
    condition     = length(var.lambda_subnet_ids) >= 2
    error_message = "Invalid lambda_subnet_ids: Private subnets of the Lambda ENIs (no route from the internet; outbound through NAT)."
  }
}

variable "db_security_group_id" {
  description = "Security group of the Aurora cluster; this module adds an ingress rule from the Lambda."
  type        = string
}

variable "endpoint_security_group_id" {
  description = "Security group of the interface endpoints (endpoints module); this module adds an ingress rule from the Lambda."
  type        = string
}

variable "gateway_prefix_list_ids" {
  description = "Prefix lists of the S3 and DynamoDB gateway endpoints (Lambda egress 443)."
  type        = list(string)
}

variable "vault_cidr_blocks" {
  description = "CIDR blocks of the Vault servers (egress 443 through the NAT gateways). Use 0.0.0.0/0 only if Vault has no fixed addresses."
  type        = list(string)

  validation {
    condition     = length(var.vault_cidr_blocks) > 0
    error_message = "Invalid vault_cidr_blocks: CIDR blocks of the Vault servers (egress 443 through the NAT gateways). Use 0.0.0.0/0 only if Vault has no fixed addresses."
  }
}

variable "checkpoint_table_name" {
  description = "CDC_CHECKPOINT_TABLE: the DynamoDB checkpoint and lease table."
  type        = string
}

variable "checkpoint_table_arn" {
  description = "ARN of the checkpoint table (IAM)."
  type        = string
}

variable "stage_bucket" {
  description = "Name of the S3 stage bucket."
  type        = string
}

variable "stage_bucket_arn" {
  description = "ARN of the S3 stage bucket (IAM)."
  type        = string
}

variable "stage_prefix" {
  description = "Key prefix of the stage in the bucket; CDC_STAGE_URL is s3://<bucket>/<prefix>, the URL of the Snowflake stage."
  type        = string
  default     = "cdc"
}

variable "kms_key_arn" {
  description = "KMS key of the stage bucket and checkpoint table (IAM: GenerateDataKey, Decrypt)."
  type        = string
}

variable "dlq_arn" {
  description = "ARN of the dead-letter queue (alerting module)."
  type        = string
}

variable "dlq_url" {
  description = "CDC_DLQ_URL: URL of the dead-letter queue."
  type        = string
}

variable "alarm_topic_arn" {
  description = "CDC_ALARM_TOPIC_ARN: the SNS topic the alarms notify; the `{\"mode\": \"check\"}` smoke test verifies it (null: not checked)."
  type        = string
  default     = null
}

variable "dlq_kms_key_arn" {
  description = "KMS key of the dead-letter queue when it uses a customer-managed key; null for SSE-SQS."
  type        = string
  default     = null
}

variable "metrics_namespace" {
  description = "CDC_METRICS_NAMESPACE: CloudWatch namespace of the window metrics."
  type        = string
  default     = "CDC"
}

variable "log_level" {
  description = "CDC_LOG_LEVEL."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "Invalid log_level: CDC_LOG_LEVEL."
  }
}

variable "source_host" {
  description = "CDC_SOURCE_HOST: the Aurora writer (cluster) endpoint."
  type        = string
}

variable "source_port" {
  description = "CDC_SOURCE_PORT (also the port of the database security-group rules)."
  type        = number
  default     = 5432
}

variable "source_database" {
  description = "CDC_SOURCE_DATABASE."
  type        = string
}

variable "source_sslmode" {
  description = "CDC_SOURCE_SSLMODE."
  type        = string
  default     = "verify-full"

  validation {
    condition     = contains(["require", "verify-ca", "verify-full"], var.source_sslmode)
    error_message = "Invalid source_sslmode: CDC_SOURCE_SSLMODE."
  }
}

variable "source_sslrootcert" {
  description = "CDC_SOURCE_SSLROOTCERT: CA bundle inside the package (tools/package.sh copies RDS_CA_BUNDLE to certs/rds-global-bundle.pem)."
  type        = string
  default     = "/var/task/certs/rds-global-bundle.pem"
}

variable "source_slot" {
  description = "CDC_SOURCE_SLOT; null: cdc_<pipeline>."
  type        = string
  default     = null
}

variable "source_tables" {
  description = "CDC_SOURCE_TABLES: schema.table names; empty: every user table."
  type        = list(string)
  default     = []
}

variable "source_keys" {
  description = "CDC_SOURCE_KEYS: keys of tables without a primary key, 'schema.table:col1,col2;...'."
  type        = string
  default     = null
}

variable "source_connect_timeout_s" {
  description = "CDC_SOURCE_CONNECT_TIMEOUT_S."
  type        = number
  default     = 10
}

variable "delete_mode" {
  description = "CDC_DELETE_MODE: hard or soft."
  type        = string
  default     = "hard"

  validation {
    condition     = contains(["hard", "soft"], var.delete_mode)
    error_message = "Invalid delete_mode: CDC_DELETE_MODE: hard or soft."
  }
}

variable "vault_addr" {
  description = "CDC_VAULT_ADDR, e.g. https://vault.example.com:8200. The Lambda authenticates with Vault's AWS auth method as its execution role (no secret in the environment)."
  type        = string

  validation {
    condition     = startswith(var.vault_addr, "https://")
    error_message = "Invalid vault_addr: CDC_VAULT_ADDR, e.g. https://vault.example.com:8200. The Lambda authenticates with Vault's AWS auth method as its execution role (no secret in the environment)."
  }
}

variable "vault_aws_role" {
  description = "CDC_VAULT_AWS_ROLE: the Vault role bound to this module's execution role ARN (output role_arn)."
  type        = string
}

variable "vault_aws_mount" {
  description = "CDC_VAULT_AWS_MOUNT."
  type        = string
  default     = "aws"
}

variable "vault_aws_server_id" {
  description = "CDC_VAULT_AWS_SERVER_ID: X-Vault-AWS-IAM-Server-ID header value, if Vault requires one."
  type        = string
  default     = null
}

variable "vault_namespace" {
  description = "CDC_VAULT_NAMESPACE (Vault Enterprise)."
  type        = string
  default     = null
}

variable "vault_kv_mount" {
  description = "CDC_VAULT_KV_MOUNT."
  type        = string
  default     = "secret"
}

variable "vault_source_path" {
  description = "CDC_VAULT_SOURCE_PATH: KV v2 path of the PostgreSQL user and password."
  type        = string
}

variable "vault_snowflake_path" {
  description = "CDC_VAULT_SNOWFLAKE_PATH: KV v2 path of the Snowflake user and password."
  type        = string
}

variable "vault_ca_cert" {
  description = "CDC_VAULT_CA_CERT: CA bundle path inside the package, if Vault's certificate is private."
  type        = string
  default     = null
}

variable "snowflake_account" {
  description = "CDC_SNOWFLAKE_ACCOUNT."
  type        = string
}

variable "snowflake_host" {
  description = "CDC_SNOWFLAKE_HOST: the privatelink-account-url (resolved by the endpoints module's private zone)."
  type        = string
}

variable "snowflake_database" {
  description = "CDC_SNOWFLAKE_DATABASE."
  type        = string
}

variable "snowflake_warehouse" {
  description = "CDC_SNOWFLAKE_WAREHOUSE."
  type        = string
  default     = null
}

variable "snowflake_role" {
  description = "CDC_SNOWFLAKE_ROLE."
  type        = string
  default     = null
}

variable "snowflake_stage" {
  description = "CDC_SNOWFLAKE_STAGE: qualified name of the external stage whose URL is CDC_STAGE_URL."
  type        = string
}

variable "snowflake_load_schema" {
  description = "CDC_SNOWFLAKE_LOAD_SCHEMA: schema of the transient load tables."
  type        = string
  default     = "CDC_LOAD"
}

variable "window_max_changes" {
  description = "CDC_WINDOW_MAX_CHANGES."
  type        = number
  default     = 100000
}

variable "window_safety_margin_s" {
  description = "CDC_WINDOW_SAFETY_MARGIN_S: Lambda time kept free after a window."
  type        = number
  default     = 30
}

variable "window_apply_margin_s" {
  description = "CDC_WINDOW_APPLY_MARGIN_S: Lambda time kept for staging and applying what a window read."
  type        = number
  default     = 60
}

variable "window_merge_reserve_s" {
  description = "CDC_WINDOW_MERGE_RESERVE_S: the least time left (beyond the safety margin) for a table's COPY + MERGE to start."
  type        = number
  default     = 20
}

variable "apply_parallelism" {
  description = "CDC_APPLY_PARALLELISM: tables of a window merged at the same time, each on its own Snowflake connection."
  type        = number
  default     = 4
}

variable "retry_attempts" {
  description = "CDC_RETRY_ATTEMPTS: attempts of a window that fails with a transient error."
  type        = number
  default     = 3
}

variable "part_max_rows" {
  description = "CDC_PART_MAX_ROWS."
  type        = number
  default     = 25000
}

variable "receive_process_min_bytes" {
  description = "CDC_RECEIVE_PROCESS_MIN_BYTES; null: 64 MiB from 3,538 MB of memory (two vCPUs), else -1 (never)."
  type        = number
  default     = null
}

variable "lease_ttl_s" {
  description = "CDC_LEASE_TTL_S: must exceed timeout_s."
  type        = number
  default     = 960
}

variable "extra_environment" {
  description = "Further CDC_* variables (not secrets), merged last."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.extra_environment) : startswith(k, "CDC_") && !contains(["CDC_VAULT_TOKEN", "CDC_VAULT_SECRET_ID", "CDC_AWS_SECRET_ACCESS_KEY", "CDC_AWS_ACCESS_KEY_ID"], k)])
    error_message = "Invalid extra_environment: Further CDC_* variables (not secrets), merged last."
  }
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
