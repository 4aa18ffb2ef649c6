variable "name" {
  description = "Prefix for every resource name (e.g. cdc-prod)."
  type        = string
}

variable "stage_retention_days" {
  description = "Days staged windows and snapshots are kept in the S3 stage."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
