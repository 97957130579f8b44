#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit, simulator, moto and Lambda-binary tests) and the
# offline checks of the SAM template. Prerequisite: pip install -r requirements-dev.txt
set -euo pipefail
cd "$(dirname "$0")/.."

export AWS_EC2_METADATA_DISABLED=true
cargo test --workspace --locked
bash infra/check.sh
