//! A real registry for tests: Debian's `docker-registry` (distribution v2)
//! on 127.0.0.1, with images built by `umoci` and pushed by `skopeo`.
//!
//! Interface (everything is removed or killed on drop):
//!
//! ```ignore
//! use kmm_day1_tests::registry::{self, Registry, Setup, Image};
//! if !registry::tools_available() { return; }            // skips, or fails in the full suite
//! let reg = Registry::start(Setup::default())?;          // plain HTTP, anonymous
//! let reg = Registry::start(Setup { tls: true, htpasswd: Some(("u".into(), "p".into())), ..Default::default() })?;
//! reg.host()            // "127.0.0.1:PORT"
//! reg.certs_dir()       // Some(dir) holding `127.0.0.1:PORT/ca.crt` (TLS only): pass as a certs.d dir
//! reg.ca_cert()         // the CA's PEM (TLS only)
//! let img = Image::new("drv").file("opt/lib/modules/6.1.0/extra/m.ko", b"...");
//! let pushed = reg.push(&img, "drv:1", Format::Oci)?;    // returns the manifest digest
//! let index = reg.push_index("drv:multi", &[("amd64", None, &img_a), ("arm64", None, &img_b)])?;
//! let dir = reg.storage();                               // storage root (blobs under docker/registry/v2)
//! ```
//!
//! TLS certificates come from `openssl` (EC P-256; the server's is valid for
//! 127.0.0.1, localhost and `registry.test`, a name tests route through a
//! proxy). htpasswd entries are bcrypt (`htpasswd -Bbn`), as distribution
//! requires. Token auth takes a [`TokenAuth`] from a token server the test
//! runs; [`TokenServer`] is one, signing RS256 JWTs with `openssl`.
//!
//! Shell scripts get the same registry from `tests/support/registry.sh`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::require_tool;

/// Whether every tool the registry tests need is installed (see
/// `tests/setup.d/30-registry.sh`); missing tools fail the full suite.
pub fn tools_available() -> bool {
    [
        "docker-registry",
        "skopeo",
        "umoci",
        "openssl",
        "htpasswd",
        "sha256sum",
    ]
    .iter()
    .all(|t| require_tool(t))
}

pub use crate::scratch::TempDir;

pub use crate::net::free_port;
use crate::net::Loopback;

pub use crate::image::{build_index_layout, Image};
use crate::try_run as run;

/// A CA and a server certificate signed by it.
#[derive(Debug, Clone)]
pub struct Certs {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Make a CA and a server certificate for 127.0.0.1 / localhost /
/// registry.test in `dir`.
pub fn make_certs(dir: &Path) -> Result<Certs> {
    let p = |n: &str| dir.join(n);
    // A new EC P-256 key in `key` and a request for it in `out`.
    let req = |key: &str, out: &str| {
        let mut c = Command::new("openssl");
        c.args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-keyout"])
        .arg(p(key))
        .arg("-out")
        .arg(p(out));
        c
    };
    run(req("ca.key", "ca.crt")
        .args(["-x509", "-days", "2", "-subj", "/CN=kmm-day1 test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]))?;
    run(req("server.key", "server.csr").args(["-subj", "/CN=127.0.0.1"]))?;
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:registry.test\n\
         basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )?;
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.crt"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("server.crt"))
        .arg("-extfile")
        .arg(p("ext.cnf")))?;
    Ok(Certs {
        ca_cert: p("ca.crt"),
        ca_key: p("ca.key"),
        server_cert: p("server.crt"),
        server_key: p("server.key"),
    })
}

/// distribution's `auth.token` settings.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    /// PEM bundle of the certificate(s) tokens are signed with.
    pub root_cert: PathBuf,
}

/// How to start a registry.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// HTTPS with a fresh CA (see [`Registry::certs_dir`]).
    pub tls: bool,
    /// Basic auth with this user and password.
    pub htpasswd: Option<(String, String)>,
    /// Bearer tokens from a token server.
    pub token: Option<TokenAuth>,
    /// Start on this port (e.g. one a test keeps free until later).
    pub port: Option<u16>,
    /// Serve a copy of this storage root (from another registry's `storage()`).
    pub storage_from: Option<PathBuf>,
}

/// A running `docker-registry serve`, killed on drop.
#[derive(Debug)]
pub struct Registry {
    pub port: u16,
    child: Child,
    certs: Option<Certs>,
    // Last: removed after the process is gone.
    dir: TempDir,
}

