//! The replace logic against the fake kernel: plans, exact call sequences,
//! and the state after a failure at every step.

use std::collections::BTreeMap;
use std::fs;

use super::*;
use crate::kernel::tests::Fake;
use crate::plan::tests::Fixture;
use crate::store::state::Stage;
use kmm_day1_tests::scratch::TempDir;

const K: &str = "6.1.0-56-amd64";

/// The node of every scenario: the host tree has in-tree `sfc` (needs
/// `mdio`) and `sfc_ptp` (holds `sfc`); the image has its own `sfc`
/// (srcversion NEW) that needs the image's `sfc_dep`.
struct World {
    image: Fixture,
    host: Fixture,
    image_tree: Tree,
    host_tree: Tree,
    cfg: NodeConfig,
    /// No modprobe.d and no command-line options unless a test sets them.
    node: NodeOptions,
}

impl World {
    fn new(tag: &str) -> World {
        let image = Fixture::new(
            &format!("{tag}-img"),
            K,
            &[("sfc", &["sfc_dep"], "NEW"), ("sfc_dep", &[], "DEP")],
        );
        let host = Fixture::new(
            &format!("{tag}-host"),
            K,
            &[
                ("sfc", &["mdio"], "OLD"),
                ("mdio", &[], "MDIO"),
                ("sfc_ptp", &["sfc", "mdio"], "PTP"),
            ],
        );
        let image_tree = Tree::open(&image.kdir(K)).unwrap();
        let host_tree = Tree::open(&host.kdir(K)).unwrap();
        let mut cfg = NodeConfig::new("quay.io/acme/sfc:1", vec!["sfc".into()]);
        cfg.parameters
            .insert("sfc".into(), vec!["rss_cpus=4".into()]);
        World {
            image,
            host,
            image_tree,
            host_tree,
            cfg,
            node: NodeOptions::default(),
        }
    }

    fn ipath(&self, m: &str) -> PathBuf {
        self.image.kdir(K).join(format!("extra/{m}.ko"))
    }

    fn hpath(&self, m: &str) -> PathBuf {
        self.host.kdir(K).join(format!("extra/{m}.ko"))
    }

    /// A guarded swap from `store` for kernel K, with this world's host tree.
    fn ctx<'a>(&'a self, store: &'a Store, config_dir: &'a Path) -> Ctx<'a> {
        Ctx {
            store,
            config_dir,
            guard: true,
            modules_root: None,
            kver: K,
            host: Some(&self.host_tree),
            node: &self.node,
        }
    }

    /// The running node: in-tree sfc + mdio loaded, optionally sfc_ptp.
    fn kernel(&self, with_ptp: bool) -> Fake {
        let mut f = if with_ptp {
            Fake::with_loaded(&[
                ("mdio", &["sfc", "sfc_ptp"], Some("MDIO")),
                ("sfc", &["sfc_ptp"], Some("OLD")),
                ("sfc_ptp", &[], Some("PTP")),
            ])
        } else {
            Fake::with_loaded(&[("mdio", &["sfc"], Some("MDIO")), ("sfc", &[], Some("OLD"))])
        };
        for (m, s) in [("sfc", "NEW"), ("sfc_dep", "DEP")] {
            f.srcversions.insert(self.ipath(m), s.into());
        }
        for (m, s) in [("sfc", "OLD"), ("mdio", "MDIO"), ("sfc_ptp", "PTP")] {
            f.srcversions.insert(self.hpath(m), s.into());
        }
        f.needs.insert("sfc".into(), vec!["mdio".into()]);
        f.needs
            .insert("sfc_ptp".into(), vec!["sfc".into(), "mdio".into()]);
        f.firmware = Some("/lib/firmware/updates".into());
        f
    }

    fn plan(&self, k: &Fake, firmware: Option<&str>) -> Result<Plan> {
        plan::plan(
            &Inputs {
                cfg: &self.cfg,
                in_tree_remove: &["sfc".into()],
                image: &self.image_tree,
                host: Some(&self.host_tree),
                kernel_release: K,
                firmware_path: firmware.map(str::to_string),
                node: &self.node,
            },
            k,
            &mut ModinfoCache::new(),
        )
    }
}

