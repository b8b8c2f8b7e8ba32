# description: agent pull refuses a missing tag and an image without a configured module, publishes nothing for them
#
# Three configs pulled in one run: a tag that does not exist and an image that
# lacks a configured module must fail with messages that name the problem and
# leave no tree (so replace keeps waiting instead of loading half a driver);
# the third config is unaffected.
A=/usr/local/bin/kmm-day1-agent
S=/var/lib/kmm-day1
kmt_check "the network comes up" kmt_net
kmt_run_fails "pull fails" $A pull

kmt_eq "missing-tag: pull.json says failed" failed "$(kmt_json $S/missing-tag/pull.json result)"
kmt_match "missing-tag: the message names the tag" "nosuch-$KMT_RELEASE" "$(kmt_json $S/missing-tag/pull.json message)"
kmt_refuse "missing-tag: no tree" test -e "$S/missing-tag/$KMT_RELEASE/current"

kmt_eq "missing-module: pull.json says failed" failed "$(kmt_json $S/missing-module/pull.json result)"
kmt_match "missing-module: the message names the module" kmmtest_params "$(kmt_json $S/missing-module/pull.json message)"
kmt_refuse "missing-module: no tree" test -e "$S/missing-module/$KMT_RELEASE/current"

kmt_eq "good: published despite the others" published "$(kmt_json $S/good/pull.json result)"
kmt_check "good: its tree is current" test -f "$S/good/$KMT_RELEASE/current/lib/modules/$KMT_RELEASE/extra/dummy.ko"
