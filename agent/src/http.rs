//! A minimal HTTP/1.1 client: one request per connection (`Connection:
//! close`), GET/HEAD, `Content-Length`, chunked and until-close bodies, over
//! TCP or rustls, directly or through an HTTP proxy (CONNECT for https,
//! absolute-form for http), with connect/read/write timeouts.
//!
//! Why not a crate: ureq+rustls costs ~0.4 MB more in the static agent than
//! rustls alone (docs/pull-http.md); a registry pull needs only this much.
//! Redirects, auth and retries are the caller's (registry.rs), which knows
//! which headers may follow a redirect.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};

use crate::tls::{self, TlsSettings};

/// Connect timeout per address; DNS has its own (the resolver's).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// No byte for this long aborts the request: a slow drip cannot hang a pull.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Status line plus headers; registries send a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// DNS, connect, reset, timeout: worth retrying.
    #[error("{0}")]
    Network(String),
    /// The peer's certificate was refused (retrying will not help).
    #[error("{0}")]
    Certificate(String),
    /// The TLS handshake failed for another reason, e.g. the server speaks
    /// plain HTTP.
    #[error("{0}")]
    Tls(String),
    /// The response was not HTTP we understand.
    #[error("{0}")]
    Protocol(String),
}

/// An `http`/`https` URL, split for connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Option<Url> {
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return None;
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        // Userinfo is never used for registries; drop it rather than send it.
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = split_host_port(authority)?;
        let port = port.unwrap_or(if https { 443 } else { 80 });
        if host.is_empty() {
            return None;
        }
        Some(Url {
            https,
            host,
            port,
            path,
        })
    }

    /// `Location` relative to this URL (absolute, scheme-relative or
    /// absolute-path forms; registries and CDNs send nothing else).
    pub fn join(&self, location: &str) -> Option<Url> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Url::parse(location)
        } else if let Some(rest) = location.strip_prefix("//") {
            Url::parse(&format!("{}://{rest}", self.scheme()))
        } else if location.starts_with('/') {
            Some(Url {
                path: location.to_string(),
                ..self.clone()
            })
        } else {
            let dir = self.path.split('?').next().unwrap_or("/");
            let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
            Some(Url {
                path: format!("{dir}{location}"),
                ..self.clone()
            })
        }
    }

    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// `host[:port]` as in the Host header and certs.d (default port omitted).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.https { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Same scheme, host and port: credentials may be sent.
    pub fn same_origin(&self, other: &Url) -> bool {
        self.https == other.https
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The query may carry a CDN signature; it is not worth printing.
        let path = self.path.split('?').next().unwrap_or_default();
        write!(f, "{}://{}{path}", self.scheme(), self.authority())
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
pub fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), Some(p.parse().ok()?))),
        None => Some((authority.to_string(), None)),
    }
}

/// The proxy settings of the environment (`/etc/mco/proxy.env`).
#[derive(Debug, Clone, Default)]
pub struct Proxy {
    pub http: Option<Url>,
    pub https: Option<Url>,
    /// `Proxy-Authorization` value for the proxy, from its URL's userinfo.
    http_auth: Option<String>,
    https_auth: Option<String>,
    pub no_proxy: Vec<String>,
}

