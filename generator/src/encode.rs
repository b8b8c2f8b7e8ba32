//! File contents as Ignition `data:` URLs.
//!
//! Like Butane, each file gets the smallest of three encodings: plain
//! percent-encoding (good for text), base64, and gzip+base64 with
//! `compression: gzip` (good for the agent binary). The output is
//! deterministic: the gzip header carries no timestamp, name or host OS.

use std::io::Write;

use base64::Engine;
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

/// One file's `contents`: a `data:` URL and, when gzipped, `"gzip"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub source: String,
    pub compression: Option<&'static str>,
}

/// The smallest encoding of `data`; gzip only when `compress` (OpenShift
/// 4.10+ accept `compression: gzip`) and only when strictly smaller.
pub fn data_url(data: &[u8], compress: bool) -> Encoded {
    let plain = format!("data:,{}", percent_encode(data));
    let b64 = format!("data:;base64,{}", base64(data));
    let mut best = if plain.len() <= b64.len() {
        Encoded {
            source: plain,
            compression: None,
        }
    } else {
        Encoded {
            source: b64,
            compression: None,
        }
    };
    if compress {
        let gz = format!("data:;base64,{}", base64(&gzip(data)));
        if gz.len() < best.source.len() {
            best = Encoded {
                source: gz,
                compression: Some("gzip"),
            };
        }
    }
    best
}

pub fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// gzip at the best level, with a header fixed to mtime 0 and OS "unknown"
/// (255) so the same input always yields the same bytes.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc: GzEncoder<Vec<u8>> = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::with_capacity(data.len() / 2), Compression::best());
    // Writing into a Vec cannot fail.
    enc.write_all(data)
        .and_then(|()| enc.finish())
        .unwrap_or_else(|e| unreachable!("gzip into memory failed: {e}"))
}

/// RFC 2396 escaping as Butane's data URLs use it: unreserved and reserved
/// characters stay, everything else (space, newline, `%`, `"`, `#`, non-ASCII…)
/// becomes `%XX`. `+` is escaped too, so that no decoder can take it for a space.
fn percent_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 2);
    for &b in data {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_'
                    | b'.'
                    | b'!'
                    | b'~'
                    | b'*'
                    | b'\''
                    | b'('
                    | b')'
                    | b';'
                    | b'/'
                    | b'?'
                    | b':'
                    | b'@'
                    | b'&'
                    | b'='
                    | b'$'
                    | b','
            )
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(e: &Encoded) -> Vec<u8> {
        let raw = if let Some(b) = e.source.strip_prefix("data:;base64,") {
            base64::engine::general_purpose::STANDARD.decode(b).unwrap()
        } else {
            let p = e.source.strip_prefix("data:,").unwrap().as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < p.len() {
                if p[i] == b'%' {
                    let h = std::str::from_utf8(&p[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(h, 16).unwrap());
                    i += 3;
                } else {
                    out.push(p[i]);
                    i += 1;
                }
            }
            out
        };
        if e.compression == Some("gzip") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        } else {
            raw
        }
    }

    #[test]
    fn short_text_stays_plain() {
        let text = b"hello world, plain text wins\n";
        let e = data_url(text, true);
        assert_eq!(e.source, "data:,hello%20world,%20plain%20text%20wins%0A");
        assert_eq!(e.compression, None);
        assert_eq!(decode(&e), text);
        // Quote-heavy text is shorter in base64: the smallest wins.
        let e = data_url(b"\"\"\"\"\"\"\"\"\"", true);
        assert!(e.source.starts_with("data:;base64,"), "{}", e.source);
    }

    #[test]
    fn binary_gets_base64_and_repetitive_data_gets_gzip() {
        let bin: Vec<u8> = (0..=255u8).collect();
        let e = data_url(&bin, true);
        assert!(e.source.starts_with("data:;base64,"));
        assert_eq!(e.compression, None, "256 distinct bytes do not compress");
        assert_eq!(decode(&e), bin);

        let rep = vec![0u8; 100_000];
        let e = data_url(&rep, true);
        assert_eq!(e.compression, Some("gzip"));
        assert!(e.source.len() < 1000);
        assert_eq!(decode(&e), rep);

        let e = data_url(&rep, false);
        assert_eq!(e.compression, None, "--no-compress never gzips");
        assert_eq!(decode(&e), rep);
    }

    #[test]
    fn every_byte_round_trips_plain() {
        let all: Vec<u8> = (0..=255u8).collect();
        let s = percent_encode(&all);
        let e = Encoded {
            source: format!("data:,{s}"),
            compression: None,
        };
        assert_eq!(decode(&e), all);
        assert!(!s.contains('+') && !s.contains(' ') && !s.contains('#'));
    }

    #[test]
    fn gzip_is_deterministic_and_headerless() {
        let a = gzip(b"hello hello hello hello");
        let b = gzip(b"hello hello hello hello");
        assert_eq!(a, b);
        // mtime (bytes 4..8) zero, OS byte 255, no FNAME flag.
        assert_eq!(&a[4..8], &[0, 0, 0, 0]);
        assert_eq!(a[9], 255);
        assert_eq!(a[3] & 0x08, 0);
    }
}
