//! Where blobs come from and how they land in the store.
//!
//! [`ImageSource`] is what the pull pipeline needs from an image: resolve a
//! reference to a platform manifest, then stream blobs. The registry client
//! implements it, and so does [`OciLayout`], a local OCI image layout
//! directory (`oci-layout`, `index.json`, `blobs/sha256/…`) — for air-gapped
//! nodes, for tests without a network, and for reading layouts elsewhere.
//!
//! [`fetch`] streams a blob to `<store>/blobs/sha256/<hex>.partial`, hashing
//! as it writes; it is renamed to `<hex>` only when size and digest match.
//! Blobs are not fsynced: they are intermediate, removed before the tree is
//! synced (so their pages are never written back at all), and a blob found
//! at the start of a run is hashed again before it is used, so one torn by
//! a crash is simply downloaded again. An interrupted download resumes from
//! the partial (its prefix is hashed first).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use kmm_day1_config::ImageRef;

use crate::registry::{Descriptor, Platform, Registry, RegistryError, ResolvedImage};
use crate::state::{self, Tenths};
use crate::{json, log, notify};

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

impl ImageSource for Registry {
    fn resolve(&mut self, image: &ImageRef) -> Result<ResolvedImage> {
        Registry::resolve(self, image)
    }

    fn fetch_blob(
        &mut self,
        image: &ResolvedImage,
        desc: &Descriptor,
        offset: u64,
        sink: &mut dyn Write,
    ) -> Result<u64> {
        Registry::fetch_blob(self, image, desc, offset, sink)
    }
}

/// The hex part of a `sha256:<64 lowercase hex>` digest; anything else is
/// refused before it can become part of a path.
pub fn digest_hex(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(hex)
        }
        _ => bail!("`{digest}` is not a sha256 digest (`sha256:` and 64 lowercase hex digits)"),
    }
}

pub fn sha256_hex(ctx: ring::digest::Context) -> String {
    let d = ctx.finish();
    let mut s = String::with_capacity(64);
    for b in d.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Writes to the partial file while hashing, refusing bytes past `max`.
struct HashingSink<'a> {
    file: BufWriter<&'a File>,
    ctx: ring::digest::Context,
    len: u64,
    max: u64,
    label: &'a str,
    /// Progress goes to `STATUS=` at most once a second (sd_notify is a
    /// syscall per message; systemctl status needs no more).
    next_status: std::time::Instant,
    /// Where this attempt started, for the rate.
    start: (std::time::Instant, u64),
    /// The source sent more than the blob's size: from a resume, a sign
    /// that the server ignored the range and sent the whole blob.
    overflowed: bool,
}

const STATUS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl HashingSink<'_> {
    /// Ends the borrow of the file; what was written must be flushed.
    fn into_digest(self) -> (ring::digest::Context, u64) {
        (self.ctx, self.len)
    }
}

