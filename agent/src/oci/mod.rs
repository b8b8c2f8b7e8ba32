//! The OCI image model both image sources share: descriptors, manifests and
//! indexes (OCI and Docker schema 2), platforms and digests.
//!
//! The registry client (`registry.rs`) and the local OCI layout
//! ([`layout::OciLayout`]) read manifests only through [`parse_manifest`]
//! and pick a platform only through [`choose_platform`], so both refuse the
//! same things (schema 1, oversized indexes, malformed digests) and pick the
//! same manifest from the same index.

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use kmm_day1_config::ImageRef;

use crate::json;

pub mod layout;

/// Manifests and indexes larger than this are refused before parsing (a
/// registry's usual limit is 4 MiB).
pub const MAX_MANIFEST: usize = 4 << 20;
/// Entries of an image index, layers of a manifest.
pub const MAX_ENTRIES: usize = 1024;

pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// An image's manifest and blobs, from a registry or a local layout.
pub trait ImageSource {
    /// The node's platform manifest for `image`.
    fn resolve(&mut self, image: &ImageRef) -> Result<ResolvedImage>;
    /// Stream the blob's bytes from `offset` into `sink`; returns the offset
    /// the written bytes actually start at (0 when a server ignored the range).
    fn fetch_blob(
        &mut self,
        image: &ResolvedImage,
        desc: &Descriptor,
        offset: u64,
        sink: &mut dyn Write,
    ) -> Result<u64>;
}

/// An OCI platform (`os`/`architecture`/`variant` of an image index entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this agent was built for (it runs on what it was built for).
    pub fn host() -> Platform {
        let (architecture, variant) = if cfg!(target_arch = "aarch64") {
            ("arm64", Some("v8"))
        } else if cfg!(target_arch = "x86_64") {
            ("amd64", None)
        } else if cfg!(target_arch = "s390x") {
            ("s390x", None)
        } else if cfg!(target_arch = "powerpc64") {
            ("ppc64le", None)
        } else {
            (std::env::consts::ARCH, None)
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_string),
        }
    }

    /// The variant an entry without one stands for (OCI image-index spec:
    /// arm64 is v8, arm v7, amd64 v1), so `arm64` and `arm64/v8` match.
    fn normalized_variant(&self) -> Option<&str> {
        self.variant
            .as_deref()
            .or(match self.architecture.as_str() {
                "arm64" => Some("v8"),
                "arm" => Some("v7"),
                "amd64" => Some("v1"),
                _ => None,
            })
    }

    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && self.normalized_variant() == other.normalized_variant()
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A content descriptor (manifest config or layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    /// Always `sha256:<64 lowercase hex>` (checked: callers use it in paths).
    pub digest: String,
    pub size: u64,
}

/// An image reference resolved to the node's platform manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// What was asked.
    pub reference: String,
    /// `sha256:…` of the platform manifest: what the store is keyed by.
    pub digest: String,
    pub index_digest: Option<String>,
    pub config: Descriptor,
    /// In application order.
    pub layers: Vec<Descriptor>,
    /// `host[:port]/repo` (a mirror or the source) or `oci:<dir>` that
    /// served the manifest.
    pub source: String,
}

#[derive(Debug)]
pub struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl ResolvedImage {
    /// `image` resolved to `manifest`, whose digest is `digest`, reached
    /// through the index `index_digest` if any, as `source` served it.
    pub fn new(
        image: &ImageRef,
        (digest, index_digest): (String, Option<String>),
        manifest: ImageManifest,
        source: String,
    ) -> Self {
        ResolvedImage {
            reference: image.to_string(),
            digest,
            index_digest,
            config: manifest.config,
            layers: manifest.layers,
            source,
        }
    }
}

/// An entry of an image index (or of an OCI layout's `index.json`).
#[derive(Debug)]
pub struct IndexEntry {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub platform: Option<Platform>,
    /// The `org.opencontainers.image.ref.name` annotation: the tag, in an
    /// OCI layout's `index.json`.
    pub ref_name: Option<String>,
}

#[derive(Debug)]
pub enum Manifest {
    Image(ImageManifest),
    Index(Vec<IndexEntry>),
}

/// A descriptor as the JSON has it.
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    platform: Option<Platform>,
    ref_name: Option<String>,
}