/// Loaded modules with their srcversion: what "the node's state" means here.
fn snapshot(k: &Fake) -> BTreeMap<String, Option<String>> {
    k.modules
        .iter()
        .map(|(n, m)| (n.clone(), m.srcversion.clone()))
        .collect()
}

#[test]
fn replaces_in_dependency_order_with_parameters() {
    let w = World::new("order");
    let mut k = w.kernel(false);
    let p = w.plan(&k, Some("/store/fw")).unwrap();
    assert_eq!(p.remove, ["sfc"]);
    let out = execute(&p, Some(&w.host_tree), &w.node, &mut k);
    assert_eq!(out.error, None);
    assert_eq!(
        k.calls,
        [
            "unload sfc".to_string(),
            "firmware /store/fw".into(),
            format!("load sfc_dep {} ", w.ipath("sfc_dep").display()),
            format!("load sfc {} rss_cpus=4", w.ipath("sfc").display()),
        ]
    );
    assert_eq!(k.srcversion("sfc").as_deref(), Some("NEW"));
    assert_eq!(k.firmware.as_deref(), Some("/store/fw"));
    assert_eq!(out.removed, ["sfc"]);
    assert_eq!(
        out.loaded
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>(),
        ["sfc_dep", "sfc"]
    );
}

/// Something beside the unit (udev, systemd-modules-load) loads the in-tree
/// module again between the removal and the load: it is removed again and
/// the swap goes on.
#[test]
fn a_module_loaded_again_after_removal_is_removed_again() {
    let w = World::new("race");
    let mut k = w.kernel(false);
    let p = w.plan(&k, None).unwrap();
    k.reappear = vec!["sfc".into(), "sfc".into()];
    let out = execute(&p, Some(&w.host_tree), &w.node, &mut k);
    assert_eq!(out.error, None);
    let sfc = format!("load sfc {} rss_cpus=4", w.ipath("sfc").display());
    assert_eq!(
        k.calls[1..],
        [
            format!("load sfc_dep {} ", w.ipath("sfc_dep").display()),
            sfc.clone(),
            "unload sfc".into(),
            sfc.clone(),
            "unload sfc".into(),
            sfc,
        ]
    );
    assert_eq!(k.srcversion("sfc").as_deref(), Some("NEW"));
}

/// A racer that never stops wins after a bounded number of removals, and
/// the run rolls back with the usual message.
#[test]
fn a_module_that_keeps_coming_back_rolls_back() {
    let w = World::new("race-lost");
    let mut k = w.kernel(false);
    let p = w.plan(&k, None).unwrap();
    k.reappear = vec!["sfc".into(); 10];
    let out = execute(&p, Some(&w.host_tree), &w.node, &mut k);
    let e = out.error.unwrap();
    assert!(
        e.contains("already loaded (add it to in_tree_remove)"),
        "{e}"
    );
    let unloads = k.calls.iter().filter(|c| *c == "unload sfc").count();
    assert_eq!(unloads, 1 + RELOAD_RACES as usize, "{:?}", k.calls);
    assert_eq!(k.srcversion("sfc").as_deref(), Some("OLD"));
    assert!(out.restored, "{}", out.state);
}

#[test]
fn unused_holders_are_removed_first() {
    let w = World::new("holders");
    let mut k = w.kernel(true);
    let p = w.plan(&k, None).unwrap();
    assert_eq!(p.remove, ["sfc_ptp", "sfc"]);
    let out = execute(&p, Some(&w.host_tree), &w.node, &mut k);
    assert_eq!(out.error, None);
    assert_eq!(&k.calls[..2], ["unload sfc_ptp", "unload sfc"]);
    // The image has no sfc_ptp: it stays out, and the plan says so.
    assert_eq!(p.not_restored, ["sfc_ptp"]);
    assert!(!k.modules.contains_key("sfc_ptp"));
}

