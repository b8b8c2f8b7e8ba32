//! Registry credentials from docker-config JSON files (the node's pull secret
//! `/var/lib/kubelet/config.json`, and `pull.auth_files`).
//!
//! `{"auths": {"<key>": {"auth": base64("user:pass")} | {"username", "password"}}}`
//! where a key is a host (`quay.io`, `quay.io:443`), a URL
//! (`https://index.docker.io/v1/`) or a repository scope (`quay.io/org`,
//! `quay.io/org/repo`). The longest key matching the image wins; the first
//! file with a match wins over later files (as containers-auth.json(5)).
//!
//! Secrets never reach a message: parse errors name the file and line only,
//! and [`Credentials`]' `Debug` is redacted.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

impl Credentials {
    /// The `Authorization` header value for HTTP Basic.
    pub fn basic(&self) -> String {
        format!(
            "Basic {}",
            base64_encode(format!("{}:{}", self.username, self.password).as_bytes())
        )
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// Normalised key: `host[:port][/path]`.
    key: String,
    creds: Credentials,
}

/// Every entry of every readable auth file, in file order.
#[derive(Debug, Clone, Default)]
pub struct AuthFiles {
    files: Vec<(PathBuf, Vec<Entry>)>,
}

impl AuthFiles {
    /// Read `paths`; a missing file is skipped (a node may have no pull
    /// secret for a public image), an unreadable or invalid one is an error.
    pub fn load(paths: &[PathBuf]) -> Result<AuthFiles> {
        let mut files = Vec::new();
        for path in paths {
            let text = match std::fs::read(path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot read auth file {}", path.display()))
                }
            };
            warn_if_readable(path);
            files.push((path.clone(), parse(path, &text)?));
        }
        Ok(AuthFiles { files })
    }

    /// Credentials for `repository` on `registry` (`host[:port]`), and the
    /// file they came from.
    pub fn lookup(&self, registry: &str, repository: &str) -> Option<(&Credentials, &Path)> {
        let registry = normalize_host(registry);
        let full = format!("{registry}/{repository}");
        for (path, entries) in &self.files {
            let best = entries
                .iter()
                .filter(|e| {
                    e.key == registry
                        || e.key == full
                        || (full.starts_with(&e.key)
                            && full.as_bytes().get(e.key.len()) == Some(&b'/'))
                })
                .max_by_key(|e| e.key.len());
            if let Some(e) = best {
                return Some((&e.creds, path.as_path()));
            }
        }
        None
    }
}

fn warn_if_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            crate::log::warning!(
                "auth file {} is readable by group or others (mode {mode:03o}); `chmod 600` it",
                path.display()
            );
        }
    }
}

fn parse(path: &Path, text: &[u8]) -> Result<Vec<Entry>> {
    // Through `Value` first: serde's type errors quote the offending value,
    // which here could be a password. Syntax errors only carry a position.
    let value: serde_json::Value = serde_json::from_slice(text).map_err(|e| {
        anyhow::anyhow!(
            "auth file {} is not valid JSON (line {}, column {})",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    let Some(auths) = value.get("auths").and_then(|a| a.as_object()) else {
        return Ok(Vec::new());
    };
    let mut entries = Vec::new();
    for (key, v) in auths {
        let creds = if let Some(auth) = v
            .get("auth")
            .and_then(|a| a.as_str())
            .filter(|a| !a.is_empty())
        {
            let decoded = base64_decode(auth)
                .and_then(|d| String::from_utf8(d).ok())
                .and_then(|d| {
                    d.split_once(':')
                        .map(|(u, p)| (u.to_string(), p.to_string()))
                });
            match decoded {
                Some((username, password)) => Credentials { username, password },
                None => {
                    anyhow::bail!(
                        "auth file {}: the `auth` of `{key}` is not base64 of `user:password`",
                        path.display()
                    )
                }
            }
        } else {
            match (
                v.get("username").and_then(|u| u.as_str()),
                v.get("password").and_then(|p| p.as_str()),
            ) {
                (Some(u), Some(p)) => Credentials {
                    username: u.to_string(),
                    password: p.to_string(),
                },
                // identitytoken / credential helpers: not supported; the key
                // is then anonymous, like an absent entry.
                _ => continue,
            }
        };
        entries.push(Entry {
            key: normalize_key(key),
            creds,
        });
    }
    Ok(entries)
}

/// `https://index.docker.io/v1/` → `docker.io`; `quay.io/org/` → `quay.io/org`.
fn normalize_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.trim_end_matches('/');
    let (host, path) = match k.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (k, None),
    };
    let host = normalize_host(host);
    // Legacy keys carry the API version as their path: it is no repository.
    match path {
        None | Some("v1") | Some("v2") => host,
        Some(p) => format!("{host}/{p}"),
    }
}

fn normalize_host(host: &str) -> String {
    let h = host.to_ascii_lowercase();
    match h.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => h,
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard or URL-safe alphabet, padding optional, whitespace ignored.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' | b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmm_day1_tests::scratch::TempDir;

    fn files(json: &str) -> AuthFiles {
        let tmp = TempDir::new("auth").unwrap();
        let p = tmp.join("config.json");
        std::fs::write(&p, json).unwrap();
        let missing = tmp.join("missing.json");
        AuthFiles::load(&[missing, p]).unwrap()
    }

    #[test]
    fn base64_round_trip() {
        for s in ["", "a", "ab", "abc", "user:pa:ss", "ünï"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn longest_key_wins_and_keys_are_normalised() {
        let a = files(
            r#"{"auths": {
                "https://quay.io/v1/": {"auth": "aG9zdDpo"},
                "quay.io/org": {"username": "org", "password": "o"},
                "quay.io/org/repo": {"auth": "cmVwbzpy"},
                "https://index.docker.io/v1/": {"auth": "ZGg6ZA=="},
                "reg.local:5000": {"auth": "bG9jYWw6bA=="},
                "helper.io": {"identitytoken": "x"}
            }}"#,
        );
        let user = |r: &str, repo: &str| a.lookup(r, repo).map(|(c, _)| c.username.clone());
        assert_eq!(user("quay.io", "org/repo").as_deref(), Some("repo"));
        assert_eq!(user("quay.io", "org/repo2").as_deref(), Some("org"));
        assert_eq!(user("quay.io", "organisation/x").as_deref(), Some("host"));
        assert_eq!(user("docker.io", "library/busybox").as_deref(), Some("dh"));
        assert_eq!(user("reg.local:5000", "a").as_deref(), Some("local"));
        assert_eq!(user("reg.local", "a"), None);
        assert_eq!(user("helper.io", "a"), None);
        assert_eq!(a.lookup("quay.io", "org/repo").unwrap().0.password, "r");
    }

    #[test]
    fn errors_do_not_quote_secrets() {
        let tmp = TempDir::new("auth-bad").unwrap();
        let p = tmp.join("config.json");
        std::fs::write(&p, r#"{"auths": {"q.io": {"auth": "s3cr3t!!"}}}"#).unwrap();
        let e = format!(
            "{:#}",
            AuthFiles::load(std::slice::from_ref(&p)).unwrap_err()
        );
        assert!(e.contains("not base64") && !e.contains("s3cr3t"), "{e}");
        std::fs::write(&p, r#"{"auths": {"q.io": {"auth": "s3cr3t"#).unwrap();
        let e = format!(
            "{:#}",
            AuthFiles::load(std::slice::from_ref(&p)).unwrap_err()
        );
        assert!(e.contains("not valid JSON") && !e.contains("s3cr3t"), "{e}");
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
