//! The small JSON files the phases leave in the store (written under the
//! store lock: `save` takes its guard), read by `status`:
//! `<store>/<name>/pull.json`, `<store>/<name>/replace.json` and each tree's
//! `meta.json`. Absent files are a normal state (`load` returns `None`);
//! every field is read with a default when absent (`from_json` below, via
//! json.rs rather than derived `Deserialize`, for size), so old files still
//! parse after an agent update.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{write_atomic, Store, StoreLock, BOOTS_STATE, META_FILE, PULL_STATE, REPLACE_STATE};
use crate::json::{self, Object};

/// How the last `pull` of one config ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullResult {
    /// A new tree was published (and `after_pull` acted on).
    Published,
    /// The store already held the tree for the resolved digest.
    UpToDate,
    /// No kernel mapping matches the running kernel: nothing to pull.
    NoMapping,
    /// The node's signature policy refused the image, or could not be
    /// used: nothing was downloaded (docs/security.md#image-signatures).
    Refused,
    /// See `message`.
    #[default]
    Failed,
}

impl PullResult {
    /// As in pull.json and the `KMM_DAY1_RESULT` journal field.
    pub fn as_str(self) -> &'static str {
        match self {
            PullResult::Published => "published",
            PullResult::UpToDate => "up-to-date",
            PullResult::NoMapping => "no-mapping",
            PullResult::Refused => "refused",
            PullResult::Failed => "failed",
        }
    }
}

/// `<store>/<name>/pull.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PullState {
    /// Kernel release the last run acted for.
    pub kernel: String,
    pub result: PullResult,
    /// One line for humans: the summary or the error chain.
    pub message: String,
    /// Image reference after variable substitution.
    pub image: Option<String>,
    /// `sha256:…` of the platform manifest.
    pub digest: Option<String>,
    /// `host/repo` (or OCI layout dir) that served the image.
    pub source: Option<String>,
    pub downloaded_bytes: u64,
    pub extracted_bytes: u64,
    /// RFC 3339, UTC.
    pub started: String,
    pub finished: String,
    /// Wall time of the run for this config (0 in files from older agents).
    pub duration_ms: u64,
    /// Reboots requested by `pull` per kernel release: the guard against
    /// reboot loops (`pull.max_reboots_per_kernel`).
    pub reboots: BTreeMap<String, u32>,
    /// The last run wanted a reboot and the guard refused it: `status`
    /// reports the config as blocked until pull.json is removed.
    pub reboot_guard: bool,
    /// The last run failed on a fault of the image itself (its layers or
    /// module tree, `extract::ImageDefect`): retrying the same image cannot
    /// help, so `status` says to fix the image.
    pub image_defect: bool,
}

/// How the last `replace` of one config ended. Written by `replace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplaceResult {
    /// The out-of-tree modules are loaded.
    Loaded,
    /// They were already loaded (same srcversion): nothing done.
    AlreadyLoaded,
    /// No verified tree for this kernel yet: waiting for `pull`.
    WaitingForPull,
    /// Loading failed and the in-tree modules were put back.
    RolledBack,
    /// The tree took the kernel down in boot after boot: not loaded, the
    /// in-tree modules stay (`boots.json` says which boots).
    Quarantined,
    /// No device of this node matches the modules' device aliases
    /// (`require_device`): nothing swapped, the in-tree modules stay.
    NoDevice,
    /// See `message`; the node may be without the driver.
    #[default]
    Failed,
}

impl ReplaceResult {
    /// As in replace.json.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplaceResult::Loaded => "loaded",
            ReplaceResult::AlreadyLoaded => "already-loaded",
            ReplaceResult::WaitingForPull => "waiting-for-pull",
            ReplaceResult::RolledBack => "rolled-back",
            ReplaceResult::Quarantined => "quarantined",
            ReplaceResult::NoDevice => "no-device",
            ReplaceResult::Failed => "failed",
        }
    }
}

/// One module `replace` loaded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct LoadedModule {
    pub name: String,
    /// File it was loaded from (store tree or host tree).
    pub path: String,
    pub srcversion: Option<String>,
}