/// A holder removed for the swap comes back when the image has a build of
/// it, after the module it holds.
#[test]
fn holders_come_back_from_the_image_when_it_has_them() {
    let mut w = World::new("holders-back");
    w.image = Fixture::new(
        "holders-back-img2",
        K,
        &[
            ("sfc", &["sfc_dep"], "NEW"),
            ("sfc_dep", &[], "DEP"),
            ("sfc_ptp", &["sfc", "sfc_dep"], "PTP2"),
        ],
    );
    w.image_tree = Tree::open(&w.image.kdir(K)).unwrap();
    let mut k = w.kernel(true);
    k.srcversions.insert(w.ipath("sfc_ptp"), "PTP2".into());
    let p = w.plan(&k, None).unwrap();
    assert_eq!(p.remove, ["sfc_ptp", "sfc"]);
    assert!(p.not_restored.is_empty(), "{:?}", p.not_restored);
    let load: Vec<(&str, &Path)> = p
        .load
        .iter()
        .map(|l| (l.name.as_str(), l.path.as_path()))
        .collect();
    assert_eq!(
        load,
        [
            ("sfc_dep", w.ipath("sfc_dep").as_path()),
            ("sfc", w.ipath("sfc").as_path()),
            ("sfc_ptp", w.ipath("sfc_ptp").as_path()),
        ]
    );
    let out = execute(&p, Some(&w.host_tree), &w.node, &mut k);
    assert_eq!(out.error, None);
    assert_eq!(k.srcversion("sfc_ptp").as_deref(), Some("PTP2"));
}

#[test]
fn a_module_in_use_is_refused_before_anything_changes() {
    let w = World::new("inuse");
    // Something outside the module graph holds a reference to sfc_ptp
    // (an open device, say): refcount 1 with no holder module.
    let mut k = w.kernel(true);
    k.modules.get_mut("sfc_ptp").unwrap().refcount = 1;
    let before = snapshot(&k);
    let e = format!("{:#}", w.plan(&k, None).unwrap_err());
    assert!(
        e.contains("`sfc_ptp`, which holds `sfc` is in use (refcount 1)"),
        "{e}"
    );
    assert!(e.contains("nothing was changed"), "{e}");
    assert!(k.calls.is_empty());
    assert_eq!(snapshot(&k), before);

    // sfc itself in use.
    let mut k = w.kernel(false);
    k.modules.get_mut("sfc").unwrap().refcount = 2;
    let e = format!("{:#}", w.plan(&k, None).unwrap_err());
    assert!(e.contains("`sfc` is in use (refcount 2)"), "{e}");
}

#[test]
fn already_loaded_with_the_same_srcversion_is_a_no_op() {
    let w = World::new("idem");
    let mut k = w.kernel(false);
    let p = w.plan(&k, None).unwrap();
    execute(&p, Some(&w.host_tree), &w.node, &mut k);
    let calls = k.calls.len();
    // Second run: sfc has the image's srcversion now.
    let p = w.plan(&k, Some("/store/fw")).unwrap();
    assert!(p.up_to_date);
    assert!(p.remove.is_empty() && p.load.is_empty() && p.firmware_path.is_none());
    let out = execute(&p, Some(&w.host_tree), &w.node, &mut k);
    assert_eq!(out.error, None);
    assert_eq!(k.calls.len(), calls, "no kernel call on the second run");
}

