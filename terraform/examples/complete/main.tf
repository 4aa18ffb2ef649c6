# A complete deployment: the diagram's network, one pipeline. Build the package first:
#   make package ARCH=x86_64   (writes build/lambda.zip and reports its size)
# Terraform uploads it to the artifact bucket it creates and deploys the functions from there
# (package_source = "upload"). To deploy a zip a CI job uploaded instead:
#   package_source            = "s3"
#   package_s3_bucket         = "my-artifacts"
#   package_s3_key            = "cdc/lambda-x86_64.zip"
#   package_source_hash       = file("../../../build/lambda.zip.base64sha256")
# After `terraform apply`, run the smoke test printed as pipelines.orders.check_invoke_command.
terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = { source = "hashicorp/aws", version = ">= 5.0" }
  }
}

provider "aws" {
  region = "us-east-1"
}

module "cdc" {
  source = "../.."

  name           = "cdc-prod"
  azs            = ["us-east-1a", "us-east-1b"]
  architecture   = "x86_64" # ARCH of make package
  package_source = "upload"
  package_path   = "${path.module}/../../../build/lambda.zip"

  db_security_group_id = "sg-0123456789abcdef0"
  source_host          = "orders.cluster-abc.us-east-1.rds.amazonaws.com"
  vault_addr           = "https://vault.example.com:8200"
  vault_cidr_blocks    = ["203.0.113.10/32"]

  snowflake_account                  = "xy12345"
  snowflake_host                     = "xy12345.us-east-1.privatelink.snowflakecomputing.com"
  snowflake_privatelink_service_name = "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0"
  snowflake_privatelink_hostnames = [
    "xy12345.us-east-1.privatelink.snowflakecomputing.com",
    "ocsp.xy12345.us-east-1.privatelink.snowflakecomputing.com",
  ]

  alert_emails = ["data-oncall@example.com"]

  # Step 2 of deploy/snowflake_admin.sql: from DESC INTEGRATION CDC_S3, then apply again.
  # snowflake_storage_iam_user_arn = "arn:aws:iam::123456789012:user/abc0-s-v2st1234"
  # snowflake_storage_external_id  = "the STORAGE_AWS_EXTERNAL_ID you chose"

  pipelines = {
    orders = {
      source_database      = "orders"
      source_tables        = ["public.orders", "public.order_items"]
      vault_aws_role       = "cdc-orders"
      vault_source_path    = "cdc/orders/postgres"
      vault_snowflake_path = "cdc/orders/snowflake"
      snowflake_database   = "RAW"
      snowflake_stage      = "RAW.CDC_LOAD.CDC_STAGE"
      snowflake_warehouse  = "CDC_WH"
      snowflake_role       = "CDC_LOADER"
      schedule_expression  = "rate(5 minutes)"
    }
  }
}

output "pipelines" {
  description = "Functions, roles, queues, dashboards and the re-snapshot / smoke-test commands."
  value       = module.cdc.pipelines
}

output "package" {
  description = "The S3 object the functions run."
  value       = module.cdc.package
}

output "snowflake_stage_url" {
  description = "<STAGE_URL> of deploy/snowflake_admin.sql: the storage integration's allowed location and the external stage's URL."
  value       = module.cdc.snowflake_stage_url
}

output "snowflake_stage_role_arn" {
  description = "<STAGE_ROLE_ARN> of deploy/snowflake_admin.sql."
  value       = module.cdc.snowflake_stage_role_arn
}

output "snowflake_endpoint_id" {
  description = "<VPC_ENDPOINT_ID> of deploy/snowflake_admin.sql (the network rule)."
  value       = module.cdc.snowflake_endpoint_id
}
