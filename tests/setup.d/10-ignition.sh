#!/usr/bin/env bash
# Debian's `ignition` package: `ignition-validate` (on PATH) checks every
# generated config, and the real Ignition binary
# (/usr/lib/dracut/modules.d/30ignition/ignition) applies one to a scratch
# root (generator/tests/ignition_apply.rs). Idempotent.
set -euo pipefail
if ! command -v ignition-validate >/dev/null \
  || [[ ! -x /usr/lib/dracut/modules.d/30ignition/ignition ]]; then
  [[ -n "${KMM_DAY1_APT_UPDATED:-}" ]] || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ignition
fi
