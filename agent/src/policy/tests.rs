//! The policy's logic on fixed inputs. The signature fixtures in `testdata/`
//! were made by tests/support/cosign-sign.py (Python's `cryptography`, not
//! the agent): `payload.json` is a cosign payload for digest `sha256:abab…`
//! and `quay.io/acme/drv:v1`, `payload.sig` its signature by the key whose
//! public half is `a.pub`; `b.pub` is another P-256 key, `p384.pub` a P-384
//! one.

use super::*;

const A: &str = include_str!("testdata/a.pub");
const B: &str = include_str!("testdata/b.pub");
const P384: &str = include_str!("testdata/p384.pub");
const PAYLOAD: &[u8] = include_bytes!("testdata/payload.json");
const SIG: &str = include_str!("testdata/payload.sig");

fn digest() -> String {
    format!("sha256:{}", "ab".repeat(32))
}

fn img(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap()
}

fn policy(json: &str) -> Policy {
    Policy::parse(json, Path::new("policy.json")).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn b64(s: &str) -> String {
    crate::auth::base64_encode(s.as_bytes())
}

/// A sigstoreSigned requirement trusting `keys` (PEM texts).
fn signed_by(keys: &[&str], identity: &str) -> String {
    let datas: Vec<String> = keys.iter().map(|k| format!("\"{}\"", b64(k))).collect();
    format!(
        r#"{{"type":"sigstoreSigned","keyDatas":[{}]{identity}}}"#,
        datas.join(",")
    )
}

fn good() -> Attachment {
    Attachment {
        media_type: sigstore::SIGNATURE_TYPE.into(),
        payload: PAYLOAD.to_vec(),
        signature: Some(SIG.trim().into()),
    }
}

/// `check` of `image` at `digest` against `policy` with `sigs` attached;
/// the refusal's reason on refusal.
fn decide(p: &Policy, image: &str, digest: &str, sigs: Vec<Attachment>) -> Result<Allowed, String> {
    let mut calls = 0;
    let r = p.check(&img(image), digest, &mut || {
        calls += 1;
        Ok(Some(sigs.clone()))
    });
    assert!(calls <= 1, "signatures fetched {calls} times");
    r.map_err(|e| match e.downcast::<PolicyError>() {
        Ok(PolicyError::Refused { why, .. }) => why,
        Ok(other) => panic!("not a refusal: {other}"),
        Err(e) => panic!("not a policy error: {e:#}"),
    })
}

#[test]
fn the_longest_scope_wins_then_the_transport_default_then_default() {
    let p = policy(
        r#"{"default":[{"type":"reject"}],"transports":{"docker":{
            "quay.io/acme/drv:v1":[{"type":"insecureAcceptAnything"}],
            "quay.io/acme":[{"type":"reject"}],
            "quay.io":[{"type":"insecureAcceptAnything"}],
            "*.example.com":[{"type":"insecureAcceptAnything"}],
            "reg.example.com:5000/x":[{"type":"reject"}]
        }}}"#,
    );
    let scope = |s: &str| p.requirements_for(&img(s)).0;
    assert_eq!(
        scope("quay.io/acme/drv:v1"),
        "docker scope `quay.io/acme/drv:v1`"
    );
    assert_eq!(scope("quay.io/acme/drv:v2"), "docker scope `quay.io/acme`");
    assert_eq!(
        scope("quay.io/acme/sub/drv:v2"),
        "docker scope `quay.io/acme`"
    );
    assert_eq!(scope("quay.io/other/drv:v2"), "docker scope `quay.io`");
    assert_eq!(scope("a.b.example.com/x:1"), "docker scope `*.example.com`");
    // The port is part of host scopes, not of wildcard ones.
    assert_eq!(
        scope("reg.example.com:5000/x:1"),
        "docker scope `reg.example.com:5000/x`"
    );
    assert_eq!(
        scope("reg.example.com:5000/y:1"),
        "docker scope `*.example.com`"
    );
    assert_eq!(scope("ghcr.io/x:1"), "`default`");
    let d = format!("quay.io/acme/drv@{}", digest());
    assert_eq!(scope(&d), "docker scope `quay.io/acme`");

    assert!(decide(&p, "quay.io/acme/drv:v1", &digest(), vec![]).is_ok());
    assert_eq!(
        decide(&p, "quay.io/acme/drv:v2", &digest(), vec![]).unwrap_err(),
        "the requirement is `reject`"
    );
    let t = policy(
        r#"{"default":[{"type":"reject"}],"transports":{"docker":{"":[{"type":"insecureAcceptAnything"}]}}}"#,
    );
    assert_eq!(
        t.requirements_for(&img("ghcr.io/x:1")).0,
        "docker scope `\"\"`"
    );
}

