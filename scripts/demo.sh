#!/usr/bin/env bash
# The newcomer's demo on the embedded default (SQLite + local key file), in a fresh directory:
# 1,000 encrypted demo rows, then a complete key rotation v1 → v2 with the real commands, and
# the audit record it leaves.
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
"$keyctl" generate                  # v2 created, published decrypt-only
"$keyctl" dual-key                  # v2 primary; v1 still readable
"$keyctl" reencrypt --dry-run
"$keyctl" reencrypt                 # every value v1 → v2, batch by batch
"$keyctl" verify
"$keyctl" promote                   # v1 leaves the published keyring (archived for rollback)
"$keyctl" retire --force --reason "demo: no rollback window needed"
"$keyctl" status --check
"$keyctl" audit
"$keyctl" audit --verify
