# shellcheck shell=bash disable=SC2034 # REGISTRY_* are read by scenarios
# A throwaway Debian docker-registry (distribution v2) on 127.0.0.1, plain
# HTTP, for scenarios whose guest pulls through its guestfwd. Sourced by
# tests/vm/run.
# TODO(vm): switch to the registry engineer's shared helper once it lands
# (tests/support/registry.sh), so there is one way to start the registry.

# registry_start DIR: serves DIR/storage on a free 127.0.0.1 port; sets
# REGISTRY_PORT and REGISTRY_PID. The caller stops it with registry_stop.
registry_start() {
    local dir=$1 port try
    command -v docker-registry >/dev/null || die "docker-registry is not installed: run tests/setup.d/40-vm.sh"
    mkdir -p "$dir/storage"
    for try in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 30000))
        # Something already listens there: pick another port.
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
        cat >"$dir/config.yml" <<CFG
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
CFG
        docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
        REGISTRY_PID=$!
        local i
        for i in $(seq 50); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                REGISTRY_PORT=$port
                return 0
            fi
            kill -0 "$REGISTRY_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill "$REGISTRY_PID" 2>/dev/null || true
        wait "$REGISTRY_PID" 2>/dev/null || true
        log "registry on port $port did not start (try $try); see $dir/registry.log"
    done
    return 1
}

registry_stop() {
    if [[ -n ${REGISTRY_PID:-} ]]; then
        kill "$REGISTRY_PID" 2>/dev/null || true
        wait "$REGISTRY_PID" 2>/dev/null || true
        REGISTRY_PID=
    fi
}
