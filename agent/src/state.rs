//! The small JSON files the phases leave in the store, read by `status`:
//! `<store>/<name>/pull.json`, `<store>/<name>/replace.json` and each tree's
//! `meta.json`. Absent files are a normal state (`load` returns `None`);
//! every field added later must carry `#[serde(default)]` so old files still
//! parse after an agent update.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::{self, Store, META_FILE, PULL_STATE, REPLACE_STATE};

/// How the last `pull` of one config ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
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
}

/// How the last `replace` of one config ended. Written by `replace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadedModule {
    pub name: String,
    /// File it was loaded from (store tree or host tree).
    pub path: String,
    pub srcversion: Option<String>,
}

/// `<store>/<name>/replace.json`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
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

/// Read a state file; `None` when it does not exist.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not valid: delete it to reset", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
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
        fs::remove_dir_all(&dir).unwrap();
    }
}