#[test]
fn rollback_after_a_failure_at_each_step_restores_the_node() {
    let w = World::new("rollback");
    let (ip, hp) = (
        |m| w.ipath(m).display().to_string(),
        |m| w.hpath(m).display().to_string(),
    );
    let fw = "firmware /store/fw".to_string();
    let fw_back = "firmware /lib/firmware/updates".to_string();
    let un = |m: &str| format!("unload {m}");
    let reload_host = vec![
        format!("load sfc {} ", hp("sfc")),
        format!("load sfc_ptp {} ", hp("sfc_ptp")),
    ];
    let load_dep = format!("load sfc_dep {} ", ip("sfc_dep"));
    let load_sfc = format!("load sfc {} rss_cpus=4", ip("sfc"));
    // The successful sequence is: unload sfc_ptp, unload sfc, firmware,
    // load sfc_dep, load sfc. Expected calls when call `i` fails:
    let expected: Vec<Vec<String>> = vec![
        vec![un("sfc_ptp")],
        [
            vec![un("sfc_ptp"), un("sfc")],
            vec![format!("load sfc_ptp {} ", hp("sfc_ptp"))],
        ]
        .concat(),
        [
            vec![un("sfc_ptp"), un("sfc"), fw.clone()],
            reload_host.clone(),
        ]
        .concat(),
        [
            vec![
                un("sfc_ptp"),
                un("sfc"),
                fw.clone(),
                load_dep.clone(),
                fw_back.clone(),
            ],
            reload_host.clone(),
        ]
        .concat(),
        [
            vec![
                un("sfc_ptp"),
                un("sfc"),
                fw.clone(),
                load_dep.clone(),
                load_sfc.clone(),
                un("sfc_dep"),
                fw_back.clone(),
            ],
            reload_host.clone(),
        ]
        .concat(),
    ];
    for (i, want) in expected.iter().enumerate() {
        let mut k = w.kernel(true);
        let before = snapshot(&k);
        let p = w.plan(&k, Some("/store/fw")).unwrap();
        k.fail_at.insert(i, libc::EIO);
        let out = execute(&p, Some(&w.host_tree), &w.node, &mut k);
        assert!(out.error.is_some(), "step {i}");
        assert_eq!(&k.calls, want, "calls when step {i} fails");
        assert_eq!(snapshot(&k), before, "node state after failing step {i}");
        assert_eq!(k.firmware.as_deref(), Some("/lib/firmware/updates"));
        assert!(out.restored, "step {i}: {}", out.state);
        if i == 0 {
            assert!(out.state.contains("nothing was changed"), "{}", out.state);
        } else {
            assert!(out.state.contains("rolled back"), "{}", out.state);
        }
    }
}

#[test]
fn a_wrong_srcversion_after_load_rolls_back() {
    let w = World::new("verify");
    let mut k = w.kernel(false);
    k.srcversions
        .insert(w.ipath("sfc"), "SOMETHING_ELSE".into());
    let before = snapshot(&k);
    let p = w.plan(&k, None).unwrap();
    let out = execute(&p, Some(&w.host_tree), &w.node, &mut k);
    let e = out.error.unwrap();
    assert!(
        e.contains("srcversion is SOMETHING_ELSE instead of NEW"),
        "{e}"
    );
    assert_eq!(snapshot(&k), before);
    assert_eq!(
        &k.calls[k.calls.len() - 3..],
        [
            "unload sfc".to_string(),
            "unload sfc_dep".into(),
            format!("load sfc {} ", w.hpath("sfc").display())
        ]
    );
}

#[test]
fn failed_rollback_says_the_driver_may_be_missing() {
    let w = World::new("badrollback");
    let mut k = w.kernel(false);
    let p = w.plan(&k, None).unwrap();
    // unload sfc (0), load sfc_dep (1), load sfc (2) fails, unload sfc_dep
    // (3), reload host sfc (4) fails too.
    k.fail_at.insert(2, libc::ENOEXEC);
    k.fail_at.insert(4, libc::EIO);
    let out = execute(&p, Some(&w.host_tree), &w.node, &mut k);
    let e = out.error.unwrap();
    assert!(e.contains("invalid module format"), "{e}");
    assert!(!out.restored);
    assert!(
        out.state.contains("could not reload `sfc`")
            && out.state.contains("may be without its driver"),
        "{}",
        out.state
    );
}

#[test]
fn unknown_symbols_are_named() {
    let w = World::new("enoent");
    let mut k = w.kernel(false);
    let p = w.plan(&k, None).unwrap();
    // Make the image's sfc_dep need a module nobody loads.
    k.needs.insert("sfc_dep".into(), vec!["ghost".into()]);
    let out = execute(&p, Some(&w.host_tree), &w.node, &mut k);
    let e = out.error.unwrap();
    assert!(e.contains("unknown symbol(s) sym_of_ghost"), "{e}");
    assert!(out.restored);
}

