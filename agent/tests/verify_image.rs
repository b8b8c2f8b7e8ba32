//! `kmm-day1-agent verify` on umoci-built OCI layouts with Debian's real
//! modules, and once against the real `docker-registry`: a good image
//! passes every check; a wrong kernel, a missing module, a wrong vermagic
//! and a missing firmware file each FAIL on their own line.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

mod pull_common;
use kmm_day1_tests::image::kmm_image;
use kmm_day1_tests::kernel_tree::{self, MODULES};
use kmm_day1_tests::run;
use pull_common::*;

fn verify(layout: Option<&Path>, image: &str, args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(agent());
    cmd.arg("verify").arg("--image").arg(image).args(args);
    if let Some(l) = layout {
        cmd.arg("--oci-layout").arg(l);
    }
    let out: Output = cmd.env_remove("JOURNAL_STREAM").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("verify: ")),
        "{text}\n{}",
        stderr(&out)
    );
    (out.status.code().unwrap(), text)
}

fn fails(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("FAIL")).collect()
}

const MODS: [&str; 6] = [
    "--module", "vrf", "--module", "tehuti", "--module", "macvtap",
];

#[test]
fn good_image_passes_and_each_defect_fails_its_line() {
    if !tools() || !kmm_day1_tests::require_tool("modinfo") {
        return;
    }
    let Some((kver, debian)) = kernel_tree() else {
        return;
    };
    let work = TempDir::new("verify").unwrap();
    let layout = work.path().join("layout");
    let fw: &[(&str, &[u8])] = &[("tehuti/bdx.bin", b"fw")];
    kmm_image(&layout, "good", &debian, &kver, &MODULES, fw).unwrap();
    let img = "registry.test/acme/drv:good";

    // Good: every check ok, for the one kernel tree the image has.
    let (code, text) = verify(Some(&layout), img, &MODS);
    assert_eq!(code, 0, "{text}");
    assert!(fails(&text).is_empty(), "{text}");
    let digest = manifest_digest(&layout, "good");
    for want in [
        format!("ok   image: {img} is {digest}"),
        format!("ok   kernels: {kver} under /opt/lib/modules"),
        format!("ok   tree [{kver}]: /opt/lib/modules/{kver} present"),
        format!("ok   modules.dep [{kver}]: 5 modules, every file and dependency present"),
        format!(
            "ok   module macvtap [{kver}]: extra/macvtap.ko, needs extra/macvlan.ko extra/tap.ko"
        ),
        format!("ok   vermagic [{kver}]: 5 modules built for {kver}"),
        format!("ok   firmware [{kver}]: the modules ask for 1 file: all in /firmware"),
    ] {
        assert!(text.contains(&want), "missing `{want}` in:\n{text}");
    }
    // Debian signs its modules; the line says which, as kmod sees it.
    let signer = kernel_tree::modinfo("signer", &debian.join(MODULES[0])).unwrap();
    let sig_line = format!("ok   signatures [{kver}]: 5 modules, all signed");
    assert_eq!(text.contains(&sig_line), !signer.is_empty(), "{text}");
    assert!(text.ends_with("0 FAIL\n"), "{text}");

    // A wrong kernel: no tree for it.
    let (code, text) = verify(Some(&layout), img, &["--kernel-release", "6.1.0-99-amd64"]);
    assert_eq!(code, 1, "{text}");
    assert_eq!(
        fails(&text),
        [format!("FAIL tree [6.1.0-99-amd64]: the image has no /opt/lib/modules/6.1.0-99-amd64 (its kernel trees: {kver}): build it for this kernel or fix kernel_mappings")]
    );

    // A missing module.
    let (code, text) = verify(
        Some(&layout),
        img,
        &["--kernel-release", &kver, "--module", "sfc"],
    );
    assert_eq!(code, 1, "{text}");
    let f = fails(&text);
    assert_eq!(f.len(), 1, "{text}");
    assert!(
        f[0].starts_with(&format!(
            "FAIL module sfc [{kver}]: not in /opt/lib/modules/{kver}/modules.dep (it lists: "
        )),
        "{text}"
    );

    // A wrong vermagic: the modules sit in another kernel's tree.
    kmm_image(&layout, "vermagic", &debian, "6.1.0-99-amd64", &MODULES, fw).unwrap();
    let (code, text) = verify(Some(&layout), "registry.test/acme/drv:vermagic", &MODS);
    assert_eq!(code, 1, "{text}");
    let f = fails(&text);
    assert_eq!(f.len(), 1, "{text}");
    assert!(
        f[0].starts_with("FAIL vermagic [6.1.0-99-amd64]: extra/")
            && f[0].contains(&format!("was built for kernel {kver}, not 6.1.0-99-amd64"))
            && f[0].ends_with("rebuild them against kernel 6.1.0-99-amd64's headers"),
        "{text}"
    );

    // A missing firmware file.
    kmm_image(&layout, "nofw", &debian, &kver, &MODULES, &[]).unwrap();
    let (code, text) = verify(Some(&layout), "registry.test/acme/drv:nofw", &MODS);
    assert_eq!(code, 1, "{text}");
    assert_eq!(
        fails(&text),
        [format!("FAIL firmware [{kver}]: missing from the image's /firmware: tehuti/bdx.bin (for extra/tehuti.ko): add them, or set firmware_dir to where the image has them")]
    );

    // Unsigned modules are a warning naming them, not a failure: the sign
    // trailer (`scripts/sign-file`: signature, 12-byte `module_signature`
    // ending in its big-endian length, magic) is cut off a copy of vrf.ko.
    let signed = std::fs::read(debian.join(MODULES[0])).unwrap();
    let magic = b"~Module signature appended~\n";
    assert!(signed.ends_with(magic), "Debian's vrf.ko is signed");
    let info_end = signed.len() - magic.len();
    let sig_len = u32::from_be_bytes(signed[info_end - 4..info_end].try_into().unwrap()) as usize;
    let deb = work.path().join("unsigned");
    let rel = MODULES[0];
    std::fs::create_dir_all(deb.join(rel).parent().unwrap()).unwrap();
    std::fs::write(deb.join(rel), &signed[..info_end - 12 - sig_len]).unwrap();
    assert_eq!(
        kernel_tree::modinfo("signer", &deb.join(rel)).unwrap(),
        "",
        "kmod sees no signature"
    );
    kmm_image(&layout, "unsigned", &deb, &kver, &[rel], &[]).unwrap();
    let (code, text) = verify(
        Some(&layout),
        "registry.test/acme/drv:unsigned",
        &["--module", "vrf"],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("warn signatures [{kver}]: unsigned: extra/vrf.ko: nodes with Secure Boot or module.sig_enforce=1 refuse them")),
        "{text}"
    );

    // An image that cannot be read is one FAIL line too.
    let (code, text) = verify(Some(&layout), "registry.test/acme/drv:absent", &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        fails(&text)[0].starts_with("FAIL image: resolving registry.test/acme/drv:absent"),
        "{text}"
    );
}

