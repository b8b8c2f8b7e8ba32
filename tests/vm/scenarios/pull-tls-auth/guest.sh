# description: agent pull over TLS with a CA from certs.d and htpasswd credentials; refuses without credentials or with a name the certificate lacks
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
kmt_check "the network comes up" kmt_net
kmt_run_fails "pull fails overall (two configs cannot pull)" $A pull

kmt_eq "good: published over TLS with credentials" published "$(kmt_json $S/good/pull.json result)"
kmt_eq "good: the digest the host pushed" "$(cat /opt/kmmtest/expect/digest)" "$(kmt_json $S/good/pull.json digest)"
kmt_check "good: its tree is current" test -f "$S/good/$KMT_RELEASE/current/lib/modules/$KMT_RELEASE/extra/dummy.ko"

kmt_eq "no-credentials: failed" failed "$(kmt_json $S/no-credentials/pull.json result)"
kmt_match "no-credentials: the message says authentication is needed" \
    '(401|[Uu]nauthori[sz]ed|credential|authenticat)' "$(kmt_json $S/no-credentials/pull.json message)"
kmt_refuse "no-credentials: no tree" test -e "$S/no-credentials/$KMT_RELEASE/current"

kmt_eq "wrong-name: failed" failed "$(kmt_json $S/wrong-name/pull.json result)"
kmt_match "wrong-name: the message is about the certificate" \
    '(certificate|TLS|tls)' "$(kmt_json $S/wrong-name/pull.json message)"
kmt_refuse "wrong-name: no tree" test -e "$S/wrong-name/$KMT_RELEASE/current"