impl Proxy {
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, upper case first as Go does.
    pub fn from_env() -> Proxy {
        let var = |name: &str| {
            std::env::var(name.to_ascii_uppercase())
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| std::env::var(name).ok().filter(|v| !v.is_empty()))
        };
        Proxy::new(
            var("http_proxy").as_deref(),
            var("https_proxy").as_deref(),
            var("no_proxy").as_deref(),
        )
    }

    pub fn new(http: Option<&str>, https: Option<&str>, no_proxy: Option<&str>) -> Proxy {
        let parse = |v: Option<&str>| -> (Option<Url>, Option<String>) {
            let Some(v) = v else { return (None, None) };
            let full = if v.contains("://") {
                v.to_string()
            } else {
                format!("http://{v}")
            };
            let auth = full
                .split_once("://")
                .and_then(|(_, r)| r.split('/').next())
                .and_then(|a| a.rsplit_once('@'))
                .map(|(userinfo, _)| {
                    format!(
                        "Basic {}",
                        crate::auth::base64_encode(percent_decode(userinfo).as_bytes())
                    )
                });
            (Url::parse(&full), auth)
        };
        let (http, http_auth) = parse(http);
        let (https, https_auth) = parse(https);
        Proxy {
            http,
            https,
            http_auth,
            https_auth,
            no_proxy: no_proxy
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    /// The proxy for `url`, if any, and its credentials.
    fn for_url(&self, url: &Url) -> Option<(&Url, Option<&str>)> {
        let (proxy, auth) = if url.https {
            (self.https.as_ref()?, self.https_auth.as_deref())
        } else {
            (self.http.as_ref()?, self.http_auth.as_deref())
        };
        if self.bypass(&url.host, url.port) {
            None
        } else {
            Some((proxy, auth))
        }
    }

    /// `NO_PROXY` as Go's httpproxy reads it: `*`, `host`, `.suffix`,
    /// `host:port`, IPs and CIDRs; loopback is never proxied.
    pub fn bypass(&self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let ip: Option<IpAddr> = host.parse().ok();
        if host == "localhost" || ip.is_some_and(|i| i.is_loopback()) {
            return true;
        }
        self.no_proxy.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some((net, bits)) = entry.split_once('/') {
                return match (ip, net.parse::<IpAddr>(), bits.parse::<u32>()) {
                    (Some(a), Ok(n), Ok(b)) => in_cidr(a, n, b),
                    _ => false,
                };
            }
            let (name, eport) = match split_host_port(entry) {
                Some((h, p)) => (h, p),
                None => return false,
            };
            if eport.is_some_and(|p| p != port) {
                return false;
            }
            if let (Some(a), Ok(b)) = (ip, name.parse::<IpAddr>()) {
                return a == b;
            }
            if let Some(suffix) = name.strip_prefix('.') {
                return host.ends_with(&format!(".{suffix}"));
            }
            let name = name.strip_prefix("*.").map_or(name.as_str(), |s| s);
            host == name || host.ends_with(&format!(".{name}"))
        })
    }
}

fn in_cidr(addr: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A connection, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// The client: TLS settings and proxy; no connection is kept between requests.
#[derive(Debug)]
pub struct Client {
    pub tls: TlsSettings,
    pub proxy: Proxy,
}

/// A response whose body is read through [`Read`].
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    body: Body,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .finish()
    }
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn content_length(&self) -> Option<u64> {
        match self.body {
            Body::Length(_, n) => Some(n),
            _ => None,
        }
    }

    /// The body if it has at most `cap` bytes, `None` if it is longer (a
    /// hostile or broken server cannot make us buffer without bound).
    pub fn read_capped(&mut self, cap: usize) -> io::Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        (&mut self.body)
            .take(cap as u64 + 1)
            .read_to_end(&mut buf)?;
        Ok((buf.len() <= cap).then_some(buf))
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read(buf)
    }
}

enum Body {
    Length(BufReader<Stream>, u64),
    Chunked(BufReader<Stream>, Chunk),
    UntilClose(BufReader<Stream>),
    Empty,
}

#[derive(Clone, Copy)]
enum Chunk {
    /// Bytes left in the current chunk; 0 means a size line comes next.
    Data(u64),
    Done,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::Empty => Ok(0),
            Body::UntilClose(r) => r.read(buf),
            Body::Length(r, left) => {
                if *left == 0 {
                    return Ok(0);
                }
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("connection closed with {left} bytes of the body missing"),
                    ));
                }
                *left -= n as u64;
                Ok(n)
            }
            Body::Chunked(r, state) => loop {
                match *state {
                    Chunk::Done => return Ok(0),
                    Chunk::Data(0) => {
                        let line = read_line(r)?;
                        let size = line.split(';').next().unwrap_or_default().trim();
                        let size = u64::from_str_radix(size, 16).map_err(|_| {
                            io::Error::new(io::ErrorKind::InvalidData, "bad chunk size line")
                        })?;
                        if size == 0 {
                            // Trailers, up to the empty line.
                            while !read_line(r)?.is_empty() {}
                            *state = Chunk::Done;
                        } else {
                            *state = Chunk::Data(size);
                        }
                    }
                    Chunk::Data(left) => {
                        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                        let n = r.read(&mut buf[..want])?;
                        if n == 0 {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "connection closed inside a chunk",
                            ));
                        }
                        let left = left - n as u64;
                        if left == 0 {
                            // The CRLF after the chunk data.
                            read_line(r)?;
                        }
                        // 0 left means "read the next size line" on the next call.
                        *state = Chunk::Data(left);
                        return Ok(n);
                    }
                }
            },
        }
    }
}

