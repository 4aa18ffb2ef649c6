output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "lambda_subnet_ids" {
  description = "Private subnets for the Lambda ENIs."
  value       = aws_subnet.lambda[*].id
}

output "endpoint_subnet_ids" {
  description = "Private subnets for the interface endpoints."
  value       = aws_subnet.endpoint[*].id
}

output "db_subnet_ids" {
  description = "Database subnets."
  value       = aws_subnet.db[*].id
}

output "db_subnet_group_name" {
  description = "DB subnet group over the database subnets, for the Aurora cluster."
  value       = aws_db_subnet_group.this.name
}

output "private_route_table_ids" {
  description = "Route tables of the Lambda and endpoint subnets (for gateway endpoints)."
  value       = aws_route_table.private[*].id
}
