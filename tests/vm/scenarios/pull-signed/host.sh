# shellcheck shell=bash disable=SC2034 # SCN_* are read by lib/scenario.sh
# The guest's /etc/containers/policy.json requires a cosign signature for
# 10.0.2.100:5000/kmmtest (a sigstoreSigned key, as a ClusterImagePolicy
# renders it) and its registries.d turns on use-sigstore-attachments for it.
# The same image is pushed twice: as kmmtest/dummy, signed by
# tests/support/cosign-sign.py (Python's cryptography, not the agent), and as
# kmmtest/unsigned, with no signature. The guest pulls the unsigned one
# first, then the signed one.
SCN_AGENT=1

scenario_prepare() {
    local root=$1 out=$3 digest
    serve_image "$out" dummy >/dev/null
    digest=$(cat "$out/digest")
    push_image "$out/oci" "$RELEASE" kmmtest/unsigned >/dev/null
    python3 "$VM_DIR/../support/cosign-sign.py" keygen "$out/key"
    python3 "$VM_DIR/../support/cosign-sign.py" push "127.0.0.1:$REGISTRY_PORT" kmmtest/dummy "$digest" \
        --sign "$out/key.key" "10.0.2.100:5000/kmmtest/dummy:$RELEASE"
    reboot_recorder "$root"
    mkdir -p "$root/etc/containers/registries.d" "$root/etc/kmm-day1" "$root/opt/kmmtest"
    cp "$out/key.pub" "$root/etc/containers/kmm-day1-test.pub"
    cat >"$root/etc/containers/policy.json" <<'JSON'
{
  "default": [{"type": "insecureAcceptAnything"}],
  "transports": {
    "docker": {
      "10.0.2.100:5000/kmmtest": [
        {"type": "sigstoreSigned", "keyPath": "/etc/containers/kmm-day1-test.pub",
         "signedIdentity": {"type": "matchRepoDigestOrExact"}}
      ]
    }
  }
}
JSON
    printf 'docker:\n  10.0.2.100:5000/kmmtest:\n    use-sigstore-attachments: true\n' \
        >"$root/etc/containers/registries.d/kmm-day1-test.yaml"
    echo "$digest" >"$root/opt/kmmtest/digest"
    for repo in dummy unsigned; do
        cat >"$root/opt/kmmtest/$repo.toml" <<TOML
image = "10.0.2.100:5000/kmmtest/$repo:\${KERNEL_FULL_VERSION}"
modules = ["dummy"]

[pull]
insecure = true
after_pull = "none"
TOML
    done
}

scenario_cleanup() {
    registry_stop
}
