#!/usr/bin/env bash
# Debian's `ignition` package: `ignition-validate` (on PATH) checks every
# generated config, and the real Ignition binary
# (/usr/lib/dracut/modules.d/30ignition/ignition) applies one to a scratch
# root (generator/tests/ignition_apply.rs). Idempotent.
set -euo pipefail
. "$(dirname "$0")/lib/ensure.sh"
checks() {
  need ignition ignition-validate --version
  need ignition /usr/lib/dracut/modules.d/30ignition/ignition -version
}
ensure checks
