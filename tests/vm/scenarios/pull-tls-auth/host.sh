# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# The registry with TLS (a throwaway CA; the certificate names registry.test)
# and htpasswd, as a node meets a real one. The guest reaches it as
# registry.test:5000 (its /etc/hosts) through the guestfwd.
SCN_AGENT=1

scenario_prepare() {
    local root=$1 out=$3
    local user=kmm pass
    pass=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    registry_start "$out/registry" --tls --htpasswd "$user" "$pass"
    SCN_NET_PORT=$REGISTRY_PORT
    kmm_tree "$out/image-src" dummy >/dev/null
    oci_image "$out/image-src" "$out/oci" "$RELEASE"
    mkdir -p "$root/opt/kmmtest/expect"
    push_image "$out/oci" "$RELEASE" kmmtest/dummy --creds "$user:$pass" >"$root/opt/kmmtest/expect/digest"

    mkdir -p "$root/etc/kmmtest" "$root/etc/kmm-day1"
    echo "10.0.2.100 registry.test" >"$root/etc/hosts"
    # The CA where a node keeps it, for the name and, to show that the name
    # is checked and not just the issuer, for the bare address too.
    local h
    for h in registry.test:5000 10.0.2.100:5000; do
        mkdir -p "$root/etc/docker/certs.d/$h"
        cp "$REGISTRY_CA" "$root/etc/docker/certs.d/$h/ca.crt"
    done
    printf '{"auths":{"registry.test:5000":{"auth":"%s"}}}\n' "$(printf '%s:%s' "$user" "$pass" | base64 -w0)" \
        >"$root/etc/kmmtest/auth.json"
    chmod 600 "$root/etc/kmmtest/auth.json"
    cat >"$root/etc/kmm-day1/good.toml" <<TOML
image = "registry.test:5000/kmmtest/dummy:\${KERNEL_FULL_VERSION}"
modules = ["dummy"]
[pull]
auth_files = ["/etc/kmmtest/auth.json"]
after_pull = "none"
TOML
    cat >"$root/etc/kmm-day1/no-credentials.toml" <<TOML
image = "registry.test:5000/kmmtest/dummy:\${KERNEL_FULL_VERSION}"
modules = ["dummy"]
[pull]
auth_files = []
after_pull = "none"
TOML
    cat >"$root/etc/kmm-day1/wrong-name.toml" <<TOML
image = "10.0.2.100:5000/kmmtest/dummy:\${KERNEL_FULL_VERSION}"
modules = ["dummy"]
[pull]
auth_files = ["/etc/kmmtest/auth.json"]
after_pull = "none"
TOML
}

scenario_cleanup() {
    registry_stop
}
