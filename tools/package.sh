#!/usr/bin/env bash
# Build the Lambda zip: the package's runtime dependencies (not the dev extras) for Lambda's
# platform, the cdc package and lambda/handler.py -> <OUT_DIR>/lambda.zip, then report its size.
#   ARCH=x86_64|arm64 (default x86_64; aarch64 is accepted for arm64). Terraform's `architecture`
#     must name the same one.
#   PYTHON_VERSION=3.11 (the Lambda runtime, Amazon Linux 2: manylinux2014 wheels only)
#   OUT_DIR=build (the tree goes to OUT_DIR/lambda, the zip to OUT_DIR/lambda.zip)
#   RDS_CA_BUNDLE=path copies a CA bundle to certs/rds-global-bundle.pem (CDC_SOURCE_SSLROOTCERT)
#   AWS_SERVICES="s3 dynamodb ..." botocore service models to keep (default: the ones cdc calls)
#   PRUNE=0 keeps the dependencies exactly as pip installed them
#   ZIP_LEVEL=9 deflate level (1 builds faster, for tests)
#
# Pruning removes what the function never loads: tests, C/C++ headers and Cython sources,
# pyarrow's Arrow Flight libraries and duplicate copies of libarrow_python, console scripts,
# dist-info RECORD files, and the botocore service models of services cdc does not call.
# Bytecode: every module is compiled for the runtime's Python (when the building Python is that
# version), because /var/task is read-only and a cold start would otherwise compile each module it
# imports from source, every time. The .pyc files are hash-based and unchecked (PEP 552): valid
# whatever times the unpacked files get, and the same bytes for the same sources.
# boto3/botocore stay in the zip: the runtime's copy is whichever version AWS ships there, not the
# one cdc is tested with, and the trimmed botocore costs ~1 MB zipped.
# Writes OUT_DIR/lambda.zip.base64sha256 (Terraform's package_source_hash for a pre-uploaded zip).
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH="${ARCH:-x86_64}"
PYTHON_VERSION="${PYTHON_VERSION:-3.11}"
PY="${PY:-.venv/bin/python}"
OUT_DIR="${OUT_DIR:-build}"
PRUNE="${PRUNE:-1}"
ZIP_LEVEL="${ZIP_LEVEL:-9}"
AWS_SERVICES="${AWS_SERVICES:-s3 dynamodb sqs sns cloudwatch sts}"
case "$ARCH" in
  x86_64) PLATFORM_ARCH=x86_64 ;;
  arm64|aarch64) ARCH=arm64; PLATFORM_ARCH=aarch64 ;;
  *) echo "ARCH must be x86_64 or arm64 (got '$ARCH')" >&2; exit 2 ;;
esac
OUT="$OUT_DIR/lambda"
ZIP="$OUT_DIR/lambda.zip"
rm -rf "$OUT" "$ZIP" "$ZIP.base64sha256"
mkdir -p "$OUT"
DEPS=$("$PY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"]))')
mapfile -t DEP_ARR <<<"$DEPS"
"$PY" -m pip install --quiet --disable-pip-version-check \
  --platform "manylinux2014_${PLATFORM_ARCH}" --implementation cp --python-version "$PYTHON_VERSION" \
  --only-binary=:all: --target "$OUT" "${DEP_ARR[@]}"
cp -r cdc "$OUT/cdc"
rm -rf "$OUT/cdc/devstack" "$OUT/cdc/demo.py"  # local stand-ins only
cp lambda/handler.py "$OUT/handler.py"
if [ -n "${RDS_CA_BUNDLE:-}" ]; then mkdir -p "$OUT/certs"; cp "$RDS_CA_BUNDLE" "$OUT/certs/rds-global-bundle.pem"
else echo "warning: RDS_CA_BUNDLE unset: no certs/rds-global-bundle.pem (CDC_SOURCE_SSLROOTCERT default)" >&2; fi
find "$OUT" -name __pycache__ -type d -prune -exec rm -rf {} +
BEFORE=$(du -sb "$OUT" | cut -f1)

