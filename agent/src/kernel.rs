//! The small interface to the running kernel that `replace` needs, so its
//! logic is tested against [`tests::Fake`] and the real thing ([`Real`],
//! raw syscalls and /proc, /sys) stays a thin layer proven in the VM tests.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::modinfo;
use crate::modules::{self, Loaded};
use crate::selinux;

/// Where the kernel exposes the search path for firmware (a module parameter
/// of the built-in firmware_class).
pub const FIRMWARE_PATH_PARAM: &str = "sys/module/firmware_class/parameters/path";
const SIG_ENFORCE_PARAM: &str = "sys/module/module/parameters/sig_enforce";
const LOCKDOWN: &str = "sys/kernel/security/lockdown";

/// A failed syscall: the errno, which the caller turns into a message
/// specific to what it was doing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("{}", io::Error::from_raw_os_error(*.0))]
    Errno(i32),
    #[error("{0}")]
    Io(String),
}

impl KernelError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Errno(e) => Some(*e),
            KernelError::Io(_) => None,
        }
    }
}

/// `uname -r` of the running kernel.
pub fn running_release() -> anyhow::Result<String> {
    use anyhow::Context as _;
    let path = "/proc/sys/kernel/osrelease";
    let s = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    Ok(s.trim().to_string())
}

/// Everything `replace` asks of the kernel.
pub trait Kernel {
    /// `/proc/modules`; empty when the file does not exist (a kernel
    /// without module support, or a dry run in a container).
    fn loaded(&self) -> io::Result<Vec<Loaded>>;
    /// `/sys/module/<m>/holders`.
    fn holders(&self, module: &str) -> io::Result<Vec<String>>;
    /// `/sys/module/<m>/srcversion` of a loaded module.
    fn srcversion(&self, module: &str) -> Option<String>;
    /// Why unsigned modules would be refused (`sig_enforce`, lockdown), if
    /// they would.
    fn signatures_required(&self) -> Option<String>;
    fn firmware_path(&self) -> Option<String>;
    fn set_firmware_path(&mut self, path: &str) -> Result<(), KernelError>;
    /// Load the module file at `path` with `params` (space-separated).
    fn load(&mut self, name: &str, path: &Path, params: &str) -> Result<(), KernelError>;
    /// `delete_module(name, O_NONBLOCK)`: never waits, never forces.
    fn unload(&mut self, name: &str) -> Result<(), KernelError>;
    /// Symbols the kernel log says `module` lacked (best effort).
    fn unknown_symbols(&self, module: &str) -> Vec<String>;
    /// SELinux enforces: an EACCES/EPERM from a load is then its refusal.
    fn selinux_enforcing(&self) -> bool;
    /// `/proc/sys/kernel/random/boot_id`: which boot a state file is from.
    fn boot_id(&self) -> Option<String>;
    /// The node's device modaliases (`/sys/bus/*/devices/*/modalias`),
    /// what the hardware gate matches modules' aliases against.
    fn modaliases(&self) -> Vec<String>;
}

/// The running kernel, through syscalls and the files under `root` (`/`;
/// tests of the file parsing point it elsewhere). Every read of /proc and
/// /sys the agent makes goes through here.
#[derive(Debug)]
pub struct Real {
    root: PathBuf,
    /// `<root>/sys/module`, or a stand-in (`status --sys-root`).
    sys_module: PathBuf,
}

impl Real {
    pub fn new() -> Self {
        Real::at(PathBuf::from("/"))
    }

    /// The kernel files under `root` instead of `/`.
    pub fn at(root: PathBuf) -> Self {
        let sys_module = root.join("sys/module");
        Real { root, sys_module }
    }

    /// With `sys` standing in for `/sys` in per-module reads.
    pub fn with_sys(mut self, sys: &Path) -> Self {
        self.sys_module = sys.join("module");
        self
    }

