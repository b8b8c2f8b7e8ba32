//! Mirrors and per-registry settings from `/etc/containers/registries.conf`
//! and `registries.conf.d/*.conf` (containers-registries.conf(5), v2 format),
//! which the MCO renders from ImageContentSourcePolicy, ImageDigestMirrorSet
//! and ImageTagMirrorSet.
//!
//! Read: `[[registry]]` `prefix` / `location` / `insecure` / `blocked` /
//! `mirror-by-digest-only` and its `[[registry.mirror]]` `location` /
//! `insecure` / `pull-from-mirror`. Other keys (search registries, aliases,
//! short-name mode) do not concern fully qualified pulls and are ignored.
//! Drop-ins are read in name order; an entry with the same prefix as an
//! earlier one replaces it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kmm_day1_config::read::{self, ReadError, TableRef, Value};
use kmm_day1_config::ImageRef;

#[derive(Debug, Clone, Default)]
struct RegistryEntry {
    prefix: String,
    location: String,
    insecure: bool,
    blocked: bool,
    mirror_by_digest_only: bool,
    mirror: Vec<MirrorEntry>,
}

#[derive(Debug, Clone, Default)]
struct MirrorEntry {
    location: String,
    insecure: bool,
    pull_from_mirror: String,
}

/// The `[[registry]]` entries of one file; keys this reader does not use
/// are ignored, as the containers tools ignore unknown ones.
fn registry_entries(text: &str) -> Result<Vec<RegistryEntry>, ReadError> {
    let doc = read::parse(text)?;
    let Some(list) = doc.root().get("registry") else {
        return Ok(Vec::new());
    };
    let string = |t: &TableRef<'_, '_>, key| Ok(t.opt(key, read::string)?.unwrap_or_default());
    let boolean = |t: &TableRef<'_, '_>, key| Ok(t.opt(key, read::boolean)?.unwrap_or_default());
    read::array(list)?
        .iter()
        .map(|r: &Value<'_>| {
            let r = read::table(r, "a [[registry]] table")?;
            let mirror = match r.get("mirror") {
                None => Vec::new(),
                Some(list) => read::array(list)?
                    .iter()
                    .map(|m| {
                        let m = read::table(m, "a [[registry.mirror]] table")?;
                        Ok(MirrorEntry {
                            location: string(&m, "location")?,
                            insecure: boolean(&m, "insecure")?,
                            pull_from_mirror: string(&m, "pull-from-mirror")?,
                        })
                    })
                    .collect::<Result<_, ReadError>>()?,
            };
            Ok(RegistryEntry {
                prefix: string(&r, "prefix")?,
                location: string(&r, "location")?,
                insecure: boolean(&r, "insecure")?,
                blocked: boolean(&r, "blocked")?,
                mirror_by_digest_only: boolean(&r, "mirror-by-digest-only")?,
                mirror,
            })
        })
        .collect()
}

/// Where one pull attempt goes: a registry host and repository in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    pub repository: String,
    /// Plain HTTP or unverified TLS allowed (registries.conf `insecure`).
    pub insecure: bool,
    pub mirror: bool,
}

impl Endpoint {
    /// `host[:port]/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.host, self.repository)
    }

    /// From `host[:port]/repository`.
    pub fn parse(name: &str, insecure: bool, mirror: bool) -> Option<Endpoint> {
        let (host, repository) = name.split_once('/')?;
        (!host.is_empty() && !repository.is_empty()).then(|| Endpoint {
            host: host.to_string(),
            repository: repository.to_string(),
            insecure,
            mirror,
        })
    }
}

/// The merged registries configuration.
#[derive(Debug, Default, Clone)]
pub struct Mirrors {
    registries: Vec<RegistryEntry>,
}

