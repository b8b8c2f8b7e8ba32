#!/usr/bin/env bash
# Tools for the registry tests (agent/src/registry/tests.rs, the pull tests,
# tests/support/registry.sh): Debian's distribution v2 registry, the image
# tools that build and push test images, openssl for throwaway CAs and token
# signing keys, htpasswd for bcrypt password files.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null; }
have docker-registry || need+=(docker-registry)
have skopeo || need+=(skopeo)
have umoci || need+=(umoci)
have openssl || need+=(openssl)
have htpasswd || need+=(apache2-utils)
have sha256sum || need+=(coreutils)
if ((${#need[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