    /// Whether per-module sysfs exists (not in some containers): without
    /// it, [`Kernel::srcversion`] knows nothing.
    pub fn has_module_sysfs(&self) -> bool {
        self.sys_module.is_dir()
    }

    /// `/sys/module/<module>` exists: the kernel has it, loaded or built in.
    pub fn has_module(&self, module: &str) -> bool {
        self.sys_module(module).is_dir()
    }

    fn sys_module(&self, module: &str) -> PathBuf {
        self.sys_module
            .join(kmm_day1_config::module_name_canonical(module))
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn last_errno() -> KernelError {
    KernelError::Errno(io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

fn cstring(s: &str) -> Result<std::ffi::CString, KernelError> {
    std::ffi::CString::new(s).map_err(|_| KernelError::Errno(libc::EINVAL))
}

impl Kernel for Real {
    fn loaded(&self) -> io::Result<Vec<Loaded>> {
        match fs::read_to_string(self.root.join("proc/modules")) {
            Ok(t) => Ok(modules::parse_proc_modules(&t)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn holders(&self, module: &str) -> io::Result<Vec<String>> {
        modules::read_holders(&self.sys_module(module).join("holders"))
    }

    fn srcversion(&self, module: &str) -> Option<String> {
        read_trimmed(&self.sys_module(module).join("srcversion"))
    }

    fn signatures_required(&self) -> Option<String> {
        if read_trimmed(&self.root.join(SIG_ENFORCE_PARAM)).as_deref() == Some("Y") {
            return Some("module.sig_enforce is on".into());
        }
        // `none [integrity] confidentiality`: the bracketed word is active.
        let lockdown = read_trimmed(&self.root.join(LOCKDOWN))?;
        for mode in ["integrity", "confidentiality"] {
            if lockdown.contains(&format!("[{mode}]")) {
                return Some(format!("the kernel is locked down ({mode})"));
            }
        }
        None
    }

    fn firmware_path(&self) -> Option<String> {
        read_trimmed(&self.root.join(FIRMWARE_PATH_PARAM))
    }

    fn set_firmware_path(&mut self, path: &str) -> Result<(), KernelError> {
        let param = self.root.join(FIRMWARE_PATH_PARAM);
        fs::write(&param, path).map_err(|e| KernelError::Io(format!("{}: {e}", param.display())))
    }

    fn load(&mut self, _name: &str, path: &Path, params: &str) -> Result<(), KernelError> {
        let params = cstring(params)?;
        // With SELinux on, finit_module checks `system module_load` against
        // the file's label, and the targeted policy denies that for a store
        // file (var_lib_t) to the agent's domain; init_module checks only the
        // domain itself, which every domain allowed to load modules has
        // (docs/security.md#selinux). Compressed modules are decompressed
        // here rather than with MODULE_INIT_COMPRESSED_FILE, which needs
        // CONFIG_MODULE_DECOMPRESS (off on RHEL 9).
        if modinfo::is_compressed(path) || selinux::mode(&self.root).is_some() {
            let image = modinfo::read_module(path).map_err(|e| KernelError::Io(e.to_string()))?;
            // SAFETY: init_module(2) reads `len` bytes from `image` and a
            // NUL-terminated string from `params`; both outlive the call.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_init_module,
                    image.as_ptr(),
                    image.len() as libc::c_ulong,
                    params.as_ptr(),
                )
            };
            return if rc == 0 { Ok(()) } else { Err(last_errno()) };
        }
        let file =
            File::open(path).map_err(|e| KernelError::Io(format!("{}: {e}", path.display())))?;
        use std::os::fd::AsRawFd;
        // SAFETY: finit_module(2) with an open fd and a NUL-terminated string.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_finit_module,
                file.as_raw_fd(),
                params.as_ptr(),
                0 as libc::c_int,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(last_errno())
        }
    }

    fn unload(&mut self, name: &str) -> Result<(), KernelError> {
        let name = cstring(&kmm_day1_config::module_name_canonical(name))?;
        // SAFETY: delete_module(2) with a NUL-terminated name.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_delete_module,
                name.as_ptr(),
                libc::O_NONBLOCK as libc::c_uint,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(last_errno())
        }
    }

    fn unknown_symbols(&self, module: &str) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(mut kmsg) = File::options()
            .read(true)
            .custom_flags_nonblock()
            .open(self.root.join("dev/kmsg"))
        else {
            return out;
        };
        // Each read returns one record; EAGAIN at the end of the buffer.
        // Bounded so a flooded log cannot stall the boot.
        let mut buf = vec![0u8; 8192];
        for _ in 0..20_000 {
            match kmsg.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    if let Some(sym) = unknown_symbol_in(&rec, module) {
                        if !out.contains(&sym) {
                            out.push(sym);
                        }
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
        out
    }

    fn selinux_enforcing(&self) -> bool {
        selinux::mode(&self.root) == Some(selinux::Mode::Enforcing)
    }

    fn boot_id(&self) -> Option<String> {
        read_trimmed(&self.root.join("proc/sys/kernel/random/boot_id"))
    }

    fn modaliases(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(buses) = fs::read_dir(self.root.join("sys/bus")) else {
            return out;
        };
        for bus in buses.flatten() {
            let Ok(devices) = fs::read_dir(bus.path().join("devices")) else {
                continue;
            };
            for d in devices.flatten() {
                if let Some(a) = read_trimmed(&d.path().join("modalias")) {
                    if !a.is_empty() && !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
        }
        out
    }
}

/// `6,1234,5678,-;sfc: Unknown symbol mdio45_probe (err -2)` → `mdio45_probe`.
pub fn unknown_symbol_in(record: &str, module: &str) -> Option<String> {
    let msg = record.split_once(';').map_or(record, |(_, m)| m);
    let rest = msg
        .strip_prefix(module)?
        .strip_prefix(": Unknown symbol ")?;
    rest.split_ascii_whitespace().next().map(str::to_string)
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

/// A kernel in memory that records every call, for unit tests of the
/// replace logic (ordering, holders, rollback).
#[cfg(test)]
pub mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use kmm_day1_tests::scratch::TempDir;

    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct FakeModule {
        pub refcount: u32,
        pub users: Vec<String>,
        pub srcversion: Option<String>,
        pub path: Option<PathBuf>,
    }

    #[derive(Debug, Default)]
    pub struct Fake {
        pub modules: BTreeMap<String, FakeModule>,
        /// Every mutating call, in order: `load sfc /path params`, `unload sfc`,
        /// `firmware /path`.
        pub calls: Vec<String>,
        /// Fail the n-th mutating call (0-based) with this errno.
        pub fail_at: HashMap<usize, i32>,
        /// srcversion a module gets when loaded from a path.
        pub srcversions: HashMap<PathBuf, String>,
        /// Module dependencies the fake enforces on load: name → needs.
        pub needs: HashMap<String, Vec<String>>,
        pub firmware: Option<String>,
        pub enforce: Option<String>,
        pub unknown: Vec<String>,
        pub selinux_enforcing: bool,
        pub boot_id: Option<String>,
        pub modaliases: Vec<String>,
        /// Modules something else loads again (in-tree, srcversion OLD) right
        /// after each unload: one entry per time, as udev or
        /// systemd-modules-load would beside the replace unit.
        pub reappear: Vec<String>,
    }

    impl Fake {
        pub fn with_loaded(specs: &[(&str, &[&str], Option<&str>)]) -> Fake {
            let mut f = Fake::default();
            for (name, users, src) in specs {
                f.modules.insert(
                    name.to_string(),
                    FakeModule {
                        refcount: 0,
                        users: Vec::new(),
                        srcversion: src.map(str::to_string),
                        path: None,
                    },
                );
                for u in *users {
                    // `u` holds `name`.
                    let m = f.modules.get_mut(*name).unwrap();
                    m.users.push(u.to_string());
                    m.refcount += 1;
                }
            }
            f
        }

        fn step(&mut self, call: String) -> Result<(), KernelError> {
            let n = self.calls.len();
            self.calls.push(call);
            match self.fail_at.get(&n) {
                Some(&e) => Err(KernelError::Errno(e)),
                None => Ok(()),
            }
        }
    }

    impl Kernel for Fake {
        fn loaded(&self) -> io::Result<Vec<Loaded>> {
            Ok(self
                .modules
                .iter()
                .map(|(n, m)| Loaded {
                    name: n.clone(),
                    refcount: Some(m.refcount),
                    users: m.users.clone(),
                    state: "Live".into(),
                })
                .collect())
        }

        fn holders(&self, module: &str) -> io::Result<Vec<String>> {
            Ok(self
                .modules
                .get(module)
                .map(|m| m.users.clone())
                .unwrap_or_default())
        }

        fn srcversion(&self, module: &str) -> Option<String> {
            self.modules.get(module)?.srcversion.clone()
        }

        fn signatures_required(&self) -> Option<String> {
            self.enforce.clone()
        }

        fn firmware_path(&self) -> Option<String> {
            self.firmware.clone()
        }

        fn set_firmware_path(&mut self, path: &str) -> Result<(), KernelError> {
            self.step(format!("firmware {path}"))?;
            self.firmware = Some(path.to_string());
            Ok(())
        }

        fn load(&mut self, name: &str, path: &Path, params: &str) -> Result<(), KernelError> {
            self.step(format!("load {name} {} {params}", path.display()))?;
            if self.modules.contains_key(name) {
                return Err(KernelError::Errno(libc::EEXIST));
            }
            let needs = self.needs.get(name).cloned().unwrap_or_default();
            if let Some(missing) = needs.iter().find(|n| !self.modules.contains_key(*n)) {
                self.unknown = vec![format!("sym_of_{missing}")];
                return Err(KernelError::Errno(libc::ENOENT));
            }
            for n in &needs {
                let m = self.modules.get_mut(n).unwrap();
                m.users.push(name.to_string());
                m.refcount += 1;
            }
            self.modules.insert(
                name.to_string(),
                FakeModule {
                    refcount: 0,
                    users: Vec::new(),
                    srcversion: self.srcversions.get(path).cloned(),
                    path: Some(path.to_path_buf()),
                },
            );
            Ok(())
        }

        fn unload(&mut self, name: &str) -> Result<(), KernelError> {
            self.step(format!("unload {name}"))?;
            match self.modules.get(name) {
                None => return Err(KernelError::Errno(libc::ENOENT)),
                Some(m) if m.refcount > 0 => return Err(KernelError::Errno(libc::EWOULDBLOCK)),
                Some(_) => {}
            }
            self.modules.remove(name);
            for m in self.modules.values_mut() {
                if let Some(i) = m.users.iter().position(|u| u == name) {
                    m.users.remove(i);
                    m.refcount -= 1;
                }
            }
            if let Some(i) = self.reappear.iter().position(|r| r == name) {
                self.reappear.remove(i);
                self.modules.insert(
                    name.to_string(),
                    FakeModule {
                        srcversion: Some("OLD".into()),
                        ..FakeModule::default()
                    },
                );
            }
            Ok(())
        }

        fn unknown_symbols(&self, _module: &str) -> Vec<String> {
            self.unknown.clone()
        }

        fn selinux_enforcing(&self) -> bool {
            self.selinux_enforcing
        }

        fn boot_id(&self) -> Option<String> {
            self.boot_id.clone()
        }

        fn modaliases(&self) -> Vec<String> {
            self.modaliases.clone()
        }
    }

    #[test]
    fn real_reads_proc_and_sys_under_a_root() {
        let tmp = TempDir::new("kernel").unwrap();
        // Not created yet: the first checks are against a root with nothing in it.
        let root = tmp.join("root");
        let k = Real::at(root.clone());
        assert_eq!(k.boot_id(), None);
        assert!(!k.has_module_sysfs());
        assert!(
            k.loaded().unwrap().is_empty(),
            "no /proc/modules: nothing loaded"
        );
        assert_eq!(k.signatures_required(), None);
        assert!(!k.selinux_enforcing(), "no selinuxfs: not enforcing");
        fs::create_dir_all(root.join("sys/fs/selinux")).unwrap();
        fs::write(root.join("sys/fs/selinux/enforce"), "0").unwrap();
        assert!(!k.selinux_enforcing(), "permissive is not enforcing");
        fs::write(root.join("sys/fs/selinux/enforce"), "1").unwrap();
        assert!(k.selinux_enforcing());
        fs::create_dir_all(root.join("proc")).unwrap();
        fs::write(
            root.join("proc/modules"),
            "mdio 16384 1 sfc, Live 0xffffffffc0a0f000\nsfc 659456 0 - Live 0x0\n",
        )
        .unwrap();
        assert_eq!(k.loaded().unwrap().len(), 2);
        fs::create_dir_all(root.join("sys/module/sfc")).unwrap();
        fs::write(root.join("sys/module/sfc/srcversion"), "ABC123\n").unwrap();
        assert_eq!(k.srcversion("sfc").as_deref(), Some("ABC123"));
        assert!(k.has_module_sysfs());
        assert!(k.has_module("sfc") && !k.has_module("mdio"));
        fs::create_dir_all(root.join("proc/sys/kernel/random")).unwrap();
        fs::write(root.join("proc/sys/kernel/random/boot_id"), "b1\n").unwrap();
        assert_eq!(k.boot_id().as_deref(), Some("b1"));
        let stand_in = root.join("other-sys");
        fs::create_dir_all(stand_in.join("module/sfc")).unwrap();
        fs::write(stand_in.join("module/sfc/srcversion"), "DEF\n").unwrap();
        let k2 = Real::at(root.clone()).with_sys(&stand_in);
        assert_eq!(k2.srcversion("sfc").as_deref(), Some("DEF"));
        fs::create_dir_all(root.join("sys/module/module/parameters")).unwrap();
        fs::write(root.join(SIG_ENFORCE_PARAM), "N\n").unwrap();
        fs::create_dir_all(root.join("sys/kernel/security")).unwrap();
        fs::write(root.join(LOCKDOWN), "[none] integrity confidentiality\n").unwrap();
        assert_eq!(k.signatures_required(), None);
        fs::write(root.join(LOCKDOWN), "none [integrity] confidentiality\n").unwrap();
        assert!(k.signatures_required().unwrap().contains("integrity"));
        fs::write(root.join(SIG_ENFORCE_PARAM), "Y\n").unwrap();
        assert!(k.signatures_required().unwrap().contains("sig_enforce"));
    }

    #[test]
    fn kmsg_unknown_symbol_records() {
        assert_eq!(
            unknown_symbol_in(
                "4,1234,5678,-;sfc: Unknown symbol mdio45_probe (err -2)\n",
                "sfc"
            )
            .as_deref(),
            Some("mdio45_probe")
        );
        assert_eq!(
            unknown_symbol_in("4,1,2,-;sfc_x: Unknown symbol a (err -2)", "sfc"),
            None
        );
    }

    #[test]
    fn real_syscalls_report_errno() {
        // This machine's kernel may lack module support (ENOSYS) or we may
        // lack the capability (EPERM); either way unloading a module that
        // does not exist must fail with an errno, never succeed.
        let mut k = Real::new();
        let e = k.unload("kmm_day1_no_such_module").unwrap_err();
        assert!(
            matches!(e.errno(), Some(libc::ENOENT | libc::ENOSYS | libc::EPERM)),
            "{e:?}"
        );
    }
}
