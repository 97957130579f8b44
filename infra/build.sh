#!/usr/bin/env bash
# Build both Lambda functions with `sam build` (rust-cargolambda) for x86_64, then try arm64.
# The arm64 build is skipped with a message when the aarch64-unknown-linux-gnu Rust target is
# not installed, because cargo-lambda would otherwise try to download it.
# Output goes to infra/.aws-sam/check-<arch>; deploys use `sam build` in infra/ instead
# (see docs/deployment.md). A cold release build of both functions takes several minutes.
set -euo pipefail

infra_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(dirname "$infra_dir")"
cd "$repo_dir"

export AWS_EC2_METADATA_DISABLED=true
export SAM_CLI_TELEMETRY=0
# rust-cargolambda is a SAM CLI beta feature; this answers its confirmation prompt.
export SAM_CLI_BETA_RUST_CARGO_LAMBDA=1

if ! grep -q lambda_runtime functions/fetcher/src/main.rs functions/writer/src/main.rs; then
    echo "functions/*/src/main.rs do not use lambda_runtime yet; nothing to build" >&2
    exit 1
fi

# Print the ELF machine of a bootstrap binary: x86_64, aarch64 or the raw number.
elf_machine() {
    python3 - "$1" <<'PY'
import struct, sys
with open(sys.argv[1], "rb") as binary:
    header = binary.read(20)
if header[:4] != b"\x7fELF":
    print("not-elf")
else:
    machine = struct.unpack("<H", header[18:20])[0]
    print({0x3E: "x86_64", 0xB7: "aarch64"}.get(machine, hex(machine)))
PY
}

build() {
    local architecture=$1 expected_machine=$2
    local build_dir="infra/.aws-sam/check-$architecture"
    echo "== sam build, Architecture=$architecture"
    sam build --template infra/template.yaml --build-dir "$build_dir" \
        --parameter-overrides "Architecture=$architecture" --beta-features
    for function in FetcherFunction WriterFunction; do
        local bootstrap="$build_dir/$function/bootstrap"
        if [[ ! -x "$bootstrap" ]]; then
            echo "missing or not executable: $bootstrap" >&2
            return 1
        fi
        local machine
        machine="$(elf_machine "$bootstrap")"
        if [[ "$machine" != "$expected_machine" ]]; then
            echo "$bootstrap is built for $machine, expected $expected_machine" >&2
            return 1
        fi
        echo "$bootstrap: $machine, $(du -h "$bootstrap" | cut -f1)"
    done
}

build x86_64 x86_64

if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
    build arm64 aarch64
else
    echo "== SKIPPED arm64 build: the Rust target aarch64-unknown-linux-gnu is not installed."
    echo "   Install it with 'rustup target add aarch64-unknown-linux-gnu' where downloads from"
    echo "   static.rust-lang.org are allowed, or deploy with Architecture=x86_64."
fi