/// `<store>/<name>/replace.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ReplaceState {
    pub kernel: String,
    pub result: ReplaceResult,
    pub message: String,
    /// Digest of the tree loaded from.
    pub digest: Option<String>,
    /// In-tree modules removed.
    pub removed: Vec<String>,
    /// In load order.
    pub loaded: Vec<LoadedModule>,
    /// `/proc/sys/kernel/random/boot_id` of the boot that wrote this.
    pub boot_id: String,
    pub started: String,
    pub finished: String,
    /// Wall time of the run for this config (0 in files from older agents).
    pub duration_ms: u64,
}

/// How far one boot's swap got, as the crash-loop guard recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Recorded (and fsynced) before the first load: a boot that never
    /// got further died inside a module's init.
    #[default]
    Loading,
    /// The swap finished; the boot has not reached the health point yet.
    Loaded,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Loading => "loading",
            Stage::Loaded => "loaded",
        }
    }
}

/// One boot that loaded the tree and was not confirmed healthy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Attempt {
    pub boot_id: String,
    /// RFC 3339, UTC: when `replace` began loading.
    pub started: String,
    pub stage: Stage,
}

/// `<store>/<name>/boots.json`: the crash-loop guard's record of the boots
/// that loaded one tree (docs/replace.md#crash-loop-guard). Every field
/// names what the attempts were of; another kernel, digest or config
/// starts a new record.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct BootsState {
    pub kernel: String,
    /// The tree's manifest digest.
    pub digest: String,
    /// SHA-256 of the config file the attempts ran with.
    pub config: String,
    /// Boots that began loading and were not confirmed, oldest first.
    pub unconfirmed: Vec<Attempt>,
    /// The last boot confirmed healthy with this tree, and when.
    pub confirmed_boot: Option<String>,
    pub confirmed_at: Option<String>,
    /// When `replace` quarantined the tree (RFC 3339), if it did.
    pub quarantined_at: Option<String>,
}

/// `<tree>/meta.json`: written last into a tree; its presence marks the tree
/// complete (`Store::current_tree`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct TreeMeta {
    /// `sha256:…` of the platform manifest: the tree's directory name.
    pub digest: String,
    pub index_digest: Option<String>,
    pub image: String,
    pub source: String,
    pub kernel: String,
    /// Layer digests, in application order.
    pub layers: Vec<String>,
    pub downloaded_bytes: u64,
    pub extracted_bytes: u64,
    pub files: u64,
    /// Whether the tree has `firmware/`.
    pub firmware: bool,
    /// RFC 3339, UTC.
    pub pulled: String,
}

/// A state file's type, read from its JSON object.
pub trait FromJson: Sized {
    fn from_json(o: Object<'_>) -> json::Result<Self>;
}

/// Read a state file; `None` when it does not exist.
pub fn load<T: FromJson>(path: &Path) -> Result<Option<T>> {
    let mut out = None;
    read_object(path, &mut |o| {
        out = Some(T::from_json(o)?);
        Ok(())
    })?;
    Ok(out)
}

/// The part of [`load`] every state type shares, compiled once rather
/// than once per type (about 2 KB each in the static agent, docs/size.md):
/// read, parse, hand the top-level object to `read`. Nothing happens for
/// a missing file.
#[inline(never)]
fn read_object(path: &Path, read: &mut dyn FnMut(Object<'_>) -> json::Result<()>) -> Result<()> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    (|| -> Result<()> {
        let value: serde_json::Value = serde_json::from_slice(&bytes)?;
        read(json::object(&value, "the file")?)?;
        Ok(())
    })()
    .with_context(|| format!("{} is not valid: delete it to reset", path.display()))
}

/// An enum stored as its `as_str` name; absent is the default.
fn variant<T: Copy + Default>(
    o: Object<'_>,
    key: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> json::Result<T> {
    match o.opt_str(key)? {
        None => Ok(T::default()),
        Some(s) => all.iter().copied().find(|v| name(*v) == s).ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|v| name(*v)).collect();
            json::FieldError::new(format!("`{key}`: `{s}` is not one of {}", names.join(", ")))
        }),
    }
}

