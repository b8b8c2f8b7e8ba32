//! sd_notify(3) without libsystemd: one datagram to `$NOTIFY_SOCKET`.
//! The units are `Type=notify`, so `READY=1` ends their start-up, and the
//! `STATUS=` text is what `systemctl status` shows (part of the interface).

use std::os::unix::net::UnixDatagram;

/// Send `state` (`READY=1`, `STATUS=…`); false when not under systemd or
/// the send failed (never fatal: the unit then just lacks a status text).
pub fn notify(state: &str) -> bool {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(addr) => send(&addr.to_string_lossy(), state),
        None => false,
    }
}

pub fn status(text: &str) -> bool {
    notify(&format!("STATUS={}", text.replace('\n', " ")))
}

pub fn ready(text: &str) -> bool {
    notify(&format!("READY=1\nSTATUS={}", text.replace('\n', " ")))
}

fn send(addr: &str, state: &str) -> bool {
    let Ok(sock) = UnixDatagram::unbound() else {
        return false;
    };
    // `@name` is an abstract socket (no file), as systemd hands out when
    // /run is unavailable.
    let sent = match addr.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
        }
        None => sock.send_to(state.as_bytes(), addr),
    };
    sent.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmm_day1_tests::scratch::TempDir;

    #[test]
    fn sends_to_path_and_abstract_sockets() {
        let tmp = TempDir::new("notify").unwrap();
        let path = tmp.join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        assert!(send(path.to_str().unwrap(), "STATUS=pulling"));
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=pulling");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("kmm-day1-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abs = UnixDatagram::bind_addr(&addr).unwrap();
        assert!(send(&format!("@{name}"), "READY=1"));
        let n = abs.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(!send(tmp.join("absent").to_str().unwrap(), "READY=1"));
    }
}
