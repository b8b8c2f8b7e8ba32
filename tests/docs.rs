//! The documentation against the code it describes: links and anchors
//! resolve, every chapter is in the book, the boot-timeline SVG is what its
//! Graphviz source renders, the book builds, every message the agent can print
//! is explained in docs/troubleshooting.md and every message documented there
//! is text the agent prints, and every file in examples/ is
//! used by a test. (Command lines in the docs are run by
//! generator/tests/docs_commands.rs and agent/tests/docs_commands.rs, which
//! have the binaries.)

// Integration-test helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use kmm_day1_tests::docs::{code_blocks, decode_literal, headings_slugs, links};
use kmm_day1_tests::{require_tool, workspace_root};

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// docs/*.md and README.md.
fn markdown_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files.push(root.join("README.md"));
    files
}

#[test]
fn relative_links_and_anchors_resolve() {
    let mut slugs: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = read(&file);
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let where_ = format!("{}:{line}: `{target}`", file.display());
            let Ok(dest) = dest.canonicalize() else {
                broken.push(format!("{where_}: no such file"));
                continue;
            };
            let Some(anchor) = anchor else { continue };
            if dest.extension().is_none_or(|e| e != "md") {
                broken.push(format!(
                    "{where_}: an anchor into a file that is not markdown"
                ));
                continue;
            }
            let known = slugs
                .entry(dest.clone())
                .or_insert_with(|| headings_slugs(&read(&dest)));
            if !known.contains(anchor) {
                broken.push(format!(
                    "{where_}: no heading with that anchor (it has: {known:?})"
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_chapter_is_in_the_book() {
    let root = workspace_root();
    let summary = read(&root.join("docs/SUMMARY.md"));
    let listed: BTreeSet<String> = links(&summary).into_iter().map(|(_, t)| t).collect();
    let mut missing = Vec::new();
    for file in markdown_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if file.parent() != Some(&root.join("docs")) || name == "SUMMARY.md" {
            continue;
        }
        if !listed.contains(&name) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "docs/SUMMARY.md does not list {missing:?}: add each to the book's table of contents"
    );
    for t in &listed {
        assert!(
            root.join("docs").join(t).is_file(),
            "SUMMARY.md lists {t}, which does not exist"
        );
    }
}

/// Each `docs/diagrams/*.dot` is committed with the SVG `dot -Tsvg` makes of
/// it (`make docs` regenerates them).
#[test]
fn diagrams_are_rendered_from_their_sources() {
    if !require_tool("dot") {
        return;
    }
    let dir = workspace_root().join("docs/diagrams");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let dot = entry.unwrap().path();
        if dot.extension().is_none_or(|e| e != "dot") {
            continue;
        }
        let out = Command::new("dot").arg("-Tsvg").arg(&dot).output().unwrap();
        assert!(
            out.status.success(),
            "dot {}: {}",
            dot.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let svg = dot.with_extension("svg");
        let committed = std::fs::read(&svg).unwrap_or_default();
        assert!(
            committed == out.stdout,
            "{} is not what {} renders to: run `make docs` and commit it",
            svg.display(),
            dot.display()
        );
        checked += 1;
    }
    assert!(checked > 0, "no diagrams in {}", dir.display());
}

/// `mdbook build` succeeds (SUMMARY entries exist, book.toml is valid).
#[test]
fn the_book_builds() {
    if !require_tool("mdbook") {
        return;
    }
    let tmp = kmm_day1_tests::scratch::TempDir::new("book").unwrap();
    let out_dir = tmp.join("book");
    let out = Command::new("mdbook")
        .arg("build")
        .arg(workspace_root().join("docs"))
        .arg("--dest-dir")
        .arg(&out_dir)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mdbook build failed:\n{log}");
    // mdBook warns, without failing, about e.g. an unclosed HTML tag (a
    // `<placeholder>` outside code) that swallows the rest of a page.
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(
        warnings.is_empty(),
        "mdbook warnings:\n{}",
        warnings.join("\n")
    );
    for page in [
        "troubleshooting.html",
        "getting-started.html",
        "config.html",
        "index.html",
    ] {
        assert!(
            out_dir.join(page).is_file(),
            "the book has no {page}:\n{log}"
        );
    }
    assert!(
        out_dir.join("diagrams/boot-timeline.svg").is_file(),
        "the diagram is not in the book"
    );
}

// ---- troubleshooting coverage ----

/// Macros and methods whose first argument is a message a user may read.
const TRIGGERS: [&str; 10] = [
    "bail!(",
    "defect!(",
    "anyhow!(",
    "ensure!(",
    ".context(",
    "with_context(|| format!(",
    "#[error(",
    "log::error!(",
    "log::warning!(",
    "log::notice!(",
];

/// Messages also come from `format!("…")` and `"…".into()` / `.to_string()`
/// (the errno explanations, the rollback outcome, the reboot guard); those
/// count when they read like a sentence (three words or more).
const WEAK_TRIGGERS: [&str; 1] = ["format!("];

/// Strings found by the rules above that are not messages, by a stable
/// prefix of their template, with the reason.
const NOT_MESSAGES: [(&str, &str); 8] = [
    ("kmm-day1-agent {} (git", "--version"),
    ("{method} {target} HTTP/1.1", "an HTTP request head"),
    ("CONNECT {target} HTTP/1.1", "an HTTP request head"),
    ("{year:04}-{month:02}", "a timestamp"),
    (
        "# kmm-day1 node config; generated",
        "the header of a generated config file",
    ),
    (", which holds `{p}`", "a fragment of the `in use` message"),
    (", held by {}", "a fragment of the `in use` message"),
    (", parameters `{}`", "a fragment of a status line"),
];

#[derive(Debug)]
struct Message {
    at: String,
    template: String,
}

impl Message {
    /// The literal text between placeholders (`{…}`), trimmed; `{{`/`}}`
    /// are literal braces.
    fn parts(&self) -> Vec<String> {
        let t = self.template.replace("{{", "\u{1}").replace("}}", "\u{2}");
        let mut parts = Vec::new();
        let mut rest = t.as_str();
        loop {
            match rest.find('{') {
                Some(i) => {
                    parts.push(rest[..i].to_string());
                    rest = rest[i..].split_once('}').map_or("", |(_, r)| r);
                }
                None => {
                    parts.push(rest.to_string());
                    break;
                }
            }
        }
        parts
            .into_iter()
            .map(|p| {
                p.replace('\u{1}', "{")
                    .replace('\u{2}', "}")
                    .trim()
                    .to_string()
            })
            .filter(|p| p.chars().any(char::is_alphanumeric))
            .collect()
    }

    fn words(&self) -> usize {
        self.parts()
            .iter()
            .map(|p| p.split_whitespace().count())
            .sum()
    }
}

/// The string literal right after `i` (whitespace skipped), decoded.
fn literal_at(src: &str, i: usize) -> Option<String> {
    let rest = src[i..].trim_start();
    decode_literal(rest.strip_prefix('"')?)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// A source file without its test code. An inline `#[cfg(test)] mod … {`
/// is the file's test module and runs to its end; an out-of-line
/// `#[cfg(test)] mod tests;` is skipped and the file's code goes on
/// (extract.rs, registry.rs); any other `#[cfg(test)]` item (a `use`, a
/// statement, a test-only fn: http.rs, log.rs) is skipped to its `;` or the
/// end of its braces, and the code after it counts.
fn non_test_code(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = rest[at + "#[cfg(test)]".len()..].trim_start();
        let item = after
            .strip_prefix("pub(crate) ")
            .or_else(|| after.strip_prefix("pub "))
            .unwrap_or(after);
        if let Some(more) = item.strip_prefix("mod tests;") {
            rest = more;
            continue;
        }
        let semi = after.find(';').unwrap_or(after.len());
        let brace = after.find('{').unwrap_or(after.len());
        if item.starts_with("mod ") && brace < semi {
            return out;
        }
        rest = if semi < brace {
            &after[(semi + 1).min(after.len())..]
        } else {
            // Past the matching closing brace (naive: braces in strings of
            // a test-only item would confuse it; none has any).
            let mut depth = 0usize;
            let mut end = after.len();
            for (i, c) in after.char_indices().skip(brace) {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            &after[end..]
        };
    }
    out.push_str(rest);
    out
}

/// The agent's and the config crate's source files, sorted, each with its
/// non-test code (`tests.rs` files are left out whole).
fn agent_sources() -> Vec<(PathBuf, String)> {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root.join("agent/src"), &mut files);
    rust_files(&root.join("config/src"), &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|f| f.file_name().is_none_or(|n| n != "tests.rs"))
        .map(|f| {
            let code = non_test_code(&read(&f));
            (f, code)
        })
        .collect()
}

/// Every message the agent can print: its own code and the config crate it
/// reports errors from. Test code (`tests.rs`, after `#[cfg(test)]`) is not
/// searched.
fn agent_messages() -> Vec<Message> {
    let root = workspace_root();
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for (file, code) in agent_sources() {
        let code = code.as_str();
        let rel = file.strip_prefix(&root).unwrap().display().to_string();
        let mut add = |pos: usize, template: String, weak: bool| {
            let line = code[..pos].lines().count();
            let m = Message {
                at: format!("{rel}:{line}"),
                template,
            };
            if m.parts().is_empty() || (weak && m.words() < 3) {
                return;
            }
            if NOT_MESSAGES.iter().any(|(p, _)| m.template.starts_with(p)) {
                return;
            }
            if seen.insert(m.template.clone()) {
                found.push(m);
            }
        };
        for (triggers, weak) in [(&TRIGGERS[..], false), (&WEAK_TRIGGERS[..], true)] {
            for t in triggers {
                for (pos, _) in code.match_indices(t) {
                    if let Some(lit) = literal_at(code, pos + t.len()) {
                        add(pos, lit, weak);
                    }
                }
            }
        }
        // "…".into() / "…".to_string()
        for suffix in ["\".into()", "\".to_string()"] {
            for (end, _) in code.match_indices(suffix) {
                // Walk back to the opening quote (not preceded by a backslash).
                let head = &code[..end];
                let mut start = None;
                for (i, c) in head.char_indices().rev() {
                    if c == '"' && !head[..i].ends_with('\\') {
                        start = Some(i);
                        break;
                    }
                    if c == '\n' {
                        break;
                    }
                }
                if let Some(s) = start {
                    if let Some(lit) = decode_literal(&code[s + 1..]) {
                        add(s, lit, true);
                    }
                }
            }
        }
    }
    found
}

/// A message is covered when one line of a code block in
/// docs/troubleshooting.md contains its literal parts in order (so the doc
/// may write `<kernel>` or a real value where the code has `{kver}`).
fn covered(m: &Message, lines: &[String]) -> bool {
    let parts = m.parts();
    lines.iter().any(|line| {
        let mut rest = line.as_str();
        parts.iter().all(|p| match rest.find(p.as_str()) {
            Some(i) => {
                rest = &rest[i + p.len()..];
                true
            }
            None => false,
        })
    })
}

#[test]
fn every_agent_message_is_explained_in_troubleshooting() {
    let doc = read(&workspace_root().join("docs/troubleshooting.md"));
    let lines: Vec<String> = code_blocks(&doc)
        .into_iter()
        .flat_map(|(_, body)| body.lines().map(String::from).collect::<Vec<_>>())
        .collect();
    let messages = agent_messages();
    assert!(
        messages.len() > 100,
        "found only {} messages: is the scanner broken?",
        messages.len()
    );
    let missing: Vec<String> = messages
        .iter()
        .filter(|m| !covered(m, &lines))
        .map(|m| format!("{}: {}", m.at, m.template))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} agent messages are not in a code block of docs/troubleshooting.md \
         (write each with its placeholders as <name>, and say what it means and what to do):\n{}",
        missing.len(),
        messages.len(),
        missing.join("\n")
    );
}

/// Every string literal in the agent's and the config crate's non-test
/// code, decoded: what the agent can print is made of these (a message may
/// be built from several, and `writeln!` lines are among them).
fn agent_literals() -> Vec<String> {
    let mut out = Vec::new();
    for (_, code) in agent_sources() {
        let code = code.as_str();
        let b = code.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'/' if b.get(i + 1) == Some(&b'/') => {
                    i = code[i..].find('\n').map_or(b.len(), |n| i + n);
                }
                b'\'' if b.get(i + 1) == Some(&b'"') && b.get(i + 2) == Some(&b'\'') => i += 3,
                b'"' => {
                    // The closing quote: the first one not escaped.
                    let mut j = i + 1;
                    while j < b.len() && b[j] != b'"' {
                        j += if b[j] == b'\\' { 2 } else { 1 };
                    }
                    if let Some(lit) = decode_literal(&code[i + 1..]) {
                        out.push(lit);
                    }
                    i = j + 1;
                }
                _ => i += 1,
            }
        }
    }
    out
}

