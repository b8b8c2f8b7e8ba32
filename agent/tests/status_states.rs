//! `kmm-day1-agent status` on stores written by the real `pull` (from
//! umoci-built OCI layouts with Debian's modules) and on replace.json files
//! as `replace` writes them: every state, text and JSON, and the exit codes
//! docs/status.md defines.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod pull_common;
use kmm_day1_tests::image::kmm_image;
use kmm_day1_tests::kernel_tree::{self, MODULES};
use pull_common::*;

const CFG: &str = r#"
image = "registry.test/acme/drv:v1"
modules = ["vrf"]
firmware_dir = "/firmware"
"#;

fn status(node: &Node, kver: &str, sys: &Path, json: bool) -> Output {
    let mut cmd = Command::new(agent());
    cmd.arg("status")
        .arg("--config-dir")
        .arg(&node.config_dir)
        .arg("--store")
        .arg(&node.store)
        .arg("--kernel-release")
        .arg(kver)
        .arg("--sys-root")
        .arg(sys)
        .env("KMM_DAY1_NODE_ROOT", node.config_dir.join("no-node-root"))
        .env_remove("JOURNAL_STREAM");
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

/// (exit code, JSON report, text report).
fn both(node: &Node, kver: &str, sys: &Path) -> (i32, serde_json::Value, String) {
    let j = status(node, kver, sys, true);
    let t = status(node, kver, sys, false);
    assert_eq!(j.status.code(), t.status.code(), "text and JSON agree");
    let v: serde_json::Value = serde_json::from_slice(&j.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&j.stdout)));
    assert_eq!(v["exit_code"], j.status.code().unwrap());
    (
        j.status.code().unwrap(),
        v,
        String::from_utf8_lossy(&t.stdout).into_owned(),
    )
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

fn write_replace(node: &Node, kver: &str, result: &str, digest: &str, boot: &str, srcv: &str) {
    let r = serde_json::json!({
        "kernel": kver, "result": result, "message": format!("drv: {result}"),
        "digest": digest, "removed": ["vrf"],
        "loaded": if result == "loaded" {
            serde_json::json!([{"name": "vrf", "path": "x/vrf.ko", "srcversion": srcv}])
        } else { serde_json::json!([]) },
        "boot_id": boot, "started": "2026-11-26T10:00:00Z",
        "finished": "2026-11-26T10:00:01Z", "duration_ms": 420
    });
    fs::write(
        node.store.join("drv/replace.json"),
        serde_json::to_vec_pretty(&r).unwrap(),
    )
    .unwrap();
}

fn setup(tag: &str) -> Option<(TempDir, String, PathBuf, PathBuf)> {
    if !tools() || !kmm_day1_tests::require_tool("modinfo") {
        return None;
    }
    let (kver, debian) = kernel_tree()?;
    let work = TempDir::new(tag).unwrap();
    let layout = work.path().join("layout");
    kmm_image(
        &layout,
        "v1",
        &debian,
        &kver,
        &MODULES,
        &[("tehuti/bdx.bin", b"fw")],
    )
    .unwrap();
    Some((work, kver, debian, layout))
}

