//! The guard's record rules on their own; `replace/tests.rs` drives them
//! through `replace_config`.

use std::fs;

use super::*;
use crate::kernel::tests::Fake;
use crate::store::state::LoadedModule;
use kmm_day1_tests::scratch::TempDir;

fn attempt(boot: &str, stage: Stage) -> Attempt {
    Attempt {
        boot_id: boot.into(),
        started: "2026-12-03T10:00:00Z".into(),
        stage,
    }
}

#[test]
fn only_earlier_boots_count_towards_the_limit() {
    let mut s = BootsState {
        unconfirmed: vec![attempt("b1", Stage::Loading)],
        ..BootsState::default()
    };
    assert_eq!(quarantined(&s, "b2", 2), None, "one power cut is allowed");
    let q = quarantined(&s, "b2", 1).expect("max 1: one failed boot quarantines");
    assert_eq!(
        q.boots_line(),
        "boot b1 at 2026-12-03T10:00:00Z: did not finish loading"
    );
    s.unconfirmed.push(attempt("b2", Stage::Loaded));
    assert_eq!(
        quarantined(&s, "b2", 2),
        None,
        "this boot's own attempt (a second replace in one boot) is no crash"
    );
    assert_eq!(quarantined(&s, "b3", 2).unwrap().boots.len(), 2);
    s.unconfirmed.clear();
    s.quarantined_at = Some("t".into());
    assert!(
        quarantined(&s, "b9", 2).is_some(),
        "a quarantine holds until lifted"
    );
}

#[test]
fn records_are_per_kernel_digest_and_config() {
    let tmp = TempDir::new("guard").unwrap();
    // Not created yet: the store creates it when it takes its lock.
    let store = Store::new(tmp.join("store"));
    let lock = store.lock().unwrap();
    let key = Key {
        kernel: "6.1.0-1".into(),
        digest: "sha256:aa".into(),
        config: "sha256:cc".into(),
    };
    begin(&lock, &store, "sfc", &key, "b1").unwrap();
    begin(&lock, &store, "sfc", &key, "b2").unwrap();
    assert!(check(&store, "sfc", &key, "b3", 2).unwrap().is_some());
    for other in [
        Key {
            kernel: "6.1.0-2".into(),
            ..key.clone()
        },
        Key {
            digest: "sha256:bb".into(),
            ..key.clone()
        },
        Key {
            config: "sha256:dd".into(),
            ..key.clone()
        },
    ] {
        assert_eq!(
            check(&store, "sfc", &other, "b3", 2).unwrap(),
            None,
            "{other:?}"
        );
    }
    // A new key starts a new record.
    let fixed = Key {
        digest: "sha256:bb".into(),
        ..key.clone()
    };
    begin(&lock, &store, "sfc", &fixed, "b3").unwrap();
    assert_eq!(record(&store, "sfc", &key).unwrap(), None);
    assert_eq!(
        record(&store, "sfc", &fixed)
            .unwrap()
            .unwrap()
            .unconfirmed
            .len(),
        1
    );
    // finish: a failed load removes the boot's attempt.
    finish(&lock, &store, "sfc", &fixed, "b3", false).unwrap();
    assert!(record(&store, "sfc", &fixed)
        .unwrap()
        .unwrap()
        .unconfirmed
        .is_empty());
}

#[test]
fn confirm_needs_this_boots_load_and_the_same_builds_still_running() {
    let tmp = TempDir::new("guard-c").unwrap();
    // Not created yet: the store creates it when it takes its lock.
    let store = Store::new(tmp.join("store"));
    let lock = store.lock().unwrap();
    let key = Key {
        kernel: "6.1.0-1".into(),
        digest: "sha256:aa".into(),
        config: String::new(),
    };
    let mut k = Fake::with_loaded(&[("sfc", &[], Some("NEW"))]);
    k.boot_id = Some("b2".into());
    let modules = ["sfc".to_string()];
    assert_eq!(
        confirm(&lock, &store, "sfc", &modules, &k).unwrap(),
        Confirmed::NothingLoaded
    );

    begin(&lock, &store, "sfc", &key, "b1").unwrap();
    begin(&lock, &store, "sfc", &key, "b2").unwrap();
    let mut replace = ReplaceState {
        result: ReplaceResult::Loaded,
        boot_id: "b1".into(),
        loaded: vec![LoadedModule {
            name: "sfc".into(),
            path: "/x/sfc.ko".into(),
            srcversion: Some("NEW".into()),
        }],
        ..ReplaceState::default()
    };
    state::save(&lock, &store.replace_state_path("sfc"), &replace).unwrap();
    assert_eq!(
        confirm(&lock, &store, "sfc", &modules, &k).unwrap(),
        Confirmed::NothingLoaded,
        "the loaded tree is an earlier boot's"
    );
    replace.boot_id = "b2".into();
    state::save(&lock, &store.replace_state_path("sfc"), &replace).unwrap();
    let mut other = Fake::with_loaded(&[("sfc", &[], Some("OLD"))]);
    other.boot_id = Some("b2".into());
    assert_eq!(
        confirm(&lock, &store, "sfc", &modules, &other).unwrap(),
        Confirmed::Gone {
            module: "sfc".into()
        },
        "another build of sfc runs now"
    );
    assert_eq!(
        record(&store, "sfc", &key)
            .unwrap()
            .unwrap()
            .unconfirmed
            .len(),
        2
    );

    let c = confirm(&lock, &store, "sfc", &modules, &k).unwrap();
    assert_eq!(
        c,
        Confirmed::Yes {
            modules: modules.to_vec()
        }
    );
    assert!(c.line("sfc").contains("crash-loop count is reset"));
    let r = record(&store, "sfc", &key).unwrap().unwrap();
    assert!(r.unconfirmed.is_empty());
    assert_eq!(r.confirmed_boot.as_deref(), Some("b2"));
}

#[test]
fn config_hash_follows_the_file() {
    let tmp = TempDir::new("guard-h").unwrap();
    let dir = tmp.path();
    assert_eq!(config_hash(dir, "sfc"), "", "no file: empty");
    fs::write(dir.join("sfc.toml"), "a").unwrap();
    let a = config_hash(dir, "sfc");
    fs::write(dir.join("sfc.toml"), "b").unwrap();
    assert!(a.starts_with("sha256:") && a != config_hash(dir, "sfc"));
}
