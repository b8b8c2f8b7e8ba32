//! Image references (`[registry/]repository[:tag][@sha256:…]`), parsed the way
//! the containers tools do, so that an error is reported when the config is
//! written rather than when a node first tries to pull.

use std::fmt;

use crate::ConfigError;

/// Where an unqualified reference (`acme/driver:1`) is pulled from, as in the
/// containers tools' short-name handling without aliases.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A parsed, fully qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]`.
    pub registry: String,
    /// Path inside the registry, e.g. `acme/sfc-driver`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(reference: &str) -> Result<Self, ConfigError> {
        Self::parse_any(reference, false)
    }

    /// As [`parse`](Self::parse), but a bare name (no tag, no digest) is
    /// accepted: the form a signature's `docker-reference` and a policy's
    /// `dockerRepository` take (containers/image's `ParseNormalizedNamed`).
    pub fn parse_named(reference: &str) -> Result<Self, ConfigError> {
        Self::parse_any(reference, true)
    }

    fn parse_any(reference: &str, name_only: bool) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::InvalidImage(reference.to_string(), why.to_string());
        if reference.is_empty() {
            return Err(bad("it is empty"));
        }
        if reference.len() > 4096 {
            return Err(bad("it is longer than 4096 characters"));
        }
        let (name_tag, digest) = match reference.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (reference, None),
        };
        if let Some(d) = digest {
            let hex = d.strip_prefix("sha256:").ok_or_else(|| {
                bad("only sha256 digests (`@sha256:<64 hex digits>`) are supported")
            })?;
            if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(bad("a sha256 digest has exactly 64 lowercase hex digits"));
            }
        }
        // A tag follows the last `:` after the last `/` (a `:` before it is a port).
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            let ok_first = t
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok_first
                || t.len() > 128
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            {
                return Err(bad(&format!(
                    "tag `{t}` is not valid (1-128 characters of [A-Za-z0-9_.-], not starting with `.` or `-`)"
                )));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        if !valid_host(&registry) {
            return Err(bad(&format!(
                "registry `{registry}` is not a valid host[:port]"
            )));
        }
        if repository.is_empty() {
            return Err(bad("it names no repository"));
        }
        for component in repository.split('/') {
            if !valid_path_component(component) {
                return Err(bad(&format!(
                    "repository component `{component}` must be lowercase letters and digits, separated by `.`, `_`, `__` or `-`"
                )));
            }
        }
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if tag.is_none() && digest.is_none() && !name_only {
            return Err(bad(
                "it has neither a tag nor a digest; name one (e.g. `:${KERNEL_FULL_VERSION}` or `@sha256:…`) so every node pulls the same image",
            ));
        }
        Ok(ImageRef {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }

    /// `registry/repository`, the key used for auth and mirror lookups.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    // Bracketed IPv6 literals are allowed as the containers tools allow them.
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty()
        || !b[0].is_ascii_lowercase() && !b[0].is_ascii_digit()
        || !b[b.len() - 1].is_ascii_lowercase() && !b[b.len() - 1].is_ascii_digit()
    {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'a'..=b'z' | b'0'..=b'9' => i += 1,
            b'.' | b'_' | b'-' => {
                // Separators: `.`, `_`, `__`, or a run of `-`.
                let start = i;
                while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
                    i += 1;
                }
                let sep = &c[start..i];
                if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_tag_and_digest() {
        let r = ImageRef::parse("quay.io/acme/sfc-driver:5.14.0-427.13.1.el9_4.x86_64").unwrap();
        assert_eq!(r.registry, "quay.io");
        assert_eq!(r.repository, "acme/sfc-driver");
        assert_eq!(r.tag.as_deref(), Some("5.14.0-427.13.1.el9_4.x86_64"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("registry.local:5000/x/y@{d}")).unwrap();
        assert_eq!(r.registry, "registry.local:5000");
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.to_string(), format!("registry.local:5000/x/y@{d}"));
    }

    #[test]
    fn short_names_go_to_docker_hub_library() {
        let r = ImageRef::parse("busybox:1").unwrap();
        assert_eq!(r.name(), "docker.io/library/busybox");
        let r = ImageRef::parse("localhost/drv:1").unwrap();
        assert_eq!(r.name(), "localhost/drv");
        let r = ImageRef::parse("127.0.0.1:5000/drv:1").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
    }

    #[test]
    fn invalid_references_say_why() {
        for (r, why) in [
            ("quay.io/acme/drv", "neither a tag nor a digest"),
            ("quay.io/acme/drv:5.14+rt", "tag `5.14+rt`"),
            ("quay.io/Acme/drv:1", "component `Acme`"),
            ("quay.io/acme/drv@sha512:abc", "only sha256"),
            ("quay.io/acme/drv@sha256:abc", "64 lowercase hex"),
            ("", "empty"),
            ("quay.io/a//b:1", "component ``"),
            ("quay.io:x/a:1", "not a valid host"),
        ] {
            let e = ImageRef::parse(r).unwrap_err().to_string();
            assert!(e.contains(why), "{r}: {e}");
        }
    }

    /// A signature's identity may be a bare repository; `parse` still
    /// refuses one (a node must pull a tag or digest), with the same rules
    /// for everything else.
    #[test]
    fn bare_names_only_where_asked_for() {
        let r = ImageRef::parse_named("quay.io/acme/drv").unwrap();
        assert_eq!(
            (r.name().as_str(), r.tag, r.digest),
            ("quay.io/acme/drv", None, None)
        );
        assert_eq!(
            ImageRef::parse_named("busybox").unwrap().to_string(),
            "docker.io/library/busybox"
        );
        assert!(ImageRef::parse("quay.io/acme/drv").is_err());
        assert!(ImageRef::parse_named("quay.io/Acme/drv").is_err());
    }

    #[test]
    fn separators_in_repository_components() {
        assert!(ImageRef::parse("q.io/a__b/c.d/e---f:1").is_ok());
        assert!(ImageRef::parse("q.io/a___b:1").is_err());
        assert!(ImageRef::parse("q.io/a._b:1").is_err());
        assert!(ImageRef::parse("q.io/-a:1").is_err());
    }
}
