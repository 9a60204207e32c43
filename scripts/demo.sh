#!/usr/bin/env bash
# The newcomer's demo on the embedded default (SQLite + local key file), in a fresh directory:
# create a keyring and 1,000 encrypted demo rows, then show what each key version protects.
# Usage: npm run demo [-- DIR]     (default: a new temporary directory)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
keyctl="$repo/bin/keyctl.js"
dir="${1:-$(mktemp -d "${TMPDIR:-/tmp}/keyctl-demo.XXXXXX")}"
mkdir -p "$dir"
cd "$dir"
echo "== demo directory: $dir"
set -x
"$keyctl" init --demo --rows 1000
"$keyctl" status
"$keyctl" status --check
