#!/usr/bin/env bash
# cargo-fuzz and its nightly toolchain for tests/fuzz/run (docs/reliability.md),
# and the compressors the fuzz seeds are made with.
set -euo pipefail
. "$(dirname "$0")/lib/ensure.sh"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "60-fuzz: the nightly toolchain is missing (rustup toolchain install nightly --profile minimal)" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
checks() {
  need xz-utils xz --version
  need zstd zstd --version
  need gzip gzip --version
  need tar tar --version
}
ensure checks
cargo +nightly fuzz --version