#[test]
fn every_state_with_text_json_and_exit_code() {
    let Some((work, kver, debian, layout)) = setup("states") else {
        return;
    };
    let node = Node::new(work.path(), CFG);
    // A /sys whose module dir has nothing loaded; `nosys` has no module dir.
    let sys = work.path().join("sys");
    fs::create_dir_all(sys.join("module")).unwrap();
    let nosys = work.path().join("nosys");

    // pending: nothing pulled yet.
    let (code, v, text) = both(&node, &kver, &sys);
    assert_eq!(code, 1, "{text}");
    assert_eq!(v["configs"][0]["state"], "pending");
    assert!(text.contains("drv: pending (degraded)"), "{text}");
    assert!(
        text.contains("next:     pull at next network-online"),
        "{text}"
    );

    // pulled: the real pull published a tree; nothing loaded.
    let out = node.pull(&kver, &layout, None);
    assert!(out.status.success(), "{}", stderr(&out));
    // status shows the config's parameters as the config has them now (vrf
    // declares none, so pull would have refused this one: an edit since).
    fs::write(
        node.config_dir.join("drv.toml"),
        format!("{CFG}[parameters]\nvrf = [\"debug=1\"]\n"),
    )
    .unwrap();
    let digest = manifest_digest(&layout, "v1");
    let (code, v, text) = both(&node, &kver, &sys);
    assert_eq!(code, 1, "{text}");
    let c = &v["configs"][0];
    assert_eq!(c["state"], "pulled");
    assert_eq!(c["digest"], digest.as_str());
    assert_eq!(c["source"], format!("oci:{}", layout.display()));
    assert_eq!(c["image"], "registry.test/acme/drv:v1");
    assert_eq!(c["last_pull"]["result"], "published");
    assert!(c["last_pull"]["duration_ms"].as_u64().unwrap() > 0);
    assert_eq!(
        c["next_action"],
        "swap at next boot (kmm-day1-replace.service)"
    );
    let want_srcv = kernel_tree::modinfo("srcversion", &debian.join(MODULES[0])).unwrap();
    assert_eq!(c["modules"][0]["image_srcversion"], want_srcv.as_str());
    assert_eq!(c["modules"][0]["parameters"], "debug=1");
    assert_eq!(
        c["modules"][0]["loaded_srcversion"],
        serde_json::Value::Null
    );
    assert!(text.contains(&format!("digest:   {digest}")), "{text}");

    // loaded, seen in /sys/module/vrf/srcversion.
    fs::create_dir_all(sys.join("module/vrf")).unwrap();
    fs::write(sys.join("module/vrf/srcversion"), format!("{want_srcv}\n")).unwrap();
    let (code, v, text) = both(&node, &kver, &sys);
    assert_eq!(code, 0, "{text}");
    let c = &v["configs"][0];
    assert_eq!(c["state"], "loaded");
    assert_eq!(c["modules"][0]["loaded_from"], "sysfs");
    assert_eq!(c["next_action"], "none: up to date");
    assert!(
        text.starts_with(&format!("kernel {kver}: ok (exit 0)")),
        "{text}"
    );
    // Another build of vrf running: not the stored one.
    fs::write(
        sys.join("module/vrf/srcversion"),
        "0123456789ABCDEF0123456\n",
    )
    .unwrap();
    assert_eq!(both(&node, &kver, &sys).1["configs"][0]["state"], "pulled");

    // loaded, from replace.json when there is no /sys/module.
    write_replace(&node, &kver, "loaded", &digest, &boot_id(), &want_srcv);
    let (code, v, text) = both(&node, &kver, &nosys);
    assert_eq!(code, 0, "{text}");
    assert_eq!(v["configs"][0]["state"], "loaded");
    assert_eq!(v["configs"][0]["modules"][0]["loaded_from"], "replace.json");
    assert_eq!(v["configs"][0]["last_replace"]["this_boot"], true);
    assert!(
        text.contains("replace:  loaded at 2026-11-26T10:00:01Z, 0.4s, this boot"),
        "{text}"
    );

    // rolled back this boot: failed (2); from an earlier boot: pulled (1).
    write_replace(&node, &kver, "rolled-back", &digest, &boot_id(), "");
    let (code, v, text) = both(&node, &kver, &nosys);
    assert_eq!(code, 2, "{text}");
    assert_eq!(v["configs"][0]["state"], "rolled-back");
    assert!(v["configs"][0]["next_action"]
        .as_str()
        .unwrap()
        .starts_with("blocked:"));
    write_replace(&node, &kver, "rolled-back", &digest, "another-boot", "");
    let (code, v, _) = both(&node, &kver, &nosys);
    assert_eq!(
        (code, v["configs"][0]["state"].as_str()),
        (1, Some("pulled"))
    );
    write_replace(&node, &kver, "failed", &digest, &boot_id(), "");
    let (code, v, text) = both(&node, &kver, &nosys);
    assert_eq!(code, 2, "{text}");
    assert_eq!(v["configs"][0]["state"], "failed");
    assert!(text.contains("drv: failed (failed)"), "{text}");

    // A module without srcversion (no MODULE_VERSION, like macvtap): this
    // boot's replace.json listing it, and the kernel having it, say loaded.
    let node = Node::new(
        &work.path().join("nosrcv"),
        "image = \"registry.test/acme/drv:v1\"\nmodules = [\"macvtap\"]\n",
    );
    let out = node.pull(&kver, &layout, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = serde_json::json!({
        "kernel": kver, "result": "loaded", "message": "drv: loaded", "digest": digest,
        "loaded": [{"name": "macvtap", "path": "x/macvtap.ko", "srcversion": null}],
        "boot_id": boot_id(), "started": "2026-11-26T10:00:00Z", "finished": "2026-11-26T10:00:01Z"
    });
    fs::write(node.store.join("drv/replace.json"), r.to_string()).unwrap();
    let (code, v, text) = both(&node, &kver, &sys);
    assert_eq!(
        (code, v["configs"][0]["state"].as_str()),
        (1, Some("pulled")),
        "{text}"
    );
    fs::create_dir_all(sys.join("module/macvtap")).unwrap();
    let (code, v, text) = both(&node, &kver, &sys);
    assert_eq!(
        (code, v["configs"][0]["state"].as_str()),
        (0, Some("loaded")),
        "{text}"
    );
    assert_eq!(
        v["configs"][0]["modules"][0]["image_srcversion"],
        serde_json::Value::Null
    );
    // From a file without duration_ms (an older agent): null, and no time in the text.
    assert_eq!(
        v["configs"][0]["last_replace"]["duration_ms"],
        serde_json::Value::Null
    );
    assert!(
        text.contains("replace:  loaded at 2026-11-26T10:00:01Z, this boot"),
        "{text}"
    );
}

#[test]
fn failed_pull_guard_and_no_mapping() {
    let Some((work, kver, debian, layout)) = setup("guard") else {
        return;
    };
    let sys = work.path().join("sys");
    fs::create_dir_all(sys.join("module")).unwrap();

    // A tag the layout does not have: the real pull fails, no tree.
    let node = Node::new(
        &work.path().join("a"),
        "image = \"registry.test/acme/drv:v9\"\nmodules = [\"vrf\"]\n",
    );
    let out = node.pull(&kver, &layout, None);
    assert!(!out.status.success());
    let (code, v, text) = both(&node, &kver, &sys);
    assert_eq!(code, 2, "{text}");
    let c = &v["configs"][0];
    assert_eq!(c["state"], "failed");
    assert_eq!(c["last_pull"]["result"], "failed");
    assert!(
        c["next_action"].as_str().unwrap().starts_with("retry pull"),
        "{text}"
    );

    // Faults of the image itself cannot heal by retrying: a module the
    // image lacks, no tree for this kernel, modules built for another
    // kernel (a tree named 6.1.0-99-amd64 holding Debian's real modules).
    let wrong = "6.1.0-99-amd64";
    kmm_image(&layout, "vermagic", &debian, wrong, &MODULES, &[]).unwrap();
    for (tag, toml, kernel) in [
        ("missing", "modules = [\"sfc\"]\n", kver.as_str()),
        ("otherkernel", "modules = [\"vrf\"]\n", wrong),
        ("vermagic", "modules = [\"vrf\"]\n", wrong),
    ] {
        let image_tag = if tag == "vermagic" { "vermagic" } else { "v1" };
        let node = Node::new(
            &work.path().join(tag),
            &format!("image = \"registry.test/acme/drv:{image_tag}\"\n{toml}"),
        );
        let out = node.pull(kernel, &layout, None);
        if tag == "vermagic" {
            assert!(
                stderr(&out).contains("was built for kernel"),
                "{}",
                stderr(&out)
            );
        }
        assert!(!out.status.success(), "{tag}");
        let pulled: serde_json::Value =
            serde_json::from_slice(&fs::read(node.store.join("drv/pull.json")).unwrap()).unwrap();
        assert_eq!(pulled["image_defect"], true, "{tag}");
        let (code, v, text) = both(&node, kernel, &sys);
        assert_eq!(code, 2, "{text}");
        let c = &v["configs"][0];
        assert_eq!(c["state"], "failed", "{text}");
        let next = c["next_action"].as_str().unwrap();
        assert!(
            next.starts_with("fix the image (see last pull)"),
            "{tag}: {text}"
        );
        assert!(!next.contains("retry"), "{tag}: {text}");
        assert!(text.contains("  next:     fix the image"), "{text}");
    }

    // The reboot guard: one reboot already counted for this kernel, the
    // limit is one, and a new tree arrives. `systemctl` is a stub that
    // records a call: the guard must stop before it.
    let node = Node::new(
        &work.path().join("b"),
        "image = \"registry.test/acme/drv:v1\"\nmodules = [\"vrf\"]\n[pull]\nmax_reboots_per_kernel = 1\n",
    );
    fs::create_dir_all(node.store.join("drv")).unwrap();
    fs::write(
        node.store.join("drv/pull.json"),
        format!(r#"{{"kernel":"{kver}","result":"up-to-date","reboots":{{"{kver}":1}}}}"#),
    )
    .unwrap();
    let bin = work.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let stub = bin.join("systemctl");
    fs::write(
        &stub,
        format!(
            "#!/bin/sh\ntouch {}/called\nexit 1\n",
            work.path().display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&stub)
        .status()
        .unwrap();
    let out = node
        .command(&kver, None)
        .arg("--oci-layout")
        .arg(&layout)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(
        !work.path().join("called").exists(),
        "systemctl reboot was called"
    );
    let (code, v, text) = both(&node, &kver, &sys);
    assert_eq!(code, 2, "{text}");
    let c = &v["configs"][0];
    assert_eq!(c["state"], "pulled");
    assert_eq!(
        (c["reboots"].as_u64(), c["max_reboots"].as_u64()),
        (Some(1), Some(1))
    );
    let next = c["next_action"].as_str().unwrap();
    assert!(
        next.starts_with("blocked: reboot guard reached (1 of 1 reboots")
            && next.contains(&format!(
                "`rm {}`",
                node.store.join("drv/pull.json").display()
            )),
        "{next}"
    );

    // No kernel mapping for this kernel: nothing to do, ok.
    let node = Node::new(
        &work.path().join("c"),
        "modules = [\"vrf\"]\n[[kernel_mappings]]\nliteral = \"5.14.0-1.el9.x86_64\"\nimage = \"registry.test/a:1\"\n",
    );
    let (code, v, text) = both(&node, &kver, &sys);
    assert_eq!(code, 0, "{text}");
    assert_eq!(v["configs"][0]["state"], "no-mapping");
}

/// The documented JSON fields (docs/status.md), no more, no fewer.
#[test]
fn json_shape_is_pinned() {
    let Some((work, kver, _debian, layout)) = setup("shape") else {
        return;
    };
    let node = Node::new(work.path(), CFG);
    let out = node.pull(&kver, &layout, None);
    assert!(out.status.success(), "{}", stderr(&out));
    write_replace(
        &node,
        &kver,
        "loaded",
        &manifest_digest(&layout, "v1"),
        &boot_id(),
        "X",
    );
    let sys = work.path().join("sys");
    fs::create_dir_all(sys.join("module")).unwrap();
    let (_, v, _) = both(&node, &kver, &sys);
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(v["version"], 1);
    assert_eq!(
        keys(&v),
        [
            "boot_id",
            "configs",
            "exit_code",
            "health",
            "kernel",
            "signatures",
            "version"
        ]
    );
    let c = &v["configs"][0];
    assert_eq!(
        keys(c),
        [
            "digest",
            "error",
            "health",
            "image",
            "kernel",
            "last_pull",
            "last_replace",
            "max_reboots",
            "modules",
            "name",
            "next_action",
            "pending_kernels",
            "pulled_at",
            "reboots",
            "source",
            "state",
            "tree"
        ]
    );
    assert_eq!(
        keys(&c["modules"][0]),
        [
            "current",
            "image_srcversion",
            "loaded_from",
            "loaded_srcversion",
            "name",
            "parameters"
        ]
    );
    assert_eq!(
        keys(&c["last_pull"]),
        [
            "duration_ms",
            "finished",
            "kernel",
            "message",
            "result",
            "started"
        ]
    );
    assert_eq!(
        keys(&c["last_replace"]),
        [
            "duration_ms",
            "finished",
            "kernel",
            "message",
            "result",
            "started",
            "this_boot"
        ]
    );
    // The documented shape is the one in docs/status.md.
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/status.md"))
        .unwrap();
    for k in keys(c).iter().chain(keys(&v).iter()) {
        assert!(
            doc.contains(&format!("`{k}`")),
            "docs/status.md does not document `{k}`"
        );
    }
}

/// A node without any config is not healthy: the MachineConfig never
/// reached it (or `--config-dir` is wrong). Its own state and exit code 3.
#[test]
fn no_configs_is_unconfigured_not_ok() {
    let work = TempDir::new("noconfig").unwrap();
    let node = Node {
        config_dir: work.path().join("does-not-exist"),
        store: work.path().join("store"),
    };
    let sys = work.path().join("sys");
    let (code, v, text) = both(&node, "6.1.0-1-amd64", &sys);
    assert_eq!(code, 3, "{text}");
    assert_eq!(v["health"], "unconfigured");
    assert_eq!(v["configs"].as_array().unwrap().len(), 0);
    assert!(
        text.starts_with("kernel 6.1.0-1-amd64: unconfigured (exit 3)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("no configs in {}", node.config_dir.display())),
        "{text}"
    );
    // An empty config dir is the same.
    fs::create_dir_all(&node.config_dir).unwrap();
    let (code, _, _) = both(&node, "6.1.0-1-amd64", &sys);
    assert_eq!(code, 3);
}

/// `replace --dry-run` reports `status`'s state, health and exit code for
/// each config, in every state a real pull leaves behind. Both read the
/// real /sys here (the dry run has no --sys-root).
#[test]
fn dry_run_and_status_agree() {
    let Some((work, kver, _debian, layout)) = setup("agree") else {
        return;
    };
    let check = |node: &Node, kernel: &str, want_state: Option<&str>, want_code: i32| {
        let dirs = |cmd: &mut Command| {
            cmd.arg("--config-dir")
                .arg(&node.config_dir)
                .arg("--store")
                .arg(&node.store)
                .arg("--kernel-release")
                .arg(kernel)
                .env_remove("JOURNAL_STREAM");
        };
        let mut st = Command::new(agent());
        st.args(["status", "--json"]);
        dirs(&mut st);
        let st = st.output().unwrap();
        let mut dry = Command::new(agent());
        dry.args(["replace", "--dry-run", "--json"]);
        dirs(&mut dry);
        let dry = dry.output().unwrap();
        let (sv, dv): (serde_json::Value, serde_json::Value) = (
            serde_json::from_slice(&st.stdout).unwrap(),
            serde_json::from_slice(&dry.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&dry))),
        );
        let what = format!(
            "{}\n{}",
            String::from_utf8_lossy(&st.stdout),
            String::from_utf8_lossy(&dry.stdout)
        );
        assert_eq!(st.status.code(), Some(want_code), "status: {what}");
        assert_eq!(dry.status.code(), Some(want_code), "dry run: {what}");
        assert_eq!(dv["exit_code"], want_code, "{what}");
        assert_eq!(dv["health"], sv["health"], "{what}");
        if let Some(state) = want_state {
            assert_eq!(sv["configs"][0]["state"], state, "{what}");
            assert_eq!(dv["configs"][0]["state"], state, "{what}");
            assert_eq!(
                dv["configs"][0]["health"], sv["configs"][0]["health"],
                "{what}"
            );
        }
        // The text says the same.
        let mut t = Command::new(agent());
        t.args(["replace", "--dry-run"]);
        dirs(&mut t);
        let t = t.output().unwrap();
        let text = String::from_utf8_lossy(&t.stdout);
        assert_eq!(t.status.code(), Some(want_code), "{text}");
        assert!(
            text.starts_with(&format!(
                "kernel {kernel}: {} (exit {want_code})",
                sv["health"].as_str().unwrap()
            )),
            "{text}"
        );
        if let Some(state) = want_state {
            assert!(text.contains(&format!("drv: {state} (")), "{text}");
        }
    };
    // No config at all.
    let none = Node {
        config_dir: work.path().join("none"),
        store: work.path().join("none-store"),
    };
    check(&none, &kver, None, 3);
    // Nothing pulled yet.
    let node = Node::new(&work.path().join("a"), CFG);
    check(&node, &kver, Some("pending"), 1);
    // A pull that failed on the image: no tree for this kernel.
    let other = "6.1.0-99-amd64";
    assert!(!node.pull(other, &layout, None).status.success());
    check(&node, other, Some("failed"), 2);
    // Pulled, not loaded (this machine does not run Debian's vrf build).
    let out = node.pull(&kver, &layout, None);
    assert!(out.status.success(), "{}", stderr(&out));
    check(&node, &kver, Some("pulled"), 1);
    // No mapping for this kernel.
    let node = Node::new(
        &work.path().join("c"),
        "modules = [\"vrf\"]\n[[kernel_mappings]]\nliteral = \"5.14.0-1.el9.x86_64\"\nimage = \"registry.test/a:1\"\n",
    );
    check(&node, &kver, Some("no-mapping"), 0);
}

/// The config that cannot be resolved is named where it is, not as
/// /etc/kmm-day1/<name>.toml, under --config-dir.
#[test]
fn an_unresolvable_config_is_named_in_its_own_dir() {
    let work = TempDir::new("garbage").unwrap();
    let node = Node::new(work.path(), CFG);
    let (code, v, text) = both(&node, "garbage", &work.path().join("sys"));
    assert_eq!(code, 2, "{text}");
    let next = v["configs"][0]["next_action"].as_str().unwrap();
    assert_eq!(
        next,
        format!(
            "blocked: the config cannot be resolved for kernel garbage: fix {}",
            node.config_dir.join("drv.toml").display()
        )
    );
    assert!(!text.contains("/etc/kmm-day1"), "{text}");
}

/// The crash-loop guard's state as `status` shows it, from a boots.json
/// as `replace` writes it: two earlier boots that loaded the stored tree
/// and were never confirmed make the config `quarantined` (exit 2) with
/// the boots listed; `unquarantine` lifts it; `confirm` in a boot that
/// loaded nothing changes nothing and says so.
#[test]
fn quarantined_state_and_the_guard_commands() {
    let Some((work, kver, _debian, layout)) = setup("quarantine") else {
        return;
    };
    let node = Node::new(work.path(), CFG);
    let sys = work.path().join("sys");
    fs::create_dir_all(sys.join("module")).unwrap();
    let out = node.pull(&kver, &layout, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = manifest_digest(&layout, "v1");
    // The config's hash as an independent tool computes it.
    let sum = Command::new("sha256sum")
        .arg(node.config_dir.join("drv.toml"))
        .output()
        .unwrap();
    let config = format!(
        "sha256:{}",
        String::from_utf8_lossy(&sum.stdout)
            .split_whitespace()
            .next()
            .unwrap()
    );
    let attempt = |boot: &str, stage: &str| serde_json::json!({"boot_id": boot, "started": "2026-12-03T10:00:00Z", "stage": stage});
    let boots = serde_json::json!({
        "kernel": kver, "digest": digest, "config": config,
        "unconfirmed": [attempt("0badb00t-0001", "loading"), attempt("0badb00t-0002", "loaded")],
        "quarantined_at": "2026-12-03T10:01:00Z",
    });
    let boots_file = node.store.join("drv/boots.json");
    fs::write(&boots_file, serde_json::to_vec(&boots).unwrap()).unwrap();

    let (code, v, text) = both(&node, &kver, &sys);
    assert_eq!(code, 2, "quarantined is a failure to monitoring: {text}");
    let c = &v["configs"][0];
    assert_eq!(c["state"], "quarantined");
    let g = &c["crash_guard"];
    assert_eq!(g["quarantined"], true);
    assert_eq!(g["max_unconfirmed_boots"], 2);
    assert_eq!(g["unconfirmed_boots"].as_array().unwrap().len(), 2);
    assert_eq!(g["unconfirmed_boots"][0]["stage"], "loading");
    let next = c["next_action"].as_str().unwrap();
    for want in [
        "quarantined by the crash-loop guard after 2 boots",
        "boot 0badb00t at 2026-12-03T10:00:00Z: did not finish loading",
        "unquarantine --config drv",
    ] {
        assert!(next.contains(want), "{want:?} in {next}");
    }
    assert!(text.contains("drv: quarantined (failed)"), "{text}");
    assert!(
        text.contains("guard:    quarantined, 2 of 2 unconfirmed boots"),
        "{text}"
    );

    // Another digest in the store is another tree: no quarantine for it.
    let mut other = boots.clone();
    other["digest"] = "sha256:00".into();
    fs::write(&boots_file, serde_json::to_vec(&other).unwrap()).unwrap();
    let (code, v, _) = both(&node, &kver, &sys);
    assert_eq!(
        (code, v["configs"][0]["state"].as_str()),
        (1, Some("pulled"))
    );
    assert!(v["configs"][0].get("crash_guard").is_none());
    fs::write(&boots_file, serde_json::to_vec(&boots).unwrap()).unwrap();

    let guard = |args: &[&str]| {
        Command::new(agent())
            .args(args)
            .arg("--config-dir")
            .arg(&node.config_dir)
            .arg("--store")
            .arg(&node.store)
            .arg("--kernel-release")
            .arg(&kver)
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap()
    };
    let out = guard(&["unquarantine", "--config", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no config `nope` in") && stderr(&out).contains("(drv)"),
        "{}",
        stderr(&out)
    );
    assert!(boots_file.exists(), "a refused command changes nothing");

    let out = guard(&["confirm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("drv: nothing to confirm: this boot loaded no out-of-tree modules"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        both(&node, &kver, &sys).1["configs"][0]["state"],
        "quarantined"
    );

    let out = guard(&["unquarantine", "--config", "drv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("drv: quarantine lifted"),
        "{}",
        stderr(&out)
    );
    assert!(!boots_file.exists());
    let (code, v, _) = both(&node, &kver, &sys);
    assert_eq!(
        (code, v["configs"][0]["state"].as_str()),
        (1, Some("pulled"))
    );
}
