//! `replace --dry-run` on Debian's real module tree (tests/setup.d/
//! 20-kernel-tree.sh): parameters and firmware path in the text and JSON
//! plans, host fallback for dependencies the image lacks, and `.ko.xz` /
//! `.ko.zst` modules (compressed here with the real `xz` and `zstd`) read
//! exactly like the plain `.ko`.

// Helpers outside #[test] fns panic on setup failures too; that is what a test wants.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kmm_day1_tests::require_tool;
use kmm_day1_tests::scratch::TempDir;

mod replace_common;

/// `kmm-day1-agent ARGS` planning from the node configs in `configs`, the
/// extracted image `img` and the host's module root `host`: (success,
/// stdout, stderr).
fn dry_run(args: &[&str], configs: &Path, img: &Path, host: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kmm-day1-agent"))
        .args(args)
        .arg("--config-dir")
        .arg(configs)
        .arg("--modules-root")
        .arg(img.join("opt/lib/modules"))
        .arg("--host-modules-root")
        .arg(host)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scratch(tag: &str) -> TempDir {
    TempDir::new(&format!("dry-{tag}")).unwrap()
}

/// An "extracted image": `img/opt/lib/modules/<kver>/` holding only sfc.ko
/// (so mtd and mdio must come from the host tree) and `img/firmware/`.
fn image_with_sfc(root: &Path, kver: &str, work: &Path, compress: Option<&str>) -> PathBuf {
    let src = root.join("lib/modules").join(kver);
    let img = work.join("img");
    let kdir = img.join("opt/lib/modules").join(kver);
    fs::create_dir_all(kdir.join("extra")).unwrap();
    let rel = "kernel/drivers/net/ethernet/sfc/sfc.ko";
    fs::copy(src.join(rel), kdir.join("extra/sfc.ko")).unwrap();
    let file = match compress {
        None => "extra/sfc.ko".to_string(),
        Some(tool) => {
            // The kernel's own flags (scripts/Makefile.modinst).
            let flags: &[&str] = if tool == "xz" {
                &["-q", "--check=crc32", "--lzma2=dict=1MiB"]
            } else {
                &["-q", "--rm"]
            };
            let st = Command::new(tool)
                .args(flags)
                .arg(kdir.join("extra/sfc.ko"))
                .status()
                .unwrap();
            assert!(st.success(), "{tool} failed");
            format!("extra/sfc.ko.{}", if tool == "xz" { "xz" } else { "zst" })
        }
    };
    // As `depmod -b /opt` writes it when the in-tree modules are absent.
    fs::write(kdir.join("modules.dep"), format!("{file}:\n")).unwrap();
    fs::create_dir_all(img.join("firmware/sfc")).unwrap();
    fs::write(img.join("firmware/sfc/fw.bin"), b"fw").unwrap();
    img
}

fn config_dir(work: &Path) -> PathBuf {
    let d = work.join("configs");
    fs::create_dir_all(&d).unwrap();
    fs::write(
        d.join("sfc.toml"),
        "image = \"quay.io/acme/sfc:${KERNEL_FULL_VERSION}\"\nmodules = [\"sfc\"]\n\
         parameters = { sfc = [\"rss_cpus=4\", \"interrupt_mode=1\"] }\nfirmware_dir = \"/firmware\"\n",
    )
    .unwrap();
    d
}

#[test]
fn plan_on_a_debian_tree_text_and_json() {
    let Some((root, kver)) = replace_common::debian_tree() else {
        return;
    };
    let work = scratch("plan");
    let img = image_with_sfc(&root, &kver, &work, None);
    let configs = config_dir(&work);
    let common = ["replace", "--dry-run", "--kernel-release", &kver];
    let host_root = root.join("lib/modules");
    let (ok, text, err) = dry_run(&common, &configs, &img, &host_root);
    assert!(ok, "{err}");
    let host = root.join("lib/modules").join(&kver);
    let fw = img.join("firmware");
    for want in [
        format!("kernel {kver}"),
        format!("firmware path: {}", fw.display()),
        format!("1. mtd {}/kernel/drivers/mtd/mtd.ko (host, signed)", host.display()),
        format!("2. mdio {}/kernel/drivers/net/mdio.ko (host, signed)", host.display()),
        format!(
            "3. sfc {}/opt/lib/modules/{kver}/extra/sfc.ko rss_cpus=4 interrupt_mode=1 (image, signed)",
            img.display()
        ),
    ] {
        assert!(text.contains(&want), "missing `{want}` in:\n{text}");
    }

    let json_args = ["replace", "--dry-run", "--json", "--kernel-release", &kver];
    let (ok, out, err) = dry_run(&json_args, &configs, &img, &host_root);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kernel"], kver.as_str());
    let c = &v["configs"][0];
    assert_eq!(c["name"], "sfc");
    assert_eq!(c["status"], "planned");
    assert_eq!(c["firmware_path"], fw.display().to_string());
    assert_eq!(c["remove"], serde_json::json!([]));
    let load = c["load"].as_array().unwrap();
    let names: Vec<&str> = load.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mtd", "mdio", "sfc"]);
    assert_eq!(load[2]["params"], "rss_cpus=4 interrupt_mode=1");
    assert_eq!(load[2]["source"], "image");
    assert_eq!(load[0]["source"], "host");
    assert_eq!(load[2]["signed"], true);

    // Without a host tree, the missing dependency is a clear error.
    let (ok, out, _) = dry_run(&json_args, &configs, &img, &work.join("none"));
    assert!(!ok, "a plan that cannot be made fails the run");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let e = v["configs"][0]["error"].as_str().unwrap();
    assert!(
        e.contains("`sfc` needs module `mdio`") || e.contains("`sfc` needs module `mtd`"),
        "{e}"
    );
}

#[test]
fn compressed_modules_read_like_plain_ones() {
    let Some((root, kver)) = replace_common::debian_tree() else {
        return;
    };
    if !require_tool("xz") || !require_tool("zstd") || !require_tool("modinfo") {
        return;
    }
    // The plain module's srcversion/vermagic per the real `modinfo`.
    let plain = root
        .join("lib/modules")
        .join(&kver)
        .join("kernel/drivers/net/ethernet/sfc/sfc.ko");
    let out = Command::new("modinfo")
        .args(["-F", "vermagic"])
        .arg(&plain)
        .output()
        .unwrap();
    let vermagic = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(vermagic.starts_with(&kver), "{vermagic}");
    let mut plans = Vec::new();
    for compress in [None, Some("xz"), Some("zstd")] {
        let work = scratch(&format!("c-{}", compress.unwrap_or("none")));
        let img = image_with_sfc(&root, &kver, &work, compress);
        let configs = config_dir(&work);
        let (ok, out, err) = dry_run(
            &["replace", "--dry-run", "--json", "--kernel-release", &kver],
            &configs,
            &img,
            &root.join("lib/modules"),
        );
        assert!(ok, "{compress:?}: {err}\n{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let sfc = v["configs"][0]["load"][2].clone();
        assert_eq!(sfc["name"], "sfc");
        let path = sfc["path"].as_str().unwrap().to_string();
        match compress {
            None => assert!(path.ends_with("sfc.ko")),
            Some("xz") => assert!(path.ends_with("sfc.ko.xz")),
            Some(_) => assert!(path.ends_with("sfc.ko.zst")),
        }
        // The plan read vermagic (it would refuse another kernel's module)
        // and the signature trailer from the decompressed bytes.
        plans.push((sfc["signed"].clone(), sfc["srcversion"].clone()));
    }
    assert_eq!(plans[0].0, true, "Debian signs its modules");
    assert!(plans.iter().all(|p| *p == plans[0]), "{plans:?}");
}