/// One CRLF- (or LF-) terminated line without its terminator.
fn read_line(r: &mut BufReader<Stream>) -> io::Result<String> {
    let mut line = Vec::new();
    (&mut *r).take(8192).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed in the middle of a line",
        ));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "non-UTF-8 header line"))
}

impl Client {
    pub fn new(tls: TlsSettings, proxy: Proxy) -> Client {
        Client { tls, proxy }
    }

    /// Send `method url` with `headers`; the response, whatever its status.
    /// `skip_verify` accepts any TLS certificate.
    pub fn send(
        &mut self,
        method: &str,
        url: &Url,
        headers: &[(&str, String)],
        skip_verify: bool,
    ) -> Result<Response, HttpError> {
        let proxy = self
            .proxy
            .for_url(url)
            .map(|(p, a)| (p.clone(), a.map(str::to_string)));
        let (mut stream, absolute_form) = match &proxy {
            None => (self.connect_direct(url, skip_verify)?, false),
            Some((p, auth)) if url.https => (
                self.connect_tunnel(p, auth.as_deref(), url, skip_verify)?,
                false,
            ),
            Some((p, _)) => (Stream::Plain(tcp_connect(&p.host, p.port)?), true),
        };
        let target = if absolute_form {
            format!("http://{}{}", url.authority(), url.path)
        } else {
            url.path.clone()
        };
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: kmm-day1-agent/{}\r\nConnection: close\r\n",
            url.authority(),
            env!("CARGO_PKG_VERSION")
        );
        if absolute_form {
            if let Some((_, Some(auth))) = &proxy {
                head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
            }
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let hostname = url.authority();
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.flush())
            .map_err(|e| io_error(&hostname, &e))?;
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader).map_err(|e| io_error(&hostname, &e))?;
        let header = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_str())
        };
        let body =
            if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
                Body::Empty
            } else if header("transfer-encoding")
                .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
            {
                Body::Chunked(reader, Chunk::Data(0))
            } else if let Some(len) = header("content-length") {
                let len = len.trim().parse().map_err(|_| {
                    HttpError::Protocol(format!("{hostname}: bad Content-Length `{len}`"))
                })?;
                Body::Length(reader, len)
            } else {
                Body::UntilClose(reader)
            };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn connect_direct(&mut self, url: &Url, skip_verify: bool) -> Result<Stream, HttpError> {
        let tcp = tcp_connect(&url.host, url.port)?;
        if url.https {
            self.tls_over(tcp, url, skip_verify)
        } else {
            Ok(Stream::Plain(tcp))
        }
    }

    /// `CONNECT host:port` through `proxy`, then TLS to the registry.
    fn connect_tunnel(
        &mut self,
        proxy: &Url,
        auth: Option<&str>,
        url: &Url,
        skip_verify: bool,
    ) -> Result<Stream, HttpError> {
        if proxy.https {
            return Err(HttpError::Protocol(format!(
                "proxy {proxy}: only http:// proxies are supported; set HTTPS_PROXY=http://…"
            )));
        }
        let mut tcp = tcp_connect(&proxy.host, proxy.port)?;
        let target = format!(
            "{}:{}",
            if url.host.contains(':') {
                format!("[{}]", url.host)
            } else {
                url.host.clone()
            },
            url.port
        );
        let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(a) = auth {
            req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        let pname = proxy.authority();
        tcp.write_all(req.as_bytes())
            .map_err(|e| io_error(&pname, &e))?;
        // Read the proxy's answer byte by byte: nothing after its blank line
        // may be consumed, that is the TLS stream.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
            if head.len() > MAX_HEAD {
                return Err(HttpError::Protocol(format!(
                    "proxy {pname}: response head too large"
                )));
            }
            match tcp.read(&mut byte) {
                Ok(0) => {
                    return Err(HttpError::Network(format!(
                        "proxy {pname} closed the connection during CONNECT {target}"
                    )))
                }
                Ok(_) => head.push(byte[0]),
                Err(e) => return Err(io_error(&pname, &e)),
            }
        }
        let text = String::from_utf8_lossy(&head);
        let status = text.split_whitespace().nth(1).unwrap_or_default();
        if status != "200" {
            let line = text.lines().next().unwrap_or_default();
            return Err(HttpError::Network(format!(
                "proxy {pname} refused CONNECT {target}: {line}"
            )));
        }
        self.tls_over(tcp, url, skip_verify)
    }

    fn tls_over(
        &mut self,
        tcp: TcpStream,
        url: &Url,
        skip_verify: bool,
    ) -> Result<Stream, HttpError> {
        let authority = url.authority();
        let config = self.tls.config_for(&authority, skip_verify);
        let name = tls::server_name(&url.host)
            .ok_or_else(|| HttpError::Tls(format!("{authority}: not a valid TLS server name")))?;
        let conn = ClientConnection::new(Arc::clone(&config), name)
            .map_err(|e| HttpError::Tls(format!("{authority}: {e}")))?;
        let mut s = StreamOwned::new(conn, tcp);
        // Handshake now, so certificate errors surface here with advice.
        while s.conn.is_handshaking() {
            if let Err(e) = s.conn.complete_io(&mut s.sock) {
                return Err(self.tls_error(&authority, &e));
            }
        }
        Ok(Stream::Tls(Box::new(s)))
    }

    #[inline(never)]
    fn tls_error(&self, authority: &str, e: &io::Error) -> HttpError {
        let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
        match inner {
            Some(rustls::Error::InvalidCertificate(c)) => {
                let dirs = || {
                    let dirs: Vec<String> = self
                        .tls
                        .ca_dirs(authority)
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect();
                    dirs.join(" or ")
                };
                let (reason, advice) = certificate_problem(c, dirs);
                HttpError::Certificate(format!(
                    "{authority}: TLS certificate not trusted ({reason}): {advice}"
                ))
            }
            Some(other) => HttpError::Tls(format!(
                "{authority}: TLS handshake failed: {}",
                handshake_problem(other, authority)
            )),
            None => io_error(authority, e),
        }
    }
}

