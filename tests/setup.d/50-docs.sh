#!/usr/bin/env bash
# The docs build (`make docs`): mdBook renders docs/ (book.toml), Graphviz's
# `dot` renders docs/diagrams/*.dot to the SVGs the chapters show
# (tests/docs.rs checks the committed SVGs match). Idempotent.
#
# mdBook is pinned: a new major renders differently and may change what
# book.toml accepts. Only the `search` feature: `serve`/`watch` pull in an
# async web stack the build never uses and double the compile time.
set -euo pipefail
. "$(dirname "$0")/lib/ensure.sh"
MDBOOK_VERSION=0.5.4
# zsh and fish only check that the generated completion scripts parse
# (tools/docgen, generator/tests/docs_commands.rs); groff renders man pages.
checks() {
  need graphviz dot -V
  need zsh zsh -c true
  need fish fish -c true
  need groff groff --version
}
ensure checks
if ! mdbook --version 2>/dev/null | grep -qx "mdbook v$MDBOOK_VERSION"; then
  cargo install --locked --quiet --no-default-features --features search \
    --version "$MDBOOK_VERSION" mdbook
fi
mdbook --version
