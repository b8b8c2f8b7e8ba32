//! How blobs land in the store: the verified, resumable fetch from any
//! [`ImageSource`] (the registry client, or an OCI layout: `oci/`).
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

use crate::oci::{digest_hex, sha256_hex, Descriptor, ImageSource, ResolvedImage};
use crate::registry::RegistryError;
use crate::units::{self, Tenths};
use crate::{log, notify};

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
                units::size(self.len),
                units::size(self.max)
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

#[cfg(test)]
mod tests {
    use super::*;
    use kmm_day1_config::ImageRef;
    use kmm_day1_tests::scratch::TempDir;

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

    /// The blobs dir is inside the TempDir and not created: `fetch` must
    /// create it. Bind the TempDir for the whole test (`_tmp`, not `_`).
    fn setup(tag: &str) -> (TempDir, PathBuf, Vec<u8>, Descriptor, ResolvedImage) {
        let tmp = TempDir::new(&format!("blobs-{tag}")).unwrap();
        let dir = tmp.join("blobs");
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
        (tmp, dir, data, desc, img)
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
        let (_tmp, dir, data, desc, img) = setup("resume");
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
    }

    #[test]
    fn restarts_when_the_server_ignores_the_range() {
        let (_tmp, dir, data, desc, img) = setup("range");
        let hex = digest_hex(&desc.digest).unwrap().to_string();
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("{hex}.partial")), &data[..5000]).unwrap();
        let mut src = fake(&data);
        src.ignore_range = true;
        let p = fetch(&dir, &mut src, &img, &desc, "layer").unwrap();
        assert_eq!(src.calls, [5000, 0]);
        assert_eq!(fs::read(p).unwrap(), data);
    }

    #[test]
    fn bad_prefix_restarts_and_flipped_byte_is_refused() {
        let (_tmp, dir, data, desc, img) = setup("flip");
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
    }
}