/// Why a registry's certificate was refused and what to do about it, in our
/// own words: rustls' texts for these are `Debug` renderings (enum variant
/// names, `IpAddress(V4(…))`) that the release build does not keep.
#[inline(never)]
fn certificate_problem(
    c: &rustls::CertificateError,
    dirs: impl Fn() -> String,
) -> (String, String) {
    use rustls::CertificateError as C;
    let add_ca = || {
        format!(
            "add the registry's CA certificate as a *.crt file in {}",
            dirs()
        )
    };
    let fix = || {
        format!(
            "fix the registry's certificate or add its CA as a *.crt file in {}",
            dirs()
        )
    };
    let renew = "renew the registry's certificate, or correct the node's clock if it is wrong";
    match c {
        C::UnknownIssuer => ("issued by an unknown CA".into(), add_ca()),
        C::BadSignature => ("its signature does not verify".into(), add_ca()),
        C::NotValidForName => (
            "not issued for this host name".into(),
            "use the host name the certificate was issued for".into(),
        ),
        C::NotValidForNameContext { presented, .. } => {
            // webpki renders SANs as `DnsName("a")` / `IpAddress(1.2.3.4)`.
            let names: Vec<&str> = presented
                .iter()
                .map(|n| {
                    n.strip_prefix("DnsName(\"")
                        .and_then(|n| n.strip_suffix("\")"))
                        .or_else(|| {
                            n.strip_prefix("IpAddress(")
                                .and_then(|n| n.strip_suffix(')'))
                        })
                        .unwrap_or(n)
                })
                .collect();
            let reason = if names.is_empty() {
                "it names no host in subjectAltName".to_string()
            } else {
                format!("it is issued for {}", names.join(", "))
            };
            (
                reason,
                "use the host name the certificate was issued for".into(),
            )
        }
        C::Expired => ("expired".into(), renew.into()),
        C::ExpiredContext { time, not_after } => (
            format!(
                "expired: valid until {} (UNIX time), the node's clock says {}",
                not_after.as_secs(),
                time.as_secs()
            ),
            renew.into(),
        ),
        C::NotValidYet => ("not valid yet".into(), renew.into()),
        C::NotValidYetContext { time, not_before } => (
            format!(
                "not valid yet: valid from {} (UNIX time), the node's clock says {}",
                not_before.as_secs(),
                time.as_secs()
            ),
            renew.into(),
        ),
        C::Revoked => ("revoked".into(), fix()),
        C::BadEncoding => ("malformed".into(), fix()),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => (
            "not issued for TLS server authentication (extended key usage)".into(),
            fix(),
        ),
        C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => (
            "signed with an algorithm the agent does not accept".into(),
            "sign it with RSA (2048-8192 bits), ECDSA P-256/P-384 or Ed25519".into(),
        ),
        C::UnhandledCriticalExtension => (
            "it has a critical extension the agent does not understand".into(),
            fix(),
        ),
        C::Other(e) => (e.to_string(), fix()),
        other => (other.to_string(), fix()),
    }
}

