# VPC endpoints: the Snowflake PrivateLink interface endpoint (with private DNS through a Route 53
# private hosted zone, since Snowflake's endpoint service offers no private DNS name of its own),
# gateway endpoints for S3 and DynamoDB, and interface endpoints for the other AWS APIs the Lambda
# calls (SQS by default), so the Lambda needs no route to the internet except to Vault.
#
# The endpoint security group starts with no ingress: each pipeline module adds one rule allowing
# 443 from its own Lambda security group.

data "aws_region" "current" {}

resource "aws_security_group" "endpoints" {
  name        = "${var.name}-vpc-endpoints"
  description = "Interface endpoints (Snowflake PrivateLink, AWS APIs); ingress 443 from pipeline Lambdas only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-vpc-endpoints" })
}

resource "aws_vpc_endpoint" "snowflake" {
  vpc_id              = var.vpc_id
  service_name        = var.snowflake_privatelink_service_name
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.endpoint_subnet_ids
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = false # Snowflake's service has no private DNS name; the zone below provides it
  tags                = merge(var.tags, { Name = "${var.name}-snowflake" })
}

# privatelink.snowflakecomputing.com resolves, inside the VPC only, to the endpoint.
resource "aws_route53_zone" "snowflake" {
  name    = var.snowflake_private_zone_name
  comment = "${var.name}: Snowflake PrivateLink"
  vpc {
    vpc_id = var.vpc_id
  }
  tags = var.tags
}

resource "aws_route53_record" "snowflake" {
  for_each = toset(var.snowflake_privatelink_hostnames)
  zone_id  = aws_route53_zone.snowflake.zone_id
  name     = each.value
  type     = "CNAME"
  ttl      = 300
  records  = [aws_vpc_endpoint.snowflake.dns_entry[0].dns_name]
}

resource "aws_vpc_endpoint" "gateway" {
  for_each          = toset(["s3", "dynamodb"])
  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${data.aws_region.current.name}.${each.key}"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.route_table_ids
  tags              = merge(var.tags, { Name = "${var.name}-${each.key}" })
}

resource "aws_vpc_endpoint" "interface" {
  for_each            = toset(var.aws_interface_services)
  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${data.aws_region.current.name}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.endpoint_subnet_ids
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = true
  tags                = merge(var.tags, { Name = "${var.name}-${each.key}" })
}