#[test]
fn a_signature_by_a_trusted_key_for_the_digest_and_identity_is_accepted() {
    let p = policy(&format!(r#"{{"default":[{}]}}"#, signed_by(&[A], "")));
    let a = decide(&p, "quay.io/acme/drv:v1", &digest(), vec![good()]).unwrap();
    assert!(
        a.signed && a.by.starts_with("sigstoreSigned (key "),
        "{a:?}"
    );
    // Several keys, one of which signed it; other attachments ignored.
    let p = policy(&format!(r#"{{"default":[{}]}}"#, signed_by(&[B, A], "")));
    let other = Attachment {
        media_type: "application/vnd.dsse.envelope.v1+json".into(),
        payload: vec![],
        signature: None,
    };
    assert!(decide(&p, "quay.io/acme/drv:v1", &digest(), vec![other, good()]).is_ok());
}

#[test]
fn each_failing_check_is_named() {
    let p = policy(&format!(r#"{{"default":[{}]}}"#, signed_by(&[A], "")));
    let refuse = |p: &Policy, image: &str, d: &str, sigs| decide(p, image, d, sigs).unwrap_err();
    let e = refuse(&p, "quay.io/acme/drv:v1", &digest(), vec![]);
    assert!(e.starts_with("no signature:"), "{e}");
    let other = format!("sha256:{}", "cd".repeat(32));
    let e = refuse(&p, "quay.io/acme/drv:v1", &other, vec![good()]);
    assert!(
        e.starts_with("digest mismatch: the signature is for sha256:abab"),
        "{e}"
    );
    let e = refuse(&p, "quay.io/acme/drv:v2", &digest(), vec![good()]);
    assert!(
        e.starts_with("identity mismatch:") && e.contains("matchRepoDigestOrExact"),
        "{e}"
    );
    let wrong_key = policy(&format!(r#"{{"default":[{}]}}"#, signed_by(&[B], "")));
    let e = refuse(&wrong_key, "quay.io/acme/drv:v1", &digest(), vec![good()]);
    assert!(e.starts_with("bad signature"), "{e}");
    let mut tampered = good();
    tampered.payload = String::from_utf8(PAYLOAD.to_vec())
        .unwrap()
        .replace("v1", "v2")
        .into_bytes();
    let e = refuse(&p, "quay.io/acme/drv:v2", &digest(), vec![tampered]);
    assert!(e.starts_with("bad signature"), "{e}");
    let mut unsigned = good();
    unsigned.signature = None;
    let e = refuse(
        &p,
        "quay.io/acme/drv:v1",
        &digest(),
        vec![unsigned.clone(), unsigned],
    );
    assert!(
        e.starts_with("none of the 2 signatures") && e.contains("no `dev.cosignproject"),
        "{e}"
    );
    // registries.d did not enable the lookup.
    let e = p
        .check(&img("quay.io/acme/drv:v1"), &digest(), &mut || Ok(None))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no signature was looked for") && e.contains("use-sigstore-attachments"),
        "{e}"
    );
    // A key that cannot be used refuses: it is not skipped.
    let p384 = policy(&format!(r#"{{"default":[{}]}}"#, signed_by(&[A, P384], "")));
    let e = refuse(&p384, "quay.io/acme/drv:v1", &digest(), vec![good()]);
    assert!(
        e.contains("keyData 2 is not an ECDSA P-256 public key"),
        "{e}"
    );
}

#[test]
fn every_signed_identity_as_containers_image_matches_it() {
    // The payload is for `quay.io/acme/drv:v1`.
    let d = digest();
    let cases: &[(&str, &str, bool)] = &[
        (r#""#, "quay.io/acme/drv:v1", true),
        (r#""#, "quay.io/acme/drv:v2", false),
        (
            r#","signedIdentity":{"type":"matchRepoDigestOrExact"}"#,
            "quay.io/acme/drv@DIGEST",
            true,
        ),
        (
            r#","signedIdentity":{"type":"matchExact"}"#,
            "quay.io/acme/drv:v1",
            true,
        ),
        (
            r#","signedIdentity":{"type":"matchExact"}"#,
            "quay.io/acme/drv@DIGEST",
            false,
        ),
        (
            r#","signedIdentity":{"type":"matchRepository"}"#,
            "quay.io/acme/drv:v9",
            true,
        ),
        (
            r#","signedIdentity":{"type":"matchRepository"}"#,
            "quay.io/acme/other:v1",
            false,
        ),
        (
            r#","signedIdentity":{"type":"exactReference","dockerReference":"quay.io/acme/drv:v1"}"#,
            "mirror.local/drv:x",
            true,
        ),
        (
            r#","signedIdentity":{"type":"exactReference","dockerReference":"quay.io/acme/drv:v2"}"#,
            "quay.io/acme/drv:v1",
            false,
        ),
        (
            r#","signedIdentity":{"type":"exactRepository","dockerRepository":"quay.io/acme/drv"}"#,
            "mirror.local/drv:x",
            true,
        ),
        (
            r#","signedIdentity":{"type":"exactRepository","dockerRepository":"quay.io/acme/other"}"#,
            "quay.io/acme/drv:v1",
            false,
        ),
        (
            r#","signedIdentity":{"type":"remapIdentity","prefix":"mirror.local/team","signedPrefix":"quay.io/acme"}"#,
            "mirror.local/team/drv:v1",
            true,
        ),
        (
            r#","signedIdentity":{"type":"remapIdentity","prefix":"mirror.local/team","signedPrefix":"quay.io/acme"}"#,
            "mirror.local/teamx/drv:v1",
            false,
        ),
        (
            r#","signedIdentity":{"type":"remapIdentity","prefix":"mirror.local","signedPrefix":"quay.io"}"#,
            "mirror.local/acme/drv:v1",
            true,
        ),
    ];
    for (identity, image, ok) in cases {
        let p = policy(&format!(r#"{{"default":[{}]}}"#, signed_by(&[A], identity)));
        let image = image.replace("DIGEST", &d);
        let r = decide(&p, &image, &d, vec![good()]);
        assert_eq!(r.is_ok(), *ok, "{identity} for {image}: {r:?}");
        if !ok {
            assert!(r.unwrap_err().starts_with("identity mismatch"));
        }
    }
}

#[test]
fn requirements_the_agent_cannot_evaluate_refuse_when_they_apply() {
    let p = policy(
        r#"{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{
            "registry.redhat.io":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/etc/pki/rpm-gpg/RPM-GPG-KEY-redhat-release"}],
            "quay.io/fulcio":[{"type":"sigstoreSigned","fulcio":{"caPath":"/x","oidcIssuer":"https://i","subjectEmail":"a@b"},"rekorPublicKeyPath":"/r"}],
            "quay.io/rekor":[{"type":"sigstoreSigned","keyPath":"/k","rekorPublicKeyPath":"/r"}]
        }}}"#,
    );
    let e = decide(&p, "registry.redhat.io/x/y:1", &digest(), vec![]).unwrap_err();
    assert!(
        e.contains("`signedBy` (GPG)") && e.contains("sigstoreSigned"),
        "{e}"
    );
    for image in ["quay.io/fulcio/x:1", "quay.io/rekor/x:1"] {
        let e = decide(&p, image, &digest(), vec![]).unwrap_err();
        assert!(e.contains("Fulcio, Rekor or PKI"), "{e}");
    }
    // Elsewhere the same file allows what its default allows.
    assert!(decide(&p, "quay.io/other/x:1", &digest(), vec![]).is_ok());
    // All requirements of a scope must allow.
    let both = policy(r#"{"default":[{"type":"insecureAcceptAnything"},{"type":"reject"}]}"#);
    assert!(decide(&both, "quay.io/a:1", &digest(), vec![]).is_err());
}

#[test]
fn malformed_policies_are_refused_with_the_reason() {
    for (json, why) in [
        ("", "not valid JSON"),
        (r#"{"transports":{}}"#, "`default` is missing"),
        (r#"{"default":[]}"#, "empty list of requirements"),
        (
            r#"{"default":[{"type":"reject"}],"default":[{"type":"insecureAcceptAnything"}]}"#,
            "`default` appears twice",
        ),
        (
            r#"{"default":[{"type":"reject"}],"extra":1}"#,
            "unknown key `extra`",
        ),
        (
            r#"{"default":[{"type":"reject","keyPath":"/k"}]}"#,
            "unknown key `keyPath`",
        ),
        (
            r#"{"default":[{"type":"accept"}]}"#,
            "unknown requirement type `accept`",
        ),
        (
            r#"{"default":[{"type":"sigstoreSigned"}]}"#,
            "exactly one of keyPath",
        ),
        (
            r#"{"default":[{"type":"sigstoreSigned","keyPath":"/a","keyData":"eA=="}]}"#,
            "exactly one of keyPath",
        ),
        (
            r#"{"default":[{"type":"sigstoreSigned","keyPaths":[]}]}"#,
            "the list of keys is empty",
        ),
        (
            r#"{"default":[{"type":"sigstoreSigned","keyData":"!!"}]}"#,
            "not base64",
        ),
        (
            r#"{"default":[{"type":"sigstoreSigned","keyPath":"/a","signedIdentity":{"type":"exactReference","dockerReference":"quay.io/a"}}]}"#,
            "neither a tag nor a digest",
        ),
        (
            r#"{"default":[{"type":"sigstoreSigned","keyPath":"/a","signedIdentity":{"type":"remapIdentity","prefix":"a","signedPrefix":"quay.io"}}]}"#,
            "prefix `a`",
        ),
        (
            r#"{"default":[{"type":"reject"}],"transports":{"oci":{"":[{"type":"nope"}]}}}"#,
            "unknown requirement type `nope`",
        ),
        (
            r#"{"default":[{"type":"reject"}],"transports":{"docker":{"a":{"type":"reject"}}}}"#,
            "not an array of requirements",
        ),
    ] {
        let e = Policy::parse(json, Path::new("p")).unwrap_err();
        assert!(e.contains(why), "{json}: {e}");
    }
    // Keys inside strings and nested objects do not count as duplicates.
    policy(
        r#"{"default":[{"type":"reject"}],"transports":{"docker":{"a":[{"type":"reject"}]},"oci":{"a":[{"type":"reject"}]}}}"#,
    );
    assert_eq!(
        duplicate_key(r#"{"a":"{\"b\":1,\"b\":2}","c":{"a":1}}"#),
        None
    );
    assert_eq!(
        duplicate_key(r#"{"a":[{"x":1},{"x":2}],"b":{"y":1,"y":2}}"#).as_deref(),
        Some("y")
    );
}

#[test]
fn payloads_are_parsed_exactly() {
    let p = sigstore::parse_payload(PAYLOAD).unwrap();
    assert_eq!(
        (p.digest.as_str(), p.reference.as_str()),
        (digest().as_str(), "quay.io/acme/drv:v1")
    );
    let text = String::from_utf8(PAYLOAD.to_vec()).unwrap();
    for (bad, why) in [
        (
            text.replace(r#","optional":null"#, ""),
            "exactly critical, optional",
        ),
        (
            text.replace(r#""optional":null"#, r#""optional":7"#),
            "`optional` is not an object",
        ),
        (
            text.replace(r#""type":"cosign"#, r#""extra":1,"type":"cosign"#),
            "exactly type, image, identity",
        ),
        (
            text.replace("cosign container image signature", "other"),
            "payload type",
        ),
        (
            text.replace(r#""optional":null"#, r#""optional":null,"optional":null"#),
            "appears twice",
        ),
    ] {
        let e = sigstore::parse_payload(bad.as_bytes()).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
    // Unknown optional fields are allowed, as cosign writes some.
    let with_optional = text.replace(
        r#""optional":null"#,
        r#""optional":{"creator":"x","foo":1}"#,
    );
    assert!(sigstore::parse_payload(with_optional.as_bytes()).is_ok());
}

#[test]
fn only_p256_public_keys_are_used() {
    assert!(sigstore::parse_key(A.as_bytes(), "a").is_ok());
    let e = sigstore::parse_key(P384.as_bytes(), "k").unwrap_err();
    assert!(e.contains("not an ECDSA P-256"), "{e}");
    let e = sigstore::parse_key(b"garbage", "k").unwrap_err();
    assert!(e.contains("not a PEM `PUBLIC KEY`"), "{e}");
}

#[test]
fn node_files_under_a_root() {
    let tmp = kmm_day1_tests::scratch::TempDir::new("policy").unwrap();
    let root = tmp.path();
    // No policy.json: nothing is verified, and status says so.
    let n = NodePolicy::load(root).unwrap();
    assert!(n.policy.is_none() && n.accepts_offline(&img("quay.io/a:1")));
    assert!(NodePolicy::status_line(root).starts_with("not verified:"));
    fs::create_dir_all(root.join("etc/containers/registries.d")).unwrap();
    fs::write(
        root.join("etc/containers/policy.json"),
        format!(
            r#"{{"default":[{{"type":"insecureAcceptAnything"}}],"transports":{{"docker":{{"quay.io/acme":[{}]}}}}}}"#,
            signed_by(&[A], "")
        ),
    )
    .unwrap();
    fs::write(
        root.join("etc/containers/registries.d/acme.yaml"),
        "docker:\n  quay.io/acme:\n    use-sigstore-attachments: true\n",
    )
    .unwrap();
    let n = NodePolicy::load(root).unwrap();
    assert!(n.attachments.enabled(&img("quay.io/acme/drv:v1")));
    assert!(!n.accepts_offline(&img("quay.io/acme/drv:v1")));
    assert!(n.accepts_offline(&img("quay.io/other/drv:v1")));
    // A broken policy stops everything and says which file.
    fs::write(root.join("etc/containers/policy.json"), "{").unwrap();
    let e = format!("{:#}", NodePolicy::load(root).unwrap_err());
    assert!(
        e.contains("policy.json: not valid JSON") && e.contains("no image is pulled"),
        "{e}"
    );
    assert!(NodePolicy::status_line(root).contains("no image is pulled"));
}