prune() {
  local pa="$OUT/pyarrow"
  rm -rf "$OUT/bin" "$pa/tests" "$pa/include" "$pa/src" "$pa/includes" "$pa/conftest.py" "$pa/benchmark.py"
  find "$pa" \( -name '*.pxd' -o -name '*.pyx' -o -name '*.pxi' -o -name '*.h' -o -name '*.cc' \) -delete
  # Arrow Flight (RPC) is never imported; _pyarrow_cpp_tests is pyarrow's own test module.
  rm -f "$pa"/libarrow_flight.so* "$pa"/libarrow_python_flight.so* "$pa"/_flight.*.so "$pa/flight.py" \
    "$pa"/_pyarrow_cpp_tests.*.so
  # Wheels cannot hold symlinks, so each shared library comes three times; the loader only asks
  # for the SONAME (lib*.so.<major>), the other two names are for linking against pyarrow.
  local lib
  for lib in "$pa"/libarrow_python*.so; do
    [ -e "$lib" ] || continue
    rm -f "$lib" "$lib".*.*.*
  done
  find "$OUT" -path '*.dist-info/RECORD' -delete
  # botocore: keep the shared data files and the models of the services cdc calls.
  local data="$OUT/botocore/data" svc keep
  if [ -d "$data" ]; then
    for svc in "$data"/*/; do
      svc=$(basename "$svc"); keep=0
      for k in $AWS_SERVICES; do [ "$svc" = "$k" ] && keep=1; done
      [ "$keep" = 1 ] || rm -rf "${data:?}/$svc"
    done
  fi
}
if [ "$PRUNE" = 1 ]; then prune; fi
PRUNED=$(du -sb "$OUT" | cut -f1)

BUILD_PYTHON=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$BUILD_PYTHON" = "$PYTHON_VERSION" ]; then
  # -s/-p: the modules' file names are where Lambda unpacks the zip (tracebacks name them), not
  # this build's directory
  # -q lists only what does not compile (on stderr, before the build stops)
  PYTHONHASHSEED=0 "$PY" -m compileall -q --invalidation-mode unchecked-hash -s "$OUT" -p /var/task "$OUT" >&2
  BYTECODE="bytecode for Python $PYTHON_VERSION: $(find "$OUT" -name '*.pyc' | wc -l) modules"
else
  BYTECODE="no bytecode: this Python is $BUILD_PYTHON, the runtime's $PYTHON_VERSION (cold starts compile what they import; build with a Python $PYTHON_VERSION, PY=...)"
  echo "warning: $BYTECODE" >&2
fi

# Reproducible zip: sorted entries, fixed timestamps, every file world-readable (Lambda runs the
# code as another user), so the same tree always gives the same bytes and source_code_hash.
"$PY" - "$OUT" "$ZIP" "$ZIP_LEVEL" <<'PYZIP'
import os, sys, zipfile
root, target, level = sys.argv[1], sys.argv[2], int(sys.argv[3])
with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(base, name)
            info = zipfile.ZipInfo(os.path.relpath(path, root), date_time=(1980, 1, 1, 0, 0, 0))
            mode = os.stat(path).st_mode
            info.external_attr = ((0o755 if mode & 0o111 else 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as fh:
                zf.writestr(info, fh.read(), compresslevel=level)
PYZIP
UNZIPPED=$(du -sb "$OUT" | cut -f1)
ZIPPED=$(stat -c %s "$ZIP")
"$PY" -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha256(open(sys.argv[1], "rb").read()).digest()).decode())' \
  "$ZIP" >"$ZIP.base64sha256"
LIMIT_UNZIPPED=$((250 * 1024 * 1024)); LIMIT_ZIPPED=$((50 * 1024 * 1024))
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "$ZIP ($ARCH): zipped $(mb "$ZIPPED") MB ($ZIPPED bytes), unzipped $(mb "$UNZIPPED") MB ($UNZIPPED bytes)"
if [ "$PRUNE" = 1 ]; then echo "pruning removed $(mb $((BEFORE - PRUNED))) MB unzipped (from $(mb "$BEFORE") MB)"; fi
echo "$BYTECODE ($(mb $((UNZIPPED - PRUNED))) MB unzipped)"
ok=0
if [ "$UNZIPPED" -le "$LIMIT_UNZIPPED" ]; then echo "unzipped: fits the 250 MB limit"; else echo "unzipped: EXCEEDS the 250 MB limit"; ok=1; fi
if [ "$ZIPPED" -le "$LIMIT_ZIPPED" ]; then echo "zipped: fits the 50 MB direct-upload limit"
else echo "zipped: exceeds the 50 MB direct-upload limit: deploy it through S3 (Terraform package_source = \"upload\" or \"s3\")"; fi
exit $ok