#[test]
fn unsigned_modules_are_refused_when_signatures_are_enforced() {
    let w = World::new("sig");
    let mut k = w.kernel(false);
    k.enforce = Some("module.sig_enforce is on".into());
    let e = format!("{:#}", w.plan(&k, None).unwrap_err());
    assert!(
        e.contains("module.sig_enforce is on") && e.contains("unsigned"),
        "{e}"
    );
    assert!(e.contains(&w.ipath("sfc").display().to_string()), "{e}");
    assert!(k.calls.is_empty());
}

#[test]
fn builtin_modules_cannot_be_replaced() {
    let w = World::new("builtin");
    fs::write(
        w.host.kdir(K).join("modules.builtin"),
        "kernel/drivers/net/ethernet/sfc/sfc.ko\n",
    )
    .unwrap();
    let host_tree = Tree::open(&w.host.kdir(K)).unwrap();
    let k = w.kernel(false);
    let e = plan::plan(
        &Inputs {
            cfg: &w.cfg,
            in_tree_remove: &["sfc".into()],
            image: &w.image_tree,
            host: Some(&host_tree),
            kernel_release: K,
            firmware_path: None,
            node: &w.node,
        },
        &k,
        &mut ModinfoCache::new(),
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("`sfc` is built into the kernel"),
        "{e:#}"
    );
}

#[test]
fn modules_for_another_kernel_are_refused() {
    let w = World::new("vermagic");
    let k = w.kernel(false);
    let e = plan::plan(
        &Inputs {
            cfg: &w.cfg,
            in_tree_remove: &["sfc".into()],
            image: &w.image_tree,
            host: Some(&w.host_tree),
            kernel_release: "6.1.0-57-amd64",
            firmware_path: None,
            node: &w.node,
        },
        &k,
        &mut ModinfoCache::new(),
    )
    .unwrap_err();
    assert!(
        format!("{e:#}")
            .contains("built for kernel 6.1.0-56-amd64, but the kernel is 6.1.0-57-amd64"),
        "{e:#}"
    );
}

#[test]
fn extracted_image_root_for_firmware() {
    assert_eq!(
        image_root_of(Path::new("/x/img/opt/lib/modules"), "/opt"),
        Some(PathBuf::from("/x/img"))
    );
    assert_eq!(
        image_root_of(Path::new("/lib/modules"), "/"),
        Some(PathBuf::from("/"))
    );
    assert_eq!(image_root_of(Path::new("/x/modules"), "/opt"), None);
}