/// A failed handshake that is not about the certificate, with what the
/// registry side has to offer for the agent to connect.
#[inline(never)]
fn handshake_problem(e: &rustls::Error, authority: &str) -> String {
    use rustls::{AlertDescription as A, Error as E, PeerIncompatible as P};
    const OFFER: &str =
        "the agent offers TLS 1.3 and 1.2 with AES-GCM and ECDHE over X25519, P-256 or P-384";
    match e {
        E::AlertReceived(A::HandshakeFailure | A::InsufficientSecurity) => {
            format!("the registry refused every cipher suite the agent offers ({OFFER})")
        }
        E::AlertReceived(A::ProtocolVersion) => {
            format!("the registry speaks neither TLS 1.3 nor 1.2 ({OFFER})")
        }
        E::AlertReceived(A::UnrecognisedName) => {
            "the registry does not serve this host name (SNI): use the name its certificate is issued for".into()
        }
        E::AlertReceived(A::CertificateRequired | A::NoCertificate) => {
            "the registry requires a client certificate, which the agent does not support"
                .into()
        }
        E::AlertReceived(a) => format!(
            "the registry ended the handshake with TLS alert {}",
            u8::from(*a)
        ),
        E::PeerIncompatible(
            P::NoCipherSuitesInCommon
            | P::NoKxGroupsInCommon
            | P::ServerDoesNotSupportTls12Or13
            | P::ServerTlsVersionIsDisabledByOurConfig
            | P::NoSignatureSchemesInCommon,
        ) => format!("the registry has no TLS parameters in common with the agent ({OFFER})"),
        E::PeerIncompatible(_) => format!("the registry's TLS is incompatible with the agent ({OFFER})"),
        E::PeerMisbehaved(_) | E::DecryptError | E::PeerSentOversizedRecord => {
            "the registry broke the TLS protocol".into()
        }
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => format!(
            "the answer is not TLS (is {authority} a TLS server? set `insecure` for plain HTTP)"
        ),
        E::NoCertificatesPresented => "the registry sent no certificate".into(),
        E::General(m) => m.clone(),
        other => other.to_string(),
    }
}

/// [`READ_TIMEOUT`], or `KMM_DAY1_READ_TIMEOUT_SECS` when set: the fault
/// tests stall a registry and should not wait 30 s each time
/// (docs/reliability.md). Not in `--help`: nodes have no reason to change it.
pub fn read_timeout() -> Duration {
    std::env::var("KMM_DAY1_READ_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .map_or(READ_TIMEOUT, Duration::from_secs)
}

/// The addresses of `host` from the machine's resolver. Unit tests get
/// [`test_net::resolve`] instead: a DNS query leaves the machine.
#[cfg(not(test))]
fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    Ok((host, port).to_socket_addrs()?.collect())
}

#[cfg(test)]
use test_net::resolve;

fn tcp_connect(host: &str, port: u16) -> Result<TcpStream, HttpError> {
    let addrs = resolve(host, port)
        .map_err(|e| HttpError::Network(format!("cannot resolve {host}: {e}")))?;
    let mut last = None;
    for addr in &addrs {
        #[cfg(test)]
        test_net::refuse_non_loopback(addr);
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                s.set_read_timeout(Some(read_timeout()))
                    .and_then(|()| s.set_write_timeout(Some(read_timeout())))
                    .map_err(|e| HttpError::Network(format!("{host}:{port}: {e}")))?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(HttpError::Network(match last {
        Some(e) => format!("cannot connect to {host}:{port}: {e}"),
        None => format!("cannot resolve {host}: no addresses"),
    }))
}

fn io_error(who: &str, e: &io::Error) -> HttpError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            HttpError::Network(format!("{who}: no data for {} s", read_timeout().as_secs()))
        }
        io::ErrorKind::InvalidData => HttpError::Protocol(format!("{who}: {e}")),
        _ => HttpError::Network(format!("{who}: {e}")),
    }
}