impl Write for HashingSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.len + buf.len() as u64 > self.max {
            self.overflowed = true;
            return Err(io::Error::other(format!(
                "the server sent more than the {} bytes the manifest announces",
                self.max
            )));
        }
        self.file.write_all(buf)?;
        self.ctx.update(buf);
        self.len += buf.len() as u64;
        let now = std::time::Instant::now();
        if now >= self.next_status {
            self.next_status = now + STATUS_EVERY;
            // Tenths of bytes per second, then of MiB per second.
            let rate = Tenths::rate(self.len - self.start.1, now.duration_since(self.start.0));
            let rate = Tenths(rate.0 >> 20);
            notify::status(&format!(
                "downloading {}: {} of {} ({rate} MiB/s)",
                self.label,
                state::size(self.len),
                state::size(self.max)
            ));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Download `desc` into `blobs_dir` (verified) and return its path.
/// `label` names the blob in progress messages ("layer 2/3").
pub fn fetch(
    blobs_dir: &Path,
    src: &mut dyn ImageSource,
    image: &ResolvedImage,
    desc: &Descriptor,
    label: &str,
) -> Result<PathBuf> {
    let hex = digest_hex(&desc.digest)?;
    fs::create_dir_all(blobs_dir).with_context(|| format!("creating {}", blobs_dir.display()))?;
    let done = blobs_dir.join(hex);
    // Left by an earlier run: verified then, but not synced, so check again.
    if let Ok(m) = fs::metadata(&done) {
        let intact = m.is_file()
            && m.len() == desc.size
            && File::open(&done).is_ok_and(|f| {
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                hash_prefix(&f, desc.size, &mut ctx).is_ok() && sha256_hex(ctx) == hex
            });
        if intact {
            return Ok(done);
        }
        fs::remove_file(&done)
            .with_context(|| format!("removing damaged blob {}", done.display()))?;
    }
    let partial = blobs_dir.join(format!("{hex}.partial"));
    // At most one restart: after a resume whose prefix turned out bad, or a
    // server that ignored the range.
    for attempt in 0..2 {
        let file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&partial)
            .with_context(|| format!("opening {}", partial.display()))?;
        let mut have = file.metadata()?.len();
        if have > desc.size {
            file.set_len(0)?;
            have = 0;
        }
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        if have > 0 {
            log::info!(
                "{label}: resuming {} at byte {have} of {}",
                desc.digest,
                desc.size
            );
            hash_prefix(&file, have, &mut ctx)
                .with_context(|| format!("reading {}", partial.display()))?;
        }
        (&file).seek(SeekFrom::Start(have))?;
        let mut sink = HashingSink {
            file: BufWriter::with_capacity(64 << 10, &file),
            ctx,
            len: have,
            max: desc.size,
            label,
            next_status: std::time::Instant::now() + STATUS_EVERY,
            start: (std::time::Instant::now(), have),
            overflowed: false,
        };
        if have < desc.size {
            let fetched = src.fetch_blob(image, desc, have, &mut sink);
            // Keep what arrived for the next run to resume from.
            let flushed = sink.flush();
            if disk_full(&fetched, &flushed) {
                // Unless the disk is full: the partial file is then what
                // fills it, and the run could not even record its result
                // (pull.json). Free the space; the next run starts over.
                drop(sink);
                drop(file);
                let _ = fs::remove_file(&partial);
                let err = match (fetched, flushed) {
                    (Err(e), _) => e,
                    (Ok(_), Err(e)) => e.into(),
                    (Ok(_), Ok(())) => io::Error::from(io::ErrorKind::StorageFull).into(),
                };
                return Err(err.context(format!(
                    "downloading {label} ({}); the partial download was removed to free the space",
                    desc.digest
                )));
            }
            if fetched.is_err() && sink.overflowed && have > 0 && attempt == 0 {
                drop(sink);
                file.set_len(0)?;
                continue;
            }
            let start =
                fetched.with_context(|| format!("downloading {label} ({})", desc.digest))?;
            flushed.with_context(|| format!("writing {}", partial.display()))?;
            if start != have {
                // The bytes in the file are now a mix; start over.
                drop(sink);
                file.set_len(0)?;
                ensure!(
                    attempt == 0,
                    "{label} ({}): the source keeps sending from offset {start} when asked for {have}",
                    desc.digest
                );
                continue;
            }
        }
        let (ctx, len) = sink.into_digest();
        if len != desc.size {
            bail!(
                "{label} ({}): the download ended after {len} of {} bytes; the next run resumes it",
                desc.digest,
                desc.size
            );
        }
        let actual = sha256_hex(ctx);
        if actual != hex {
            drop(file);
            fs::remove_file(&partial).ok();
            if have > 0 && attempt == 0 {
                // The prefix from an earlier run may be what is wrong.
                continue;
            }
            return Err(RegistryError::DigestMismatch {
                what: format!("{label} from {}", image.source),
                expected: desc.digest.clone(),
                actual: format!("sha256:{actual}"),
            }
            .into());
        }
        drop(file);
        fs::rename(&partial, &done)
            .with_context(|| format!("renaming {} to {}", partial.display(), done.display()))?;
        return Ok(done);
    }
    bail!("{label} ({}): could not be downloaded intact", desc.digest)
}