/// The words of a documented message line the code's literals do not
/// account for: the line with its `<placeholders>` removed, less every
/// literal part (text between `{…}` of a literal, 2 characters or more)
/// found in it, less example values (words with a digit, `/`, `.` or `=`).
/// A plural `s` after a literal word counts (`attempt{}` prints `attempts`).
/// Empty when each word of the line is one the agent's code can print.
fn unaccounted_words(line: &str, parts: &[String]) -> Vec<String> {
    let mut marked = vec![false; line.len()];
    // Placeholders stand for variable text.
    let mut rest = 0;
    while let Some(open) = line[rest..].find('<') {
        let open = rest + open;
        let Some(close) = line[open..].find('>') else {
            break;
        };
        marked[open..=open + close]
            .iter_mut()
            .for_each(|m| *m = true);
        rest = open + close + 1;
    }
    for p in parts {
        let mut from = 0;
        while let Some(at) = line[from..].find(p.as_str()) {
            let at = from + at;
            marked[at..at + p.len()].iter_mut().for_each(|m| *m = true);
            from = at + p.len();
        }
    }
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut cur_marked = true;
    for (i, c) in line.char_indices() {
        if c.is_alphanumeric() || "_-/.=:".contains(c) {
            let plural_s = c == 's'
                && i > 0
                && marked[i - 1]
                && !line[i + 1..].starts_with(|n: char| n.is_alphanumeric());
            cur.push(c);
            cur_marked &= marked[i] || plural_s;
        } else {
            if !cur_marked {
                words.push(std::mem::take(&mut cur));
            }
            cur.clear();
            cur_marked = true;
        }
    }
    if !cur_marked {
        words.push(cur);
    }
    words
        .into_iter()
        .map(|w| w.trim_matches(|c: char| ":.".contains(c)).to_string())
        .filter(|w| {
            w.chars().filter(|c| c.is_alphabetic()).count() >= 2
                && !w.chars().any(|c| c.is_ascii_digit() || "/.=".contains(c))
        })
        .collect()
}

