variable "name" {
  description = "Prefix for every resource name (e.g. cdc-prod)."
  type        = string
}

variable "azs" {
  description = "Availability zones, one subnet of each kind per zone (the diagram uses two)."
  type        = list(string)

  validation {
    condition     = length(var.azs) >= 2
    error_message = "Use at least two availability zones."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
  default     = "10.0.0.0/16"
}

variable "public_subnet_cidrs" {
  description = "Public subnets holding the NAT gateways, one per zone in var.azs order."
  type        = list(string)
  default     = ["10.0.0.0/26", "10.0.0.64/26"]
}

variable "lambda_subnet_cidrs" {
  description = "Private subnets for the Lambda ENIs, one per zone in var.azs order."
  type        = list(string)
  default     = ["10.0.1.0/24", "10.0.3.0/24"]
}

variable "endpoint_subnet_cidrs" {
  description = "Private subnets for the VPC interface endpoints (Snowflake PrivateLink), one per zone."
  type        = list(string)
  default     = ["10.0.2.0/24", "10.0.4.0/24"]
}

variable "db_subnet_cidrs" {
  description = "Database subnets (Aurora), one per zone; no route leaves the VPC."
  type        = list(string)
  default     = ["10.0.10.0/24", "10.0.11.0/24"]
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
