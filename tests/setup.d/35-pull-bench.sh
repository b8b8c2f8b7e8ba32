#!/usr/bin/env bash
# GNU time for the pull benchmark (agent/tests/pull_registry.rs,
# bench_pull_vs_skopeo): `/usr/bin/time -v` reports wall time and peak RSS.
# The pull tests' other tools come from 20-kernel-tree.sh and 30-registry.sh.
set -euo pipefail

if [[ ! -x /usr/bin/time ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time
fi
