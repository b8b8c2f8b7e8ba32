//! Loopback servers for tests: 127.0.0.1 only, never a name to resolve.
//!
//! ```ignore
//! let srv = kmm_day1_tests::net::Loopback::start(|mut conn| { /* answer one connection */ });
//! let url = format!("http://127.0.0.1:{}/v2/", srv.port);
//! ```

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

/// A port nobody listens on right now (bound and released: a connection
/// to it is refused until someone else takes it).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A server on a fresh loopback port that runs `handle` for each
/// connection on its own thread; it stops accepting when dropped
/// (connections already handed out run to their end).
#[derive(Debug)]
pub struct Loopback {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Loopback {
    pub fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Result<Loopback> {
        Loopback::serve(TcpListener::bind("127.0.0.1:0")?, handle)
    }

    /// As [`Loopback::start`] on a listener the caller bound, for a handler
    /// that has to know its own port before the first connection.
    pub fn serve(
        listener: TcpListener,
        handle: impl Fn(TcpStream) + Send + Sync + 'static,
    ) -> Result<Loopback> {
        let port = listener.local_addr()?.port();
        // Non-blocking accept, so the loop sees `stop` without a last
        // connection to wake it.
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = Arc::new(handle);
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        if conn.set_nonblocking(false).is_err() {
                            continue;
                        }
                        let h = handle.clone();
                        std::thread::spawn(move || h(conn));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Loopback { port, stop })
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn serves_each_connection_then_refuses_after_drop() {
        let srv = Loopback::start(|mut c| {
            let mut b = [0u8; 4];
            c.read_exact(&mut b).unwrap();
            c.write_all(&b.map(|x| x.to_ascii_uppercase())).unwrap();
        })
        .unwrap();
        for _ in 0..2 {
            let mut c = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
            c.write_all(b"ping").unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap();
            assert_eq!(out, "PING");
        }
        let port = srv.port;
        drop(srv);
        // The accept loop notices within one 5 ms sleep and drops the
        // listener with it.
        let refused = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            TcpStream::connect(("127.0.0.1", port)).is_err()
        });
        assert!(refused, "port {port} still accepts after drop");
    }
}
