#!/usr/bin/env bash
# cargo-fuzz and its nightly toolchain for tests/fuzz/run (docs/reliability.md).
set -euo pipefail
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "the nightly toolchain is missing (rustup toolchain install nightly --profile minimal)" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
for t in xz zstd gzip tar; do
    command -v "$t" >/dev/null || { apt-get install -y --no-install-recommends xz-utils zstd gzip tar; break; }
done