impl FromJson for PullState {
    fn from_json(o: Object<'_>) -> json::Result<Self> {
        use PullResult as R;
        Ok(PullState {
            kernel: o.string("kernel")?,
            result: variant(
                o,
                "result",
                &[
                    R::Published,
                    R::UpToDate,
                    R::NoMapping,
                    R::Refused,
                    R::Failed,
                ],
                R::as_str,
            )?,
            message: o.string("message")?,
            image: o.opt_string("image")?,
            digest: o.opt_string("digest")?,
            source: o.opt_string("source")?,
            downloaded_bytes: o.u64("downloaded_bytes")?,
            extracted_bytes: o.u64("extracted_bytes")?,
            started: o.string("started")?,
            finished: o.string("finished")?,
            duration_ms: o.u64("duration_ms")?,
            reboots: o.counters("reboots")?,
            reboot_guard: o.bool("reboot_guard")?,
            image_defect: o.bool("image_defect")?,
        })
    }
}

impl FromJson for ReplaceState {
    fn from_json(o: Object<'_>) -> json::Result<Self> {
        use ReplaceResult as R;
        let loaded = o
            .array("loaded")?
            .iter()
            .map(|v| {
                let m = json::object(v, "`loaded`")?;
                Ok(LoadedModule {
                    name: m.string("name")?,
                    path: m.string("path")?,
                    srcversion: m.opt_string("srcversion")?,
                })
            })
            .collect::<json::Result<_>>()?;
        Ok(ReplaceState {
            kernel: o.string("kernel")?,
            result: variant(
                o,
                "result",
                &[
                    R::Loaded,
                    R::AlreadyLoaded,
                    R::WaitingForPull,
                    R::RolledBack,
                    R::Quarantined,
                    R::NoDevice,
                    R::Failed,
                ],
                R::as_str,
            )?,
            message: o.string("message")?,
            digest: o.opt_string("digest")?,
            removed: o.strings("removed")?,
            loaded,
            boot_id: o.string("boot_id")?,
            started: o.string("started")?,
            finished: o.string("finished")?,
            duration_ms: o.u64("duration_ms")?,
        })
    }
}

impl FromJson for BootsState {
    fn from_json(o: Object<'_>) -> json::Result<Self> {
        let unconfirmed = o
            .array("unconfirmed")?
            .iter()
            .map(|v| {
                let a = json::object(v, "`unconfirmed`")?;
                Ok(Attempt {
                    boot_id: a.string("boot_id")?,
                    started: a.string("started")?,
                    stage: variant(a, "stage", &[Stage::Loading, Stage::Loaded], Stage::as_str)?,
                })
            })
            .collect::<json::Result<_>>()?;
        Ok(BootsState {
            kernel: o.string("kernel")?,
            digest: o.string("digest")?,
            config: o.string("config")?,
            unconfirmed,
            confirmed_boot: o.opt_string("confirmed_boot")?,
            confirmed_at: o.opt_string("confirmed_at")?,
            quarantined_at: o.opt_string("quarantined_at")?,
        })
    }
}

impl FromJson for TreeMeta {
    fn from_json(o: Object<'_>) -> json::Result<Self> {
        Ok(TreeMeta {
            digest: o.string("digest")?,
            index_digest: o.opt_string("index_digest")?,
            image: o.string("image")?,
            source: o.string("source")?,
            kernel: o.string("kernel")?,
            layers: o.strings("layers")?,
            downloaded_bytes: o.u64("downloaded_bytes")?,
            extracted_bytes: o.u64("extracted_bytes")?,
            files: o.u64("files")?,
            firmware: o.bool("firmware")?,
            pulled: o.string("pulled")?,
        })
    }
}

/// Write a state file atomically (pretty, newline-terminated: people read
/// it), under the store lock: two runs never write one file. World-readable
/// (0644): `status` reads it as any user; nothing secret is in it.
pub fn save<T: Serialize>(_lock: &StoreLock, path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).context("serialising state")?;
    bytes.push(b'\n');
    write_atomic(path, &bytes, 0o644)
}

impl Store {
    pub fn pull_state_path(&self, name: &str) -> std::path::PathBuf {
        self.config_dir(name).join(PULL_STATE)
    }

    /// `<root>/<name>/<kver>/pull.json`: the last pull for `kver` while it
    /// was a staged (not yet running) kernel; written by `pull --staged`,
    /// read by `status`.
    pub fn staged_pull_state_path(&self, name: &str, kver: &str) -> std::path::PathBuf {
        self.kernel_dir(name, kver).join(PULL_STATE)
    }

    pub fn replace_state_path(&self, name: &str) -> std::path::PathBuf {
        self.config_dir(name).join(REPLACE_STATE)
    }

