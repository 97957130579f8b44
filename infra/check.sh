#!/usr/bin/env bash
# Offline checks of the deployable infrastructure:
#   1. translate template.yaml (SAM) to CloudFormation in build/template.cfn.json,
#   2. cfn-lint the SAM source and the translated template (errors fail the run),
#   3. checkov the translated template with the skips in .checkov.yaml,
#   4. the invariants test, which also proves each invariant check can fail.
# Needs: pip install aws-sam-cli cfn-lint checkov pytest. No AWS account or credentials.
set -euo pipefail

infra_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(dirname "$infra_dir")"
cd "$repo_dir"

# Keep every tool offline: no instance metadata lookups, and any HTTP(S) request goes to a
# closed local port and fails at once (checkov otherwise tries to download its guidelines).
export AWS_EC2_METADATA_DISABLED=true
export HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9
export http_proxy=$HTTP_PROXY https_proxy=$HTTPS_PROXY
export NO_PROXY= no_proxy=

echo "== 1/4 translate SAM to CloudFormation"
python3 infra/tests/translate.py

echo "== 2/4 cfn-lint"
# Exit codes: 2 = errors, 4 = warnings, 8 = informational, or-ed together.
# Warnings and informational findings are printed but do not fail the run.
lint_status=0
cfn-lint infra/template.yaml infra/build/template.cfn.json || lint_status=$?
if (( lint_status & 2 )) || (( lint_status & 1 )); then
    echo "cfn-lint reported errors (exit status $lint_status)" >&2
    exit 1
fi

echo "== 3/4 checkov"
checkov --config-file infra/.checkov.yaml -f infra/build/template.cfn.json

echo "== 4/4 invariants"
python3 -m pytest infra/tests -q -p no:cacheprovider

echo "all infrastructure checks passed"
