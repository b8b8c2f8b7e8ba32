# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# A disconnected node: configs name the image at its source registry
# (quay.example.com, which the guest cannot reach: its /etc/hosts sends it to
# 127.0.0.1, where nothing listens), and /etc/containers/registries.conf (as
# the MCO renders an ImageDigestMirrorSet) sends digest pulls to a mirror:
# the TLS registry with htpasswd, as registry.test:5000. The credentials are
# in the kubelet's pull secret, /var/lib/kubelet/config.json (the default
# auth file, no auth_files in the config).
SCN_AGENT=1

scenario_prepare() {
    local root=$1 out=$3
    local user=kmm pass digest
    pass=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    registry_start "$out/registry" --tls --htpasswd "$user" "$pass"
    SCN_NET_PORT=$REGISTRY_PORT
    kmm_tree "$out/image-src" dummy >/dev/null
    oci_image "$out/image-src" "$out/oci" "$RELEASE"
    mkdir -p "$root/opt/kmmtest/expect" "$root/etc/kmm-day1" "$root/etc/containers" "$root/var/lib/kubelet"
    digest=$(push_image "$out/oci" "$RELEASE" kmmtest/dummy --creds "$user:$pass")
    echo "$digest" >"$root/opt/kmmtest/expect/digest"
    printf '127.0.0.1 localhost quay.example.com\n10.0.2.100 registry.test\n' >"$root/etc/hosts"
    mkdir -p "$root/etc/docker/certs.d/registry.test:5000"
    cp "$REGISTRY_CA" "$root/etc/docker/certs.d/registry.test:5000/ca.crt"
    printf '{"auths":{"registry.test:5000":{"auth":"%s"}}}\n' "$(printf '%s:%s' "$user" "$pass" | base64 -w0)" \
        >"$root/var/lib/kubelet/config.json"
    chmod 600 "$root/var/lib/kubelet/config.json"
    cat >"$root/etc/containers/registries.conf" <<'CONF'
[[registry]]
prefix = "quay.example.com/kmmtest"
location = "quay.example.com/kmmtest"
mirror-by-digest-only = true

[[registry.mirror]]
location = "registry.test:5000/kmmtest"
CONF
    cat >"$root/etc/kmm-day1/pinned.toml" <<TOML
image = "quay.example.com/kmmtest/dummy@$digest"
modules = ["dummy"]
[pull]
after_pull = "none"
TOML
    cat >"$root/etc/kmm-day1/tagged.toml" <<TOML
image = "quay.example.com/kmmtest/dummy:\${KERNEL_FULL_VERSION}"
modules = ["dummy"]
[pull]
after_pull = "none"
TOML
}

scenario_cleanup() {
    registry_stop
}