/// Lines in troubleshooting.md's message blocks that the agent does not
/// print itself, by their fixed text, with where they come from.
const NOT_AGENT_TEXT: [(&str, &str); 1] = [(
    "unexpected EOF during skip",
    "the `tar` crate's error, after the agent's `reading the layer tar`",
)];

/// The reverse of `every_agent_message_is_explained_in_troubleshooting`:
/// each line of the page's message blocks is text the agent can print —
/// every word in it comes from a string literal of the agent's code (so a
/// message that was reworded or removed does not linger in the docs).
/// The blocks of "First look at a node" (commands) and ```sh blocks are
/// not messages.
#[test]
fn every_documented_message_is_one_the_agent_can_print() {
    let doc = read(&workspace_root().join("docs/troubleshooting.md"));
    let messages_part = doc
        .split_once("\n## `status`: next actions")
        .map(|(_, rest)| rest)
        .unwrap();
    let parts: Vec<String> = agent_literals()
        .into_iter()
        .flat_map(|lit| {
            Message {
                at: String::new(),
                template: lit,
            }
            .parts()
        })
        .flat_map(|p| {
            // Multi-line literals (help texts): each line on its own.
            p.lines().map(|l| l.trim().to_string()).collect::<Vec<_>>()
        })
        .filter(|p| p.len() >= 2)
        .collect();
    assert!(
        parts.len() > 500,
        "found only {} literal parts",
        parts.len()
    );
    let mut bad = Vec::new();
    let mut checked = 0;
    for (lang, body) in code_blocks(messages_part) {
        if lang != "text" {
            continue;
        }
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            if NOT_AGENT_TEXT.iter().any(|(t, _)| line.contains(t)) {
                continue;
            }
            checked += 1;
            let words = unaccounted_words(line, &parts);
            if !words.is_empty() {
                bad.push(format!(
                    "{line}\n    not in the agent's code: {}",
                    words.join(", ")
                ));
            }
        }
    }
    assert!(checked > 250, "checked only {checked} lines");
    assert!(
        bad.is_empty(),
        "{} documented lines of docs/troubleshooting.md are not text the agent prints \
         (reword them as the code does, or remove them):\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn the_scanner_finds_messages_of_every_kind() {
    let all = agent_messages();
    let has = |s: &str| all.iter().any(|m| m.template.contains(s));
    // bail!, #[error], with_context, a format!-built errno explanation and a
    // plain "…".into() rollback outcome.
    for probe in [
        "a command is required",
        "digest mismatch: expected",
        "creating store",
        "the kernel rejected the module's signature",
        "rolled back: unloaded what this run loaded",
    ] {
        assert!(has(probe), "the scanner misses `{probe}`");
    }
    assert!(!has("HTTP/1.1"), "request heads are not messages");
}

