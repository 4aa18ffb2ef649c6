# Shared state of every pipeline: checkpoints and leases (DynamoDB, items `checkpoint#<pipeline>`
# and `lease#<pipeline>`) and the Parquet stage (S3, keys `<stage_prefix>/<pipeline>/...`), plus
# the bucket the Lambda package is deployed from.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

resource "aws_kms_key" "stage" {
  count                   = var.kms_key_arn == null ? 1 : 0
  description             = "${var.name}: CDC stage bucket and checkpoint table"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  tags                    = var.tags
}

resource "aws_kms_alias" "stage" {
  count         = var.kms_key_arn == null ? 1 : 0
  name          = "alias/${var.name}-cdc"
  target_key_id = aws_kms_key.stage[0].key_id
}

locals {
  kms_key_arn = var.kms_key_arn == null ? aws_kms_key.stage[0].arn : var.kms_key_arn
}

resource "aws_dynamodb_table" "checkpoints" {
  name         = "${var.name}-checkpoints"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"

  attribute {
    name = "pk"
    type = "S"
  }

  # Released and expired lease items carry a `ttl` attribute one day past their expiry.
  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arn
  }

  deletion_protection_enabled = var.deletion_protection

  tags = var.tags
}

resource "aws_s3_bucket" "stage" {
  bucket_prefix = "${var.name}-stage-"
  force_destroy = false
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "stage" {
  bucket = aws_s3_bucket.stage.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "stage" {
  bucket                  = aws_s3_bucket.stage.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "stage" {
  bucket = aws_s3_bucket.stage.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "stage" {
  bucket = aws_s3_bucket.stage.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

# The stage is the replay log (`cdc replay`): keep it at least as long as you may need to rebuild a
# target from its latest snapshot plus later windows.
resource "aws_s3_bucket_lifecycle_configuration" "stage" {
  bucket = aws_s3_bucket.stage.id

  rule {
    id     = "expire-staged-windows"
    status = "Enabled"
    filter {}
    expiration {
      days = var.stage_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_retention_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.stage]
}

data "aws_iam_policy_document" "stage_bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.stage.arn,
      "${aws_s3_bucket.stage.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyUnencryptedObjectUploads"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.stage.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "stage" {
  bucket     = aws_s3_bucket.stage.id
  policy     = data.aws_iam_policy_document.stage_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.stage]
}

# ---------------------------------------------------------------- Lambda package bucket
# The Lambda zip (~45 MB, near or above the 50 MB direct-upload limit) is deployed from S3.
# Old package versions are kept for `package_noncurrent_retention_days` to allow a rollback
# (point package_s3_object_version at an earlier version).

resource "aws_s3_bucket" "artifacts" {
  count         = var.create_artifact_bucket ? 1 : 0
  bucket_prefix = "${var.name}-artifacts-"
  force_destroy = false
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  count  = var.create_artifact_bucket ? 1 : 0
  bucket = aws_s3_bucket.artifacts[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  count                   = var.create_artifact_bucket ? 1 : 0
  bucket                  = aws_s3_bucket.artifacts[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "artifacts" {
  count  = var.create_artifact_bucket ? 1 : 0
  bucket = aws_s3_bucket.artifacts[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  count  = var.create_artifact_bucket ? 1 : 0
  bucket = aws_s3_bucket.artifacts[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  count  = var.create_artifact_bucket ? 1 : 0
  bucket = aws_s3_bucket.artifacts[0].id

  rule {
    id     = "expire-old-packages"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.package_noncurrent_retention_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.artifacts]
}

data "aws_iam_policy_document" "artifacts_bucket" {
  count = var.create_artifact_bucket ? 1 : 0

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.artifacts[0].arn,
      "${aws_s3_bucket.artifacts[0].arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "artifacts" {
  count      = var.create_artifact_bucket ? 1 : 0
  bucket     = aws_s3_bucket.artifacts[0].id
  policy     = data.aws_iam_policy_document.artifacts_bucket[0].json
  depends_on = [aws_s3_bucket_public_access_block.artifacts]
}

# ---------------------------------------------------------------- Snowflake's read access to the stage
# The Snowflake storage integration reads the stage (COPY INTO ... FROM @stage) by assuming this
# role. Two steps, because each side needs a value from the other (deploy/snowflake_admin.sql):
#   1. the role's ARN is known before it exists (output snowflake_stage_role_arn); create the
#      storage integration with it and your chosen STORAGE_AWS_EXTERNAL_ID;
#   2. DESC INTEGRATION prints STORAGE_AWS_IAM_USER_ARN: set snowflake_storage_iam_user_arn and
#      snowflake_storage_external_id and apply again; only then is the role created.

locals {
  snowflake_role_name = "${var.name}-snowflake-stage"
  snowflake_role_arn  = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:role/${local.snowflake_role_name}"
  snowflake_prefix    = trim(var.snowflake_stage_prefix, "/")
  create_snowflake    = var.snowflake_storage_iam_user_arn != null
}

data "aws_iam_policy_document" "snowflake_assume" {
  count = local.create_snowflake ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [var.snowflake_storage_iam_user_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [var.snowflake_storage_external_id]
    }
  }
}

data "aws_iam_policy_document" "snowflake_read" {
  count = local.create_snowflake ? 1 : 0

  statement {
    sid       = "ReadStagedParts"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.stage.arn}/${local.snowflake_prefix}/*"]
  }

  statement {
    sid       = "ListStage"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.stage.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.snowflake_prefix}/*"]
    }
  }

  statement {
    sid       = "DecryptStagedParts"
    actions   = ["kms:Decrypt"]
    resources = [local.kms_key_arn]
  }
}

resource "aws_iam_role" "snowflake_stage" {
  count                = local.create_snowflake ? 1 : 0
  name                 = local.snowflake_role_name
  description          = "${var.name}: Snowflake storage integration reading the CDC stage"
  assume_role_policy   = data.aws_iam_policy_document.snowflake_assume[0].json
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags

  lifecycle {
    precondition {
      condition     = var.snowflake_storage_external_id != null && var.snowflake_storage_external_id != ""
      error_message = "Set snowflake_storage_external_id to the STORAGE_AWS_EXTERNAL_ID of the storage integration (DESC INTEGRATION)."
    }
  }
}

resource "aws_iam_role_policy" "snowflake_stage" {
  count  = local.create_snowflake ? 1 : 0
  name   = "read-cdc-stage"
  role   = aws_iam_role.snowflake_stage[0].id
  policy = data.aws_iam_policy_document.snowflake_read[0].json
}
