//! The config's module parameters against what the module declares.
//!
//! Linux loads a module given a parameter it does not have, logs
//! `unknown parameter 'x' ignored` and runs it with its defaults; a value the
//! parameter's type cannot parse fails the load with EINVAL, at boot, after
//! the in-tree driver is gone. Both are checked before an image is
//! published, against the `parm`/`parmtype` entries of the module's
//! `.modinfo`, with the kernel's rules (`kernel/params.c`): `-` and `_` are
//! the same in a name, integers as `kstrto*` with base 0 reads them, booleans
//! as `kstrtobool`, and a name alone only for a boolean.

/// The problems of `configured` (`name=value` or `name`) for `module`,
/// whose `.modinfo` declares `declared` (name, type if known).
pub fn check(
    module: &str,
    configured: &[String],
    declared: &[(String, Option<String>)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for p in configured {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p.as_str(), None),
        };
        let Some((_, ty)) = declared.iter().find(|(d, _)| same_name(d, name)) else {
            problems.push(unknown(module, name, declared));
            continue;
        };
        let Some(ty) = ty else { continue };
        if let Err(why) = value_fits(ty, value) {
            problems.push(format!("`{p}`: {why} (`{name}` is {ty})"));
        }
    }
    problems
}

fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (matches!(x, b'-' | b'_') && matches!(y, b'-' | b'_')))
}

fn unknown(module: &str, name: &str, declared: &[(String, Option<String>)]) -> String {
    if declared.is_empty() {
        return format!("`{name}` is not a parameter of {module}, which has none");
    }
    let names: Vec<&str> = declared.iter().map(|(n, _)| n.as_str()).collect();
    let mut s = format!("`{name}` is not a parameter of {module}");
    if let Some(c) = closest(name, &names) {
        s.push_str(&format!(" (did you mean `{c}`?)"));
    }
    s.push_str(&format!("; its parameters: {}", names.join(", ")));
    s
}

/// The declared name nearest to `name`, if it is near enough to be a typo
/// (edit distance at most a third of the name, rounded up, and at most 3).
fn closest<'a>(name: &str, names: &[&'a str]) -> Option<&'a str> {
    let limit = name.chars().count().div_ceil(3).clamp(1, 3);
    names
        .iter()
        .map(|n| (distance(name, n), *n))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance, `-` and `_` equal.
