//! The `.modinfo` section of a kernel module, read without libkmod (which
//! cannot be linked statically): enough ELF to find one section, for ELF32 and
//! ELF64 of either byte order, and the module signature trailer.
//!
//! `.ko.xz` and `.ko.zst` are decompressed in memory first; the kernel signs a
//! module before `modules_install` compresses it, so the signature trailer is
//! looked for in the decompressed bytes.

use std::fmt;
use std::path::{Path, PathBuf};

/// What `scripts/sign-file` appends after the PKCS#7 signature.
pub const SIGNATURE_MAGIC: &[u8] = b"~Module signature appended~\n";

const XZ_MAGIC: &[u8] = &[0xFD, b'7', b'z', b'X', b'Z', 0];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xB5, 0x2F, 0xFD];
const GZIP_MAGIC: &[u8] = &[0x1F, 0x8B];
const ELF_MAGIC: &[u8] = b"\x7fELF";

/// The fields of `.modinfo` the agent acts on. Keys that may repeat
/// (`alias`, `firmware`, `softdep`) keep every value, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=` (present since Linux 4.x); the file name is the fallback.
    pub name: Option<String>,
    /// `vermagic=`, e.g. `6.1.0-56-amd64 SMP preempt mod_unload modversions `.
    pub vermagic: Option<String>,
    /// `srcversion=`, also in `/sys/module/<m>/srcversion` once loaded.
    pub srcversion: Option<String>,
    /// `version=` (`MODULE_VERSION`), if the module has one.
    pub version: Option<String>,
    pub license: Option<String>,
    /// `depends=`, split on commas (as the module was linked).
    pub depends: Vec<String>,
    pub firmware: Vec<String>,
    pub aliases: Vec<String>,
    pub softdeps: Vec<String>,
    /// The module's parameters, from `parm=` (`MODULE_PARM_DESC`) and
    /// `parmtype=` (every `module_param`): name and, when `parmtype` gives
    /// it, the type (`int`, `charp`, `array of uint`, …). File order.
    pub params: Vec<(String, Option<String>)>,
    /// The file ends with the module signature trailer.
    pub signed: bool,
}

impl ModInfo {
    /// The kernel release a module was built for: the first word of
    /// `vermagic`.
    pub fn vermagic_release(&self) -> Option<&str> {
        self.vermagic.as_deref()?.split_ascii_whitespace().next()
    }
}

/// Why a module file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModinfoError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot decompress ({format}): {message}")]
    Decompress {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error("{path}: {problem}")]
    Format { path: PathBuf, problem: FormatError },
}

/// What is wrong with the bytes of a module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not an ELF file (no \\x7fELF magic)")]
    NotElf,
    #[error("unsupported ELF class or byte order in e_ident")]
    BadIdent,
    #[error("gzip-compressed modules (.ko.gz) are not supported; use .ko, .ko.xz or .ko.zst")]
    Gzip,
    #[error("truncated or corrupt ELF: {0}")]
    Corrupt(&'static str),
    #[error("no .modinfo section: not a kernel module")]
    NoModinfo,
}

/// Read `path` (`.ko`, `.ko.xz` or `.ko.zst`) and parse its `.modinfo`.
pub fn read(path: &Path) -> Result<ModInfo, ModinfoError> {
    let bytes = read_module(path)?;
    parse(&bytes).map_err(|problem| ModinfoError::Format {
        path: path.to_path_buf(),
        problem,
    })
}