impl Registry {
    pub fn start(setup: Setup) -> Result<Registry> {
        let dir = TempDir::new("registry")?;
        let storage = dir.path().join("storage");
        if let Some(from) = &setup.storage_from {
            run(Command::new("cp").arg("-a").arg(from).arg(&storage))?;
        } else {
            std::fs::create_dir_all(&storage)?;
        }
        let port = match setup.port {
            Some(p) => p,
            None => free_port()?,
        };
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        let certs = if setup.tls {
            let c = make_certs(dir.path())?;
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                c.server_cert.display(),
                c.server_key.display()
            ));
            let d = dir.path().join("certs.d").join(format!("127.0.0.1:{port}"));
            std::fs::create_dir_all(&d)?;
            std::fs::copy(&c.ca_cert, d.join("ca.crt"))?;
            Some(c)
        } else {
            None
        };
        if let Some((user, pass)) = &setup.htpasswd {
            let line = run(Command::new("htpasswd").args(["-Bbn", user, pass]))?;
            let f = dir.path().join("htpasswd");
            std::fs::write(&f, line.trim())?;
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kmm-day1-test\n    path: {}\n",
                f.display()
            ));
        } else if let Some(t) = &setup.token {
            yaml.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.realm,
                t.service,
                t.issuer,
                t.root_cert.display()
            ));
        }
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yaml)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry")?;
        let mut reg = Registry {
            port,
            child,
            certs,
            dir,
        };
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(reg);
            }
            if let Some(status) = reg.child.try_wait()? {
                let log = std::fs::read_to_string(reg.dir.path().join("registry.log"))
                    .unwrap_or_default();
                bail!("docker-registry exited ({status}) before listening on {port}: {log}");
            }
            if Instant::now() > until {
                bail!("docker-registry did not listen on 127.0.0.1:{port} within 15 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A certs.d-style directory with `127.0.0.1:PORT/ca.crt` (TLS only).
    pub fn certs_dir(&self) -> Option<PathBuf> {
        self.certs.as_ref().map(|_| self.dir.path().join("certs.d"))
    }

    pub fn certs(&self) -> Option<&Certs> {
        self.certs.as_ref()
    }

    pub fn ca_cert(&self) -> Option<&Path> {
        self.certs.as_ref().map(|c| c.ca_cert.as_path())
    }

    /// The storage root (`docker/registry/v2/…` below it).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// A blob's bytes as stored by the registry.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        blob_path_in(&self.storage())(digest)
    }

    /// A scratch directory that lives as long as the registry.
    pub fn scratch(&self, name: &str) -> Result<PathBuf> {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p)?;
        Ok(p)
    }

    fn skopeo_dest_args(&self, creds: Option<(&str, &str)>) -> Vec<String> {
        let mut a = Vec::new();
        match self.certs_dir() {
            Some(d) => a.push(format!("--dest-cert-dir={}", d.join(self.host()).display())),
            None => a.push("--dest-tls-verify=false".into()),
        }
        if let Some((u, p)) = creds {
            a.push(format!("--dest-creds={u}:{p}"));
        } else {
            a.push("--dest-no-creds".into());
        }
        a
    }

    /// Build `image` and push it as `repo_tag` (`drv:1`); its manifest digest.
    pub fn push(&self, image: &Image, repo_tag: &str, format: Format) -> Result<String> {
        self.push_as(image, repo_tag, format, None)
    }

    /// As [`push`](Self::push), with registry credentials.
    pub fn push_as(
        &self,
        image: &Image,
        repo_tag: &str,
        format: Format,
        creds: Option<(&str, &str)>,
    ) -> Result<String> {
        let work = TempDir::new("image")?;
        let layout = work.path().join("layout");
        image.build(&layout, "img", work.path())?;
        self.copy(
            &format!("oci:{}:img", layout.display()),
            repo_tag,
            format,
            false,
            creds,
            work.path(),
        )
    }

    /// Push an index of `platforms` (architecture, variant, image) as
    /// `repo_tag`; the index digest. Entries keep the given order.
    pub fn push_index(
        &self,
        repo_tag: &str,
        platforms: &[(&str, Option<&str>, &Image)],
        format: Format,
    ) -> Result<String> {
        let work = TempDir::new("index")?;
        let layout = work.path().join("layout");
        build_index_layout(&layout, "multi", platforms, work.path())?;
        self.push_layout(&layout, "multi", repo_tag, format)
    }

    /// Push the image or index tagged `tag` in the OCI layout `layout`, with
    /// every manifest an index names, as `repo_tag`; its digest.
    pub fn push_layout(
        &self,
        layout: &Path,
        tag: &str,
        repo_tag: &str,
        format: Format,
    ) -> Result<String> {
        let work = TempDir::new("push")?;
        self.copy(
            &format!("oci:{}:{tag}", layout.display()),
            repo_tag,
            format,
            true,
            None,
            work.path(),
        )
    }

    fn copy(
        &self,
        src: &str,
        repo_tag: &str,
        format: Format,
        all: bool,
        creds: Option<(&str, &str)>,
        work: &Path,
    ) -> Result<String> {
        let digest_file = work.join("digest");
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "--quiet"]);
        if all {
            cmd.arg("--all");
        }
        if format == Format::V2s2 {
            cmd.args(["--format", "v2s2"]);
        }
        cmd.args(self.skopeo_dest_args(creds));
        cmd.arg("--digestfile").arg(&digest_file);
        cmd.arg(src)
            .arg(format!("docker://{}/{repo_tag}", self.host()));
        run(&mut cmd)?;
        Ok(std::fs::read_to_string(&digest_file)?.trim().to_string())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a registry with storage root `storage` keeps a blob's bytes, as a
