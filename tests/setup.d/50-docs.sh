#!/usr/bin/env bash
# The docs build (`make docs`): mdBook renders docs/ (book.toml), Graphviz's
# `dot` renders docs/diagrams/*.dot to the SVGs the chapters show
# (tests/docs.rs checks the committed SVGs match). Idempotent.
#
# mdBook is pinned: a new major renders differently and may change what
# book.toml accepts. Only the `search` feature: `serve`/`watch` pull in an
# async web stack the build never uses and double the compile time.
set -euo pipefail
MDBOOK_VERSION=0.5.4
# zsh and fish only check that the generated completion scripts parse
# (tools/docgen, generator/tests/docs_commands.rs); groff renders man pages.
missing=()
for pair in dot:graphviz zsh:zsh fish:fish groff:groff; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  [[ -n "${KMM_DAY1_APT_UPDATED:-}" ]] || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! mdbook --version 2>/dev/null | grep -qx "mdbook v$MDBOOK_VERSION"; then
  cargo install --locked --quiet --no-default-features --features search \
    --version "$MDBOOK_VERSION" mdbook
fi
mdbook --version