/// The module image as the kernel wants it in `init_module`: the file,
/// decompressed when it is xz or zstd (recognised by magic, not name).
pub fn read_module(path: &Path) -> Result<Vec<u8>, ModinfoError> {
    let bytes = std::fs::read(path).map_err(|source| ModinfoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decompress(path, bytes)
}

/// Whether the file at `path` needs userspace decompression before loading
/// (so `init_module` rather than `finit_module`). Judged by name, which is
/// what depmod and modprobe go by; [`decompress`] checks the magic.
pub fn is_compressed(path: &Path) -> bool {
    let n = path.as_os_str().as_encoded_bytes();
    n.ends_with(b".ko.xz") || n.ends_with(b".ko.zst") || n.ends_with(b".ko.gz")
}

/// `bytes` decompressed if they start with an xz or zstd magic, unchanged
/// otherwise. `path` only names the file in errors.
pub fn decompress(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, ModinfoError> {
    let err = |format, message: String| ModinfoError::Decompress {
        path: path.to_path_buf(),
        format,
        message,
    };
    if bytes.starts_with(XZ_MAGIC) {
        let mut out = Vec::with_capacity(bytes.len() * 3);
        // Kernel modules use CRC32 checks (`xz --check=crc32`), which
        // xz4rust verifies; CRC64/SHA-256 checks are compiled out.
        let mut r = xz4rust::XzReader::new(std::io::Cursor::new(bytes));
        std::io::copy(&mut r, &mut out).map_err(|e| err("xz", e.to_string()))?;
        Ok(out)
    } else if bytes.starts_with(ZSTD_MAGIC) {
        let mut out = Vec::with_capacity(bytes.len() * 3);
        let mut dec = ruzstd::decoding::StreamingDecoder::new(&bytes[..])
            .map_err(|e| err("zstd", e.to_string()))?;
        std::io::copy(&mut dec, &mut out).map_err(|e| err("zstd", e.to_string()))?;
        Ok(out)
    } else if bytes.starts_with(GZIP_MAGIC) {
        Err(ModinfoError::Format {
            path: path.to_path_buf(),
            problem: FormatError::Gzip,
        })
    } else {
        Ok(bytes)
    }
}

/// Parse an uncompressed module image.
pub fn parse(bytes: &[u8]) -> Result<ModInfo, FormatError> {
    let section = modinfo_section(bytes)?;
    let mut info = ModInfo {
        signed: bytes.ends_with(SIGNATURE_MAGIC),
        ..ModInfo::default()
    };
    for entry in section.split(|&b| b == 0) {
        let Ok(entry) = std::str::from_utf8(entry) else {
            continue; // a non-UTF-8 description must not make the module unreadable
        };
        let Some((key, value)) = entry.split_once('=') else {
            continue;
        };
        let value = value.to_string();
        match key {
            "name" => info.name = Some(value),
            "vermagic" => info.vermagic = Some(value),
            "srcversion" => info.srcversion = Some(value),
            "version" => info.version = Some(value),
            "license" => info.license = Some(value),
            "depends" => {
                info.depends = value
                    .split(',')
                    .filter(|d| !d.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "firmware" => info.firmware.push(value),
            "alias" => info.aliases.push(value),
            "softdep" => info.softdeps.push(value),
            "parm" | "parmtype" => {
                let (name, rest) = value.split_once(':').unwrap_or((&value, ""));
                let ty = (key == "parmtype").then(|| rest.to_string());
                match info.params.iter_mut().find(|(n, _)| n == name) {
                    Some((_, t)) => {
                        if ty.is_some() {
                            *t = ty;
                        }
                    }
                    None => info.params.push((name.to_string(), ty)),
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Endian- and class-aware reads of ELF fields.
#[derive(Clone, Copy)]
struct Elf<'a> {
    data: &'a [u8],
    is64: bool,
    big: bool,
}

impl Elf<'_> {
    fn uint(&self, off: usize, len: usize) -> Result<u64, FormatError> {
        let b = off
            .checked_add(len)
            .and_then(|end| self.data.get(off..end))
            .ok_or(FormatError::Corrupt("field beyond end of file"))?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = if self.big { b[i] } else { b[len - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        Ok(v)
    }

    /// An address-sized field (`ElfN_Off`, `ElfN_Xword` for sizes).
    fn word(&self, off: usize) -> Result<u64, FormatError> {
        self.uint(off, if self.is64 { 8 } else { 4 })
    }
}

fn to_usize(v: u64) -> Result<usize, FormatError> {
    usize::try_from(v).map_err(|_| FormatError::Corrupt("offset does not fit in memory"))
}

/// The bytes of the `.modinfo` section.
fn modinfo_section(data: &[u8]) -> Result<&[u8], FormatError> {
    if !data.starts_with(ELF_MAGIC) {
        return Err(FormatError::NotElf);
    }
    let (is64, big) = match (data.get(4), data.get(5)) {
        (Some(1), Some(1)) => (false, false),
        (Some(1), Some(2)) => (false, true),
        (Some(2), Some(1)) => (true, false),
        (Some(2), Some(2)) => (true, true),
        _ => return Err(FormatError::BadIdent),
    };
    let elf = Elf { data, is64, big };
    // e_shoff, e_shentsize, e_shnum, e_shstrndx (System V ABI, ELF header).
    let (shoff, rest) = if is64 { (0x28, 0x3A) } else { (0x20, 0x2E) };
    let shoff = to_usize(elf.word(shoff)?)?;
    let shentsize = to_usize(elf.uint(rest, 2)?)?;
    let shnum = to_usize(elf.uint(rest + 2, 2)?)?;
    let shstrndx = to_usize(elf.uint(rest + 4, 2)?)?;
    if shnum == 0 || shstrndx >= shnum || shentsize < if is64 { 64 } else { 40 } {
        return Err(FormatError::Corrupt("bad section header table"));
    }
    // (sh_name, sh_offset, sh_size) of section `i`.
    let section = |i: usize| -> Result<(usize, &[u8]), FormatError> {
        let h = i
            .checked_mul(shentsize)
            .and_then(|o| o.checked_add(shoff))
            .ok_or(FormatError::Corrupt("section header offset overflows"))?;
        let name = to_usize(elf.uint(h, 4)?)?;
        let (off, size) = if is64 {
            (elf.word(h + 24)?, elf.word(h + 32)?)
        } else {
            (elf.word(h + 16)?, elf.word(h + 20)?)
        };
        let (off, size) = (to_usize(off)?, to_usize(size)?);
        let bytes = off
            .checked_add(size)
            .and_then(|end| data.get(off..end))
            .ok_or(FormatError::Corrupt("section beyond end of file"))?;
        Ok((name, bytes))
    };
    let (_, names) = section(shstrndx)?;
    for i in 0..shnum {
        let (name, bytes) = section(i)?;
        let name = names.get(name..).unwrap_or_default();
        if name.starts_with(b".modinfo\0") {
            return Ok(bytes);
        }
    }
    Err(FormatError::NoModinfo)
}

impl fmt::Display for ModInfo {
    /// `modinfo`-like lines, for messages and debugging.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = [
            ("name", &self.name),
            ("vermagic", &self.vermagic),
            ("srcversion", &self.srcversion),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                writeln!(f, "{k}: {v}")?;
            }
        }
        writeln!(f, "signed: {}", if self.signed { "yes" } else { "no" })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal relocatable ELF with a `.modinfo` section, built field by
    /// field from the System V ABI so every class and byte order is covered.
    pub(crate) fn tiny_ko(is64: bool, big: bool, modinfo: &[u8], signed: bool) -> Vec<u8> {
        let put = |v: &mut Vec<u8>, x: u64, len: usize| {
            let b = x.to_be_bytes();
            let b = &b[8 - len..];
            if big {
                v.extend_from_slice(b);
            } else {
                v.extend(b.iter().rev());
            }
        };
        let w = if is64 { 8 } else { 4 };
        let ehsize = if is64 { 64 } else { 52 };
        let shentsize = if is64 { 64 } else { 40 };
        let shstr = b"\0.modinfo\0.shstrtab\0";
        let modinfo_off = ehsize;
        let shstr_off = modinfo_off + modinfo.len();
        let shoff = shstr_off + shstr.len();
        let mut v = Vec::new();
        v.extend_from_slice(ELF_MAGIC);
        v.extend_from_slice(&[if is64 { 2 } else { 1 }, if big { 2 } else { 1 }, 1, 0]);
        v.resize(16, 0);
        put(&mut v, 1, 2); // e_type ET_REL
        put(&mut v, 62, 2); // e_machine
        put(&mut v, 1, 4); // e_version
        put(&mut v, 0, w); // e_entry
        put(&mut v, 0, w); // e_phoff
        put(&mut v, shoff as u64, w);
        put(&mut v, 0, 4); // e_flags
        put(&mut v, ehsize as u64, 2);
        put(&mut v, 0, 2); // e_phentsize
        put(&mut v, 0, 2); // e_phnum
        put(&mut v, shentsize as u64, 2);
        put(&mut v, 3, 2); // e_shnum
        put(&mut v, 2, 2); // e_shstrndx
        assert_eq!(v.len(), ehsize);
        v.extend_from_slice(modinfo);
        v.extend_from_slice(shstr);
        for (name, ty, off, size) in [
            (0u64, 0u64, 0usize, 0usize),
            (1, 1, modinfo_off, modinfo.len()),
            (10, 3, shstr_off, shstr.len()),
        ] {
            put(&mut v, name, 4);
            put(&mut v, ty, 4);
            put(&mut v, 0, w); // flags
            put(&mut v, 0, w); // addr
            put(&mut v, off as u64, w);
            put(&mut v, size as u64, w);
            put(&mut v, 0, 4); // link
            put(&mut v, 0, 4); // info
            put(&mut v, 1, w); // addralign
            put(&mut v, 0, w); // entsize
        }
        if signed {
            v.extend_from_slice(b"PKCS7...");
            v.extend_from_slice(SIGNATURE_MAGIC);
        }
        v
    }

    const SAMPLE: &[u8] = b"alias=pci:v00001924d00000803sv*sd*bc*sc*i*\0alias=pci:v00001924d00000813sv*sd*bc*sc*i*\0\
depends=mdio,mtd\0retpoline=Y\0intree=Y\0name=sfc\0vermagic=6.1.0-56-amd64 SMP preempt mod_unload modversions \0\
firmware=sfc/a.bin\0firmware=sfc/b.bin\0srcversion=0123456789ABCDEF0123456\0license=GPL\0\0\0";

    /// `parm=` and `parmtype=` come as separate entries, either first; a
    /// parameter of `module_param_cb` alone has only `parm=`, a
    /// description may hold colons.
    #[test]
    fn parameters_merge_parm_and_parmtype() {
        let section = b"parm=rss_cpus:Number of CPUs: 0 means all\0parmtype=rss_cpus:uint\0\
parmtype=debug:bool\0parm=debug:Debug output\0parm=hook:set through a callback\0\
parmtype=ids:array of int\0name=m\0vermagic=6.1.0 SMP \0\0";
        let info = parse(&tiny_ko(true, false, section, false)).unwrap();
        let want: Vec<(String, Option<String>)> = [
            ("rss_cpus", Some("uint")),
            ("debug", Some("bool")),
            ("hook", None),
            ("ids", Some("array of int")),
        ]
        .iter()
        .map(|(n, t)| (n.to_string(), t.map(str::to_string)))
        .collect();
        assert_eq!(info.params, want);
    }

    #[test]
    fn every_class_and_byte_order() {
        for (is64, big) in [(true, false), (true, true), (false, false), (false, true)] {
            let ko = tiny_ko(is64, big, SAMPLE, false);
            let info = parse(&ko).unwrap();
            assert_eq!(info.name.as_deref(), Some("sfc"), "is64={is64} big={big}");
            assert_eq!(info.vermagic_release(), Some("6.1.0-56-amd64"));
            assert_eq!(info.srcversion.as_deref(), Some("0123456789ABCDEF0123456"));
            assert_eq!(info.depends, ["mdio", "mtd"]);
            assert_eq!(info.firmware, ["sfc/a.bin", "sfc/b.bin"]);
            assert_eq!(info.aliases.len(), 2);
            assert!(!info.signed);
        }
    }

    #[test]
    fn signature_trailer() {
        assert!(parse(&tiny_ko(true, false, SAMPLE, true)).unwrap().signed);
    }

    #[test]
    fn empty_depends_is_empty() {
        let info = parse(&tiny_ko(true, false, b"depends=\0name=dummy\0", false)).unwrap();
        assert!(info.depends.is_empty());
        assert_eq!(info.srcversion, None);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(parse(b"hello"), Err(FormatError::NotElf));
        assert_eq!(parse(b"\x7fELF\x03\x01"), Err(FormatError::BadIdent));
        let ko = tiny_ko(true, false, SAMPLE, false);
        // Every truncation of a valid module fails cleanly.
        for n in 0..ko.len() - SAMPLE.len() {
            let cut = &ko[..n];
            assert!(parse(cut).is_err(), "truncated at {n}");
        }
        // A module without .modinfo.
        let mut other = ko.clone();
        let pos = other.windows(9).position(|w| w == b".modinfo\0").unwrap();
        other[pos + 1] = b'x';
        assert_eq!(parse(&other), Err(FormatError::NoModinfo));
        let gz = decompress(Path::new("m.ko.gz"), vec![0x1F, 0x8B, 8, 0]).unwrap_err();
        assert!(gz.to_string().contains("m.ko.gz") && gz.to_string().contains(".ko.xz"));
        let xz = decompress(Path::new("m.ko.xz"), [XZ_MAGIC, b"junk"].concat()).unwrap_err();
        assert!(xz.to_string().contains("cannot decompress (xz)"), "{xz}");
    }

    #[test]
    fn compressed_names() {
        assert!(is_compressed(Path::new("a/sfc.ko.xz")));
        assert!(is_compressed(Path::new("sfc.ko.zst")));
        assert!(!is_compressed(Path::new("sfc.ko")));
    }
}