impl RawDescriptor {
    fn from_json(v: &serde_json::Value) -> json::Result<Self> {
        let o = json::object(v, "a descriptor")?;
        let platform = match o.opt_object("platform")? {
            None => None,
            Some(p) => Some(Platform {
                os: p.required_str("os")?.to_string(),
                architecture: p.required_str("architecture")?.to_string(),
                variant: p.opt_string("variant")?.filter(|v| !v.is_empty()),
            }),
        };
        let ref_name = match o.opt_object("annotations")? {
            None => None,
            Some(a) => a.opt_string("org.opencontainers.image.ref.name")?,
        };
        Ok(RawDescriptor {
            media_type: o.string("mediaType")?,
            digest: o.required_str("digest")?.to_string(),
            size: o.required_u64("size")?,
            platform,
            ref_name,
        })
    }

    fn descriptor(self) -> Result<Descriptor> {
        digest_hex(&self.digest)?;
        Ok(Descriptor {
            media_type: self.media_type,
            digest: self.digest,
            size: self.size,
        })
    }
}

fn descriptors(list: &[serde_json::Value]) -> json::Result<Vec<RawDescriptor>> {
    list.iter().map(RawDescriptor::from_json).collect()
}

/// An image manifest or index (OCI or Docker schema 2); the JSON
/// `mediaType` wins over the Content-Type header, structure over both.
pub fn parse_manifest(bytes: &[u8], header_type: Option<&str>) -> Result<Manifest> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| anyhow!("not a valid manifest: {e}"))?;
    let invalid = |e: json::FieldError| anyhow!("not a valid manifest: {e}");
    let raw = json::object(&value, "the manifest").map_err(invalid)?;
    let header_type =
        header_type.map(|h| h.split(';').next().unwrap_or_default().trim().to_string());
    let media_type = raw
        .opt_string("mediaType")
        .map_err(invalid)?
        .or(header_type)
        .unwrap_or_default();
    let schema_version = raw
        .get("schemaVersion")
        .map(|v| {
            v.as_u64().ok_or_else(|| {
                json::FieldError::new("`schemaVersion`: expected an unsigned integer")
            })
        })
        .transpose()
        .map_err(invalid)?;
    let manifests = raw.opt_array("manifests").map_err(invalid)?;
    let layers = raw.opt_array("layers").map_err(invalid)?;
    if schema_version == Some(1)
        || media_type.starts_with("application/vnd.docker.distribution.manifest.v1")
    {
        bail!("Docker schema 1 manifests are not supported; push the image again with a current client (schema 2 or OCI)");
    }
    let is_index = match media_type.as_str() {
        MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST => true,
        MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST => false,
        _ => manifests.is_some() && layers.is_none(),
    };
    if is_index {
        let entries = manifests.ok_or_else(|| anyhow!("an image index without `manifests`"))?;
        if entries.len() > MAX_ENTRIES {
            bail!(
                "the image index has {} entries, more than {MAX_ENTRIES}",
                entries.len()
            );
        }
        let mut out = Vec::with_capacity(entries.len());
        for e in descriptors(entries).map_err(invalid)? {
            digest_hex(&e.digest)?;
            out.push(IndexEntry {
                media_type: e.media_type,
                digest: e.digest,
                size: e.size,
                platform: e.platform,
                ref_name: e.ref_name,
            });
        }
        Ok(Manifest::Index(out))
    } else {
        let config = raw
            .get("config")
            .ok_or_else(|| anyhow!("an image manifest without `config`"))?;
        let config = RawDescriptor::from_json(config).map_err(invalid)?;
        let layers = layers.unwrap_or_default();
        if layers.len() > MAX_ENTRIES {
            bail!(
                "the manifest has {} layers, more than {MAX_ENTRIES}",
                layers.len()
            );
        }
        Ok(Manifest::Image(ImageManifest {
            config: config.descriptor()?,
            layers: descriptors(layers)
                .map_err(invalid)?
                .into_iter()
                .map(RawDescriptor::descriptor)
                .collect::<Result<_>>()?,
        }))
    }
}

/// Whether `bytes` parse as a manifest or index: for the fuzz target, which
/// includes this file (fuzz/src/lib.rs); the agent never calls it.
#[allow(dead_code)]
pub(crate) fn manifest_parses(bytes: &[u8], header_type: Option<&str>) -> bool {
    parse_manifest(bytes, header_type).is_ok()
}

