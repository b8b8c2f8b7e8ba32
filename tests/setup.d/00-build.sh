#!/usr/bin/env bash
# What building the static agents needs (`make agents`, and so `make example`):
# the musl targets of the Rust toolchain, a C compiler and linker for this
# machine (build scripts, proc macros), and the C compilers cc-rs uses for
# ring's C/assembly parts on both musl targets — exactly the ones
# .cargo/config.toml names. Each is checked by compiling (and where it can
# run here, linking and running) a small C file, not by a package name: a
# fresh Debian 12 root has no `cc` at all, and gcc-aarch64-linux-gnu without
# recommends brings no aarch64 C headers. Idempotent.
set -euo pipefail
. "$(dirname "$0")/lib/ensure.sh"

# rustup's own failures are clear enough; a machine without rustup cannot
# build at all (README: rustup is the one prerequisite besides make).
command -v rustup >/dev/null || { echo "00-build: rustup is not on PATH: install rustup (README, Set up)" >&2; exit 1; }
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

x86_cc=$(cargo_env CC_x86_64_unknown_linux_musl)
x86_ar=$(cargo_env AR_x86_64_unknown_linux_musl)
arm_cc=$(cargo_env CC_aarch64_unknown_linux_musl)
arm_ar=$(cargo_env AR_aarch64_unknown_linux_musl)
checks() {
  need make make --version
  # rustc links build scripts and proc macros for the host with `cc`.
  need "gcc libc6-dev" c_runs cc
  need musl-tools c_runs "$x86_cc" -static
  need binutils "$x86_ar" --version
  need "gcc-aarch64-linux-gnu libc6-dev-arm64-cross" c_compiles "$arm_cc"
  need binutils-aarch64-linux-gnu "$arm_ar" --version
  # agent/build-release.sh drops the unwind tables with each target's objcopy.
  need binutils objcopy --version
  need binutils-aarch64-linux-gnu aarch64-linux-gnu-objcopy --version
}
ensure checks
