#!/usr/bin/env bash
# GNU time for the pull benchmark (agent/tests/pull_registry.rs,
# bench_pull_vs_skopeo): `/usr/bin/time -v` reports wall time and peak RSS.
# The pull tests' other tools come from 20-kernel-tree.sh and 30-registry.sh.
set -euo pipefail
. "$(dirname "$0")/lib/ensure.sh"
checks() { need time /usr/bin/time -v true; }
ensure checks
