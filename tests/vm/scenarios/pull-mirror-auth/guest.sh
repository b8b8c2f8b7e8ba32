# description: agent pull of a digest-pinned image from a registries.conf mirror (source unreachable) with the kubelet's pull secret; a tag is not sent to a digest-only mirror
#
# Two configs: `pinned` names the image by digest and is served by the
# mirror (TLS, htpasswd credentials from /var/lib/kubelet/config.json);
# `tagged` names it by tag, which mirror-by-digest-only keeps away from the
# mirror, so it can only try the unreachable source and fails within its
# (shortened) budget, publishing nothing.
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
kmt_check "the network comes up" kmt_net
kmt_run_fails "pull fails overall (the tagged config cannot pull)" env KMM_DAY1_PULL_BUDGET_SECS=8 $A pull

kmt_eq "pinned: published" published "$(kmt_json $S/pinned/pull.json result)"
kmt_eq "pinned: the digest pinned in the config" "$(cat /opt/kmmtest/expect/digest)" "$(kmt_json $S/pinned/pull.json digest)"
kmt_match "pinned: it came from the mirror" 'registry\.test:5000/kmmtest/dummy' "$(kmt_json $S/pinned/pull.json source)"
kmt_check "pinned: its tree is current" test -f "$S/pinned/$KMT_RELEASE/current/lib/modules/$KMT_RELEASE/extra/dummy.ko"

kmt_eq "tagged: failed" failed "$(kmt_json $S/tagged/pull.json result)"
kmt_match "tagged: the message names the source registry" 'quay\.example\.com' "$(kmt_json $S/tagged/pull.json message)"
kmt_refuse "tagged: no tree" test -e "$S/tagged/$KMT_RELEASE/current"
