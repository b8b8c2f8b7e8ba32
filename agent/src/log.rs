//! Logging for every phase: the journal when systemd runs us, stderr
//! otherwise. About 100 lines instead of `tracing` + `tracing-journald`
//! (docs/pull.md has the size figures behind that choice).
//!
//! ```ignore
//! use crate::log;
//! log::info!("pulled {digest}");
//! log::send(log::Priority::Warning, &[("KMM_DAY1_CONFIG", name)], format_args!("…"));
//! ```
//!
//! Under systemd (`JOURNAL_STREAM` names our stderr) each message is one
//! datagram of the journal's native protocol, so it carries `PRIORITY` and
//! any `KMM_DAY1_*` fields; if the socket is unusable the line goes to stderr
//! with a `<N>` prefix, which journald also turns into a priority.
//!
//! Each datagram also names our unit in `OBJECT_SYSTEMD_UNIT`. journald ties
//! a datagram to a unit by the sender's cgroup, read when it processes the
//! datagram; the replace unit runs before journald on a node without a
//! systemd initramfs and exits within milliseconds, so by then the cgroup is
//! gone and `_SYSTEMD_UNIT` is missing. `journalctl -u` and `systemctl
//! status` also match `OBJECT_SYSTEMD_UNIT` on messages from root (`_UID=0`,
//! which journald takes from the socket's credentials, not from us), so the
//! lines show there either way, with their `KMM_DAY1_*` fields.

use std::fmt;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
const IDENTIFIER: &str = "kmm-day1-agent";

/// `MESSAGE_ID`s, one per event type; fixed forever (docs/status.md lists
/// them): `journalctl MESSAGE_ID=…` and log shippers select on them.
pub mod id {
    /// pull: a config's new tree was published.
    pub const PULL_PUBLISHED: &str = "b346e1b6498d483893759e3620ddd133";
    /// pull: a config's pull failed.
    pub const PULL_FAILED: &str = "b5fd82ac74a84377a50603a926c6947a";
    /// pull: the one summary line of a run.
    pub const PULL_SUMMARY: &str = "6ea2c4bc55214282a3cf065ce2e89ef3";
    /// pull: a reboot was requested to swap the modules.
    pub const REBOOT: &str = "e0138b0f6ef241059ecaf26614893f69";
    /// pull: the reboot guard refused a reboot.
    pub const REBOOT_GUARD: &str = "89e236a01f8541ab861c9fd53b884a09";
    /// replace: a config's modules were loaded.
    pub const REPLACE_LOADED: &str = "8ebddb18da9d4c12a626a0a07df5b92c";
    /// replace: a config's swap failed (rolled back or not).
    pub const REPLACE_FAILED: &str = "19f395db49a942f0a0c31f30e8241d18";
    /// replace: nothing to do for a config (already loaded, waiting for pull).
    pub const REPLACE_NOOP: &str = "976e1dddef0b4152b6e313296474fa3a";
    /// replace: a config's tree is quarantined by the crash-loop guard.
    pub const REPLACE_QUARANTINED: &str = "40b2f767608d406fbe59efcbe779a27c";
    /// confirm (or pull at its start): a boot's swap confirmed healthy.
    pub const CONFIRMED: &str = "8fe3568faf1e4edfac2fb1990ddbe743";
}

/// Debug messages are dropped unless `KMM_DAY1_DEBUG` is set: a quiet run
/// is one line in the journal.
fn debug_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("KMM_DAY1_DEBUG").is_some_and(|v| !v.is_empty()))
}

/// The journal's socket; `KMM_DAY1_JOURNAL_SOCKET` overrides it (tests).
fn journal_socket() -> std::path::PathBuf {
    std::env::var_os("KMM_DAY1_JOURNAL_SOCKET")
        .map_or_else(|| JOURNAL_SOCKET.into(), std::path::PathBuf::from)
}

/// syslog(3) priorities, as the journal's `PRIORITY` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // every level has a macro; not all are used yet
pub enum Priority {
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

#[derive(Debug)]
enum Sink {
    /// The native socket, and the unit to name in `OBJECT_SYSTEMD_UNIT`.
    Journal(UnixDatagram, Option<String>),
    /// `<N>`-prefixed stderr: journald without the native socket.
    PrefixedStderr,
    /// A person at a terminal.
    Stderr,
}

fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| {
        if !stderr_is_journal() {
            return Sink::Stderr;
        }
        match UnixDatagram::unbound() {
            Ok(s) if s.connect(journal_socket()).is_ok() => Sink::Journal(s, own_unit()),
            _ => Sink::PrefixedStderr,
        }
    })
}

/// systemd sets `JOURNAL_STREAM=<dev>:<inode>` of the stream it connected to
/// stderr; a child whose stderr was redirected must not trust it.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = var.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let meta = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata());
    meta.is_ok_and(|m| dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino()))
}

/// The service we run in, from our cgroup (`0::/system.slice/x.service`),
/// read at the first message while the process is surely alive.
fn own_unit() -> Option<String> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    unit_of_cgroups(&cgroups).map(str::to_owned)
}

/// The innermost `.service` of the unified hierarchy's line (cgroup v2), or
/// of the `name=systemd` line on a legacy hierarchy.
fn unit_of_cgroups(cgroups: &str) -> Option<&str> {
    cgroups
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(':')?;
            let (controllers, path) = rest.split_once(':')?;
            (controllers.is_empty() || controllers == "name=systemd").then_some(path)
        })
        .find_map(|path| path.rsplit('/').find(|c| c.ends_with(".service")))
}

