# shellcheck shell=bash
# The test registry: the shared shell helper (tests/support/registry.sh:
# registry_start DIR [--tls] [--htpasswd U P], registry_push, registry_stop),
# the same Debian docker-registry setup the Rust tests use. Sourced by
# tests/vm/run. A guest reaches it as 10.0.2.100:5000 through its guestfwd
# (SCN_NET_PORT=$REGISTRY_PORT).
# shellcheck source=/dev/null # checked on its own (tests/support)
. "$VM_DIR/../support/registry.sh"
