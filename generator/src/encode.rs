//! File contents as Ignition `data:` URLs.
//!
//! Like Butane, each file gets the smallest of three encodings: plain
//! percent-encoding (good for text), base64, and gzip+base64 with
//! `compression: gzip` (good for the agent binary). The output is
//! deterministic: the gzip header carries no timestamp, name or host OS.

use std::borrow::Cow;

use base64::Engine;

pub use crate::gzip::gzip;

/// One file's `contents`: a `data:` URL and, when gzipped, `"gzip"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub source: String,
    pub compression: Option<&'static str>,
}

/// Inputs at least this large are remembered by [`data_url`]: the agent is
/// encoded once per run, not once per document and output (zopfli takes
/// seconds on it); config files are too small to matter.
const MEMO_MIN: usize = 64 * 1024;

/// The large inputs encoded so far in this process, with their encoding.
static MEMO: std::sync::Mutex<Vec<(Vec<u8>, Encoded)>> = std::sync::Mutex::new(Vec::new());

/// The smallest encoding of `data`; gzip only when strictly smaller. Every
/// release this supports (OpenShift 4.12+, Ignition spec 3.2+) accepts
/// `compression: gzip`, and the agent fits only gzipped.
pub fn data_url(data: &[u8]) -> Encoded {
    if data.len() < MEMO_MIN {
        return encode(data);
    }
    // A poisoned lock only means another thread panicked mid-push; the
    // entries are still whole, so keep using them.
    let mut memo = MEMO
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, e)) = memo.iter().find(|(d, _)| d == data) {
        return e.clone();
    }
    let e = encode(data);
    memo.push((data.to_vec(), e.clone()));
    e
}

fn encode(data: &[u8]) -> Encoded {
    // Lengths first: building the plain form of a 2 MB binary only to
    // throw it away costs more than everything else.
    let plain_len = "data:,".len()
        + data
            .iter()
            .map(|&b| if keeps(b) { 1 } else { 3 })
            .sum::<usize>();
    let b64_len = "data:;base64,".len() + data.len().div_ceil(3) * 4;
    let mut best = Encoded {
        source: if plain_len <= b64_len {
            format!("data:,{}", percent_encode(data))
        } else {
            format!("data:;base64,{}", base64(data))
        },
        compression: None,
    };
    // The embedded agents were compressed when the generator was built.
    let gz =
        crate::agent::precompressed(data).map_or_else(|| Cow::Owned(gzip(data)), Cow::Borrowed);
    if "data:;base64,".len() + gz.len().div_ceil(3) * 4 < best.source.len() {
        best = Encoded {
            source: format!("data:;base64,{}", base64(&gz)),
            compression: Some("gzip"),
        };
    }
    best
}

pub fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// RFC 2396 escaping as Butane's data URLs use it: unreserved and reserved
/// characters stay, everything else (space, newline, `%`, `"`, `#`, non-ASCII…)
/// becomes `%XX`. `+` is escaped too, so that no decoder can take it for a space.
fn keeps(b: u8) -> bool {
    b.is_ascii_alphanumeric()
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
}

fn percent_encode(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(data.len() * 3);
    for &b in data {
        if keeps(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
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
        let e = data_url(text);
        assert_eq!(e.source, "data:,hello%20world,%20plain%20text%20wins%0A");
        assert_eq!(e.compression, None);
        assert_eq!(decode(&e), text);
        // Quote-heavy text is shorter in base64: the smallest wins.
        let e = data_url(b"\"\"\"\"\"\"\"\"\"");
        assert!(e.source.starts_with("data:;base64,"), "{}", e.source);
    }

    #[test]
    fn binary_gets_base64_and_repetitive_data_gets_gzip() {
        let bin: Vec<u8> = (0..=255u8).collect();
        let e = data_url(&bin);
        assert!(e.source.starts_with("data:;base64,"));
        assert_eq!(e.compression, None, "256 distinct bytes do not compress");
        assert_eq!(decode(&e), bin);

        let rep = vec![0u8; 100_000];
        let e = data_url(&rep);
        assert_eq!(e.compression, Some("gzip"));
        assert!(e.source.len() < 1000);
        assert_eq!(decode(&e), rep);
    }

    #[test]
    fn large_inputs_are_encoded_once_and_the_same() {
        let big: Vec<u8> = (0..MEMO_MIN * 2).map(|i| (i % 7) as u8).collect();
        let a = data_url(&big);
        assert_eq!(a, encode(&big));
        assert_eq!(data_url(&big), a);
        let memo = MEMO.lock().unwrap();
        assert_eq!(memo.iter().filter(|(d, _)| *d == big).count(), 1);
        drop(memo);
        // Same length, other bytes: not taken from the memo.
        let mut other = big.clone();
        other[0] = 255;
        assert_ne!(data_url(&other), data_url(&big));
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
}