fn distance(a: &str, b: &str) -> usize {
    let norm = |c: char| if c == '-' { '_' } else { c };
    let b: Vec<char> = b.chars().map(norm).collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().map(norm).enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Whether `value` parses as the kernel parses a parameter of type `ty`;
/// types the agent does not know are accepted.
fn value_fits(ty: &str, value: Option<&str>) -> Result<(), String> {
    if let Some(elem) = ty.strip_prefix("array of ") {
        let Some(v) = value else {
            return Err("an array needs values".into());
        };
        for item in v.split(',') {
            value_fits(elem, Some(item)).map_err(|e| format!("`{item}`: {e}"))?;
        }
        return Ok(());
    }
    let bits = match ty {
        "bool" | "invbool" => {
            return match value {
                // A name alone sets a boolean (KERNEL_PARAM_OPS_FL_NOARG).
                None => Ok(()),
                Some(v) if kstrtobool(v) => Ok(()),
                Some(_) => Err("not a boolean (y, n, 1, 0, on, off)".into()),
            };
        }
        "charp" | "string" => return Ok(()),
        "byte" => Int::Unsigned(8),
        "short" => Int::Signed(16),
        "ushort" => Int::Unsigned(16),
        "int" => Int::Signed(32),
        "uint" | "hexint" => Int::Unsigned(32),
        "long" => Int::Signed(64),
        "ulong" | "ullong" => Int::Unsigned(64),
        _ => return Ok(()),
    };
    let Some(v) = value else {
        return Err("needs a value".into());
    };
    bits.parse(v)
}

/// `kstrtobool`: the first character decides (`y`, `n`, `1`, `0`), `on` and
/// `off` need their second.
fn kstrtobool(v: &str) -> bool {
    let b = v.as_bytes();
    match b.first() {
        Some(b'y' | b'Y' | b'1' | b'n' | b'N' | b'0') => true,
        Some(b'o' | b'O') => matches!(b.get(1), Some(b'n' | b'N' | b'f' | b'F')),
        _ => false,
    }
}

enum Int {
    Signed(u32),
    Unsigned(u32),
}

impl Int {
    /// `kstrto*` with base 0: an optional sign (`-` only when signed),
    /// then `0x` hexadecimal, a leading `0` octal, or decimal; one trailing
    /// newline allowed; within the type's range.
    fn parse(&self, v: &str) -> Result<(), String> {
        let v = v.strip_suffix('\n').unwrap_or(v);
        let (neg, digits) = match v.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, v.strip_prefix('+').unwrap_or(v)),
        };
        let (radix, digits) =
            if let Some(h) = digits.strip_prefix("0x").or(digits.strip_prefix("0X")) {
                (16, h)
            } else if digits.len() > 1 && digits.starts_with('0') {
                (8, &digits[1..])
            } else {
                (10, digits)
            };
        if digits.is_empty() || digits.starts_with(['+', '-']) {
            return Err("not an integer".into());
        }
        // None: more than 64 bits, out of range for every type.
        let n = match u64::from_str_radix(digits, radix) {
            Ok(n) => Some(n),
            Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => None,
            Err(_) => return Err("not an integer".into()),
        };
        let fits = n.is_some_and(|n| match self {
            Int::Signed(bits) => {
                let max = 1u64 << (bits - 1);
                if neg {
                    n <= max
                } else {
                    n < max
                }
            }
            Int::Unsigned(bits) => !neg && (*bits == 64 || n < 1u64 << bits),
        });
        if fits {
            Ok(())
        } else {
            Err("out of range".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> Vec<(String, Option<String>)> {
        [
            ("rss_cpus", Some("uint")),
            ("interrupt_mode", Some("int")),
            ("debug", Some("bool")),
            ("label", Some("charp")),
            ("ids", Some("array of ushort")),
            ("hook", None),
            ("big", Some("ullong")),
            ("small", Some("long")),
        ]
        .iter()
        .map(|(n, t)| (n.to_string(), t.map(str::to_string)))
        .collect()
    }

    fn problems(params: &[&str]) -> Vec<String> {
        let p: Vec<String> = params.iter().map(|s| s.to_string()).collect();
        check("sfc", &p, &declared())
    }

    #[test]
    fn values_the_kernel_accepts_pass() {
        let ok = [
            "rss_cpus=4",
            "rss_cpus=0x10",
            "rss_cpus=017",
            "rss_cpus=+3",
            "rss_cpus=4294967295",
            "big=18446744073709551615",
            "small=-9223372036854775808",
            "interrupt_mode=-2147483648",
            "interrupt-mode=1",
            "debug",
            "debug=Y",
            "debug=on",
            "debug=0",
            "label=hello world",
            "label=",
            "ids=1,2,0xffff",
            "hook=anything",
        ];
        assert_eq!(problems(&ok), Vec::<String>::new());
    }

    #[test]
    fn typos_bad_values_and_missing_values_are_named() {
        assert_eq!(
            problems(&["rss_cpu=4"]),
            ["`rss_cpu` is not a parameter of sfc (did you mean `rss_cpus`?); its parameters: rss_cpus, interrupt_mode, debug, label, ids, hook, big, small"]
        );
        assert_eq!(
            problems(&["colour=red"]),
            ["`colour` is not a parameter of sfc; its parameters: rss_cpus, interrupt_mode, debug, label, ids, hook, big, small"]
        );
        assert_eq!(
            check("dummy", &["numdummies=2".to_string()], &[]),
            ["`numdummies` is not a parameter of dummy, which has none"]
        );
        for (p, why) in [
            ("rss_cpus=-1", "out of range"),
            ("rss_cpus=4294967296", "out of range"),
            ("rss_cpus=four", "not an integer"),
            ("rss_cpus=08", "not an integer"),
            ("rss_cpus=", "not an integer"),
            ("rss_cpus", "needs a value"),
            ("interrupt_mode=2147483648", "out of range"),
            ("big=18446744073709551616", "out of range"),
            ("small=9223372036854775808", "out of range"),
            ("debug=maybe", "not a boolean (y, n, 1, 0, on, off)"),
            ("debug=o", "not a boolean (y, n, 1, 0, on, off)"),
            ("ids=1,70000", "`70000`: out of range"),
            ("ids", "an array needs values"),
        ] {
            let got = problems(&[p]);
            assert_eq!(got.len(), 1, "{p}: {got:?}");
            assert!(
                got[0].starts_with(&format!("`{p}`: {why} (")),
                "{p}: {got:?}"
            );
        }
    }

    #[test]
    fn closest_is_only_a_near_miss() {
        assert_eq!(closest("rss_cpu", &["rss_cpus", "debug"]), Some("rss_cpus"));
        assert_eq!(closest("rss-cpus", &["rss_cpus"]), Some("rss_cpus"));
        assert_eq!(closest("numdummy", &["numdummies"]), Some("numdummies"));
        assert_eq!(closest("x", &["rss_cpus", "debug"]), None);
        assert_eq!(closest("colour", &["rss_cpus", "debug"]), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
