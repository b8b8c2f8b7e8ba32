//! SELinux, as far as loading modules goes (docs/security.md#selinux).
//!
//! Under RHCOS's targeted policy the agent's domain (`unconfined_service_t`)
//! may `module_load` from `modules_object_t` files and from memory
//! (`self:system module_load`), but not from a store file (`var_lib_t`). So
//! when SELinux is on, [`crate::kernel::Real`] hands every module to the
//! kernel from memory with `init_module`, whatever the file's label, and this
//! file only answers the questions around that: is SELinux on, what label
//! does a file or this process carry, and what to say when a load is refused.

use std::ffi::CString;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where selinuxfs is mounted (systemd mounts it on every SELinux system).
const ENFORCE: &str = "sys/fs/selinux/enforce";
/// The extended attribute that carries a file's context.
const XATTR: &[u8] = b"security.selinux\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforcing,
    Permissive,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforcing => "enforcing",
            Mode::Permissive => "permissive",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SELinux's mode from `<root>/sys/fs/selinux/enforce`; `None` when
/// selinuxfs is absent (SELinux disabled or not built in).
pub fn mode(root: &Path) -> Option<Mode> {
    let text = std::fs::read_to_string(root.join(ENFORCE)).ok()?;
    Some(if text.trim() == "1" {
        Mode::Enforcing
    } else {
        Mode::Permissive
    })
}

/// The context of the file at `path` (its `security.selinux` attribute, the
/// link itself for a symlink), or `None` when it has none or cannot be read.
pub fn label(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut buf = [0u8; 256];
    // SAFETY: lgetxattr(2) writes at most `buf.len()` bytes into `buf`; both
    // C strings are NUL-terminated and outlive the call.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            XATTR.as_ptr().cast(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    context_from_xattr(&buf[..n])
}

/// The context of this process (`/proc/self/attr/current`).
pub fn current() -> Option<String> {
    context_from_xattr(&std::fs::read("/proc/self/attr/current").ok()?)
}

/// The kernel NUL-terminates contexts (xattr and /proc alike).
fn context_from_xattr(raw: &[u8]) -> Option<String> {
    let raw = raw.split(|b| *b == 0).next().unwrap_or_default();
    let s = std::str::from_utf8(raw).ok()?.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// What `status` and `verify` report when SELinux is on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub mode: Mode,
    /// This process's context: the domain `replace` loads from when it runs
    /// in the same unit context.
    pub domain: Option<String>,
    pub store: PathBuf,
    pub store_label: Option<String>,
}

/// `None` when SELinux is off (no selinuxfs under `root`).
pub fn status(root: &Path, store: &Path) -> Option<Status> {
    Some(Status {
        mode: mode(root)?,
        domain: current(),
        store: store.to_path_buf(),
        store_label: label(store),
    })
}

impl Status {
    /// One line: the mode, domain and store label, and what they mean for
    /// loading.
    pub fn line(&self) -> String {
        format!(
            "{}; this process runs as {}; store {} labelled {}; modules are loaded from memory (init_module), which needs `system module_load` on the domain itself, not on the store's label",
            self.mode,
            self.domain.as_deref().unwrap_or("(unknown)"),
            self.store.display(),
            self.store_label.as_deref().unwrap_or("(no label)")
        )
    }
}

/// The error for a load the kernel refused with EACCES or EPERM while
/// SELinux enforces: names the module, the file, its label and the domain,
/// and where the AVC is.
pub fn load_denied(module: &str, path: &Path, errno: i32) -> String {
    load_denied_with(
        module,
        path,
        errno,
        label(path).as_deref(),
        current().as_deref(),
    )
}

fn load_denied_with(
    module: &str,
    path: &Path,
    errno: i32,
    file_label: Option<&str>,
    domain: Option<&str>,
) -> String {
    let (code, perm) = if errno == libc::EPERM {
        ("EPERM", "capability sys_module")
    } else {
        ("EACCES", "system module_load")
    };
    format!(
        "loading `{module}` from {}: SELinux is enforcing and refused it ({code}, most likely `{perm}` for {} on a file labelled {}): see the AVC with `journalctl -t audit -g avc` or `ausearch -m avc -c kmm-day1-agent`, and docs/security.md#selinux",
        path.display(),
        domain.unwrap_or("the agent's domain"),
        file_label.unwrap_or("(no label)")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmm_day1_tests::scratch::TempDir;

    #[test]
    fn mode_from_selinuxfs() {
        let tmp = TempDir::new("selinux").unwrap();
        // Not created yet: the first check is against a root with nothing in it.
        let root = tmp.join("root");
        assert_eq!(mode(&root), None, "no selinuxfs: SELinux is off");
        std::fs::create_dir_all(root.join("sys/fs/selinux")).unwrap();
        std::fs::write(root.join(ENFORCE), "0").unwrap();
        assert_eq!(mode(&root), Some(Mode::Permissive));
        std::fs::write(root.join(ENFORCE), "1").unwrap();
        assert_eq!(mode(&root), Some(Mode::Enforcing));
    }

    #[test]
    fn contexts_lose_their_nul() {
        assert_eq!(
            context_from_xattr(b"system_u:object_r:var_lib_t:s0\0").as_deref(),
            Some("system_u:object_r:var_lib_t:s0")
        );
        assert_eq!(context_from_xattr(b"\0"), None);
        assert_eq!(context_from_xattr(b""), None);
    }

    #[test]
    fn denial_names_file_label_domain_and_the_avc() {
        let m = load_denied_with(
            "sfc",
            Path::new("/var/lib/kmm-day1/x/sfc.ko"),
            libc::EACCES,
            Some("system_u:object_r:var_lib_t:s0"),
            Some("system_u:system_r:unconfined_service_t:s0"),
        );
        for want in [
            "loading `sfc` from /var/lib/kmm-day1/x/sfc.ko",
            "SELinux is enforcing and refused it (EACCES",
            "`system module_load` for system_u:system_r:unconfined_service_t:s0",
            "labelled system_u:object_r:var_lib_t:s0",
            "journalctl -t audit",
            "ausearch -m avc -c kmm-day1-agent",
        ] {
            assert!(m.contains(want), "{want:?} not in {m}");
        }
        let m = load_denied_with("sfc", Path::new("/x.ko"), libc::EPERM, None, None);
        assert!(
            m.contains("(EPERM, most likely `capability sys_module`"),
            "{m}"
        );
        assert!(m.contains("labelled (no label)"), "{m}");
    }

    #[test]
    fn status_line_names_mode_domain_and_store_label() {
        let s = Status {
            mode: Mode::Enforcing,
            domain: Some("system_u:system_r:unconfined_service_t:s0".into()),
            store: PathBuf::from("/var/lib/kmm-day1"),
            store_label: Some("system_u:object_r:var_lib_t:s0".into()),
        };
        let l = s.line();
        assert!(l.starts_with("enforcing; "), "{l}");
        assert!(
            l.contains("runs as system_u:system_r:unconfined_service_t:s0"),
            "{l}"
        );
        assert!(
            l.contains("/var/lib/kmm-day1 labelled system_u:object_r:var_lib_t:s0"),
            "{l}"
        );
        let tmp = TempDir::new("selinux-off").unwrap();
        let root = tmp.join("root");
        assert!(status(&root, &root).is_none(), "no selinuxfs: no status");
    }

    #[test]
    fn label_of_a_missing_file_is_none() {
        assert_eq!(label(Path::new("/nonexistent/kmm-day1/file")), None);
    }
}
