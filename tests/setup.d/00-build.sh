#!/usr/bin/env bash
# What building the static agents needs: the musl targets of the Rust
# toolchain and a C cross compiler for the C/assembly parts of dependencies
# (ring) on aarch64. Idempotent: installs only what is missing.
set -euo pipefail

installed=$(rustup target list --installed)
for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

# The release agents are built smaller on nightly (agent/build-release.sh,
# docs/size.md): std is rebuilt from rust-src. Machines of this kind carry a
# nightly toolchain; elsewhere (a workstation with only stable) one is
# installed, since the stable-built agent is too large for a MachineConfig.
# If even that fails, the agents are built on stable, larger, with a note.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal --component rust-src ||
    echo "note: could not install a nightly toolchain; the agents will be built on stable (too large to embed, docs/size.md)"
fi
if nightly=$(rustup run nightly rustc --print sysroot 2>/dev/null); then
  [[ -d $nightly/lib/rustlib/src/rust/library ]] || rustup +nightly component add rust-src
  # Only musl's crt objects and libc.a are taken from here; when a nightly
  # has none for a target, build-release.sh uses the default toolchain's.
  nightly_targets=$(rustup +nightly target list --installed)
  grep -qx x86_64-unknown-linux-musl <<<"$nightly_targets" ||
    rustup +nightly target add x86_64-unknown-linux-musl ||
    echo "note: nightly has no x86_64-unknown-linux-musl std; using the default toolchain's musl objects"
fi

need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
command -v make >/dev/null || need+=(make)
if ((${#need[@]})); then
  [[ -n "${KMM_DAY1_APT_UPDATED:-}" ]] || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