/// Publish the image's tree into `store` as pull would, with a firmware
/// dir, and teach `k` the srcversions of its files: (tree, digest hex).
fn publish(w: &World, store: &Store, k: &mut Fake) -> (PathBuf, String) {
    let hex = "ab".repeat(32);
    let tree = store.kernel_dir("sfc", K).join(format!("sha256-{hex}"));
    fs::create_dir_all(tree.join("lib/modules")).unwrap();
    fs::rename(w.image.kdir(K), tree.join("lib/modules").join(K)).unwrap();
    fs::create_dir_all(tree.join("firmware")).unwrap();
    fs::write(tree.join("firmware/fw.bin"), b"fw").unwrap();
    fs::write(
        tree.join(crate::store::META_FILE),
        format!(r#"{{"digest": "sha256:{hex}"}}"#),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        format!("sha256-{hex}"),
        store.kernel_dir("sfc", K).join("current"),
    )
    .unwrap();
    teach(k, &tree);
    (tree, hex)
}

/// The srcversions of the stored tree's files, for a fresh fake kernel.
fn teach(k: &mut Fake, tree: &Path) {
    let dir = tree.join("lib/modules").join(K).join("extra");
    k.srcversions.insert(dir.join("sfc.ko"), "NEW".into());
    k.srcversions.insert(dir.join("sfc_dep.ko"), "DEP".into());
}

/// `replace_config` end to end on the fake kernel: the store's current
/// tree, the digest, `replace.json` for each outcome.
#[test]
fn replace_json_records_each_outcome() {
    let w = World::new("state");
    let tmp = TempDir::new("replace-state").unwrap();
    // Not created yet: the store creates it when it takes its lock.
    let root = tmp.join("store");
    let store = Store::new(&root);
    let lock = store.lock().unwrap();
    let ctx = w.ctx(&store, &root);
    let mut k = w.kernel(false);
    k.boot_id = Some("boot-1".into());
    let state = |store: &Store| -> ReplaceState {
        state::load(&store.replace_state_path("sfc"))
            .unwrap()
            .unwrap()
    };

    // No tree yet: waiting for pull, success, nothing touched.
    assert!(replace_config(&ctx, &lock, "sfc", &w.cfg, &mut k).unwrap());
    assert_eq!(state(&store).result, ReplaceResult::WaitingForPull);
    assert_eq!(state(&store).boot_id, "boot-1", "the kernel's boot id");
    assert!(k.calls.is_empty());

    let (tree, hex) = publish(&w, &store, &mut k);
    let sfc = tree.join("lib/modules").join(K).join("extra/sfc.ko");

    assert!(replace_config(&ctx, &lock, "sfc", &w.cfg, &mut k).unwrap());
    let s = state(&store);
    assert_eq!(s.result, ReplaceResult::Loaded, "{}", s.message);
    assert_eq!(s.digest.as_deref(), Some(format!("sha256:{hex}").as_str()));
    assert_eq!(s.removed, ["sfc"]);
    assert_eq!(
        s.loaded
            .iter()
            .map(|l| (l.name.as_str(), l.srcversion.as_deref()))
            .collect::<Vec<_>>(),
        [("sfc_dep", Some("DEP")), ("sfc", Some("NEW"))]
    );
    assert_eq!(s.loaded[1].path, sfc.display().to_string());
    assert_eq!(
        k.firmware,
        Some(tree.join("firmware").display().to_string())
    );
    assert!(
        s.message.contains("ms"),
        "timings in the message: {}",
        s.message
    );
    assert!(!s.started.is_empty() && !s.finished.is_empty());

    // Again: already loaded, no kernel call.
    let calls = k.calls.len();
    assert!(replace_config(&ctx, &lock, "sfc", &w.cfg, &mut k).unwrap());
    assert_eq!(state(&store).result, ReplaceResult::AlreadyLoaded);
    assert_eq!(k.calls.len(), calls);

    // A failing load after a fresh in-tree boot: rolled back, run fails.
    let mut k2 = w.kernel(false);
    k2.srcversions = k.srcversions.clone();
    k2.fail_at.insert(3, libc::EKEYREJECTED); // unload, firmware, load sfc_dep, load sfc
    assert!(!replace_config(&ctx, &lock, "sfc", &w.cfg, &mut k2).unwrap());
    let s = state(&store);
    assert_eq!(s.result, ReplaceResult::RolledBack);
    assert!(
        s.message.contains("rejected the module's signature"),
        "{}",
        s.message
    );
    assert!(s.message.contains("in-tree sfc reloaded"), "{}", s.message);
    assert!(s.loaded.is_empty());
    assert_eq!(k2.srcversion("sfc").as_deref(), Some("OLD"));
}

#[test]
fn eexist_tells_loaded_from_built_in() {
    let w = World::new("eexist");
    let k = w.kernel(false);
    let step = |name: &str| LoadStep {
        name: name.into(),
        path: w.ipath(name),
        params: String::new(),
        source: Source::Image,
        srcversion: None,
        signed: false,
    };
    let e = load_error(&step("sfc"), &KernelError::Errno(libc::EEXIST), &k);
    assert!(
        e.contains("already loaded (add it to in_tree_remove)"),
        "{e}"
    );
    let e = load_error(&step("sfc_dep"), &KernelError::Errno(libc::EEXIST), &k);
    assert!(e.contains("built into the running kernel"), "{e}");
}

#[test]
fn eacces_while_selinux_enforces_says_selinux() {
    let w = World::new("selinux");
    let mut k = w.kernel(false);
    let step = LoadStep {
        name: "sfc".into(),
        path: w.ipath("sfc"),
        params: String::new(),
        source: Source::Image,
        srcversion: None,
        signed: false,
    };
    let e = load_error(&step, &KernelError::Errno(libc::EACCES), &k);
    assert!(!e.contains("SELinux"), "SELinux off: no SELinux claim: {e}");
    k.selinux_enforcing = true;
    for errno in [libc::EACCES, libc::EPERM] {
        let e = load_error(&step, &KernelError::Errno(errno), &k);
        assert!(e.contains("SELinux is enforcing and refused it"), "{e}");
        assert!(e.contains(&step.path.display().to_string()), "{e}");
        assert!(e.contains("ausearch -m avc"), "{e}");
    }
}

/// The crash-loop guard through `replace_config`: boots that loaded the
/// tree and were never confirmed quarantine it at the limit; the in-tree
/// driver is left alone, the unit succeeds; a confirm, a changed config
/// and `unquarantine` each let the tree load again; rollbacks never count;
/// an unreadable record loads nothing.
#[test]
fn crash_loop_guard_through_replace() {
    let w = World::new("guard");
    let tmp = TempDir::new("replace-guard").unwrap();
    let store = Store::new(tmp.join("store"));
    let config_dir = tmp.join("etc");
    fs::create_dir_all(&config_dir).unwrap();
    fs::write(config_dir.join("sfc.toml"), "# v1\n").unwrap();
    let lock = store.lock().unwrap();
    let ctx = w.ctx(&store, &config_dir);
    let mut seed = w.kernel(false);
    let (tree, _) = publish(&w, &store, &mut seed);
    let result = |store: &Store| -> ReplaceState {
        state::load(&store.replace_state_path("sfc"))
            .unwrap()
            .unwrap()
    };
    // One boot: a fresh node on its in-tree sfc, running replace.
    let boot = |id: &str| {
        let mut k = w.kernel(false);
        teach(&mut k, &tree);
        k.boot_id = Some(id.into());
        let ok = replace_config(&ctx, &lock, "sfc", &w.cfg, &mut k).unwrap();
        (ok, result(&store), k)
    };
    let record = |store: &Store| -> crate::store::state::BootsState {
        state::load(&store.boots_state_path("sfc"))
            .unwrap()
            .unwrap()
    };

    // Boots 1 and 2 load and never confirm (a panic after the load).
    for id in ["b1", "b2"] {
        let (ok, st, _) = boot(id);
        assert!(
            ok && st.result == ReplaceResult::Loaded,
            "{id}: {}",
            st.message
        );
    }
    let r = record(&store);
    assert_eq!(
        r.unconfirmed
            .iter()
            .map(|a| (a.boot_id.as_str(), a.stage))
            .collect::<Vec<_>>(),
        [("b1", Stage::Loaded), ("b2", Stage::Loaded)]
    );
    // Boot 3: quarantined. Nothing removed or loaded; the unit succeeds.
    let (ok, st, k) = boot("b3");
    assert!(ok, "a quarantine lets the boot go on");
    assert_eq!(st.result, ReplaceResult::Quarantined, "{}", st.message);
    assert!(k.calls.is_empty(), "no kernel call: {:?}", k.calls);
    assert_eq!(
        k.srcversion("sfc").as_deref(),
        Some("OLD"),
        "in-tree sfc stays"
    );
    for want in [
        "quarantined sha256:",
        "2 boots in a row",
        "boot b1 at",
        "boot b2 at",
        "unquarantine --config sfc",
    ] {
        assert!(st.message.contains(want), "{want:?} in {}", st.message);
    }
    assert!(record(&store).quarantined_at.is_some());
    // It stays quarantined in later boots.
    assert_eq!(boot("b4").1.result, ReplaceResult::Quarantined);

    // A changed config is tried again, with a fresh count.
    fs::write(config_dir.join("sfc.toml"), "# v2\n").unwrap();
    let (_, st, k) = boot("b5");
    assert_eq!(st.result, ReplaceResult::Loaded, "{}", st.message);
    assert_eq!(
        record(&store).unconfirmed.len(),
        1,
        "a new record for the new config"
    );

    // Confirmed at the health point: the count resets, so two more
    // unconfirmed boots are needed before the next quarantine.
    let c = crate::guard::confirm(&lock, &store, "sfc", &w.cfg.modules, &k).unwrap();
    assert!(matches!(c, crate::guard::Confirmed::Yes { .. }), "{c:?}");
    let r = record(&store);
    assert!(r.unconfirmed.is_empty() && r.confirmed_boot.as_deref() == Some("b5"));
    assert_eq!(boot("b6").1.result, ReplaceResult::Loaded);
    assert_eq!(boot("b7").1.result, ReplaceResult::Loaded);
    assert_eq!(boot("b8").1.result, ReplaceResult::Quarantined);

    // unquarantine: the next boot loads it again.
    assert!(crate::guard::forget(&lock, &store, "sfc").unwrap());
    assert_eq!(boot("b9").1.result, ReplaceResult::Loaded);

    // Rollbacks do not count: the kernel survived every one of them.
    crate::guard::forget(&lock, &store, "sfc").unwrap();
    for id in ["r1", "r2", "r3"] {
        let mut k = w.kernel(false);
        teach(&mut k, &tree);
        k.boot_id = Some(id.into());
        k.fail_at.insert(3, libc::EKEYREJECTED);
        assert!(!replace_config(&ctx, &lock, "sfc", &w.cfg, &mut k).unwrap());
        assert_eq!(result(&store).result, ReplaceResult::RolledBack, "{id}");
        assert!(
            record(&store).unconfirmed.is_empty(),
            "{id}: a rollback is no crash"
        );
    }

    // An unreadable record: the guard cannot decide, nothing is loaded.
    fs::write(store.boots_state_path("sfc"), "{not json").unwrap();
    let (ok, st, k) = boot("c1");
    assert!(!ok);
    assert_eq!(st.result, ReplaceResult::Failed);
    assert!(
        st.message.contains("crash-loop guard") && st.message.contains("boots.json"),
        "{}",
        st.message
    );
    assert!(k.calls.is_empty(), "{:?}", k.calls);
}

/// The node's modprobe options reach what the agent loads: the image's
/// module gets the command line's under the config's (the config wins, and
/// modprobe.d's lines for the in-tree driver stay out), and the in-tree
/// module put back by a rollback gets modprobe.d's and the command line's,
/// as modprobe would give it.
#[test]
fn node_options_reach_the_swap_and_the_rollback() {
    let mut w = World::new("node-opts");
    let root = TempDir::new("replace-node-opts").unwrap();
    fs::create_dir_all(root.join("etc/modprobe.d")).unwrap();
    fs::create_dir_all(root.join("proc")).unwrap();
    fs::write(
        root.join("etc/modprobe.d/sfc.conf"),
        "options sfc interrupt_mode=1\n",
    )
    .unwrap();
    fs::write(
        root.join("proc/cmdline"),
        "quiet sfc.rss_cpus=2 sfc.debug=1\n",
    )
    .unwrap();
    w.node = NodeOptions::read(&root);
    let mut k = w.kernel(false);
    let p = w.plan(&k, None).unwrap();
    assert_eq!(p.load[1].params, "debug=1 rss_cpus=4");
    k.fail_at.insert(2, libc::EKEYREJECTED); // unload sfc, load sfc_dep, load sfc
    let out = execute(&p, Some(&w.host_tree), &w.node, &mut k);
    assert!(out.restored, "{}", out.state);
    assert_eq!(
        k.calls.last().unwrap(),
        &format!(
            "load sfc {} interrupt_mode=1 rss_cpus=2 debug=1",
            w.hpath("sfc").display()
        )
    );
}
