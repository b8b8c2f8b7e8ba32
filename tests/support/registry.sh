# shellcheck shell=bash disable=SC2034 # REGISTRY_* are read by the caller
# A throwaway Debian docker-registry (distribution v2) on 127.0.0.1, for
# shell-driven tests (the VM scenarios). The Rust tests use the same setup
# through tests/common/registry.rs. Tools: tests/setup.d/30-registry.sh.
#
# Interface (source this file; bash, `set -euo pipefail` safe):
#
#   registry_start DIR [--tls] [--htpasswd USER PASS] [--port PORT]
#       Serves DIR/storage on 127.0.0.1 (a free port unless --port).
#       Sets REGISTRY_PORT, REGISTRY_PID, REGISTRY_HOST (127.0.0.1:PORT) and,
#       with --tls, REGISTRY_CA (the CA's PEM) and REGISTRY_CERTS_D (a
#       certs.d directory holding $REGISTRY_HOST/ca.crt). The server's
#       certificate is valid for 127.0.0.1, localhost, registry.test and
#       10.0.2.2 (QEMU's user-mode address of the host, for guests that
#       reach it through a guestfwd). Log: DIR/registry.log.
#   registry_push SRC REPO:TAG [--v2s2] [--all] [--creds USER:PASS]
#       skopeo copy SRC (e.g. oci:LAYOUT:TAG) to the running registry; prints
#       the pushed manifest (or index) digest.
#   registry_stop
#       Kills the registry started last (DIR stays for the caller to remove).

registry_start() {
    local dir=$1 tls=0 user='' pass='' port='' try i
    shift
    while (($#)); do
        case $1 in
        --tls) tls=1 ;;
        --htpasswd) user=$2 pass=$3; shift 2 ;;
        --port) port=$2; shift ;;
        *) echo "registry_start: unknown option $1" >&2; return 2 ;;
        esac
        shift
    done
    command -v docker-registry >/dev/null || { echo "docker-registry is not installed: run tests/setup.d/30-registry.sh" >&2; return 1; }
    mkdir -p "$dir/storage"
    dir=$(cd "$dir" && pwd)
    for try in 1 2 3 4 5; do
        local p=${port:-$((20000 + RANDOM % 30000))}
        # Something already listens there: pick another port.
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            [[ -n $port ]] && { echo "registry_start: port $port is in use" >&2; return 1; }
            continue
        fi
        {
            printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n' "$dir/storage"
            printf 'http:\n  addr: 127.0.0.1:%s\n' "$p"
        } >"$dir/config.yml"
        REGISTRY_CA='' REGISTRY_CERTS_D=''
        if ((tls)); then
            _registry_certs "$dir" "$p" || return 1
            printf '  tls:\n    certificate: %s\n    key: %s\n' "$dir/tls/server.crt" "$dir/tls/server.key" >>"$dir/config.yml"
        fi
        if [[ -n $user ]]; then
            htpasswd -Bbn "$user" "$pass" >"$dir/htpasswd"
            printf 'auth:\n  htpasswd:\n    realm: kmm-day1-test\n    path: %s\n' "$dir/htpasswd" >>"$dir/config.yml"
        fi
        docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
        REGISTRY_PID=$!
        for i in $(seq 100); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
                REGISTRY_PORT=$p
                REGISTRY_HOST=127.0.0.1:$p
                return 0
            fi
            kill -0 "$REGISTRY_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill "$REGISTRY_PID" 2>/dev/null || true
        wait "$REGISTRY_PID" 2>/dev/null || true
        REGISTRY_PID=
        echo "registry on port $p did not start (try $try); see $dir/registry.log" >&2
        [[ -n $port ]] && return 1
    done
    return 1
}

# A CA and a server certificate signed by it, in DIR/tls; certs.d for PORT.
_registry_certs() {
    local dir=$1 port=$2 t=$1/tls
    mkdir -p "$t"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$t/ca.key" -out "$t/ca.crt" -days 2 -subj "/CN=kmm-day1 test CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || return 1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$t/server.key" -out "$t/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null || return 1
    printf 'subjectAltName=IP:127.0.0.1,IP:10.0.2.2,DNS:localhost,DNS:registry.test\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' >"$t/ext.cnf"
    openssl x509 -req -days 2 -CAcreateserial -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" \
        -out "$t/server.crt" -extfile "$t/ext.cnf" 2>/dev/null || return 1
    mkdir -p "$dir/certs.d/127.0.0.1:$port"
    cp "$t/ca.crt" "$dir/certs.d/127.0.0.1:$port/ca.crt"
    REGISTRY_CA=$t/ca.crt
    REGISTRY_CERTS_D=$dir/certs.d
}

registry_push() {
    local src=$1 dest=$2 args=() digest
    shift 2
    while (($#)); do
        case $1 in
        --v2s2) args+=(--format v2s2) ;;
        --all) args+=(--all) ;;
        --creds) args+=("--dest-creds=$2"); shift ;;
        *) echo "registry_push: unknown option $1" >&2; return 2 ;;
        esac
        shift
    done
    if [[ -n ${REGISTRY_CERTS_D:-} ]]; then
        args+=("--dest-cert-dir=$REGISTRY_CERTS_D/$REGISTRY_HOST")
    else
        args+=(--dest-tls-verify=false)
    fi
    digest=$(mktemp)
    skopeo --insecure-policy copy --quiet "${args[@]}" --digestfile "$digest" "$src" "docker://$REGISTRY_HOST/$dest" || { rm -f "$digest"; return 1; }
    cat "$digest"
    echo
    rm -f "$digest"
}

registry_stop() {
    if [[ -n ${REGISTRY_PID:-} ]]; then
        kill "$REGISTRY_PID" 2>/dev/null || true
        wait "$REGISTRY_PID" 2>/dev/null || true
        REGISTRY_PID=
    fi
}
