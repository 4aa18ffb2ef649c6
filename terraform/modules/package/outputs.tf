output "s3_bucket" {
  description = "Bucket of the package (pipeline module package_s3_bucket)."
  value       = var.bucket
}

output "s3_key" {
  description = "Key of the package (pipeline module package_s3_key)."
  value       = local.key
}

output "s3_object_version" {
  description = "Object version deployed (pipeline module package_s3_object_version); a new upload changes it and so updates the functions."
  value       = local.object_version
}

output "source_code_hash" {
  description = "Base64 SHA-256 of the zip, or null when unknown (pipeline module package_source_hash)."
  value       = local.source_code_hash
}
