# Shared state of every pipeline: checkpoints and leases (DynamoDB, items `checkpoint#<pipeline>`
# and `lease#<pipeline>`) and the Parquet stage (S3, keys `<stage_prefix>/<pipeline>/...`).

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
