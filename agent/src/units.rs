//! Durations, sizes and counts as people read them in the agent's lines,
//! and timestamps as the state files keep them — all with integer
//! arithmetic: float formatting would bring `core::fmt::float` and its
//! tables into the static agent (≈ 8 KB, docs/size.md).

/// Now, as RFC 3339 UTC with seconds (`2026-11-26T11:21:51Z`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds (or MiB/s) to one decimal, printed with integer arithmetic: float
/// formatting would bring `core::fmt::float` and its tables into the static
/// agent for a handful of log lines (≈ 8 KB, docs/size.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenths(pub u64);

impl Tenths {
    /// A duration, rounded to the nearest tenth of a second.
    pub fn of(d: std::time::Duration) -> Self {
        Tenths(u64::try_from((d.as_millis() + 50) / 100).unwrap_or(u64::MAX))
    }

    /// Milliseconds, rounded to the nearest tenth of a second.
    pub fn ms(ms: u64) -> Self {
        Tenths(ms.saturating_add(50) / 100)
    }

    /// `units` per `d`, in tenths (0 for a zero duration).
    pub fn rate(units: u64, d: std::time::Duration) -> Self {
        let ms = d.as_millis();
        if ms == 0 {
            return Tenths(0);
        }
        Tenths(u64::try_from(u128::from(units) * 10_000 / ms).unwrap_or(u64::MAX))
    }
}

/// `n` of `noun`, in the singular for one: "1 module", "5 modules".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A byte count for people: "512 bytes", "84 KiB", "3.2 MiB" (tenths by
/// integer arithmetic: no float formatting in the agent, docs/size.md).
/// "0 MiB" for a small image read as if nothing had been downloaded.
pub fn size(n: u64) -> String {
    if n < 1024 {
        count(usize::try_from(n).unwrap_or(usize::MAX), "byte")
    } else if n < 1 << 20 {
        format!("{} KiB", n >> 10)
    } else {
        format!(
            "{} MiB",
            Tenths(u64::try_from((u128::from(n) * 10) >> 20).unwrap_or(u64::MAX))
        )
    }
}

impl std::fmt::Display for Tenths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

/// Unix seconds as RFC 3339 UTC; civil-from-days after H. Hinnant, to avoid
/// a date crate in the agent.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_sizes_read_like_english() {
        assert_eq!(count(1, "check"), "1 check");
        assert_eq!(count(0, "module"), "0 modules");
        assert_eq!(count(5, "layer"), "5 layers");
        assert_eq!(size(1), "1 byte");
        assert_eq!(size(1023), "1023 bytes");
        assert_eq!(size(1024), "1 KiB");
        assert_eq!(size(500 << 10), "500 KiB");
        assert_eq!(size(1 << 20), "1.0 MiB");
        assert_eq!(size((3 << 20) + (1 << 19)), "3.5 MiB");
        assert!(size(u64::MAX).ends_with(" MiB"));
    }

    #[test]
    fn tenths_print_like_one_decimal() {
        use std::time::Duration;
        assert_eq!(Tenths::of(Duration::from_millis(0)).to_string(), "0.0");
        assert_eq!(Tenths::of(Duration::from_millis(740)).to_string(), "0.7");
        assert_eq!(Tenths::of(Duration::from_millis(760)).to_string(), "0.8");
        assert_eq!(Tenths::of(Duration::from_secs(125)).to_string(), "125.0");
        assert_eq!(Tenths::ms(420).to_string(), "0.4");
        assert_eq!(Tenths::ms(u64::MAX).0, u64::MAX / 100);
        // 3 MiB in 2 s is 1.5 MiB/s.
        assert_eq!(Tenths::rate(3, Duration::from_secs(2)).to_string(), "1.5");
        assert_eq!(Tenths::rate(3, Duration::ZERO).to_string(), "0.0");
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // `date -u -d @951782400` (leap day of a century leap year).
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_692_111), "2026-11-26T11:21:51Z");
    }
}
