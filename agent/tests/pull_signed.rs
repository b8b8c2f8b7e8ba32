//! `kmm-day1-agent pull` under the node's signature policy, end to end:
//! images pushed by `skopeo` to Debian's real `docker-registry` on
//! 127.0.0.1, cosign-layout signatures made and pushed by
//! tests/support/cosign-sign.py (Python's `cryptography`: not the agent),
//! and the agent reading the real paths `/etc/containers/policy.json` and
//! `/etc/containers/registries.d`, which a private mount namespace
//! (`unshare -m`, root) covers with each case's files. Every case asserts
//! what was published: the image's tree, or nothing.

// Helpers of a test crate: a failed step should panic with its error.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kmm_day1_tests::registry::{Registry, Setup};
use kmm_day1_tests::{registry, require_tool, run};

mod pull_common;
use pull_common::*;

const SIGN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/support/cosign-sign.py"
);

fn full_suite() -> bool {
    std::env::var_os("KMM_DAY1_FULL").is_some_and(|v| !v.is_empty())
}

/// The tools, root, and an /etc/containers to cover (skopeo's package
/// ships it); `None` skips, or fails in the full suite.
fn ready() -> Option<(String, PathBuf)> {
    let crypto = Command::new("python3")
        .args(["-c", "import cryptography.hazmat.primitives.asymmetric.ec"])
        .status()
        .is_ok_and(|s| s.success());
    let root = std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap()) == 0;
    let why = if !tools() || !registry::tools_available() || !require_tool("skopeo") {
        "umoci, depmod, docker-registry and skopeo (tests/setup.d/30-registry.sh)"
    } else if !crypto {
        "python3-cryptography (tests/setup.d/30-registry.sh)"
    } else if !require_tool("unshare") || !root {
        "root and unshare (a private mount namespace covers /etc/containers)"
    } else if !Path::new("/etc/containers").is_dir() {
        "an /etc/containers directory to mount over (skopeo's package ships it)"
    } else {
        return kernel_tree();
    };
    assert!(!full_suite(), "the signature policy tests need {why}");
    eprintln!("skipping: needs {why}");
    None
}

/// One case's world: a registry, the driver image pushed as `acme/drv:v1`,
/// two P-256 keys and a P-384 one, and a node.
struct World {
    reg: Registry,
    work: TempDir,
    kver: String,
    img: Built,
    digest: String,
    node: Node,
}

impl World {
    fn new(name: &str) -> Option<World> {
        let (kver, modules) = ready()?;
        let reg = Registry::start(Setup::default()).unwrap();
        let work = TempDir::new(name).unwrap();
        let img = build_image(work.path(), &modules, &kver, "v1");
        let digest = reg
            .push_layout(&img.layout, "v1", "acme/drv:v1", registry::Format::Oci)
            .unwrap();
        let etc = work.join("etc-containers");
        fs::create_dir_all(etc.join("registries.d")).unwrap();
        fs::create_dir_all(etc.join("keys")).unwrap();
        for k in ["a", "b"] {
            run(Command::new("python3")
                .arg(SIGN)
                .arg("keygen")
                .arg(work.join(k)));
            fs::copy(
                work.join(format!("{k}.pub")),
                etc.join(format!("keys/{k}.pub")),
            )
            .unwrap();
        }
        run(Command::new("python3")
            .arg(SIGN)
            .arg("keygen")
            .arg(work.join("p384"))
            .args(["--curve", "p384"]));
        fs::copy(work.join("p384.pub"), etc.join("keys/p384.pub")).unwrap();
        let node = Node::new(work.path(), &config(&reg.host(), "acme/drv:v1"));
        Some(World {
            reg,
            work,
            kver,
            img,
            digest,
            node,
        })
    }

    fn host(&self) -> String {
        self.reg.host()
    }

    fn etc(&self) -> PathBuf {
        self.work.join("etc-containers")
    }

    /// Write the node's policy.json (`{KEYS}` is the keys' directory as the
    /// agent sees it) and turn attachments on for every registry.
    fn policy(&self, json: &str) {
        let json = json
            .replace("{HOST}", &self.host())
            .replace("{KEYS}", "/etc/containers/keys");
        fs::write(self.etc().join("policy.json"), json).unwrap();
        fs::write(
            self.etc().join("registries.d/default.yaml"),
            "default-docker:\n  use-sigstore-attachments: true\n",
        )
        .unwrap();
    }

    /// Sign `digest` (the pushed image unless given) on `reg` as `repo`:
    /// one layer per (key, identity); `extra` are more script options.
    fn sign(
        &self,
        reg: &Registry,
        repo: &str,
        digest: &str,
        sigs: &[(&str, &str)],
        extra: &[&str],
    ) {
        let mut cmd = Command::new("python3");
        cmd.arg(SIGN).args(["push", &reg.host(), repo, digest]);
        for (key, identity) in sigs {
            cmd.arg("--sign")
                .arg(self.work.join(format!("{key}.key")))
                .arg(identity.replace("{HOST}", &self.host()));
        }
        run(cmd.args(extra));
    }

