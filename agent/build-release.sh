#!/usr/bin/env bash
# Builds the release static agent for one target (`make agents` runs it for
# x86_64 and aarch64 musl), as small as the installed toolchains allow.
#
# With a nightly toolchain that has rust-src (tests/setup.d/00-build.sh adds
# it), std is rebuilt for size with panic=immediate-abort
# (.cargo/agent-size.toml): the embedded agent is about 23% smaller
# (docs/size.md). Without one, the same agent is built on stable, larger;
# KMM_DAY1_AGENT_TOOLCHAIN=stable forces that, =nightly makes it an error.
set -euo pipefail

target=${1:?usage: agent/build-release.sh <target triple>}
cd "$(dirname "$0")/.."
args=(build --release --locked -p kmm-day1-agent --target "$target")
want=${KMM_DAY1_AGENT_TOOLCHAIN:-auto}

nightly=""
if [[ $want != stable ]]; then
  nightly=$(rustup run nightly rustc --print sysroot 2>/dev/null) || nightly=""
  [[ -n $nightly && -d $nightly/lib/rustlib/src/rust/library ]] || nightly=""
fi

if [[ -z $nightly ]]; then
  if [[ $want == nightly ]]; then
    echo "error: KMM_DAY1_AGENT_TOOLCHAIN=nightly but no nightly toolchain with rust-src: run \`rustup toolchain install nightly --component rust-src\`" >&2
    exit 1
  fi
  [[ $want == stable ]] ||
    echo "note: no nightly toolchain with rust-src; building the $target agent on stable, about 30% larger (docs/size.md)" >&2
  exec "${CARGO:-cargo}" "${args[@]}"
fi

extra=()
# Some nightlies ship no rust-std for a musl target (aarch64 on 2026-05-19):
# std itself comes from rust-src, only musl's crt objects and libc.a are
# missing, and the default toolchain's copies of those are the same musl.
if [[ ! -d $nightly/lib/rustlib/$target/lib/self-contained ]]; then
  crt=$(rustc --print sysroot)/lib/rustlib/$target/lib/self-contained
  if [[ ! -d $crt ]]; then
    echo "error: neither nightly nor the default toolchain has the $target musl objects: run \`rustup target add $target\`" >&2
    exit 1
  fi
  extra=(--config "target.$target.rustflags=[\"-L\", \"native=$crt\"]")
fi
rustup run nightly cargo --config .cargo/agent-size.toml "${extra[@]}" "${args[@]}"

# No unwind tables: with panic=immediate-abort nothing in the agent unwinds
# (no C++, musl cancels threads without unwinding), yet the C and assembly
# objects (ring's CFI directives, libc) still bring .eh_frame and its index:
# 10 KB of the binary, 5 KB embedded (docs/size.md). binutils' objcopy for
# the target (tests/setup.d/00-build.sh installs both) rewrites the file
# without them. Run on every build: removing absent sections is a no-op.
case $target in
  x86_64-*) objcopy=objcopy ;;
  aarch64-*) objcopy=aarch64-linux-gnu-objcopy ;;
  *) objcopy="" ;;
esac
if [[ -n $objcopy ]]; then
  "$objcopy" --remove-section=.eh_frame --remove-section=.eh_frame_hdr \
    "${CARGO_TARGET_DIR:-target}/$target/release/kmm-day1-agent"
fi