/// Status code and headers.
fn read_head(r: &mut BufReader<Stream>) -> io::Result<(u16, Vec<(String, String)>)> {
    let mut total = 0;
    let mut line = read_line(r)?;
    // Interim 1xx responses (100 Continue) precede the real one.
    loop {
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .filter(|_| version.starts_with("HTTP/1."))
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "not an HTTP/1.x response")
            })?;
        let mut headers = Vec::new();
        loop {
            let h = read_line(r)?;
            total += h.len();
            if total > MAX_HEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "response headers too large",
                ));
            }
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        if (100..200).contains(&status) {
            line = read_line(r)?;
            continue;
        }
        return Ok((status, headers));
    }
}

/// The network of the unit tests (issue 19): they may reach 127.0.0.0/8
/// only and send no DNS query. Names resolve from a table the tests fill
/// ([`test_net::add_host`]); an IP literal or `localhost` needs no lookup;
/// any other name is an error without a query. Every address the client
/// connects to goes through [`test_net::refuse_non_loopback`], which
/// panics: the test that made the agent leave loopback fails, and a panic
/// on a pull's worker thread reaches the test through `thread::scope`.
/// Compiled only with `cfg(test)`, so the agent a node runs has none of it.
#[cfg(test)]
pub mod test_net {
    use std::collections::BTreeMap;
    use std::io;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::Mutex;

    static HOSTS: Mutex<BTreeMap<String, IpAddr>> = Mutex::new(BTreeMap::new());

