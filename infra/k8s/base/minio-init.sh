#!/bin/sh
# MinIO one-shot (minio/mc): the private bucket and an S3 account for the app that can only use that bucket.
# Compose runs it as `minio-init`, Kubernetes as the Job `minio-init` (infra/k8s/base/minio.yaml).
# Idempotent: safe on every `docker compose up`.
set -eu
: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${BIPLANE_S3_ACCESS_KEY:?}" "${BIPLANE_S3_SECRET_KEY:?}" "${BIPLANE_BUCKET:?}"

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "local/$BIPLANE_BUCKET"
mc anonymous set none "local/$BIPLANE_BUCKET"

policy="${TMPDIR:-/tmp}/biplane-app.json"
cat >"$policy" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
     "Resource": ["arn:aws:s3:::$BIPLANE_BUCKET"]},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                                   "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::$BIPLANE_BUCKET/*"]}
  ]
}
JSON
mc admin policy create local biplane-app "$policy"
mc admin user add local "$BIPLANE_S3_ACCESS_KEY" "$BIPLANE_S3_SECRET_KEY"
if ! mc admin user info local "$BIPLANE_S3_ACCESS_KEY" | grep -q "biplane-app"; then
  mc admin policy attach local biplane-app --user "$BIPLANE_S3_ACCESS_KEY"
fi
echo "bucket $BIPLANE_BUCKET is private; user $BIPLANE_S3_ACCESS_KEY may use it"
