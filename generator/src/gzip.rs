//! The one gzip encoder of the generator, also compiled into `build.rs`
//! (which compresses the embedded agents once, at build time): the same
//! function at both places, so the same agent gives the same bytes.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

/// Below this, zopfli saves a few bytes at most and costs more than the rest
/// of a run (a 443-byte node config: ~200 M instructions, ~50 ms).
const ZOPFLI_MIN: usize = 64 * 1024;

/// gzip, deterministic: the header has mtime 0 and no file name.
///
/// Zopfli (2 iterations) makes streams ~3.8% smaller than flate2 at its
/// best level on the agent binary, for about a second (measured in
/// docs/generator.md). It only runs when deflate finds something to
/// compress: on incompressible data it cannot win and would be slow.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let fast = deflate_gzip(data);
    if data.len() < ZOPFLI_MIN || fast.len() * 10 > data.len() * 9 {
        return fast;
    }
    let options = zopfli::Options {
        iteration_count: std::num::NonZeroU64::MIN.saturating_add(1),
        ..zopfli::Options::default()
    };
    let mut out = Vec::with_capacity(fast.len());
    match zopfli::compress(options, zopfli::Format::Gzip, data, &mut out) {
        Ok(()) if out.len() < fast.len() => out,
        _ => fast,
    }
}

/// flate2 at the best level, with the header fixed to mtime 0 and OS
/// "unknown" (255) so the same input always yields the same bytes.
pub fn deflate_gzip(data: &[u8]) -> Vec<u8> {
    let mut enc: GzEncoder<Vec<u8>> = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::with_capacity(data.len() / 2), Compression::best());
    // Writing into a Vec cannot fail.
    enc.write_all(data)
        .and_then(|()| enc.finish())
        .unwrap_or_else(|e| unreachable!("gzip into memory failed: {e}"))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn gzip_is_deterministic_and_headerless() {
        let text: Vec<u8> = b"hello world, hello gzip. ".repeat(200);
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for data in [&text, &noise] {
            let a = gzip(data);
            assert_eq!(a, gzip(data));
            // Magic, deflate, no flags (no FNAME), mtime 0.
            assert_eq!(&a[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&a[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(&out, data);
        }
        // Small inputs are plain deflate; large ones get zopfli's smaller stream.
        assert_eq!(gzip(&text), deflate_gzip(&text));
        // Words picked by an LCG: compressible, but not trivially.
        let words = [
            "module ",
            "kernel ",
            "agent ",
            "pull ",
            "replace ",
            "firmware ",
            "sfc\n",
        ];
        let (mut big, mut x) = (Vec::new(), 12345u32);
        while big.len() <= ZOPFLI_MIN {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            big.extend_from_slice(words[(x >> 16) as usize % words.len()].as_bytes());
        }
        assert!(gzip(&big).len() < deflate_gzip(&big).len());
    }
}
