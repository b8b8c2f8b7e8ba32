#!/usr/bin/env bash
# QEMU, in one apt transaction: the system emulator and qemu-img for the VM
# tests (tests/vm/, docs/testing-vm.md), user-mode qemu-aarch64 for running
# the aarch64 agent (tests/agent_static.rs).
#
# The emulator and qemu-img come from one source package and must be of one
# version: a machine image may carry a newer qemu-utils (this kind's carries
# a bookworm-backports one) that Breaks the qemu-system-common Debian 12 has.
# Asking for qemu-system-x86 alone made apt remove qemu-utils, and with it
# qemu-img. So they are installed together, qemu-utils at the emulator's
# version (a downgrade where the newer one has no emulator to match), and
# apt may remove nothing (lib/ensure.sh). Idempotent.
set -euo pipefail
. "$(dirname "$0")/lib/ensure.sh"

qemu_version=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ && $2 != "(none)" {print $2}')
if [[ -z $qemu_version ]]; then
    echo "38-qemu: apt knows no qemu-system-x86: run apt-get update (or add Debian 12's main archive)" >&2
    exit 1
fi
qemu="qemu-system-x86 qemu-utils=$qemu_version"
checks() {
    need "$qemu" qemu-system-x86_64 --version
    need "$qemu" qemu-img --version
    need qemu-user qemu-aarch64 --version
}
ensure checks
