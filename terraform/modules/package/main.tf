# The Lambda package in S3. The zip built by tools/package.sh is ~45 MB, close to (and with more
# dependencies above) the 50 MB limit of a direct upload, so functions are created from an S3
# object instead. Either this module uploads the local zip (package_path set), or it refers to an
# object uploaded beforehand (package_path null; key, and optionally object_version, set), e.g. by
# a CI job: `aws s3 cp build/lambda.zip s3://<bucket>/<key>`.
#
# The caller of Terraform (not the function's role) reads the object when Lambda is created or
# updated; with an SSE-KMS bucket it needs kms:Decrypt on the bucket's key.

locals {
  upload = var.package_path != null
  key    = var.key != null ? var.key : "lambda/${var.name}/lambda-${var.architecture}.zip"
}

resource "aws_s3_object" "package" {
  count                  = local.upload ? 1 : 0
  bucket                 = var.bucket
  key                    = local.key
  source                 = var.package_path
  source_hash            = filemd5(var.package_path) # etag is no MD5 under SSE-KMS
  content_type           = "application/zip"
  server_side_encryption = "aws:kms"
  kms_key_id             = var.kms_key_arn
  tags                   = var.tags
}

# A pre-uploaded object: read its current version, so that uploading a new zip under the same key
# updates the functions on the next apply (unless object_version pins one).
data "aws_s3_object" "package" {
  count  = local.upload ? 0 : 1
  bucket = var.bucket
  key    = local.key

  lifecycle {
    precondition {
      condition     = var.key != null
      error_message = "Set key (the S3 key of the uploaded zip) when package_path is null, or set package_path to upload the zip."
    }
  }
}

locals {
  object_version = (
    local.upload ? aws_s3_object.package[0].version_id
    : var.object_version != null ? var.object_version
    : data.aws_s3_object.package[0].version_id
  )
  source_code_hash = local.upload ? filebase64sha256(var.package_path) : var.source_hash
}
