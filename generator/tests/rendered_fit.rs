//! `generate --rendered`: the pool's rendered MachineConfig with ours merged
//! in, measured against etcd's 1.5 MiB. The expected sizes come from a second,
//! independent implementation (Python's json module), not from our code.

#![allow(clippy::unwrap_used)]

mod util;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use util::{kmm_day1, scratch};

const LIMIT: usize = 1536 * 1024;
const CASE: [&str; 5] = [
    "generate",
    "--config",
    "examples/sfc.toml",
    "--pool",
    "worker",
];

/// A pool's rendered config as `oc get mc … -o json` prints it (pretty),
/// with `files` data files of `each` bytes of base64, units whose shell lines
/// hold `&&` and `>` (Go escapes them), and, when `old_agent`, an earlier
/// agent at our path that the merge must replace, not duplicate.
fn rendered(files: usize, each: usize, old_agent: bool) -> String {
    let mut list: Vec<Value> = (0..files)
        .map(|i| {
            // Deterministic filler in the base64 alphabet.
            let body: String = (0..each)
                .map(|j| {
                    char::from(
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                            [(i * 7 + j * 13) % 64],
                    )
                })
                .collect();
            json!({"path": format!("/etc/pool/file-{i}"), "mode": 420, "overwrite": true,
                   "contents": {"source": format!("data:;base64,{body}")}})
        })
        .collect();
    if old_agent {
        list.push(json!({"path": "/usr/local/bin/kmm-day1-agent", "mode": 493,
                         "contents": {"compression": "gzip", "source": "data:;base64,H4sIAAAAAAAA"}}));
    }
    let units: Vec<Value> = (0..20)
        .map(|i| json!({"name": format!("pool-{i}.service"), "enabled": true,
                        "contents": "[Service]\nExecStart=/bin/sh -c 'test -e /run/x && echo ok > /dev/kmsg'\n"}))
        .collect();
    let mc = json!({
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfig",
        "metadata": {
            "name": "rendered-worker-5f0e4c3d2b1a09f8e7d6c5b4a3928170",
            "annotations": {"machineconfiguration.openshift.io/generated-by-controller-version": "4.17.0"},
            "ownerReferences": [{"apiVersion": "machineconfiguration.openshift.io/v1",
                                 "kind": "MachineConfigPool", "name": "worker", "controller": true}],
        },
        "spec": {
            "config": {"ignition": {"version": "3.4.0"},
                       "storage": {"files": list},
                       "systemd": {"units": units}},
            "kernelArguments": ["systemd.unified_cgroup_hierarchy=1"],
            "osImageURL": "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:0000",
        },
    });
    serde_json::to_string_pretty(&mc).unwrap()
}

/// The merge and the measurement, done by Python instead of us: files by
/// path and units by name replaced or appended, compact JSON, Go's escapes.
fn expected_size(rendered: &Path, ignition: &Path) -> usize {
    const MERGE: &str = r#"
import json, sys
mc = json.load(open(sys.argv[1]))
ours = json.load(open(sys.argv[2]))
cfg = mc["spec"]["config"]
for section, lst, key in (("storage", "files", "path"), ("systemd", "units", "name")):
    target = cfg.setdefault(section, {}).setdefault(lst, [])
    for entry in ours.get(section, {}).get(lst, []):
        hit = [i for i, e in enumerate(target) if e.get(key) == entry[key]]
        if hit:
            target[hit[0]] = entry
        else:
            target.append(entry)
s = json.dumps(mc, separators=(",", ":"), ensure_ascii=False)
for c, e in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
    s = s.replace(c, e)
print(len(s.encode()))
"#;
    kmm_day1_tests::run(
        Command::new("python3")
            .args(["-c", MERGE])
            .arg(rendered)
            .arg(ignition),
    )
    .trim()
    .parse()
    .unwrap()
}

/// The number before " bytes" after `label` in the fit line.
fn figure(line: &str, label: &str) -> usize {
    let rest = &line[line
        .find(label)
        .unwrap_or_else(|| panic!("no `{label}` in: {line}"))
        + label.len()..];
    rest.split(" bytes")
        .next()
        .unwrap()
        .replace(',', "")
        .trim()
        .parse()
        .unwrap()
}

fn fit_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.contains("rendered MachineConfig"))
        .unwrap_or_else(|| panic!("no fit line in: {stderr}"))
}