/// function a server thread can own without holding the [`Registry`].
pub fn blob_path_in(storage: &Path) -> impl Fn(&str) -> PathBuf + Send + Sync + 'static {
    let blobs = storage.join("docker/registry/v2/blobs/sha256");
    move |digest: &str| {
        let hex = digest.trim_start_matches("sha256:");
        blobs
            .join(hex.get(..2).unwrap_or_default())
            .join(hex)
            .join("data")
    }
}

/// Manifest media types to push with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Oci,
    /// Docker schema 2 (`--format v2s2`).
    V2s2,
}

/// What a [`TokenServer`] saw.
#[derive(Debug, Default)]
pub struct TokenLog {
    /// One entry per token request: (query string, Authorization header).
    pub requests: Vec<(String, Option<String>)>,
}

/// A bearer-token server for distribution's `auth.token`: hands RS256
/// JWTs granting pull and push on every repository to requests that carry
/// the right Basic credentials (or to anyone, with `anonymous`).
#[derive(Debug)]
pub struct TokenServer {
    pub port: u16,
    pub log: Arc<Mutex<TokenLog>>,
    _server: Loopback,
    dir: TempDir,
}

pub const TOKEN_SERVICE: &str = "kmm-day1-test-registry";
pub const TOKEN_ISSUER: &str = "kmm-day1-test-issuer";

impl TokenServer {
    pub fn start(user: &str, password: &str, anonymous: bool) -> Result<TokenServer> {
        let dir = TempDir::new("token")?;
        let key = dir.path().join("token.key");
        let cert = dir.path().join("token.crt");
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=kmm-day1 token signer",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert))?;
        let der_path = dir.path().join("token.der");
        run(Command::new("openssl")
            .args(["x509", "-outform", "DER"])
            .arg("-in")
            .arg(&cert)
            .arg("-out")
            .arg(&der_path))?;
        let x5c = std_b64(&std::fs::read(&der_path)?);
        let log = Arc::new(Mutex::new(TokenLog::default()));
        let expected = format!("Basic {}", std_b64(format!("{user}:{password}").as_bytes()));
        let (l2, key2) = (log.clone(), key.clone());
        let server = Loopback::start(move |conn| {
            let _ = serve_token(conn, &expected, anonymous, &key2, &x5c, &l2);
        })?;
        Ok(TokenServer {
            port: server.port,
            log,
            _server: server,
            dir,
        })
    }

    /// The `auth.token` settings for a registry that trusts this server.
    pub fn auth(&self) -> TokenAuth {
        TokenAuth {
            realm: format!("http://127.0.0.1:{}/token", self.port),
            service: TOKEN_SERVICE.into(),
            issuer: TOKEN_ISSUER.into(),
            root_cert: self.dir.path().join("token.crt"),
        }
    }
}

fn serve_token(
    mut conn: TcpStream,
    expected: &str,
    anonymous: bool,
    key: &Path,
    x5c: &str,
    log: &Mutex<TokenLog>,
) -> Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut auth = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                auth = Some(v.trim().to_string());
            }
        }
    }
    let target = first
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let query = target
        .split_once('?')
        .map(|(_, q)| q.to_string())
        .unwrap_or_default();
    if let Ok(mut l) = log.lock() {
        l.requests.push((query, auth.clone()));
    }
    let ok = match &auth {
        Some(a) => a == expected,
        None => anonymous,
    };
    if !ok {
        conn.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": "test", "aud": TOKEN_SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", std::process::id()),
        "access": [{"type": "repository", "name": "*", "actions": ["pull", "push"]}],
    });
    // distribution 2.8 matches `name` literally; grant the scope asked for.
    let mut access = Vec::new();
    for part in target.split(['?', '&']) {
        if let Some(scope) = part.strip_prefix("scope=") {
            let scope = percent_encoding::percent_decode_str(scope).decode_utf8_lossy();
            let mut it = scope.splitn(3, ':');
            if let (Some(t), Some(n)) = (it.next(), it.next()) {
                access.push(serde_json::json!({"type": t, "name": n, "actions": ["pull", "push"]}));
            }
        }
    }
    let mut claims = claims;
    if !access.is_empty() {
        claims["access"] = serde_json::Value::Array(access);
    }
    let signing_input = format!(
        "{}.{}",
        url_b64(&serde_json::to_vec(&header)?),
        url_b64(&serde_json::to_vec(&claims)?)
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("openssl stdin")?
        .write_all(signing_input.as_bytes())?;
    let mut sig = Vec::new();
    child
        .stdout
        .take()
        .context("openssl stdout")?
        .read_to_end(&mut sig)?;
    child.wait()?;
    let jwt = format!("{signing_input}.{}", url_b64(&sig));
    let body = serde_json::to_vec(&serde_json::json!({"token": jwt, "expires_in": 300}))?;
    conn.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )?;
    conn.write_all(&body)?;
    Ok(())
}

/// Standard, padded base64 (HTTP Basic credentials, JWT `x5c`).
pub fn std_b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// base64url without padding (JWT header, payload and signature).
fn url_b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}
