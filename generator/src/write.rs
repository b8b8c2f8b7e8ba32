//! Writing the output: stdout, or a file that is either the old one or the
//! complete new one (temp file in the same directory, fsync, rename, fsync
//! of the directory), never half-written.

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
        Some(path) => write_atomic(path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display())),
    }
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

    #[test]
    fn replaces_atomically_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("kmm-day1-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("out.yaml");
        std::fs::write(&p, "old").unwrap();
        emit("new\n", Some(&p)).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new\n");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let e = emit("x", Some(&dir.join("missing/out.yaml"))).unwrap_err();
        assert!(format!("{e:#}").contains("missing/out.yaml"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
