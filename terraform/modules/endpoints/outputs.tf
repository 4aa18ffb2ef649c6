output "security_group_id" {
  description = "Security group of the interface endpoints; each pipeline adds its ingress rule."
  value       = aws_security_group.endpoints.id
}

output "snowflake_endpoint_id" {
  description = "ID of the Snowflake PrivateLink endpoint (authorize it on the Snowflake side if required)."
  value       = aws_vpc_endpoint.snowflake.id
}

output "snowflake_endpoint_dns_name" {
  description = "Regional DNS name of the Snowflake endpoint (the CNAME target)."
  value       = aws_vpc_endpoint.snowflake.dns_entry[0].dns_name
}

output "s3_prefix_list_id" {
  description = "Prefix list of the S3 gateway endpoint (Lambda egress rule)."
  value       = aws_vpc_endpoint.gateway["s3"].prefix_list_id
}

output "dynamodb_prefix_list_id" {
  description = "Prefix list of the DynamoDB gateway endpoint (Lambda egress rule)."
  value       = aws_vpc_endpoint.gateway["dynamodb"].prefix_list_id
}
