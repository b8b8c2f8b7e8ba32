//! Images for tests, built by the real `umoci` in OCI layouts.
//!
//! [`Build`] is the one way the suites make an image: a new empty image,
//! then layers, each the diff of an unpacked rootfs the test edits (a
//! removed file becomes a whiteout), or a directory inserted as is
//! (`umoci insert`). [`Image`] is the simple case (files in one layer),
//! [`kmm_image`] a KMM driver image from Debian's modules, and
//! [`build_index_layout`] a multi-platform index of [`Image`]s.
//! Hand-made layers with content umoci refuses to write (hostile paths,
//! footer-less tars) stay with the suites that need them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::kernel_tree::depmod;
use crate::try_run as run;

/// An image being built as `layout:tag`.
#[derive(Debug)]
pub struct Build {
    image: String,
    work: PathBuf,
    tag: String,
    layers: usize,
}

impl Build {
    /// A new empty image `layout:tag` (the layout is created if needed);
    /// `work` holds the unpacked bundles.
    pub fn new(layout: &Path, tag: &str, work: &Path) -> Result<Build> {
        if !layout.join("index.json").exists() {
            run(Command::new("umoci").args(["init", "--layout"]).arg(layout))?;
        }
        let image = format!("{}:{tag}", layout.display());
        run(Command::new("umoci").args(["new", "--image", &image]))?;
        Ok(Build {
            image,
            work: work.to_path_buf(),
            tag: tag.to_string(),
            layers: 0,
        })
    }

    /// One more layer: the image as it is now is unpacked, `edit` changes
    /// its rootfs, and the difference is repacked. The edited rootfs stays
    /// (until `work` goes) as the image's content a container would see.
    pub fn layer(&mut self, edit: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
        self.layers += 1;
        // repack diffs against the image the bundle was unpacked from, so
        // every layer needs a bundle of its own.
        let bundle = self
            .work
            .join(format!("bundle-{}-{}", self.tag, self.layers));
        run(Command::new("umoci")
            .args(["unpack", "--rootless", "--image", &self.image])
            .arg(&bundle))?;
        let rootfs = bundle.join("rootfs");
        edit(&rootfs)?;
        run(Command::new("umoci")
            .args(["repack", "--image", &self.image])
            .arg(&bundle))?;
        Ok(rootfs)
    }

    /// One more layer holding the directory `src` as `dest` in the image,
    /// written by `umoci insert` (which, unlike repack, writes no tar footer).
    pub fn insert(&mut self, src: &Path, dest: &str) -> Result<()> {
        self.layers += 1;
        run(Command::new("umoci")
            .args(["insert", "--rootless", "--image", &self.image])
            .arg(src)
            .arg(dest))?;
        Ok(())
    }

    /// Set the image config's OS to linux and its architecture to `arch`.
    pub fn architecture(&self, arch: &str) -> Result<()> {
        run(Command::new("umoci").args([
            "config",
            "--image",
            &self.image,
            "--os",
            "linux",
            "--architecture",
            arch,
        ]))?;
        Ok(())
    }
}

/// An image: files (path in the image → content) in one layer on top of an
/// empty base, for one architecture.
#[derive(Debug, Clone, Default)]
pub struct Image {
    files: Vec<(String, Vec<u8>)>,
    architecture: Option<String>,
}

impl Image {
    pub fn new() -> Image {
        Image::default()
    }

    pub fn file(mut self, path: &str, content: &[u8]) -> Image {
        self.files
            .push((path.trim_start_matches('/').to_string(), content.to_vec()));
        self
    }

    pub fn architecture(mut self, arch: &str) -> Image {
        self.architecture = Some(arch.to_string());
        self
    }

    /// Into the OCI layout `layout` (created if needed) as `tag`.
    pub fn build(&self, layout: &Path, tag: &str, work: &Path) -> Result<()> {
        let mut b = Build::new(layout, tag, work)?;
        b.layer(|rootfs| {
            for (path, content) in &self.files {
                let p = rootfs.join(path);
                if let Some(parent) = p.parent() {
                    fs::create_dir_all(parent)?;
                }
                fs::write(&p, content)?;
            }
            Ok(())
        })?;
        if let Some(a) = &self.architecture {
            b.architecture(a)?;
        }
        Ok(())
    }
}

/// Add `layout:tag`, a one-layer KMM driver image: Debian's `modules`
/// (paths relative to `debian`, its `lib/modules/<release>`) in
/// `/opt/lib/modules/<dir_kver>/extra/`, `depmod -b /opt`, and `firmware`
/// files under `/firmware`. Bundles go next to the layout.
pub fn kmm_image(
    layout: &Path,
    tag: &str,
    debian: &Path,
    dir_kver: &str,
    modules: &[&str],
    firmware: &[(&str, &[u8])],
) -> Result<()> {
    let work = layout
        .parent()
        .context("the layout needs a parent directory")?;
    Build::new(layout, tag, work)?.layer(|rootfs| {
        let extra = rootfs.join("opt/lib/modules").join(dir_kver).join("extra");
        fs::create_dir_all(&extra)?;
        for m in modules {
            let name = Path::new(m).file_name().context("module path")?;
            fs::copy(debian.join(m), extra.join(name)).with_context(|| format!("copying {m}"))?;
        }
        depmod(&rootfs.join("opt"), dir_kver)?;
        for (name, bytes) in firmware {
            let p = rootfs.join("firmware").join(name);
            fs::create_dir_all(p.parent().context("firmware path")?)?;
            fs::write(p, bytes)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Build, in the OCI layout `layout`, one image per entry of `platforms`
/// (architecture, variant, image) and an image index of them, in that order,
/// tagged `tag`; the index digest. `work` is scratch space for umoci.
pub fn build_index_layout(
    layout: &Path,
    tag: &str,
    platforms: &[(&str, Option<&str>, &Image)],
    work: &Path,
) -> Result<String> {
    let mut entries = Vec::new();
    for (i, (arch, variant, image)) in platforms.iter().enumerate() {
        let p_tag = format!("p{i}");
        let img = (*image).clone().architecture(arch);
        img.build(layout, &p_tag, work)?;
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
        let desc = index["manifests"]
            .as_array()
            .and_then(|m| {
                m.iter().find(|d| {
                    d["annotations"]["org.opencontainers.image.ref.name"] == p_tag.as_str()
                })
            })
            .cloned()
            .context("umoci's index.json lacks the tag it just wrote")?;
        let mut platform = serde_json::json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            platform["variant"] = serde_json::json!(v);
        }
        entries.push(serde_json::json!({
            "mediaType": desc["mediaType"], "digest": desc["digest"], "size": desc["size"],
            "platform": platform,
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))?;
    let digest = write_blob(layout, &index)?;
    let index_path = layout.join("index.json");
    let mut top: serde_json::Value = serde_json::from_slice(&std::fs::read(&index_path)?)?;
    if let Some(m) = top["manifests"].as_array_mut() {
        m.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
    }
    std::fs::write(&index_path, serde_json::to_vec(&top)?)?;
    Ok(digest)
}

/// Store `data` as a blob of the OCI layout; its digest.
fn write_blob(layout: &Path, data: &[u8]) -> Result<String> {
    let tmp = layout.join("blob.tmp");
    fs::write(&tmp, data)?;
    let out = run(Command::new("sha256sum").arg(&tmp))?;
    let hex = out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    fs::rename(&tmp, layout.join("blobs/sha256").join(&hex))?;
    Ok(format!("sha256:{hex}"))
}
