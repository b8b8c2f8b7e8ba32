#!/usr/bin/env bash
# What building the static agents needs: the musl targets of the Rust
# toolchain and a C cross compiler for the C/assembly parts of dependencies
# (ring) on aarch64. Idempotent: installs only what is missing.
set -euo pipefail

installed=$(rustup target list --installed)
for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
command -v make >/dev/null || need+=(make)
if ((${#need[@]})); then
  [[ -n "${KMM_DAY1_APT_UPDATED:-}" ]] || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