// ---- examples ----

/// Every file in examples/ is read by some test (the generator's goldens,
/// the docs' command lines, …): an example nobody runs goes stale.
#[test]
fn every_example_is_used_by_a_test() {
    let root = workspace_root();
    let mut sources = Vec::new();
    for dir in ["generator/tests", "agent/tests", "tests", "config/src"] {
        rust_files(&root.join(dir), &mut sources);
    }
    let this = root.join("tests/docs.rs");
    let text: String = sources
        .iter()
        .filter(|p| **p != this)
        .map(|p| read(p))
        .collect::<Vec<_>>()
        .join("\n");
    // The docs' sh blocks are run by the docs_commands tests.
    let docs_sh: String = markdown_files()
        .iter()
        .flat_map(|f| code_blocks(&read(f)))
        .filter(|(lang, _)| lang == "sh")
        .map(|(_, body)| body)
        .collect::<Vec<_>>()
        .join("\n");
    let mut unused = Vec::new();
    let mut count = 0;
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let path = format!("examples/{name}");
        count += 1;
        if !text.contains(&path) && !docs_sh.contains(&path) {
            unused.push(path);
        }
    }
    assert!(count >= 5, "examples/ has only {count} files");
    assert!(
        unused.is_empty(),
        "no test uses {unused:?}: add it to a test (e.g. generator/tests/util CASES)"
    );
}