impl Mirrors {
    /// Read `conf` then every `*.conf` in `conf_d`; missing files are empty.
    pub fn load(conf: &Path, conf_d: &Path) -> Result<Mirrors> {
        let mut files: Vec<PathBuf> = vec![conf.to_path_buf()];
        if let Ok(entries) = std::fs::read_dir(conf_d) {
            let mut d: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect();
            d.sort();
            files.extend(d);
        }
        let mut registries: Vec<RegistryEntry> = Vec::new();
        for f in files {
            let text = match std::fs::read_to_string(&f) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", f.display())),
            };
            let parsed = registry_entries(&text).map_err(|e| {
                let (line, col) = e.line_col(&text);
                anyhow::anyhow!("{}:{line}:{col}: {}", f.display(), e.message)
            })?;
            for mut r in parsed {
                if r.prefix.is_empty() {
                    r.prefix = r.location.clone();
                }
                if r.prefix.is_empty() {
                    bail!(
                        "{}: a [[registry]] has neither `prefix` nor `location`",
                        f.display()
                    );
                }
                if r.location.is_empty() && !r.prefix.starts_with("*.") {
                    r.location = r.prefix.clone();
                }
                for m in &r.mirror {
                    if !matches!(
                        m.pull_from_mirror.as_str(),
                        "" | "all" | "digest-only" | "tag-only"
                    ) {
                        bail!(
                            "{}: registry `{}`: pull-from-mirror `{}` is not one of all, digest-only, tag-only",
                            f.display(),
                            r.prefix,
                            m.pull_from_mirror
                        );
                    }
                    if m.location.is_empty() {
                        bail!(
                            "{}: registry `{}`: a mirror has no location",
                            f.display(),
                            r.prefix
                        );
                    }
                }
                registries.retain(|old| old.prefix != r.prefix);
                registries.push(r);
            }
        }
        Ok(Mirrors { registries })
    }

    /// The matching `[[registry]]` with the longest prefix, and the length of
    /// the name it matched.
    fn find(&self, name: &str) -> Option<(&RegistryEntry, usize)> {
        self.registries
            .iter()
            .filter_map(|r| prefix_match(name, &r.prefix).map(|n| (r, n)))
            .max_by_key(|(r, _)| r.prefix.len())
    }

    /// Where to try `image`: its mirrors in order, then the source. The
    /// source's `insecure` is `source_insecure` or registries.conf's.
    pub fn endpoints(&self, image: &ImageRef, source_insecure: bool) -> Result<Vec<Endpoint>> {
        let name = image.name();
        let source = |insecure| Endpoint {
            host: image.registry.clone(),
            repository: image.repository.clone(),
            insecure,
            mirror: false,
        };
        let Some((reg, matched)) = self.find(&name) else {
            return Ok(vec![source(source_insecure)]);
        };
        if reg.blocked {
            bail!(
                "{name} is blocked by registries.conf (registry prefix `{}`)",
                reg.prefix
            );
        }
        let rest = &name[matched..];
        let by_digest = image.digest.is_some();
        let mut out = Vec::new();
        for m in &reg.mirror {
            let mode = match m.pull_from_mirror.as_str() {
                "" if reg.mirror_by_digest_only => "digest-only",
                "" => "all",
                other => other,
            };
            let usable = match mode {
                "digest-only" => by_digest,
                "tag-only" => !by_digest,
                _ => true,
            };
            if !usable {
                continue;
            }
            if let Some(ep) = Endpoint::parse(&format!("{}{rest}", m.location), m.insecure, true) {
                out.push(ep);
            }
        }
        let src = if reg.location.is_empty() {
            // Wildcard prefix without location: the image's own registry.
            source(source_insecure || reg.insecure)
        } else {
            Endpoint::parse(
                &format!("{}{rest}", reg.location),
                source_insecure || reg.insecure,
                false,
            )
            .with_context(|| {
                format!(
                    "registries.conf: location `{}` gives no repository for {name}",
                    reg.location
                )
            })?
        };
        out.push(src);
        Ok(out)
    }

    /// registries.conf's `insecure` for a `host[:port]/repo` endpoint name,
    /// mirror or source (used when a blob comes from a known endpoint).
    pub fn insecure_for(&self, endpoint_name: &str) -> bool {
        self.registries.iter().any(|r| {
            (!r.location.is_empty()
                && r.insecure
                && prefix_match(endpoint_name, &r.location).is_some())
                || r.mirror
                    .iter()
                    .any(|m| m.insecure && prefix_match(endpoint_name, &m.location).is_some())
        })
    }
}