#[test]
fn a_pool_that_fits_gets_its_merged_size_and_margin() {
    if !kmm_day1_tests::require_tool("python3") {
        return;
    }
    let dir = scratch("fit-ok");
    let mc_path = dir.join("rendered.json");
    std::fs::write(&mc_path, rendered(60, 4000, true)).unwrap();
    let ign_path = dir.join("ours.ign");
    let mut args = CASE.to_vec();
    args.extend(["--format", "ignition", "-o", ign_path.to_str().unwrap()]);
    kmm_day1(&args).ok();

    let want = expected_size(&mc_path, &ign_path);
    let mut args = CASE.to_vec();
    args.extend(["--rendered", mc_path.to_str().unwrap()]);
    let out = kmm_day1(&args);
    let mc = out.ok();
    assert!(
        mc.contains("kind: MachineConfig"),
        "the MachineConfig is still written"
    );
    let line = fit_line(&out.stderr);
    assert_eq!(figure(line, "it would be "), want, "{line}");
    assert_eq!(figure(line, "limit with "), LIMIT - want, "{line}");
    let own = std::fs::read_to_string(&mc_path).unwrap();
    let own: Value = serde_json::from_str(&own).unwrap();
    // The rendered config's own size, compact with Go's escapes.
    let compact = serde_json::to_string(&own).unwrap();
    let escapes = compact.matches(['<', '>', '&']).count();
    assert_eq!(
        figure(line, "rendered-worker-5f0e4c3d2b1a09f8e7d6c5b4a3928170 is "),
        compact.len() + 5 * escapes,
        "{line}"
    );

    // The same from stdin, as `oc get mc … -o json | kmm-day1 … --rendered -`.
    let mut args = CASE.to_vec();
    args.extend(["--rendered", "-"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmm-day1"))
        .args(&args)
        .current_dir(util::root())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&mc_path).unwrap())
        .unwrap();
    let piped = child.wait_with_output().unwrap();
    assert!(piped.status.success());
    let piped = String::from_utf8(piped.stderr).unwrap();
    assert_eq!(figure(fit_line(&piped), "it would be "), want);
}

#[test]
fn a_pool_that_would_not_fit_is_refused_and_nothing_is_written() {
    if !kmm_day1_tests::require_tool("python3") {
        return;
    }
    let dir = scratch("fit-over");
    let ign_path = dir.join("ours.ign");
    let mut args = CASE.to_vec();
    args.extend(["--format", "ignition", "-o", ign_path.to_str().unwrap()]);
    kmm_day1(&args).ok();
    let ours = std::fs::metadata(&ign_path).unwrap().len() as usize;
    // A pool that leaves less room than our config takes.
    let mc_path = dir.join("rendered.json");
    let files = (LIMIT - ours / 2) / 4000;
    std::fs::write(&mc_path, rendered(files, 4000, false)).unwrap();
    let want = expected_size(&mc_path, &ign_path);
    assert!(want > LIMIT, "the fixture must not fit: {want}");

    let out_path = dir.join("mc.yaml");
    let mut args = CASE.to_vec();
    args.extend([
        "--rendered",
        mc_path.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    let out = kmm_day1(&args);
    let err = out.one_line_error();
    assert_eq!(figure(err, "it would be "), want, "{err}");
    assert_eq!(figure(err, "limit by "), want - LIMIT, "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!out_path.exists(), "no MachineConfig may be written");
}

#[test]
fn bad_rendered_input_is_named() {
    let dir = scratch("fit-bad");
    let pool = dir.join("pool.json");
    let cut = dir.join("cut.json");
    std::fs::write(&cut, r#"{"kind": "MachineConfig", "spec": "#).unwrap();
    std::fs::write(
        &pool,
        r#"{"kind": "MachineConfigPool", "metadata": {"name": "worker"}}"#,
    )
    .unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--rendered", pool.to_str().unwrap()],
            "it is a MachineConfigPool, not a MachineConfig",
        ),
        (
            &["--rendered", "/nonexistent/rendered.json"],
            "--rendered /nonexistent/rendered.json",
        ),
        (&["--rendered", cut.to_str().unwrap()], "not valid JSON"),
        (
            &["--rendered", pool.to_str().unwrap(), "--format", "config"],
            "--rendered needs an output that installs the agent",
        ),
    ];
    for (extra, want) in cases {
        let mut args = CASE.to_vec();
        args.extend_from_slice(extra);
        let out = kmm_day1(&args);
        let err = out.one_line_error();
        assert!(err.contains(want), "{extra:?}: {err}");
    }
}

/// Between 768 KiB and 1.25 MiB the generator warns that the pool's rendered
/// config should be checked with `--rendered`; once `--rendered` has checked
/// it, its answer is printed instead of that warning.
#[test]
fn rendered_answer_replaces_the_768_kib_warning() {
    let dir = scratch("fit-no-wolf");
    // ~600 KiB of incompressible bytes after the fake agent: ~800 KiB embedded.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..600 << 10)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let agent = dir.join("agent");
    std::fs::write(&agent, util::agent_with(&noise)).unwrap();
    let mc_path = dir.join("rendered.json");
    std::fs::write(&mc_path, rendered(10, 1000, false)).unwrap();
    let mut args = CASE.to_vec();
    args.extend(["--agent", agent.to_str().unwrap()]);
    let plain = kmm_day1(&args);
    plain.ok();
    assert!(
        plain.stderr.contains("(above 768 KiB)"),
        "the case is above the warning threshold: {}",
        plain.stderr
    );
    args.extend(["--rendered", mc_path.to_str().unwrap()]);
    let measured = kmm_day1(&args);
    measured.ok();
    assert!(
        fit_line(&measured.stderr).contains("fits under"),
        "{}",
        measured.stderr
    );
    assert!(
        !measured.stderr.contains("768 KiB"),
        "--rendered answered; no warning: {}",
        measured.stderr
    );
    assert!(
        measured.stderr.contains("--server-side"),
        "the oc apply note stays: {}",
        measured.stderr
    );
}