/// Whether a download failed because the store's filesystem is full.
fn disk_full(fetched: &Result<u64>, flushed: &io::Result<()>) -> bool {
    let full = |e: &io::Error| e.kind() == io::ErrorKind::StorageFull;
    fetched.as_ref().is_err_and(|e| {
        e.chain()
            .any(|c| c.downcast_ref::<io::Error>().is_some_and(full))
    }) || flushed.as_ref().is_err_and(full)
}

fn hash_prefix(mut file: &File, len: u64, ctx: &mut ring::digest::Context) -> io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let mut r = file.take(len);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        ctx.update(&buf[..n]);
    }
}

/// An OCI image layout directory (image-spec `image-layout.md`).
#[derive(Debug)]
pub struct OciLayout {
    dir: PathBuf,
    platform: Platform,
}

/// Manifests larger than this are refused (a registry's usual limit is 4 MiB).
const MAX_MANIFEST: u64 = 4 << 20;

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// An OCI descriptor, read through json.rs (no derived `Deserialize`: size).
#[derive(Debug)]
struct JsonDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    platform: Option<JsonPlatform>,
    /// The `org.opencontainers.image.ref.name` annotation (the tag in an
    /// OCI layout's index.json).
    ref_name: Option<String>,
}

#[derive(Debug)]
struct JsonPlatform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// Index or manifest: told apart by which fields are present.
#[derive(Debug)]
struct JsonManifest {
    media_type: String,
    manifests: Option<Vec<JsonDescriptor>>,
    config: Option<JsonDescriptor>,
    layers: Vec<JsonDescriptor>,
}

impl JsonDescriptor {
    fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        let o = json::object(v, "a descriptor")?;
        let platform = match o.opt_object("platform")? {
            None => None,
            Some(p) => Some(JsonPlatform {
                os: p.required_str("os")?.to_string(),
                architecture: p.required_str("architecture")?.to_string(),
                variant: p.opt_string("variant")?,
            }),
        };
        let ref_name = match o.opt_object("annotations")? {
            None => None,
            Some(a) => a.opt_string("org.opencontainers.image.ref.name")?,
        };
        Ok(JsonDescriptor {
            media_type: o.string("mediaType")?,
            digest: o.required_str("digest")?.to_string(),
            size: o.required_u64("size")?,
            platform,
            ref_name,
        })
    }
}

impl JsonManifest {
    fn parse(bytes: &[u8]) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_slice(bytes)?;
        Self::from_json(&value).map_err(anyhow::Error::msg)
    }

    fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        let o = json::object(v, "the manifest")?;
        let list = |key| -> Result<Vec<JsonDescriptor>, String> {
            o.array(key)?
                .iter()
                .map(JsonDescriptor::from_json)
                .collect()
        };
        Ok(JsonManifest {
            media_type: o.string("mediaType")?,
            manifests: match o.opt_array("manifests")? {
                None => None,
                Some(_) => Some(list("manifests")?),
            },
            config: o.get("config").map(JsonDescriptor::from_json).transpose()?,
            layers: list("layers")?,
        })
    }
}

impl From<&JsonDescriptor> for Descriptor {
    fn from(d: &JsonDescriptor) -> Self {
        Descriptor {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size,
        }
    }
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

