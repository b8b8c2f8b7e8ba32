//! Reading the markdown docs for tests: fenced code blocks, relative links,
//! heading anchors, and the command lines of ```sh blocks.

use std::collections::BTreeSet;

/// Fenced code blocks: (info string's first word, body).
pub fn code_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String, String)> = None; // (fence, lang, body)
    for line in text.lines() {
        let trimmed = line.trim_start();
        match &mut current {
            None => {
                if let Some(fence) = fence_of(trimmed) {
                    let lang = trimmed[fence.len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("");
                    current = Some((fence, lang.to_string(), String::new()));
                }
            }
            Some((fence, lang, body)) => {
                if trimmed.starts_with(fence.as_str())
                    && trimmed
                        .trim_start_matches(fence.chars().next().unwrap_or('`'))
                        .trim()
                        .is_empty()
                {
                    blocks.push((std::mem::take(lang), std::mem::take(body)));
                    current = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    blocks
}

fn fence_of(line: &str) -> Option<String> {
    for c in ['`', '~'] {
        let n = line.chars().take_while(|&x| x == c).count();
        if n >= 3 {
            return Some(c.to_string().repeat(n));
        }
    }
    None
}

/// The lines outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut fence: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &fence {
            None => match fence_of(trimmed) {
                Some(f) => fence = Some(f),
                None => out.push((i + 1, line)),
            },
            Some(f) => {
                if trimmed.starts_with(f.as_str())
                    && trimmed
                        .trim_start_matches(f.chars().next().unwrap_or('`'))
                        .trim()
                        .is_empty()
                {
                    fence = None;
                }
            }
        }
    }
    out
}

/// `line` without its inline code spans.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find('`') {
        out.push_str(&rest[..i]);
        let ticks = rest[i..].chars().take_while(|&c| c == '`').count();
        let after = &rest[i + ticks..];
        let closing = "`".repeat(ticks);
        match after.find(&closing) {
            Some(j) => rest = &after[j + ticks..],
            None => {
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Inline links and images `[text](target)` outside code: (line, target).
pub fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose_lines(text) {
        let line = without_code_spans(line);
        for (i, _) in line.match_indices("](") {
            let rest = &line[i + 2..];
            if let Some(end) = rest.find(')') {
                let target = rest[..end].split_whitespace().next().unwrap_or("");
                let target = target.trim_start_matches('<').trim_end_matches('>');
                if !target.is_empty() {
                    out.push((n, target.to_string()));
                }
            }
        }
    }
    out
}

/// The anchor mdBook and GitHub give a heading: lower case, alphanumerics,
/// `_` and `-` kept, whitespace to `-`, everything else dropped.
pub fn slug(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c.to_ascii_lowercase())
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// The anchors of every heading (duplicates get `-1`, `-2`, … as in mdBook).
pub fn headings_slugs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(line[hashes..].trim());
        let mut s = base.clone();
        let mut i = 1;
        while out.contains(&s) {
            s = format!("{base}-{i}");
            i += 1;
        }
        out.insert(s);
    }
    out
}

/// A Rust string literal's value, from just after its opening quote.
pub fn decode_literal(body: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                '0' => out.push('\0'),
                '\n' => {
                    while chars.peek().is_some_and(|c| c.is_whitespace()) {
                        chars.next();
                    }
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            },
            c => out.push(c),
        }
    }
    None
}

/// Shell words of one command line: quotes removed, a `#` comment dropped,
/// cut at the first operator (`|`, `>`, `;`, `&&`, …).
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                has = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    cur.push(q);
                }
            }
            '"' => {
                has = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                cur.push(n);
                            }
                        }
                        q => cur.push(q),
                    }
                }
            }
            '#' if !has => break,
            '|' | ';' | '>' | '<' | '&' => {
                if has && cur.chars().all(|d| d.is_ascii_digit()) {
                    // `2>`: the digits belong to the redirection.
                    cur.clear();
                    has = false;
                }
                break;
            }
            c if c.is_whitespace() => {
                if has {
                    words.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                has = true;
                cur.push(c);
            }
        }
    }
    if has {
        words.push(cur);
    }
    words
}

/// Every command line of the ```sh blocks in `text` that runs `program`:
/// (line number in the block, arguments after the program name). A program
/// after `chroot /host` or `--` (as in `oc debug node/x -- chroot /host
/// kmm-day1-agent status`) counts too.
pub fn sh_commands(text: &str, program: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (lang, body) in code_blocks(text) {
        if lang != "sh" {
            continue;
        }
        let joined = body.replace("\\\n", " ");
        for line in joined.lines() {
            let w = words(line);
            // The program as the command, or run through `chroot /host` or
            // `sudo`; not `oc kmm-day1 …` (the plugin needs oc).
            let at = w.iter().enumerate().position(|(i, x)| {
                x == program && (i == 0 || matches!(w[i - 1].as_str(), "/host" | "sudo"))
            });
            if let Some(i) = at {
                out.push((line.trim().to_string(), w[i + 1..].to_vec()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_links_and_slugs() {
        let md = "# A `b` (c)\n\ntext [x](y.md#a-b-c) `[no](link)`\n\n```sh\n\
                  # comment\nkmm-day1 generate --config 'a b.toml' \\\n  --pool worker | oc create -f -\n\
                  oc debug node/n -- chroot /host kmm-day1-agent status --json 2>&1\n```\n";
        assert_eq!(links(md), [(3, "y.md#a-b-c".to_string())]);
        assert!(headings_slugs(md).contains("a-b-c"));
        let gen = sh_commands(md, "kmm-day1");
        assert_eq!(
            gen[0].1,
            ["generate", "--config", "a b.toml", "--pool", "worker"]
        );
        let agent = sh_commands(md, "kmm-day1-agent");
        assert_eq!(agent[0].1, ["status", "--json"]);
        assert_eq!(decode_literal("a\\n\\\"b\\\"\" rest").unwrap(), "a\n\"b\"");
    }
}
