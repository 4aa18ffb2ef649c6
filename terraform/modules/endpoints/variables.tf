variable "name" {
  description = "Prefix for every resource name (e.g. cdc-prod)."
  type        = string
}

variable "vpc_id" {
  description = "VPC the endpoints live in (needs enable_dns_support and enable_dns_hostnames)."
  type        = string
}

variable "endpoint_subnet_ids" {
  description = "Private subnets for the interface endpoints, one per availability zone."
  type        = list(string)
}

variable "route_table_ids" {
  description = "Route tables of the Lambda subnets; the S3 and DynamoDB gateway endpoints are added to them."
  type        = list(string)
}

variable "snowflake_privatelink_service_name" {
  description = "Snowflake's endpoint service: `privatelink-vpce-id` of SELECT SYSTEM$GET_PRIVATELINK_CONFIG() (com.amazonaws.vpce.<region>.vpce-svc-...)."
  type        = string

  validation {
    condition     = can(regex("^com\\.amazonaws\\.vpce\\.", var.snowflake_privatelink_service_name))
    error_message = "Expected com.amazonaws.vpce.<region>.vpce-svc-..., as SYSTEM$GET_PRIVATELINK_CONFIG() prints it."
  }
}

variable "snowflake_private_zone_name" {
  description = "Private hosted zone for the PrivateLink host names."
  type        = string
  default     = "privatelink.snowflakecomputing.com"
}

variable "snowflake_privatelink_hostnames" {
  description = "Host names that must resolve to the endpoint: privatelink-account-url, privatelink-ocsp-url, regionless-privatelink-account-url (and its OCSP name) from SYSTEM$GET_PRIVATELINK_CONFIG(). The account URL is CDC_SNOWFLAKE_HOST."
  type        = list(string)

  validation {
    condition     = length(var.snowflake_privatelink_hostnames) > 0
    error_message = "Give at least the privatelink-account-url and privatelink-ocsp-url host names."
  }
}

variable "aws_interface_services" {
  description = "AWS services reached through interface endpoints with private DNS (S3 and DynamoDB always use gateway endpoints). sqs: the dead-letter messages. Add monitoring with metrics_mode = cloudwatch."
  type        = list(string)
  default     = ["sqs"]
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
