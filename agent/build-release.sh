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
exec rustup run nightly cargo --config .cargo/agent-size.toml "${extra[@]}" "${args[@]}"