    /// `name` resolves to `ip` for the rest of the test process.
    pub fn add_host(name: &str, ip: IpAddr) {
        assert!(ip.is_loopback(), "test host {name} -> {ip}: loopback only");
        HOSTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_ascii_lowercase(), ip);
    }

    pub fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let ip = if let Ok(ip) = host.parse::<IpAddr>() {
            ip
        } else if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            let hosts = HOSTS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *hosts.get(&host.to_ascii_lowercase()).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "not in the unit tests' host table (they send no DNS query)",
                )
            })?
        };
        Ok(vec![SocketAddr::new(ip, port)])
    }

    pub fn refuse_non_loopback(addr: &SocketAddr) {
        assert!(
            addr.ip().is_loopback(),
            "the agent opened a socket to non-loopback {addr} during the unit tests"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_tests_stay_on_loopback() {
        // A name outside the table fails without a query and names itself.
        let e = tcp_connect("kmm-day1-unmapped.invalid", 443).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, HttpError::Network(_))
                && msg.contains("cannot resolve kmm-day1-unmapped.invalid")
                && msg.contains("host table"),
            "{msg}"
        );
        // A mapped name resolves to its table entry.
        test_net::add_host("kmm-day1-mapped.test", IpAddr::from([127, 0, 0, 7]));
        assert_eq!(
            test_net::resolve("KMM-day1-mapped.test", 80).unwrap(),
            [SocketAddr::from(([127, 0, 0, 7], 80))]
        );
        // A non-loopback address (TEST-NET-1, never routed) panics before
        // any socket exists.
        let hit = std::panic::catch_unwind(|| tcp_connect("192.0.2.1", 9));
        let why = hit.expect_err("a connect to 192.0.2.1 must panic");
        let why = why
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        assert!(why.contains("non-loopback 192.0.2.1:9"), "{why}");
    }

    #[test]
    fn urls_split_and_join() {
        let u = Url::parse("https://quay.io/v2/acme/drv/blobs/sha256:ab?x=1").unwrap();
        assert_eq!((u.https, u.host.as_str(), u.port), (true, "quay.io", 443));
        assert_eq!(u.path, "/v2/acme/drv/blobs/sha256:ab?x=1");
        assert_eq!(u.authority(), "quay.io");
        assert_eq!(u.to_string(), "https://quay.io/v2/acme/drv/blobs/sha256:ab");
        let v = Url::parse("http://[::1]:5000").unwrap();
        assert_eq!(
            (v.host.as_str(), v.port, v.path.as_str()),
            ("::1", 5000, "/")
        );
        assert_eq!(v.authority(), "[::1]:5000");
        let cdn = u.join("https://cdn.example.com:8443/b?sig=s").unwrap();
        assert_eq!(cdn.authority(), "cdn.example.com:8443");
        assert!(!cdn.same_origin(&u));
        let same = u.join("/v2/other").unwrap();
        assert!(same.same_origin(&u));
        assert_eq!(u.join("//h2/x").unwrap().to_string(), "https://h2/x");
        assert!(Url::parse("ftp://x").is_none());
        assert!(Url::parse("http://h:notaport/").is_none());
    }

    #[test]
    fn no_proxy_rules() {
        let p = Proxy::new(
            Some("http://proxy:3128"),
            Some("user:p%40ss@proxy:3128"),
            Some("corp.example, .svc ,10.0.0.0/8, 192.168.1.7, reg.local:5000"),
        );
        assert_eq!(p.https_auth.as_deref(), Some("Basic dXNlcjpwQHNz")); // user:p@ss
        for (host, port, bypass) in [
            ("corp.example", 443, true),
            ("a.corp.example", 443, true),
            ("xcorp.example", 443, false),
            ("svc", 443, false),
            ("api.svc", 443, true),
            ("10.1.2.3", 443, true),
            ("11.1.2.3", 443, false),
            ("192.168.1.7", 443, true),
            ("reg.local", 5000, true),
            ("reg.local", 443, false),
            ("127.0.0.1", 443, true),
            ("localhost", 80, true),
            ("quay.io", 443, false),
        ] {
            assert_eq!(p.bypass(host, port), bypass, "{host}:{port}");
        }
        assert!(Proxy::new(None, Some("http://p:1"), Some("*")).bypass("quay.io", 443));
        let https = Url::parse("https://quay.io/v2/").unwrap();
        assert_eq!(p.for_url(&https).unwrap().0.authority(), "proxy:3128");
        let none = Proxy::new(None, None, None);
        assert!(none.for_url(&https).is_none());
    }

    #[test]
    fn tls_failures_are_told_in_our_words() {
        use rustls::pki_types::{ServerName, UnixTime};
        use rustls::CertificateError as C;
        use std::time::Duration;
        let dirs = || "/etc/docker/certs.d/r:5000".to_string();
        let (reason, advice) = certificate_problem(&C::UnknownIssuer, dirs);
        assert_eq!(reason, "issued by an unknown CA");
        assert_eq!(
            advice,
            "add the registry's CA certificate as a *.crt file in /etc/docker/certs.d/r:5000"
        );
        // webpki's own rendering of the names in the certificate.
        let wrong_name = C::NotValidForNameContext {
            expected: ServerName::try_from("10.0.2.100").unwrap(),
            presented: vec![
                "IpAddress(127.0.0.1)".into(),
                "DnsName(\"registry.test\")".into(),
            ],
        };
        let (reason, advice) = certificate_problem(&wrong_name, dirs);
        assert_eq!(reason, "it is issued for 127.0.0.1, registry.test");
        assert_eq!(advice, "use the host name the certificate was issued for");
        let expired = C::ExpiredContext {
            time: UnixTime::since_unix_epoch(Duration::from_secs(2000)),
            not_after: UnixTime::since_unix_epoch(Duration::from_secs(1000)),
        };
        let (reason, advice) = certificate_problem(&expired, dirs);
        assert_eq!(
            reason,
            "expired: valid until 1000 (UNIX time), the node's clock says 2000"
        );
        assert!(advice.contains("node's clock"), "{advice}");

        let refused = rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure);
        assert!(
            handshake_problem(&refused, "r:5000")
                .starts_with("the registry refused every cipher suite"),
            "{}",
            handshake_problem(&refused, "r:5000")
        );
        let other = rustls::Error::AlertReceived(rustls::AlertDescription::AccessDenied);
        assert_eq!(
            handshake_problem(&other, "r:5000"),
            "the registry ended the handshake with TLS alert 49"
        );
        let plain = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert_eq!(
            handshake_problem(&plain, "r:5000"),
            "the answer is not TLS (is r:5000 a TLS server? set `insecure` for plain HTTP)"
        );
    }
}
