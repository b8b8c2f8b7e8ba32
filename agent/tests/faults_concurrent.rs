//! Readers while pulls publish and collect garbage: `status --json` and
//! `replace --dry-run --json` run in a loop while pulls of fresh images
//! swap `current` and remove older trees. Every reader run must succeed
//! with valid JSON naming the module from a complete tree (`status` exit
//! codes 0/1/2 are its verdicts, not errors). Two pulls at once are the
//! pull engineer's `concurrent_runs_are_serialised_by_the_store_lock`; a
//! real `replace` loads modules, which this host cannot do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod hostile_common;
mod pull_common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use hostile_common::{base_layer, write_layout, Layer, Tar, CONFIG};
use pull_common::{kernel_tree, TempDir};

fn agent(work: &Path, kver: &str, args: &[&str]) -> Command {
    let mut c = Command::new(pull_common::agent());
    c.args(args)
        .arg("--config-dir")
        .arg(work.join("etc"))
        .arg("--store")
        .arg(work.join("store"))
        .arg("--kernel-release")
        .arg(kver)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null());
    c
}

fn image(dir: &Path, kver: &str, modules: &Path, n: u8) {
    let mut fw = Tar::new();
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(u32::from(n)) >> 9) as u8)
        .collect();
    fw.file(&format!("firmware/acme/fw-{n}.bin"), &data);
    write_layout(
        dir,
        "v1",
        &[
            Layer::gzip(base_layer(kver, modules).finish()),
            Layer::gzip(fw.finish()),
        ],
    );
}

#[test]
fn status_and_dry_run_while_pulls_publish() {
    let Some((kver, modules)) = kernel_tree() else {
        return;
    };
    if !hostile_common::tools() {
        return;
    }
    let s = TempDir::new("concurrent").unwrap();
    let work = s.path();
    fs::create_dir_all(work.join("etc")).unwrap();
    fs::write(work.join("etc/drv.toml"), CONFIG).unwrap();
    let l0 = work.join("layout-0");
    image(&l0, &kver, &modules, 0);
    kmm_day1_tests::run(&mut agent(
        work,
        &kver,
        &["pull", "--no-reboot", "--oci-layout", l0.to_str().unwrap()],
    ));

    let (mut status_runs, mut plan_runs) = (0, 0);
    let mut failures = Vec::new();
    for n in 1..=6u8 {
        let l = work.join(format!("layout-{n}"));
        image(&l, &kver, &modules, n);
        let mut pull = agent(
            work,
            &kver,
            &["pull", "--no-reboot", "--oci-layout", l.to_str().unwrap()],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        loop {
            let done = pull.try_wait().unwrap().is_some();
            let st = agent(work, &kver, &["status", "--json"]).output().unwrap();
            status_runs += 1;
            let code = st.status.code();
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&st.stdout);
            if !matches!(code, Some(0..=2)) || parsed.is_err() {
                failures.push(format!(
                    "status exit {code:?}: {}{}",
                    String::from_utf8_lossy(&st.stdout),
                    String::from_utf8_lossy(&st.stderr)
                ));
            }
            let plan = agent(work, &kver, &["replace", "--dry-run", "--json"])
                .output()
                .unwrap();
            plan_runs += 1;
            let text = String::from_utf8_lossy(&plan.stdout);
            // Exit code as status's: 0 once loaded, 1 while pulled (not
            // loaded: this host does not run the image's dummy).
            let ok = serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| {
                v["configs"][0]["load"][0]["name"] == "dummy"
                    && v["exit_code"] == plan.status.code().unwrap_or(-1)
                    && matches!(plan.status.code(), Some(0 | 1))
            });
            if !ok {
                failures.push(format!(
                    "replace --dry-run exit {:?}: {text}{}",
                    plan.status.code(),
                    String::from_utf8_lossy(&plan.stderr)
                ));
            }
            if done {
                break;
            }
        }
        let out = pull.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::remove_dir_all(&l).unwrap();
    }
    println!("{status_runs} status and {plan_runs} dry-run plans during 6 publishes");
    assert!(status_runs >= 6 && plan_runs >= 6);
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}
