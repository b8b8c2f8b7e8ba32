//! Writing the output: stdout, or a file that is either the old one or the
//! complete new one (temp file in the same directory, fsync, rename, fsync
//! of the directory), never half-written. A path that exists and is not a
//! regular file (`/dev/null`, a FIFO, a terminal) is written in place: a
//! rename would replace the device node itself (as root, `-o /dev/null`
//! once turned this machine's `/dev/null` into a regular file).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub fn emit(text: &str, to: Option<&Path>) -> Result<()> {
    match to {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .context("cannot write to stdout")
        }
        Some(path) => match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                anyhow::bail!("cannot write {}: it is a directory", path.display())
            }
            Ok(m) if !m.is_file() => write_in_place(path, text.as_bytes())
                .with_context(|| format!("cannot write {}", path.display())),
            _ => write_atomic(path, text.as_bytes())
                .with_context(|| format!("cannot write {}", path.display())),
        },
    }
}

fn write_in_place(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(data)?;
    f.flush()
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .context("the output path names no file")?
        .to_string_lossy();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".{file_name}.kmm-day1-{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename is durable only once the directory is.
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmm_day1_tests::scratch::TempDir;

    #[test]
    fn replaces_atomically_and_leaves_no_temp() {
        let tmp = TempDir::new("write").unwrap();
        let dir = tmp.path();
        let p = dir.join("out.yaml");
        std::fs::write(&p, "old").unwrap();
        emit("new\n", Some(&p)).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new\n");
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let e = emit("x", Some(&dir.join("missing/out.yaml"))).unwrap_err();
        assert!(format!("{e:#}").contains("missing/out.yaml"));
        let e = emit("x", Some(dir)).unwrap_err();
        assert!(format!("{e:#}").contains("it is a directory"), "{e:#}");
    }

    #[test]
    fn a_fifo_or_device_is_written_in_place_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let tmp = TempDir::new("fifo").unwrap();
        let fifo = tmp.join("out");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
        };
        emit("through the pipe\n", Some(&fifo)).unwrap();
        // Checked before joining: a replaced FIFO would leave the reader
        // waiting for a writer forever.
        let still = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(still.is_fifo(), "the FIFO was replaced by {still:?}");
        assert_eq!(reader.join().unwrap(), "through the pipe\n");
    }
}