/// Log one message with extra journal fields (upper-case names, e.g.
/// `KMM_DAY1_CONFIG`); on stderr the fields are not shown.
pub fn send(priority: Priority, fields: &[(&str, &str)], args: fmt::Arguments<'_>) {
    if priority == Priority::Debug && !debug_enabled() {
        return;
    }
    let message = args.to_string();
    match sink() {
        Sink::Journal(sock, unit) => {
            let mut datagram = journal_datagram(priority, fields, &message);
            if let Some(unit) = unit {
                push_field(&mut datagram, "OBJECT_SYSTEMD_UNIT", unit);
            }
            if sock.send(&datagram).is_err() {
                stderr_line(true, priority, &message);
            }
        }
        Sink::PrefixedStderr => stderr_line(true, priority, &message),
        Sink::Stderr => stderr_line(false, priority, &message),
    }
}

fn stderr_line(prefixed: bool, priority: Priority, message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = if prefixed {
        writeln!(err, "<{}>{message}", priority as u8)
    } else {
        let label = match priority {
            Priority::Error => "error: ",
            Priority::Warning => "warning: ",
            _ => "",
        };
        writeln!(err, "{label}{message}")
    };
}

/// The journal's native protocol: `NAME=value\n`, or for values holding a
/// newline `NAME\n<u64 LE length><value>\n`.
fn journal_datagram(priority: Priority, fields: &[(&str, &str)], message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 128);
    let prio = (priority as u8).to_string();
    let fixed = [
        ("MESSAGE", message),
        ("PRIORITY", prio.as_str()),
        ("SYSLOG_IDENTIFIER", IDENTIFIER),
    ];
    for (name, value) in fixed.iter().chain(fields) {
        push_field(&mut out, name, value);
    }
    out
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

/// Send one datagram to a journal socket at `path` (tests bind their own).
#[cfg(test)]
fn send_to(
    path: &std::path::Path,
    priority: Priority,
    fields: &[(&str, &str)],
    message: &str,
) -> bool {
    UnixDatagram::unbound()
        .and_then(|s| s.send_to(&journal_datagram(priority, fields, message), path))
        .is_ok()
}

#[allow(unused_macros)]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::send($crate::log::Priority::Error, &[], format_args!($($arg)*)) };
}
#[allow(unused_macros)]
macro_rules! warning {
    ($($arg:tt)*) => { $crate::log::send($crate::log::Priority::Warning, &[], format_args!($($arg)*)) };
}
#[allow(unused_macros)]
macro_rules! notice {
    ($($arg:tt)*) => { $crate::log::send($crate::log::Priority::Notice, &[], format_args!($($arg)*)) };
}
#[allow(unused_macros)]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::send($crate::log::Priority::Info, &[], format_args!($($arg)*)) };
}
#[allow(unused_macros)]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::send($crate::log::Priority::Debug, &[], format_args!($($arg)*)) };
}
#[allow(unused_imports)]
pub(crate) use {debug, error, info, notice, warning};

#[cfg(test)]
mod tests {
    use super::*;
    use kmm_day1_tests::scratch::TempDir;

    #[test]
    fn datagram_uses_native_protocol_fields() {
        let d = journal_datagram(
            Priority::Warning,
            &[("KMM_DAY1_CONFIG", "sfc")],
            "two\nlines",
        );
        let mut expected = b"MESSAGE\n".to_vec();
        expected.extend_from_slice(&9u64.to_le_bytes());
        expected.extend_from_slice(
            b"two\nlines\nPRIORITY=4\nSYSLOG_IDENTIFIER=kmm-day1-agent\nKMM_DAY1_CONFIG=sfc\n",
        );
        assert_eq!(d, expected);
    }

    #[test]
    fn datagram_reaches_a_bound_socket() {
        let tmp = TempDir::new("log").unwrap();
        let path = tmp.join("socket");
        let server = UnixDatagram::bind(&path).unwrap();
        assert!(send_to(&path, Priority::Info, &[], "pulled sha256:ab"));
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(
            got.starts_with("MESSAGE=pulled sha256:ab\nPRIORITY=6\n"),
            "{got}"
        );
    }

    #[test]
    fn unit_comes_from_the_cgroup_file() {
        let v2 = "0::/system.slice/kmm-day1-replace.service\n";
        assert_eq!(unit_of_cgroups(v2), Some("kmm-day1-replace.service"));
        // Legacy hierarchy: the controllers' lines come first.
        let v1 = "12:memory:/system.slice/kmm-day1-pull.service\n\
                  1:name=systemd:/system.slice/kmm-day1-pull.service\n";
        assert_eq!(unit_of_cgroups(v1), Some("kmm-day1-pull.service"));
        // A sub-cgroup of a delegated service still names the service.
        let nested = "0::/system.slice/x.service/payload\n";
        assert_eq!(unit_of_cgroups(nested), Some("x.service"));
        // A login session or a container: no service to name.
        assert_eq!(
            unit_of_cgroups("0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
        assert_eq!(unit_of_cgroups("0::/\n"), None);
        assert_eq!(unit_of_cgroups(""), None);
    }
}
