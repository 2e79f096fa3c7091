#!/usr/bin/env bash
# Builds the Lambda bootstrap the templates deploy into deploy/serverless/build/.
# Usage: deploy/serverless/build.sh [arm64|x86_64]   (default arm64)
#
# cargo-lambda (pinned) comes from PyPI into a virtualenv under ~/.cache; it brings
# zig, which links for Amazon Linux 2023 on either architecture. Building for an
# architecture needs its Rust target: `rustup target add aarch64-unknown-linux-gnu`
# (arm64) or `x86_64-unknown-linux-gnu` (x86_64).
set -euo pipefail
cd "$(dirname "$0")/../.."
arch="${1:-arm64}"
case "$arch" in
  arm64) flag=--arm64 ;;
  x86_64) flag=--x86-64 ;;
  *) echo "usage: $0 [arm64|x86_64]" >&2; exit 2 ;;
esac
CARGO_LAMBDA_VERSION=1.9.2
venv="${XDG_CACHE_HOME:-$HOME/.cache}/ec2-scheduler/cargo-lambda-$CARGO_LAMBDA_VERSION"
if ! "$venv/bin/cargo-lambda" lambda --version >/dev/null 2>&1; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi
export PATH="$venv/bin:$PATH"
cargo lambda build --release --locked -p ec2-scheduler-lambda --bin bootstrap "$flag"
target_dir=$(cargo metadata --format-version 1 --no-deps --locked | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
mkdir -p deploy/serverless/build
cp "$target_dir/lambda/bootstrap/bootstrap" deploy/serverless/build/bootstrap
echo "$arch" > deploy/serverless/build/ARCHITECTURE
ls -l deploy/serverless/build/bootstrap
echo "built for $arch: deploy with Architecture=$arch (see the README)"