#[test]
fn verifies_from_the_real_registry() {
    use kmm_day1_tests::registry::{self, Registry, Setup};
    if !tools() || !registry::tools_available() || !kmm_day1_tests::require_tool("skopeo") {
        return;
    }
    let Some((kver, debian)) = kernel_tree() else {
        return;
    };
    let work = TempDir::new("verify-reg").unwrap();
    let layout = work.path().join("layout");
    let fw: &[(&str, &[u8])] = &[("tehuti/bdx.bin", b"fw")];
    kmm_image(&layout, "v1", &debian, &kver, &MODULES, fw).unwrap();
    let reg = Registry::start(Setup::default()).unwrap();
    run(Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{}/acme/drv:v1", reg.host())));
    let img = format!("{}/acme/drv:v1", reg.host());
    let (code, text) = verify(
        None,
        &img,
        &[
            "--insecure",
            "--module",
            "tehuti",
            "--kernel-release",
            &kver,
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "ok   image: {img} is {} from {}/acme/drv",
            manifest_digest(&layout, "v1"),
            reg.host()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("ok   module tehuti [{kver}]: extra/tehuti.ko")),
        "{text}"
    );
}

/// `verify` against an unreachable registry (a closed loopback port:
/// connection refused) gives up within its own short budget and says so,
/// with the flag for more; it used to spend the node's 15 minutes.
#[test]
fn an_unreachable_registry_fails_within_verify_s_short_budget() {
    let port = kmm_day1_tests::net::free_port().unwrap();
    let image = format!("127.0.0.1:{port}/acme/drv:v1");
    let attempts = |text: &str| -> u32 {
        let rest = text
            .split("giving up after ")
            .nth(1)
            .unwrap_or_else(|| panic!("{text}"));
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    let t0 = std::time::Instant::now();
    let (code, text) = verify(None, &image, &["--insecure"]);
    let took = t0.elapsed();
    assert_eq!(code, 1, "{text}");
    let line = fails(&text).join("\n");
    assert!(line.starts_with("FAIL image:"), "{text}");
    assert!(
        line.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{text}"
    );
    assert!(
        line.contains("(verify retries for 20 s; `--retry-for SECS` allows more)"),
        "{text}"
    );
    // Backoff of 1, 2, 4, 8 s (jittered, half to all of each): a 20 s budget
    // is 5 or 6 attempts; the bounds leave room for a slow machine. The wall-time bound is generous on purpose.
    let n = attempts(&line);
    assert!((2..=6).contains(&n), "{n} attempts: {text}");
    assert!(took.as_secs() < 120, "took {took:?}");

    // --retry-for 0: one attempt, no retry.
    let (code, text) = verify(None, &image, &["--insecure", "--retry-for", "0"]);
    assert_eq!(code, 1, "{text}");
    assert_eq!(attempts(&text), 1, "{text}");
    assert!(
        text.contains("giving up after 1 attempt (verify retries for 0 s;"),
        "{text}"
    );

    // The flag sets the budget: 3 s is 2 or 3 attempts, fewer than 20 s's.
    let (_, text) = verify(None, &image, &["--insecure", "--retry-for", "3"]);
    assert!(text.contains("(verify retries for 3 s;"), "{text}");
    assert!(attempts(&text) < n, "{text}");

    let out = Command::new(agent())
        .args(["verify", "--image", &image, "--retry-for", "soon"])
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--retry-for `soon`: expected a number of seconds (e.g. 60)"),
        "{}",
        stderr(&out)
    );
}

/// A missing --config file: one line, the OS's reason once.
#[test]
fn a_missing_config_file_is_one_clear_line() {
    let out = Command::new(agent())
        .args(["verify", "--config", "/nonexistent/kmm-day1-test.toml"])
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(
        err.trim_end(),
        "error: /nonexistent/kmm-day1-test.toml: cannot read: No such file or directory (os error 2)"
    );
}

/// `verify --config` checks the config's parameters against the module's
/// own (`dummy` declares `numdummies`, an int), as pull does before it
/// publishes: a typo and a value of the wrong type each fail their line.
#[test]
fn parameters_are_checked_against_the_module() {
    if !tools() {
        return;
    }
    let Some((kver, debian)) = kernel_tree() else {
        return;
    };
    let work = TempDir::new("verify-params").unwrap();
    let layout = work.join("layout");
    kmm_image(
        &layout,
        "p",
        &debian,
        &kver,
        &["kernel/drivers/net/dummy.ko"],
        &[],
    )
    .unwrap();
    let run = |params: &str| -> (i32, String) {
        let cfg = work.join("drv.toml");
        std::fs::write(
            &cfg,
            format!(
                "image = \"registry.test/acme/drv:p\"\nmodules = [\"dummy\"]\n[parameters]\ndummy = [{params}]\n"
            ),
        )
        .unwrap();
        let out = Command::new(agent())
            .args(["verify", "--kernel-release", &kver, "--config"])
            .arg(&cfg)
            .arg("--oci-layout")
            .arg(&layout)
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = run("\"numdummies=2\"");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "ok   parameters dummy [{kver}]: numdummies=2 declared by the module"
        )),
        "{text}"
    );
    for (params, want) in [
        (
            "\"numdummy=2\"",
            format!("FAIL parameters dummy [{kver}]: `numdummy` is not a parameter of dummy (did you mean `numdummies`?); its parameters: numdummies: fix `[parameters]` in the config (the kernel would ignore an unknown one and refuse a bad value)"),
        ),
        (
            "\"numdummies=two\"",
            format!("FAIL parameters dummy [{kver}]: `numdummies=two`: not an integer (`numdummies` is int): fix `[parameters]` in the config (the kernel would ignore an unknown one and refuse a bad value)"),
        ),
    ] {
        let (code, text) = run(params);
        assert_eq!(code, 1, "{text}");
        assert_eq!(fails(&text), [want.as_str()], "{text}");
    }
}
