//! A local OCI image layout directory (image-spec `image-layout.md`:
//! `oci-layout`, `index.json`, `blobs/sha256/…`) as an image source: for
//! air-gapped nodes, for tests without a network, and for `verify` on a
//! workstation. Manifests are read through the shared model (`oci`), the
//! same parser and platform choice as the registry client's.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use kmm_day1_config::ImageRef;

use super::{
    choose_platform, digest_hex, parse_manifest, sha256_digest, Descriptor, ImageSource, Manifest,
    Platform, ResolvedImage, MAX_MANIFEST,
};
use crate::registry::RegistryError;

#[derive(Debug)]
pub struct OciLayout {
    dir: PathBuf,
    platform: Platform,
}

impl OciLayout {
    pub fn open(dir: &Path, platform: Platform) -> Result<Self> {
        let marker = dir.join("oci-layout");
        let text = fs::read_to_string(&marker).with_context(|| {
            format!(
                "{} is not an OCI image layout (no readable oci-layout file)",
                dir.display()
            )
        })?;
        ensure!(
            text.contains("imageLayoutVersion"),
            "{} is not an OCI layout marker",
            marker.display()
        );
        Ok(OciLayout {
            dir: dir.to_path_buf(),
            platform,
        })
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.dir.join("blobs/sha256").join(digest_hex(digest)?))
    }

    /// A manifest or index blob, verified against the digest and size that
    /// named it, then parsed.
    fn read_manifest(&self, digest: &str, size: u64, media_type: &str) -> Result<Manifest> {
        ensure!(
            size <= MAX_MANIFEST as u64,
            "manifest {digest} is {size} bytes, more than the {MAX_MANIFEST} allowed"
        );
        let path = self.blob_path(digest)?;
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let actual = sha256_digest(&bytes);
        if bytes.len() as u64 != size || digest != actual {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest in {}", self.dir.display()),
                expected: digest.to_string(),
                actual,
            }
            .into());
        }
        parse_manifest(&bytes, Some(media_type))
            .with_context(|| format!("{} is not a valid manifest", path.display()))
    }
}

impl ImageSource for OciLayout {
    /// Picks the `index.json` entry whose `org.opencontainers.image.ref.name`
    /// is the reference's tag (or whose digest is its digest), then the
    /// node's platform if that entry is an index.
    fn resolve(&mut self, image: &ImageRef) -> Result<ResolvedImage> {
        let index_path = self.dir.join("index.json");
        let bytes =
            fs::read(&index_path).with_context(|| format!("reading {}", index_path.display()))?;
        let Manifest::Index(entries) = parse_manifest(&bytes, Some(super::MEDIA_OCI_INDEX))
            .with_context(|| format!("{} is not a valid OCI index", index_path.display()))?
        else {
            bail!(
                "{} is an image manifest, not an OCI index",
                index_path.display()
            );
        };
        let found = entries.iter().find(|e| match (&image.digest, &image.tag) {
            (Some(d), _) => &e.digest == d,
            (None, tag) => e.ref_name.as_deref() == Some(tag.as_deref().unwrap_or("latest")),
        });
        let Some(entry) = found else {
            let names: Vec<&str> = entries
                .iter()
                .filter_map(|e| e.ref_name.as_deref())
                .collect();
            bail!(
                "{image} is not in the OCI layout {}: it has the tags [{}]",
                self.dir.display(),
                names.join(", ")
            );
        };
        let (manifest, digest, index_digest) =
            match self.read_manifest(&entry.digest, entry.size, &entry.media_type)? {
                Manifest::Image(m) => (m, entry.digest.clone(), None),
                Manifest::Index(children) => {
                    let child = choose_platform(&children, &self.platform)
                        .with_context(|| format!("{image}"))?;
                    match self.read_manifest(&child.digest, child.size, &child.media_type)? {
                        Manifest::Image(m) => (m, child.digest.clone(), Some(entry.digest.clone())),
                        Manifest::Index(_) => bail!(
                        "{image}: manifest {} is an index inside an index, which is not supported",
                        child.digest
                    ),
                    }
                }
            };
        let source = format!("oci:{}", self.dir.display());
        Ok(ResolvedImage::new(
            image,
            (digest, index_digest),
            manifest,
            source,
        ))
    }