    pub fn boots_state_path(&self, name: &str) -> std::path::PathBuf {
        self.config_dir(name).join(BOOTS_STATE)
    }

    /// The `meta.json` of the current tree for `name`/`kver`, if complete.
    pub fn current_meta(&self, name: &str, kver: &str) -> Result<Option<TreeMeta>> {
        match self.current_tree(name, kver) {
            Some(tree) => load(&tree.join(META_FILE)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmm_day1_tests::scratch::TempDir;

    #[test]
    fn state_round_trips_and_tolerates_missing_fields() {
        let tmp = TempDir::new("state").unwrap();
        // Not created yet: the store creates it when it takes its lock.
        let dir = tmp.join("store");
        let p = dir.join("pull.json");
        assert_eq!(load::<PullState>(&p).unwrap(), None);
        let lock = Store::new(&dir).lock().unwrap();
        let mut s = PullState {
            kernel: "6.1.0-56-amd64".into(),
            result: PullResult::UpToDate,
            ..PullState::default()
        };
        s.reboots.insert("6.1.0-56-amd64".into(), 1);
        save(&lock, &p, &s).unwrap();
        assert_eq!(load::<PullState>(&p).unwrap(), Some(s));
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"result\": \"up-to-date\""), "{text}");
        for r in [
            PullResult::Published,
            PullResult::UpToDate,
            PullResult::NoMapping,
            PullResult::Refused,
            PullResult::Failed,
        ] {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        // A file from an older agent, with fewer fields, still loads.
        fs::write(&p, r#"{"kernel":"k","result":"published"}"#).unwrap();
        let old = load::<PullState>(&p).unwrap().unwrap();
        assert_eq!(old.result, PullResult::Published);
        assert!(old.reboots.is_empty());
        fs::write(&p, "{").unwrap();
        let e = format!("{:#}", load::<PullState>(&p).unwrap_err());
        assert!(e.contains("pull.json is not valid"), "{e}");
        // A wrong type or an unknown result is named, not defaulted.
        fs::write(&p, r#"{"kernel":"k","downloaded_bytes":"9"}"#).unwrap();
        let e = format!("{:#}", load::<PullState>(&p).unwrap_err());
        assert!(
            e.contains("pull.json is not valid: delete it to reset: `downloaded_bytes`: expected an unsigned integer, found a string"),
            "{e}"
        );
        fs::write(&p, r#"{"result":"done"}"#).unwrap();
        let e = format!("{:#}", load::<PullState>(&p).unwrap_err());
        assert!(
            e.contains(
                "`result`: `done` is not one of published, up-to-date, no-mapping, refused, failed"
            ),
            "{e}"
        );
        fs::write(&p, "[]").unwrap();
        let e = format!("{:#}", load::<PullState>(&p).unwrap_err());
        assert!(e.contains("expected an object, found an array"), "{e}");

        // Every field of the other two files survives a save and a load.
        let r = dir.join("replace.json");
        let replace = ReplaceState {
            kernel: "k".into(),
            result: ReplaceResult::RolledBack,
            message: "m".into(),
            digest: Some("sha256:ab".into()),
            removed: vec!["sfc".into()],
            loaded: vec![LoadedModule {
                name: "sfc".into(),
                path: "/p/sfc.ko".into(),
                srcversion: Some("ABC".into()),
            }],
            boot_id: "b".into(),
            started: "s".into(),
            finished: "f".into(),
            duration_ms: 12,
        };
        save(&lock, &r, &replace).unwrap();
        assert_eq!(load::<ReplaceState>(&r).unwrap(), Some(replace));
        let m = dir.join("meta.json");
        let meta = TreeMeta {
            digest: "sha256:cd".into(),
            index_digest: Some("sha256:ef".into()),
            image: "q.io/a/b:1".into(),
            source: "q.io/a/b".into(),
            kernel: "k".into(),
            layers: vec!["sha256:01".into(), "sha256:02".into()],
            downloaded_bytes: 1,
            extracted_bytes: 2,
            files: 3,
            firmware: true,
            pulled: "t".into(),
        };
        save(&lock, &m, &meta).unwrap();
        assert_eq!(load::<TreeMeta>(&m).unwrap(), Some(meta));
    }
}
