#!/usr/bin/env bash
# The aarch64 agent is tested by running it under user-mode QEMU.
set -euo pipefail
if ! command -v qemu-aarch64 >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user
fi