    /// A small JSON blob, verified against its descriptor.
    fn read_json(&self, desc: &JsonDescriptor) -> Result<(JsonManifest, Vec<u8>)> {
        ensure!(
            desc.size <= MAX_MANIFEST,
            "manifest {} is {} bytes, more than the {MAX_MANIFEST} allowed",
            desc.digest,
            desc.size
        );
        let path = self.blob_path(&desc.digest)?;
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let actual = sha256_hex({
            let mut c = ring::digest::Context::new(&ring::digest::SHA256);
            c.update(&bytes);
            c
        });
        if bytes.len() as u64 != desc.size || desc.digest != format!("sha256:{actual}") {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest in {}", self.dir.display()),
                expected: desc.digest.clone(),
                actual: format!("sha256:{actual}"),
            }
            .into());
        }
        let m = JsonManifest::parse(&bytes)
            .with_context(|| format!("{} is not a valid manifest", path.display()))?;
        Ok((m, bytes))
    }

    fn platform_matches(&self, p: &JsonPlatform) -> bool {
        p.os == self.platform.os
            && p.architecture == self.platform.architecture
            && match (&self.platform.variant, &p.variant) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            }
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
        let index = JsonManifest::parse(&bytes)
            .with_context(|| format!("{} is not a valid OCI index", index_path.display()))?;
        let entries = index.manifests.unwrap_or_default();
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
        let (mut manifest, mut digest, mut index_digest) =
            (self.read_json(entry)?.0, entry.digest.clone(), None);
        if INDEX_TYPES.contains(&entry.media_type.as_str()) || manifest.manifests.is_some() {
            let children = manifest.manifests.take().unwrap_or_default();
            let Some(child) = children.iter().find(|c| {
                c.platform
                    .as_ref()
                    .is_some_and(|p| self.platform_matches(p))
            }) else {
                bail!(
                    "{image} has no manifest for {}/{}",
                    self.platform.os,
                    self.platform.architecture
                );
            };
            index_digest = Some(digest);
            digest = child.digest.clone();
            manifest = self.read_json(child)?.0;
        }
        let Some(config) = manifest.config.as_ref() else {
            bail!(
                "manifest {digest} of {image} has no config (media type `{}`)",
                manifest.media_type
            );
        };
        Ok(ResolvedImage {
            reference: image.to_string(),
            digest,
            index_digest,
            config: config.into(),
            layers: manifest.layers.iter().map(Descriptor::from).collect(),
            source: format!("oci:{}", self.dir.display()),
        })
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

    /// A source that serves one blob, optionally ignoring ranges, flipping a
    /// byte, or stopping after `cut` bytes.
    struct Fake {
        data: Vec<u8>,
        ignore_range: bool,
        flip: Option<usize>,
        cut: Option<usize>,
        calls: Vec<u64>,
    }

    impl ImageSource for Fake {
        fn resolve(&mut self, _: &ImageRef) -> Result<ResolvedImage> {
            unreachable!()
        }
        fn fetch_blob(
            &mut self,
            _: &ResolvedImage,
            _: &Descriptor,
            offset: u64,
            sink: &mut dyn Write,
        ) -> Result<u64> {
            self.calls.push(offset);
            let start = if self.ignore_range {
                0
            } else {
                offset as usize
            };
            let mut data = self.data[start..].to_vec();
            if let Some(i) = self.flip {
                if i >= start {
                    data[i - start] ^= 1;
                }
            }
            if let Some(c) = self.cut.take() {
                sink.write_all(&data[..c - start])?;
                bail!("connection reset");
            }
            sink.write_all(&data)?;
            Ok(start as u64)
        }
    }

    fn setup(tag: &str) -> (PathBuf, Vec<u8>, Descriptor, ResolvedImage) {
        let dir = std::env::temp_dir().join(format!("kmm-day1-blobs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut c = ring::digest::Context::new(&ring::digest::SHA256);
        c.update(&data);
        let desc = Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            digest: format!("sha256:{}", sha256_hex(c)),
            size: data.len() as u64,
        };
        let img = ResolvedImage {
            reference: "r".into(),
            digest: desc.digest.clone(),
            index_digest: None,
            config: desc.clone(),
            layers: vec![],
            source: "test".into(),
        };
        (dir, data, desc, img)
    }

    fn fake(data: &[u8]) -> Fake {
        Fake {
            data: data.to_vec(),
            ignore_range: false,
            flip: None,
            cut: None,
            calls: vec![],
        }
    }

    #[test]
    fn resumes_from_partial_and_verifies() {
        let (dir, data, desc, img) = setup("resume");
        let mut src = fake(&data);
        src.cut = Some(100_000);
        let e = format!(
            "{:#}",
            fetch(&dir, &mut src, &img, &desc, "layer 1/1").unwrap_err()
        );
        assert!(e.contains("connection reset"), "{e}");
        let hex = digest_hex(&desc.digest).unwrap();
        assert_eq!(
            fs::metadata(dir.join(format!("{hex}.partial")))
                .unwrap()
                .len(),
            100_000
        );
        let p = fetch(&dir, &mut src, &img, &desc, "layer 1/1").unwrap();
        assert_eq!(src.calls, [0, 100_000]);
        assert_eq!(fs::read(&p).unwrap(), data);
        assert!(!dir.join(format!("{hex}.partial")).exists());
        // A verified blob is reused without asking the source.
        fetch(&dir, &mut src, &img, &desc, "layer 1/1").unwrap();
        assert_eq!(src.calls.len(), 2);
        // One torn by a crash (blobs are not synced) is downloaded again.
        let mut torn = data.clone();
        torn[200_000] = !torn[200_000];
        fs::write(&p, &torn).unwrap();
        fetch(&dir, &mut src, &img, &desc, "layer 1/1").unwrap();
        assert_eq!(src.calls, [0, 100_000, 0]);
        assert_eq!(fs::read(&p).unwrap(), data);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn restarts_when_the_server_ignores_the_range() {
        let (dir, data, desc, img) = setup("range");
        let hex = digest_hex(&desc.digest).unwrap().to_string();
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("{hex}.partial")), &data[..5000]).unwrap();
        let mut src = fake(&data);
        src.ignore_range = true;
        let p = fetch(&dir, &mut src, &img, &desc, "layer").unwrap();
        assert_eq!(src.calls, [5000, 0]);
        assert_eq!(fs::read(p).unwrap(), data);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_prefix_restarts_and_flipped_byte_is_refused() {
        let (dir, data, desc, img) = setup("flip");
        let hex = digest_hex(&desc.digest).unwrap().to_string();
        fs::create_dir_all(&dir).unwrap();
        // A partial whose prefix is wrong: resumed once, then restarted.
        fs::write(dir.join(format!("{hex}.partial")), vec![0u8; 7000]).unwrap();
        let mut src = fake(&data);
        fetch(&dir, &mut src, &img, &desc, "layer").unwrap();
        assert_eq!(src.calls, [7000, 0]);
        fs::remove_file(dir.join(&hex)).unwrap();

        let mut src = fake(&data);
        src.flip = Some(12_345);
        let err = fetch(&dir, &mut src, &img, &desc, "layer 1/2").unwrap_err();
        assert!(matches!(
            err.downcast_ref::<RegistryError>(),
            Some(RegistryError::DigestMismatch { .. })
        ));
        assert!(format!("{err:#}").contains("digest mismatch"), "{err:#}");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "nothing kept");
        // More bytes than the descriptor says are refused too.
        let mut src = fake(&data);
        src.data.push(0);
        let e = format!(
            "{:#}",
            fetch(&dir, &mut src, &img, &desc, "layer").unwrap_err()
        );
        assert!(e.contains("more than the 300000 bytes"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Store `data` in the layout; its descriptor JSON.
    fn put(layout: &Path, media_type: &str, data: &[u8], extra: &str) -> (String, String) {
        let mut c = ring::digest::Context::new(&ring::digest::SHA256);
        c.update(data);
        let hex = sha256_hex(c);
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
        let dir = std::env::temp_dir().join(format!("kmm-day1-layout-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let (_, config) = put(&dir, "application/vnd.oci.image.config.v1+json", b"{}", "");
        let manifest = |layer: &[u8]| {
            let (_, l) = put(&dir, "application/vnd.oci.image.layer.v1.tar", layer, "");
            let m = format!(r#"{{"schemaVersion":2,"config":{config},"layers":[{l}]}}"#);
            put(
                &dir,
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
            &dir,
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
            OciLayout::open(&dir, p.clone())
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
        fs::remove_dir_all(&dir).unwrap();
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