    /// Sign the image this world pushed, in its own registry.
    fn sign_image(&self, sigs: &[(&str, &str)], extra: &[&str]) {
        self.sign(&self.reg, "acme/drv", &self.digest, sigs, extra);
    }

    /// `pull` (or another command) with /etc/containers covered by this
    /// case's files.
    fn agent(&self, node: &Node, verb: &str) -> Output {
        let mut inner = Command::new(agent());
        on_node(inner.arg(verb), &node.config_dir, &node.store, &self.kver);
        if verb == "pull" {
            inner.arg("--no-reboot");
        }
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("set -eu; mount -t tmpfs tmpfs /etc/containers; cp -a \"$1\"/. /etc/containers/; shift; exec \"$@\"")
            .arg("sh")
            .arg(self.etc())
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.output().unwrap()
    }

    fn pull(&self) -> Output {
        self.agent(&self.node, "pull")
    }

    /// The pull published the image's tree, file for file.
    fn assert_published(&self, out: &Output) {
        assert!(out.status.success(), "{}", stderr(out));
        let hex = self.digest.trim_start_matches("sha256:");
        let tree = self.node.kdir(&self.kver).join(format!("sha256-{hex}"));
        let mut got = snapshot(&tree);
        got.remove("meta.json");
        assert_eq!(got, expected_tree(&self.img.rootfs, &self.kver));
    }

    /// The pull was refused by the policy, named `why`, and left nothing.
    fn assert_refused(&self, out: &Output, why: &str) {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
        let err = stderr(out);
        assert!(
            err.contains("pull refused:") && err.contains(why),
            "wanted `{why}`:\n{err}"
        );
        self.assert_nothing_published("refused");
        // No layer was downloaded: the check comes first.
        let blobs = self.node.store.join("blobs/sha256");
        let fetched = fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);
        assert_eq!(fetched, 0, "blobs were fetched into {}", blobs.display());
    }

    fn assert_nothing_published(&self, result: &str) {
        let kdir = self.node.kdir(&self.kver);
        let left: Vec<_> = fs::read_dir(&kdir)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in {}: {left:?}", kdir.display());
        let pull: serde_json::Value =
            serde_json::from_slice(&fs::read(self.node.store.join("drv/pull.json")).unwrap())
                .unwrap();
        assert_eq!(pull["result"], result, "{pull}");
    }
}

fn config(host: &str, image: &str) -> String {
    format!(
        "image = \"{host}/{image}\"\nmodules = [\"macvtap\"]\nfirmware_dir = \"/firmware\"\n\
         [pull]\ninsecure = true\n"
    )
}

/// `default` rejects; the driver's repository needs a signature by `keys`.
fn signed_policy(keys: &str, identity: &str) -> String {
    format!(
        r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{{HOST}}/acme":[
            {{"type":"sigstoreSigned",{keys}{identity}}}]}}}}}}"#
    )
}

const KEY_A: &str = r#""keyPath":"{KEYS}/a.pub""#;

#[test]
fn a_signed_image_is_published_and_status_says_what_decided() {
    let Some(w) = World::new("sig-ok") else {
        return;
    };
    w.policy(&signed_policy(KEY_A, ""));
    w.sign_image(&[("a", "{HOST}/acme/drv:v1")], &[]);
    let out = w.pull();
    w.assert_published(&out);
    let err = stderr(&out);
    assert!(err.contains(&format!("is allowed by /etc/containers/policy.json (docker scope `{}/acme`): sigstoreSigned (key ", w.host())), "{err}");
    let st = w.agent(&w.node, "status");
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains(
            "signatures: /etc/containers/policy.json applies to driver images (1 docker scopes"
        ),
        "{text}"
    );
}