/// How many bytes of `name` match `prefix` (containers/image's rule: the
/// prefix ends at a `/`, `:` or `@` boundary; `*.example.com` matches any
/// subdomain in the host part), or `None`.
fn prefix_match(name: &str, prefix: &str) -> Option<usize> {
    if let Some(suffix) = prefix.strip_prefix('*') {
        // `suffix` is `.example.com`; it must end within the host.
        let host_end = name.find('/').unwrap_or(name.len());
        let i = name[..host_end].find(suffix)?;
        let end = i + suffix.len();
        return match name.as_bytes().get(end) {
            None | Some(b'/' | b':' | b'@') => Some(end),
            _ => None,
        };
    }
    let rest = name.strip_prefix(prefix)?;
    match rest.as_bytes().first() {
        None | Some(b'/' | b':' | b'@') => Some(prefix.len()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmm_day1_tests::scratch::TempDir;

    fn load(main: &str, dropins: &[(&str, &str)]) -> Result<Mirrors> {
        let tmp = TempDir::new("mirrors").unwrap();
        let d = tmp.join("registries.conf.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(tmp.join("registries.conf"), main).unwrap();
        for (n, t) in dropins {
            std::fs::write(d.join(n), t).unwrap();
        }
        Mirrors::load(&tmp.join("registries.conf"), &d)
    }

    fn names(eps: &[Endpoint]) -> Vec<String> {
        eps.iter().map(Endpoint::name).collect()
    }

    const DIGEST: &str = "@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn idms_digest_only_mirrors_serve_digests_not_tags() {
        // What the MCO renders for an ImageDigestMirrorSet.
        let m = load(
            r#"
unqualified-search-registries = ["registry.access.redhat.com"]
short-name-mode = ""
[[registry]]
  prefix = ""
  location = "quay.io/acme"
  [[registry.mirror]]
    location = "mirror.local:5000/acme"
    pull-from-mirror = "digest-only"
  [[registry.mirror]]
    location = "mirror2.local/acme"
    pull-from-mirror = "digest-only"
    insecure = true
"#,
            &[],
        )
        .unwrap();
        let digest = ImageRef::parse(&format!("quay.io/acme/drv{DIGEST}")).unwrap();
        let eps = m.endpoints(&digest, false).unwrap();
        assert_eq!(
            names(&eps),
            [
                "mirror.local:5000/acme/drv",
                "mirror2.local/acme/drv",
                "quay.io/acme/drv"
            ]
        );
        assert!(!eps[0].insecure && eps[1].insecure && eps[0].mirror && !eps[2].mirror);
        let tag = ImageRef::parse("quay.io/acme/drv:6.1").unwrap();
        assert_eq!(
            names(&m.endpoints(&tag, false).unwrap()),
            ["quay.io/acme/drv"]
        );
        // Not under the prefix: untouched (and `quay.io/acmex` is not `quay.io/acme`).
        let other = ImageRef::parse("quay.io/acmex/drv:1").unwrap();
        assert_eq!(
            names(&m.endpoints(&other, true).unwrap()),
            ["quay.io/acmex/drv"]
        );
        assert!(m.endpoints(&other, true).unwrap()[0].insecure);
        assert!(m.insecure_for("mirror2.local/acme/drv"));
        assert!(!m.insecure_for("mirror.local:5000/acme/drv"));
    }

    #[test]
    fn longest_prefix_wildcards_location_rewrite_and_blocking() {
        let m = load(
            r#"
[[registry]]
prefix = "*.example.com"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m.local/ex"
[[registry]]
prefix = "reg.example.com/team"
location = "other.example.org/moved"
[[registry.mirror]]
location = "tags.local/t"
pull-from-mirror = "tag-only"
"#,
            &[(
                "50-block.conf",
                "[[registry]]\nprefix = \"bad.io\"\nblocked = true\n",
            )],
        )
        .unwrap();
        let tag = ImageRef::parse("reg.example.com/team/drv:1").unwrap();
        assert_eq!(
            names(&m.endpoints(&tag, false).unwrap()),
            ["tags.local/t/drv", "other.example.org/moved/drv"]
        );
        let wild = ImageRef::parse(&format!("a.example.com/x/drv{DIGEST}")).unwrap();
        assert_eq!(
            names(&m.endpoints(&wild, false).unwrap()),
            ["m.local/ex/x/drv", "a.example.com/x/drv"]
        );
        let wild_tag = ImageRef::parse("a.example.com/x/drv:1").unwrap();
        assert_eq!(
            names(&m.endpoints(&wild_tag, false).unwrap()),
            ["a.example.com/x/drv"]
        );
        let e = m
            .endpoints(&ImageRef::parse("bad.io/x:1").unwrap(), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("blocked by registries.conf"), "{e}");
    }

    #[test]
    fn dropins_override_and_bad_values_are_named() {
        let m = load(
            "[[registry]]\nprefix = \"q.io\"\nblocked = true\n",
            &[("10-unblock.conf", "[[registry]]\nprefix = \"q.io\"\n")],
        )
        .unwrap();
        assert!(m
            .endpoints(&ImageRef::parse("q.io/x:1").unwrap(), false)
            .is_ok());
        let e = load(
            "[[registry]]\nprefix = \"q.io\"\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"sometimes\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("registries.conf") && e.contains("sometimes"),
            "{e}"
        );
        let e = load("[[registry]\n", &[]).unwrap_err().to_string();
        assert!(e.contains("registries.conf:1:"), "{e}");
        // A wrong type is named with its place; unknown keys are ignored.
        let e = load(
            "unqualified-search-registries = [\"q.io\"]\n[[registry]]\nprefix = \"q.io\"\nshort-name-mode = \"x\"\n[[registry.mirror]]\nlocation = \"m.io\"\ninsecure = \"yes\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("registries.conf:7:12: invalid type: string \"yes\", expected a boolean"),
            "{e}"
        );
        let e = load("registry = { prefix = \"q.io\" }\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("registries.conf:1:12: invalid type: map, expected a sequence"),
            "{e}"
        );
    }

    #[test]
    fn prefix_boundaries() {
        assert_eq!(prefix_match("quay.io/acme/drv", "quay.io/acme"), Some(12));
        assert_eq!(prefix_match("quay.io/acmedrv", "quay.io/acme"), None);
        assert_eq!(prefix_match("a.b.example.com/x", "*.example.com"), Some(15));
        assert_eq!(prefix_match("example.com/x", "*.example.com"), None);
        assert_eq!(prefix_match("x.io/a.example.com", "*.example.com"), None);
    }
}