    fn fetch_blob(
        &mut self,
        _image: &ResolvedImage,
        desc: &Descriptor,
        offset: u64,
        sink: &mut dyn Write,
    ) -> Result<u64> {
        let path = self.blob_path(&desc.digest)?;
        let mut f = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        f.seek(SeekFrom::Start(offset))?;
        io::copy(&mut f, sink).with_context(|| format!("copying {}", path.display()))?;
        Ok(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmm_day1_tests::scratch::TempDir;

    /// Store `data` in the layout; its descriptor JSON.
    fn put(layout: &Path, media_type: &str, data: &[u8], extra: &str) -> (String, String) {
        let mut c = ring::digest::Context::new(&ring::digest::SHA256);
        c.update(data);
        let hex = crate::oci::sha256_hex(c);
        fs::write(layout.join("blobs/sha256").join(&hex), data).unwrap();
        let digest = format!("sha256:{hex}");
        let desc = format!(
            r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{}{extra}}}"#,
            data.len()
        );
        (digest, desc)
    }

    #[test]
    fn oci_layout_resolves_tags_indexes_and_platforms() {
        let tmp = TempDir::new("layout").unwrap();
        let dir = tmp.path();
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let (_, config) = put(dir, "application/vnd.oci.image.config.v1+json", b"{}", "");
        let manifest = |layer: &[u8]| {
            let (_, l) = put(dir, "application/vnd.oci.image.layer.v1.tar", layer, "");
            let m = format!(r#"{{"schemaVersion":2,"config":{config},"layers":[{l}]}}"#);
            put(
                dir,
                "application/vnd.oci.image.manifest.v1+json",
                m.as_bytes(),
                "",
            )
        };
        let (arm, arm_desc) = manifest(b"arm");
        let (amd, amd_desc) = manifest(b"amd");
        let plat = |arch: &str, variant: &str| {
            format!(r#","platform":{{"os":"linux","architecture":"{arch}"{variant}}}"#)
        };
        let arm_entry = arm_desc.replace('}', "") + &plat("arm64", r#","variant":"v8""#) + "}";
        let amd_entry = amd_desc.trim_end_matches('}').to_string() + &plat("amd64", "") + "}";
        let index = format!(r#"{{"schemaVersion":2,"manifests":[{arm_entry},{amd_entry}]}}"#);
        let (index_digest, index_desc) = put(
            dir,
            "application/vnd.oci.image.index.v1+json",
            index.as_bytes(),
            "",
        );
        let tag =
            |t: &str| format!(r#","annotations":{{"org.opencontainers.image.ref.name":"{t}"}}"#);
        let top = format!(
            r#"{{"schemaVersion":2,"manifests":[{},{}]}}"#,
            index_desc.trim_end_matches('}').to_string() + &tag("multi") + "}",
            amd_desc.trim_end_matches('}').to_string() + &tag("single") + "}",
        );
        fs::write(dir.join("index.json"), top).unwrap();

        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let arm64 = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        let r = |p: &Platform, reference: &str| {
            OciLayout::open(dir, p.clone())
                .unwrap()
                .resolve(&ImageRef::parse(reference).unwrap())
        };
        let got = r(&amd64, "registry.test/drv:multi").unwrap();
        assert_eq!(
            (got.digest.as_str(), got.index_digest.as_deref()),
            (amd.as_str(), Some(index_digest.as_str()))
        );
        assert_eq!(got.layers.len(), 1);
        let got = r(&arm64, "registry.test/drv:multi").unwrap();
        assert_eq!(got.digest, arm);
        let got = r(&arm64, "registry.test/drv:single").unwrap();
        assert_eq!(
            (got.digest.as_str(), got.index_digest),
            (amd.as_str(), None)
        );
        let got = r(&amd64, &format!("registry.test/drv@{amd}")).unwrap();
        assert_eq!(got.digest, amd);
        let s390 = Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        };
        let e = format!("{:#}", r(&s390, "registry.test/drv:multi").unwrap_err());
        assert!(e.contains("no manifest for linux/s390x"), "{e}");
        let e = format!("{:#}", r(&amd64, "registry.test/drv:v9").unwrap_err());
        assert!(e.contains("it has the tags [multi, single]"), "{e}");
        // A manifest whose bytes do not match its digest is refused.
        fs::write(
            dir.join("blobs/sha256").join(digest_hex(&amd).unwrap()),
            b"{\"schemaVersion\":2}",
        )
        .unwrap();
        let e = r(&amd64, "registry.test/drv:single").unwrap_err();
        assert!(
            matches!(
                e.downcast_ref::<RegistryError>(),
                Some(RegistryError::DigestMismatch { .. })
            ),
            "{e:#}"
        );
    }
}