#[test]
fn several_keys_of_which_one_signed() {
    let Some(w) = World::new("sig-keys") else {
        return;
    };
    w.sign_image(&[("a", "{HOST}/acme/drv:v1")], &[]);
    // Without the signer's key the same signature is refused ...
    w.policy(&signed_policy(r#""keyPaths":["{KEYS}/b.pub"]"#, ""));
    w.assert_refused(&w.pull(), "bad signature");
    // ... and one matching key among several is enough.
    w.policy(&signed_policy(
        r#""keyPaths":["{KEYS}/b.pub","{KEYS}/a.pub"]"#,
        "",
    ));
    w.assert_published(&w.pull());
}

#[test]
fn unsigned_wrong_key_and_moved_tag_are_refused() {
    let Some(w) = World::new("sig-refused") else {
        return;
    };
    w.policy(&signed_policy(KEY_A, ""));
    let out = w.pull();
    w.assert_refused(&out, "no signature: a sigstore signature is required");
    let st = w.agent(&w.node, "status");
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("pull:     refused")
            && text.contains("next:     blocked: the node's signature policy refused the image"),
        "{text}"
    );

    // Signed, by a key the policy does not trust.
    w.sign_image(&[("b", "{HOST}/acme/drv:v1")], &[]);
    w.assert_refused(
        &w.pull(),
        "bad signature: it does not verify with the key of the policy",
    );

    // A P-384 key in the policy: the agent cannot use it, so it refuses.
    w.policy(&signed_policy(r#""keyPath":"{KEYS}/p384.pub""#, ""));
    w.assert_refused(&w.pull(), "is not an ECDSA P-256 public key");

    // The tag moved after signing: the signature found under the new
    // digest's tag is for the old digest.
    w.policy(&signed_policy(KEY_A, ""));
    let other = w.work.join("other");
    let img2 = build_image_with(&other, &kernel_tree().unwrap().1, &w.kver, "v1", 4096);
    let moved = w
        .reg
        .push_layout(&img2.layout, "v1", "acme/drv:v1", registry::Format::Oci)
        .unwrap();
    assert_ne!(moved, w.digest);
    w.sign(
        &w.reg,
        "acme/drv",
        &moved,
        &[("a", "{HOST}/acme/drv:v1")],
        &["--payload-digest", &w.digest],
    );
    w.assert_refused(
        &w.pull(),
        &format!("digest mismatch: the signature is for {}", w.digest),
    );
}

#[test]
fn a_wrong_identity_is_refused_under_each_signed_identity() {
    let Some(w) = World::new("sig-identity") else {
        return;
    };
    // Signed for another repository: no signedIdentity accepts it for
    // `acme/drv:v1` (the remap maps a prefix the image is not under).
    w.sign_image(&[("a", "{HOST}/acme/other:v1")], &[]);
    for identity in [
        r#"{"type":"matchExact"}"#,
        r#"{"type":"matchRepoDigestOrExact"}"#,
        r#"{"type":"matchRepository"}"#,
        r#"{"type":"exactReference","dockerReference":"{HOST}/acme/drv:v1"}"#,
        r#"{"type":"exactRepository","dockerRepository":"{HOST}/acme/drv"}"#,
        r#"{"type":"remapIdentity","prefix":"{HOST}/elsewhere","signedPrefix":"{HOST}/acme"}"#,
    ] {
        w.policy(&signed_policy(
            KEY_A,
            &format!(r#","signedIdentity":{identity}"#),
        ));
        let out = w.pull();
        let name = identity.split('"').nth(3).unwrap();
        w.assert_refused(
            &out,
            &format!("which signedIdentity `{name}` does not accept"),
        );
    }
    // And the repository-wide one accepts a signature for another tag.
    w.sign_image(&[("a", "{HOST}/acme/drv:v0")], &[]);
    w.policy(&signed_policy(
        KEY_A,
        r#","signedIdentity":{"type":"matchRepository"}"#,
    ));
    w.assert_published(&w.pull());
}

#[test]
fn reject_accept_anything_and_the_longest_scope() {
    let Some(w) = World::new("sig-scopes") else {
        return;
    };
    w.policy(r#"{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{"{HOST}/acme":[{"type":"reject"}]}}}"#);
    w.assert_refused(&w.pull(), "(docker scope `");
    // The longer scope beats both the shorter one and `default`.
    w.policy(r#"{"default":[{"type":"reject"}],"transports":{"docker":{"{HOST}/acme":[{"type":"reject"}],"{HOST}/acme/drv":[{"type":"insecureAcceptAnything"}]}}}"#);
    w.assert_published(&w.pull());
    // No policy.json at all: as before, and status says so.
    fs::remove_file(w.etc().join("policy.json")).unwrap();
    let st = w.agent(&w.node, "status");
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("signatures: not verified: /etc/containers/policy.json does not exist"),
        "{text}"
    );
}

#[test]
fn signed_by_fulcio_and_malformed_policies_stop_the_pull() {
    let Some(w) = World::new("sig-unsupported") else {
        return;
    };
    w.policy(r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/etc/pki/rpm-gpg/RPM-GPG-KEY-redhat-release"}]}"#);
    w.assert_refused(
        &w.pull(),
        "`signedBy` (GPG) signature, which kmm-day1 does not verify",
    );
    w.policy(r#"{"default":[{"type":"sigstoreSigned","fulcio":{"caPath":"/ca","oidcIssuer":"https://i","subjectEmail":"a@b"},"rekorPublicKeyPath":"/r"}]}"#);
    w.assert_refused(&w.pull(), "Fulcio, Rekor or PKI");
    w.policy(r#"{"default":[{"type":"insecureAcceptAnything"}],"default":[{"type":"reject"}]}"#);
    w.assert_refused(&w.pull(), "/etc/containers/policy.json: the key `default` appears twice in one object; no image is pulled");
    w.policy(r#"{"default":[{"type":"insecureAcceptAnything"}]}"#);
    fs::write(
        w.etc().join("registries.d/bad.yaml"),
        "docker: {quay.io: {}}\n",
    )
    .unwrap();
    w.assert_refused(&w.pull(), "/etc/containers/registries.d/bad.yaml: line 1");
}

#[test]
fn huge_or_crowded_signature_manifests_are_bounded() {
    let Some(w) = World::new("sig-bounds") else {
        return;
    };
    w.policy(&signed_policy(KEY_A, ""));
    // A valid signature beside 65 other attachments, then one whose
    // payload is padded past 64 KiB: both fail the pull before any layer.
    for (extra, why) in [
        (
            ["--other", "65"],
            "66 layers, more than the 64 the agent reads",
        ),
        (["--pad", "70000"], "is larger than 65536 bytes"),
    ] {
        w.sign_image(&[("a", "{HOST}/acme/drv:v1")], &extra);
        let out = w.pull();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(why), "{}", stderr(&out));
        w.assert_nothing_published("failed");
    }
}

#[test]
fn signatures_are_read_from_the_mirror_that_serves_a_pinned_image() {
    let Some(w) = World::new("sig-mirror") else {
        return;
    };
    // The source is a port nothing listens on; the mirror has the image
    // and its signature (made for the source's name, as mirrored images are).
    let mirror = Registry::start(Setup::default()).unwrap();
    let pushed = mirror
        .push_layout(&w.img.layout, "v1", "mirror/drv:v1", registry::Format::Oci)
        .unwrap();
    assert_eq!(pushed, w.digest);
    let source = "127.0.0.1:9";
    w.sign(
        &mirror,
        "mirror/drv",
        &w.digest,
        &[("a", &format!("{source}/acme/drv:v1"))],
        &[],
    );
    fs::write(
        w.etc().join("registries.conf"),
        format!(
            "[[registry]]\nprefix = \"{source}/acme/drv\"\nlocation = \"{source}/acme/drv\"\n\
             [[registry.mirror]]\nlocation = \"{}/mirror/drv\"\ninsecure = true\n",
            mirror.host()
        ),
    )
    .unwrap();
    w.policy(&signed_policy(KEY_A, "").replace("{HOST}", source));
    let node = Node::new(
        &w.work.join("pinned"),
        &config(source, &format!("acme/drv@{}", w.digest)),
    );
    let out = w.agent(&node, "pull");
    assert!(out.status.success(), "{}", stderr(&out));
    let hex = w.digest.trim_start_matches("sha256:");
    assert!(node
        .kdir(&w.kver)
        .join(format!("sha256-{hex}/meta.json"))
        .is_file());
    // The same pinned image signed for another repository is refused, even
    // though it is already in the store: the policy wants a signature, so
    // the store does not answer for the registry.
    w.sign(
        &mirror,
        "mirror/drv",
        &w.digest,
        &[("a", &format!("{source}/acme/other:v1"))],
        &[],
    );
    let out = w.agent(&node, "pull");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("identity mismatch"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn verify_checks_the_signatures_against_a_given_policy() {
    let Some(w) = World::new("sig-verify") else {
        return;
    };
    // No namespace: `--policy` and `--registries-d` name the files.
    let policy = w.work.join("policy.json");
    fs::write(
        &policy,
        signed_policy(
            &KEY_A.replace("{KEYS}", &w.etc().join("keys").display().to_string()),
            "",
        )
        .replace("{HOST}", &w.host()),
    )
    .unwrap();
    fs::write(
        w.etc().join("registries.d/on.yaml"),
        "default-docker:\n  use-sigstore-attachments: true\n",
    )
    .unwrap();
    let verify = || {
        Command::new(agent())
            .args(["verify", "--insecure", "--signatures-only", "--image"])
            .arg(format!("{}/acme/drv:v1", w.host()))
            .arg("--policy")
            .arg(&policy)
            .arg("--registries-d")
            .arg(w.etc().join("registries.d"))
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap()
    };
    let out = verify();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL policy: ")
            && text.contains("no signature: a sigstore signature is required"),
        "{text}"
    );
    assert!(!text.contains("layer 1/"), "{text}");
    w.sign_image(&[("a", "{HOST}/acme/drv:v1")], &[]);
    let out = verify();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("ok   policy: allowed by {}", policy.display())),
        "{text}"
    );
}
