# shellcheck shell=bash
# Sourced by tests/setup.d/*.sh. A setup script states what must *work*
# (a command that compiles, links or runs), not which package names must be
# installed: a machine image can carry a package whose files are not what we
# need (a cross compiler without its C library, a qemu-utils that a later
# install would remove). So each script is
#
#   checks() { need "PKG..." CMD...; ...; }
#   ensure checks
#
# `ensure` runs the checks, installs the packages of the failing ones in ONE
# apt transaction (so apt picks a consistent set), runs the checks again and
# fails with one line naming the package when one still fails.
# apt is told never to remove a package (--no-remove): an install that would
# take a tool away fails here instead of breaking a later step.

SETUP_NAME=$(basename "$0" .sh)
SETUP_PKGS=()
SETUP_FAILS=()
SETUP_SCRATCH=$(mktemp -d /tmp/kmm-day1-setup.XXXXXX)
# Scripts add their own temporary directories here instead of a trap of their own.
SETUP_CLEANUP=("$SETUP_SCRATCH")
trap 'rm -rf "${SETUP_CLEANUP[@]}"' EXIT

# need "PKG..." CMD... : CMD must succeed; PKG... (space-separated, may carry
# apt's =VERSION) install what it needs.
need() {
    local pkgs=$1
    shift
    if ! "$@" >"$SETUP_SCRATCH/last.log" 2>&1; then
        # shellcheck disable=SC2206 # word splitting of the package list is meant
        SETUP_PKGS+=($pkgs)
        SETUP_FAILS+=("$pkgs|$*")
    fi
}

apt_install() {
    (($#)) || return 0
    if [[ -z ${KMM_DAY1_APT_UPDATED:-} ]]; then
        apt-get update -qq
        export KMM_DAY1_APT_UPDATED=1
    fi
    echo "$SETUP_NAME: installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        --no-remove --allow-downgrades "$@"
}

ensure() {
    local fn=$1
    SETUP_PKGS=() SETUP_FAILS=()
    "$fn"
    ((${#SETUP_FAILS[@]})) || return 0
    local unique
    mapfile -t unique < <(printf '%s\n' "${SETUP_PKGS[@]}" | awk '!seen[$0]++')
    apt_install "${unique[@]}"
    SETUP_PKGS=() SETUP_FAILS=()
    "$fn"
    ((${#SETUP_FAILS[@]})) || return 0
    local f=${SETUP_FAILS[0]}
    echo "$SETUP_NAME: \`${f#*|}\` still fails after installing: install ${f%%|*} (apt-get install ${f%%|*})" >&2
    tail -n 3 "$SETUP_SCRATCH/last.log" | sed 's/^/  /' >&2
    exit 1
}

# A C file with the headers ring's C parts include.
c_source() {
    cat >"$SETUP_SCRATCH/t.c" <<'C'
#include <stdint.h>
#include <string.h>
int main(void) { uint8_t b[4]; memset(b, 0, sizeof b); return b[0]; }
C
    printf '%s\n' "$SETUP_SCRATCH/t.c"
}

# CC links and runs a program for this machine (extra flags after CC).
c_runs() {
    local src
    src=$(c_source)
    "$@" "$src" -o "$SETUP_SCRATCH/t" && "$SETUP_SCRATCH/t"
}

# CC compiles (no link) for another architecture: what cc-rs does.
c_compiles() {
    local src
    src=$(c_source)
    "$@" -c "$src" -o "$SETUP_SCRATCH/t.o"
}

# The compiler cargo's [env] in .cargo/config.toml names for cc-rs.
cargo_env() {
    local key=$1 root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
    sed -n "s/^$key *= *\"\\(.*\\)\"/\\1/p" "$root/.cargo/config.toml"
}