/// The first index entry for `want`, or an error listing what there is.
pub fn choose_platform<'a>(entries: &'a [IndexEntry], want: &Platform) -> Result<&'a IndexEntry> {
    if let Some(e) = entries
        .iter()
        .find(|e| e.platform.as_ref().is_some_and(|p| p.matches(want)))
    {
        return Ok(e);
    }
    let available: Vec<String> = entries
        .iter()
        .filter_map(|e| e.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(Platform::to_string)
        .collect();
    bail!(
        "the image index has no manifest for {want}; available: {}",
        if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        }
    )
}

/// The hex part of a `sha256:<64 lowercase hex>` digest; anything else is
/// refused before it can become part of a path. The one digest check: the
/// store, the blob cache and both image sources use it.
pub fn digest_hex(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(hex)
        }
        _ => bail!(
            "`{}` is not a sha256 digest (`sha256:` and 64 lowercase hex digits)",
            digest.chars().take(80).collect::<String>()
        ),
    }
}

/// Lowercase hex of a finished SHA-256.
pub fn sha256_hex(ctx: ring::digest::Context) -> String {
    let d = ctx.finish();
    let mut s = String::with_capacity(64);
    for b in d.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let mut c = ring::digest::Context::new(&ring::digest::SHA256);
    c.update(bytes);
    format!("sha256:{}", sha256_hex(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn platform_selection_normalises_variants() {
        let entry_of = |c: char, os: &str, arch: &str, variant: Option<&str>| IndexEntry {
            media_type: MEDIA_OCI_MANIFEST.into(),
            digest: d(c),
            size: 1,
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(str::to_string),
            }),
            ref_name: None,
        };
        let entry =
            |c: char, arch: &str, variant: Option<&str>| entry_of(c, "linux", arch, variant);
        let entries = vec![
            entry_of('0', "unknown", "unknown", None),
            entry('1', "amd64", Some("v3")),
            entry('2', "amd64", None),
            entry('3', "arm64", None),
            entry('4', "arm", Some("v6")),
        ];
        let arm64 = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(choose_platform(&entries, &arm64).unwrap().digest, d('3'));
        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        assert_eq!(choose_platform(&entries, &amd64).unwrap().digest, d('2'));
        let s390x = Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        };
        let e = choose_platform(&entries, &s390x).unwrap_err().to_string();
        assert!(
            e.contains("no manifest for linux/s390x")
                && e.contains("available: linux/amd64/v3, linux/amd64, linux/arm64, linux/arm/v6"),
            "{e}"
        );
        assert_eq!(Platform::host().os, "linux");
    }

    #[test]
    fn manifest_parsing_refuses_what_it_cannot_use() {
        let schema1 = br#"{"schemaVersion": 1, "name": "x", "fsLayers": []}"#;
        let e = parse_manifest(schema1, None).unwrap_err().to_string();
        assert!(e.contains("schema 1"), "{e}");
        let bad_digest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_OCI_MANIFEST}","config":{{"digest":"{}","size":1}},"layers":[{{"digest":"sha256:../../etc","size":1}}]}}"#,
            d('a')
        );
        let e = parse_manifest(bad_digest.as_bytes(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a sha256 digest"), "{e}");
        let many: Vec<String> = (0..=MAX_ENTRIES)
            .map(|_| format!(r#"{{"digest":"{}","size":1}}"#, d('b')))
            .collect();
        let big = format!(r#"{{"schemaVersion":2,"manifests":[{}]}}"#, many.join(","));
        let e = parse_manifest(big.as_bytes(), Some(MEDIA_OCI_INDEX))
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 1024"), "{e}");
        // The Content-Type decides when the JSON has no mediaType.
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"c","digest":"{}","size":7}},"layers":[]}}"#,
            d('c')
        );
        match parse_manifest(
            m.as_bytes(),
            Some(&format!("{MEDIA_DOCKER_MANIFEST}; charset=utf-8")),
        )
        .unwrap()
        {
            Manifest::Image(i) => assert_eq!((i.config.size, i.layers.len()), (7, 0)),
            Manifest::Index(_) => panic!("a manifest parsed as an index"),
        }
    }

    #[test]
    fn digest_must_be_sha256_hex() {
        assert!(digest_hex(&format!("sha256:{}", "a".repeat(64))).is_ok());
        for bad in [
            "sha512:aa",
            "sha256:../../etc/passwd",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            assert!(digest_hex(bad).is_err(), "{bad}");
        }
    }
}
