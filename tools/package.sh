#!/usr/bin/env bash
# Build the Lambda zip: the package's runtime dependencies (not the dev extras) for Lambda's
# platform, the cdc package and lambda/handler.py -> build/lambda.zip.
#   ARCH=x86_64|aarch64 (default x86_64; aarch64 is Lambda's arm64)
#   PYTHON_VERSION=3.11 (the Lambda runtime); RDS_CA_BUNDLE=path copies a CA bundle to certs/
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH="${ARCH:-x86_64}"
PYTHON_VERSION="${PYTHON_VERSION:-3.11}"
PY="${PY:-.venv/bin/python}"
case "$ARCH" in x86_64|aarch64) ;; *) echo "ARCH must be x86_64 or aarch64" >&2; exit 2 ;; esac
OUT=build/lambda
ZIP=build/lambda.zip
rm -rf "$OUT" "$ZIP"
mkdir -p "$OUT"
DEPS=$("$PY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"]))')
mapfile -t DEP_ARR <<<"$DEPS"
"$PY" -m pip install --quiet --disable-pip-version-check \
  --platform "manylinux2014_${ARCH}" --implementation cp --python-version "$PYTHON_VERSION" \
  --only-binary=:all: --target "$OUT" "${DEP_ARR[@]}"
cp -r cdc "$OUT/cdc"
rm -rf "$OUT/cdc/devstack" 2>/dev/null || true  # local stand-ins only
cp lambda/handler.py "$OUT/handler.py"
if [ -n "${RDS_CA_BUNDLE:-}" ]; then mkdir -p "$OUT/certs"; cp "$RDS_CA_BUNDLE" "$OUT/certs/rds-global-bundle.pem"
else echo "warning: RDS_CA_BUNDLE unset: no certs/rds-global-bundle.pem (CDC_SOURCE_SSLROOTCERT default)" >&2; fi
find "$OUT" -name __pycache__ -type d -prune -exec rm -rf {} +
(cd "$OUT" && zip -q -r -9 -X ../lambda.zip .)
UNZIPPED=$(du -sb "$OUT" | cut -f1)
ZIPPED=$(stat -c %s "$ZIP")
LIMIT_UNZIPPED=$((250 * 1024 * 1024)); LIMIT_ZIPPED=$((50 * 1024 * 1024))
echo "$ZIP ($ARCH): zipped $((ZIPPED / 1024 / 1024)) MB ($ZIPPED bytes), unzipped $((UNZIPPED / 1024 / 1024)) MB ($UNZIPPED bytes)"
ok=0
if [ "$UNZIPPED" -le "$LIMIT_UNZIPPED" ]; then echo "unzipped: fits the 250 MB limit"; else echo "unzipped: EXCEEDS the 250 MB limit"; ok=1; fi
if [ "$ZIPPED" -le "$LIMIT_ZIPPED" ]; then echo "zipped: fits the 50 MB direct-upload limit"; else echo "zipped: exceeds the 50 MB direct-upload limit (upload through S3)"; fi
exit $ok
