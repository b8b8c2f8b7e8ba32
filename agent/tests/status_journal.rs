//! The journal lines `pull` sends under systemd: `JOURNAL_STREAM` names the
//! child's stderr and the native protocol goes to a socket this test binds
//! (`KMM_DAY1_JOURNAL_SOCKET`). Checks the structured fields and the
//! `MESSAGE_ID`s docs/status.md lists, and that an up-to-date run is one line.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Stdio;

mod pull_common;
use pull_common::*;

const PULL_PUBLISHED: &str = "b346e1b6498d483893759e3620ddd133";
const PULL_FAILED: &str = "b5fd82ac74a84377a50603a926c6947a";
const PULL_SUMMARY: &str = "6ea2c4bc55214282a3cf065ce2e89ef3";

/// Run `pull` as systemd would, return each datagram's fields and stderr.
fn pull_journaled(
    node: &Node,
    kver: &str,
    layout: &Path,
    work: &Path,
) -> (Vec<BTreeMap<String, String>>, String, bool) {
    let sock_path = work.join("journal.sock");
    let _ = fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let err_path = work.join("stderr");
    let err = fs::File::create(&err_path).unwrap();
    let m = err.metadata().unwrap();
    let status = node
        .command(kver, None)
        .arg("--no-reboot")
        .arg("--oci-layout")
        .arg(layout)
        .env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()))
        .env("KMM_DAY1_JOURNAL_SOCKET", &sock_path)
        .stderr(Stdio::from(err))
        .status()
        .unwrap();
    let mut msgs = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = sock.recv(&mut buf) {
        let text = String::from_utf8(buf[..n].to_vec()).unwrap();
        // Our values are one line each, so every field is NAME=value.
        let fields = text
            .lines()
            .map(|l| {
                let (k, v) = l
                    .split_once('=')
                    .unwrap_or_else(|| panic!("not NAME=value: {l:?}"));
                (k.to_string(), v.to_string())
            })
            .collect();
        msgs.push(fields);
    }
    (
        msgs,
        fs::read_to_string(&err_path).unwrap(),
        status.success(),
    )
}

#[test]
fn pull_sends_fields_and_message_ids() {
    if !tools() {
        return;
    }
    let Some((kver, modules)) = kernel_tree() else {
        return;
    };
    let work = TempDir::new("journal").unwrap();
    let img = build_image(work.path(), &modules, &kver, "v1");
    let digest = manifest_digest(&img.layout, "v1");
    let node = Node::new(work.path(), CONFIG);

    let (msgs, stderr, ok) = pull_journaled(&node, &kver, &img.layout, work.path());
    assert!(ok, "{stderr}");
    assert_eq!(stderr, "", "everything went to the journal socket");
    let by_id = |id: &str| {
        msgs.iter()
            .filter(|m| m.get("MESSAGE_ID").map(String::as_str) == Some(id))
            .collect::<Vec<_>>()
    };
    let published = by_id(PULL_PUBLISHED);
    assert_eq!(published.len(), 1, "{msgs:#?}");
    let summary = by_id(PULL_SUMMARY);
    assert_eq!(summary.len(), 1, "{msgs:#?}");
    for m in [published[0], summary[0]] {
        assert_eq!(m["KMM_DAY1_CONFIG"], "drv");
        assert_eq!(m["KMM_DAY1_IMAGE"], "registry.test/acme/drv:v1");
        assert_eq!(m["KMM_DAY1_DIGEST"], digest);
        assert_eq!(m["KMM_DAY1_KERNEL"], kver);
        assert_eq!(m["SYSLOG_IDENTIFIER"], "kmm-day1-agent");
    }
    assert_eq!(published[0]["PRIORITY"], "6");
    assert_eq!(summary[0]["PRIORITY"], "5");
    assert_eq!(summary[0]["KMM_DAY1_RESULT"], "ok");
    assert!(
        summary[0]["MESSAGE"].starts_with(&format!("pull for kernel {kver} in ")),
        "{summary:?}"
    );

    // Up to date: the summary is the only line.
    let (msgs, stderr, ok) = pull_journaled(&node, &kver, &img.layout, work.path());
    assert!(ok, "{stderr}");
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert_eq!(msgs[0]["MESSAGE_ID"], PULL_SUMMARY);
    assert!(msgs[0]["MESSAGE"].contains("is up to date"), "{msgs:?}");

    // A failure: the config's error line, then an error summary.
    fs::write(
        node.config_dir.join("drv.toml"),
        CONFIG.replace(":v1", ":v9"),
    )
    .unwrap();
    let (msgs, stderr, ok) = pull_journaled(&node, &kver, &img.layout, work.path());
    assert!(!ok, "{stderr}");
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    assert_eq!(msgs[0]["MESSAGE_ID"], PULL_FAILED);
    assert_eq!(msgs[0]["PRIORITY"], "3");
    assert_eq!(msgs[0]["KMM_DAY1_RESULT"], "failed");
    assert_eq!(msgs[0]["KMM_DAY1_IMAGE"], "registry.test/acme/drv:v9");
    assert_eq!(msgs[1]["MESSAGE_ID"], PULL_SUMMARY);
    assert_eq!(msgs[1]["PRIORITY"], "3");
    assert_eq!(msgs[1]["KMM_DAY1_RESULT"], "failed");
    // The error once, on the config's line; the summary names the config
    // without repeating it, and neither says "pull for kernel" twice.
    let error = &msgs[0]["MESSAGE"];
    assert!(
        error.starts_with("drv: pull failed: ") && error.contains("registry.test/acme/drv:v9"),
        "{error}"
    );
    let summary = &msgs[1]["MESSAGE"];
    assert!(
        summary.starts_with(&format!("pull for kernel {kver} in "))
            && summary.ends_with("s: drv: failed (the error is on the line above)"),
        "{summary}"
    );
    for m in &msgs {
        assert!(
            m["MESSAGE"].matches("pull for kernel").count() <= 1,
            "{m:?}"
        );
    }
    let pulled: serde_json::Value =
        serde_json::from_slice(&fs::read(node.store.join("drv/pull.json")).unwrap()).unwrap();
    assert_eq!(
        format!("drv: pull failed: {}", pulled["message"].as_str().unwrap()),
        *error,
        "pull.json holds the same error"
    );
}
