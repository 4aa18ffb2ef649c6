# A complete deployment: the diagram's network, one pipeline. Build the package first:
#   ARCH=x86_64 tools/package.sh   (writes build/lambda.zip)
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

  name         = "cdc-prod"
  azs          = ["us-east-1a", "us-east-1b"]
  package_path = "${path.module}/../../../build/lambda.zip"

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
      schedule_expression  = "rate(5 minutes)"
    }
  }
}

output "pipelines" {
  value = module.cdc.pipelines
}
