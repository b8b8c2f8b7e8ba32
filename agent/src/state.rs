//! The small JSON files the phases leave in the store, read by `status`:
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

use crate::json::{self, Object};
use crate::store::{self, Store, META_FILE, PULL_STATE, REPLACE_STATE};

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
    fn from_json(o: Object<'_>) -> Result<Self, String>;
}

/// Read a state file; `None` when it does not exist.
pub fn load<T: FromJson>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => parse(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not valid: delete it to reset", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn parse<T: FromJson>(bytes: &[u8]) -> Result<T> {
    let value: serde_json::Value = serde_json::from_slice(bytes)?;
    let o = json::object(&value, "the file").map_err(anyhow::Error::msg)?;
    T::from_json(o).map_err(anyhow::Error::msg)
}

/// An enum stored as its `as_str` name; absent is the default.
fn variant<T: Copy + Default>(
    o: Object<'_>,
    key: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, String> {
    match o.opt_str(key)? {
        None => Ok(T::default()),
        Some(s) => all.iter().copied().find(|v| name(*v) == s).ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|v| name(*v)).collect();
            format!("`{key}`: `{s}` is not one of {}", names.join(", "))
        }),
    }
}

impl FromJson for PullState {
    fn from_json(o: Object<'_>) -> Result<Self, String> {
        use PullResult as R;
        Ok(PullState {
            kernel: o.string("kernel")?,
            result: variant(
                o,
                "result",
                &[R::Published, R::UpToDate, R::NoMapping, R::Failed],
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
    fn from_json(o: Object<'_>) -> Result<Self, String> {
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
            .collect::<Result<_, String>>()?;
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

impl FromJson for TreeMeta {
    fn from_json(o: Object<'_>) -> Result<Self, String> {
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

/// Write a state file atomically (pretty, newline-terminated: people read it).
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).context("serialising state")?;
    bytes.push(b'\n');
    store::write_atomic(path, &bytes)
}

impl Store {
    pub fn pull_state_path(&self, name: &str) -> std::path::PathBuf {
        self.config_dir(name).join(PULL_STATE)
    }

    pub fn replace_state_path(&self, name: &str) -> std::path::PathBuf {
        self.config_dir(name).join(REPLACE_STATE)
    }

    /// The `meta.json` of the current tree for `name`/`kver`, if complete.
    pub fn current_meta(&self, name: &str, kver: &str) -> Result<Option<TreeMeta>> {
        match self.current_tree(name, kver) {
            Some(tree) => load(&tree.join(META_FILE)),
            None => Ok(None),
        }
    }
}

/// Now, as RFC 3339 UTC with seconds (`2026-11-26T11:21:51Z`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds (or MiB/s) to one decimal, printed with integer arithmetic: float
/// formatting would bring `core::fmt::float` and its tables into the static
/// agent for a handful of log lines (≈ 8 KB, docs/size.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenths(pub u64);

impl Tenths {
    /// A duration, rounded to the nearest tenth of a second.
    pub fn of(d: std::time::Duration) -> Self {
        Tenths(u64::try_from((d.as_millis() + 50) / 100).unwrap_or(u64::MAX))
    }

    /// Milliseconds, rounded to the nearest tenth of a second.
    pub fn ms(ms: u64) -> Self {
        Tenths(ms.saturating_add(50) / 100)
    }

    /// `units` per `d`, in tenths (0 for a zero duration).
    pub fn rate(units: u64, d: std::time::Duration) -> Self {
        let ms = d.as_millis();
        if ms == 0 {
            return Tenths(0);
        }
        Tenths(u64::try_from(u128::from(units) * 10_000 / ms).unwrap_or(u64::MAX))
    }
}

/// `n` of `noun`, in the singular for one: "1 module", "5 modules".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A byte count for people: "512 bytes", "84 KiB", "3.2 MiB" (tenths by
/// integer arithmetic: no float formatting in the agent, docs/size.md).
/// "0 MiB" for a small image read as if nothing had been downloaded.
pub fn size(n: u64) -> String {
    if n < 1024 {
        count(usize::try_from(n).unwrap_or(usize::MAX), "byte")
    } else if n < 1 << 20 {
        format!("{} KiB", n >> 10)
    } else {
        format!(
            "{} MiB",
            Tenths(u64::try_from((u128::from(n) * 10) >> 20).unwrap_or(u64::MAX))
        )
    }
}

impl std::fmt::Display for Tenths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

/// Unix seconds as RFC 3339 UTC; civil-from-days after H. Hinnant, to avoid
/// a date crate in the agent.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_sizes_read_like_english() {
        assert_eq!(count(1, "check"), "1 check");
        assert_eq!(count(0, "module"), "0 modules");
        assert_eq!(count(5, "layer"), "5 layers");
        assert_eq!(size(1), "1 byte");
        assert_eq!(size(1023), "1023 bytes");
        assert_eq!(size(1024), "1 KiB");
        assert_eq!(size(500 << 10), "500 KiB");
        assert_eq!(size(1 << 20), "1.0 MiB");
        assert_eq!(size((3 << 20) + (1 << 19)), "3.5 MiB");
        assert!(size(u64::MAX).ends_with(" MiB"));
    }

    #[test]
    fn tenths_print_like_one_decimal() {
        use std::time::Duration;
        assert_eq!(Tenths::of(Duration::from_millis(0)).to_string(), "0.0");
        assert_eq!(Tenths::of(Duration::from_millis(740)).to_string(), "0.7");
        assert_eq!(Tenths::of(Duration::from_millis(760)).to_string(), "0.8");
        assert_eq!(Tenths::of(Duration::from_secs(125)).to_string(), "125.0");
        assert_eq!(Tenths::ms(420).to_string(), "0.4");
        assert_eq!(Tenths::ms(u64::MAX).0, u64::MAX / 100);
        // 3 MiB in 2 s is 1.5 MiB/s.
        assert_eq!(Tenths::rate(3, Duration::from_secs(2)).to_string(), "1.5");
        assert_eq!(Tenths::rate(3, Duration::ZERO).to_string(), "0.0");
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // `date -u -d @951782400` (leap day of a century leap year).
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_692_111), "2026-11-26T11:21:51Z");
    }

    #[test]
    fn state_round_trips_and_tolerates_missing_fields() {
        let dir = std::env::temp_dir().join(format!("kmm-day1-state-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let p = dir.join("pull.json");
        assert_eq!(load::<PullState>(&p).unwrap(), None);
        let mut s = PullState {
            kernel: "6.1.0-56-amd64".into(),
            result: PullResult::UpToDate,
            ..PullState::default()
        };
        s.reboots.insert("6.1.0-56-amd64".into(), 1);
        save(&p, &s).unwrap();
        assert_eq!(load::<PullState>(&p).unwrap(), Some(s));
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"result\": \"up-to-date\""), "{text}");
        for r in [
            PullResult::Published,
            PullResult::UpToDate,
            PullResult::NoMapping,
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
            e.contains("`result`: `done` is not one of published, up-to-date, no-mapping, failed"),
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
        save(&r, &replace).unwrap();
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
        save(&m, &meta).unwrap();
        assert_eq!(load::<TreeMeta>(&m).unwrap(), Some(meta));
        fs::remove_dir_all(&dir).unwrap();
    }
}
