#!/usr/bin/env bash
# Tools for the registry tests (agent/src/registry/tests.rs, the pull tests,
# tests/support/registry.sh): Debian's distribution v2 registry, the image
# tools that build and push test images, openssl for throwaway CAs and token
# signing keys, htpasswd for bcrypt password files, Python's cryptography
# for cosign signatures made by something that is not the agent
# (tests/support/cosign-sign.py).
set -euo pipefail
. "$(dirname "$0")/lib/ensure.sh"
checks() {
  need docker-registry docker-registry --version
  need skopeo skopeo --version
  need umoci umoci --version
  need openssl openssl version
  need apache2-utils htpasswd -nbB user pass
  need coreutils sha256sum --version
  need python3-cryptography python3 -c 'import cryptography.hazmat.primitives.asymmetric.ec'
}
ensure checks
