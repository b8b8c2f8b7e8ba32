//! The node's module options, read as kmod reads them whenever it loads a
//! module (libkmod-config.c): `options NAME …` lines from the modprobe.d
//! directories, then `NAME.param[=value]` words from the kernel command
//! line. The agent loads modules with init_module/finit_module itself, so
//! without this a module it loads would miss options `modprobe` would have
//! given it — and a rolled-back node would not be "as before".
//!
//! Only `options` lines are read: `install`/`remove` commands are programs
//! the agent does not run at boot, and `blacklist` and `alias` apply to
//! alias lookups, which the agent does not make (docs/replace.md).

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use kmm_day1_config::module_name_canonical;

use crate::log;

/// kmod's search path, first directory first: a file name found in an
/// earlier one hides the same name in later ones (so `/etc` overrides the
/// OS's `/usr/lib`, and a `/dev/null` link there masks a file).
const DIRS: [&str; 5] = [
    "etc/modprobe.d",
    "run/modprobe.d",
    "usr/local/lib/modprobe.d",
    "usr/lib/modprobe.d",
    "lib/modprobe.d",
];

/// The node's options, as (canonical module name, options) in kmod's order.
#[derive(Debug, Default)]
pub struct NodeOptions {
    files: Vec<(String, String)>,
    cmdline: Vec<(String, String)>,
}

impl NodeOptions {
    /// Read under `root` (`/` on a node). An unreadable file is skipped with
    /// a warning, as kmod skips it: the boot-time swap does not stop on it.
    pub fn read(root: &Path) -> NodeOptions {
        // Every file name once, in byte order: kmod parses them so, across
        // all directories.
        let mut names: Vec<PathBuf> = Vec::new();
        for dir in DIRS {
            if let Ok(entries) = fs::read_dir(root.join(dir)) {
                names.extend(entries.filter_map(|e| e.ok().map(|e| PathBuf::from(e.file_name()))));
            }
        }
        names.retain(|n| {
            let b = n.as_os_str().as_bytes();
            !b.starts_with(b".") && (b.ends_with(b".conf") || b.ends_with(b".alias"))
        });
        names.sort();
        names.dedup();
        let mut files = Vec::new();
        for name in &names {
            // The first directory that has the name, unless it is a
            // directory there (kmod skips those); a dangling link still
            // hides later ones.
            let Some(path) = DIRS
                .iter()
                .map(|d| root.join(d).join(name))
                .find(|p| p.symlink_metadata().is_ok() && !p.is_dir())
            else {
                continue;
            };
            match fs::read_to_string(&path) {
                Ok(text) => parse_file(&text, &mut files),
                Err(e) => log::warning!(
                    "{}: {e}: its module options are not applied",
                    path.display()
                ),
            }
        }
        let cmdline = fs::read_to_string(root.join("proc/cmdline"))
            .map(|c| parse_cmdline(&c))
            .unwrap_or_default();
        NodeOptions { files, cmdline }
    }

    /// What kmod would give `module` (a canonical name): modprobe.d's
    /// options, then the command line's. For modules of the host's tree.
    pub fn host(&self, module: &str) -> String {
        self.options(module, &self.files)
    }

    /// The command line's options alone: for modules from the image, which
    /// modprobe.d lines written for the in-tree driver do not describe.
    pub fn cmdline(&self, module: &str) -> String {
        self.options(module, &[])
    }

    fn options(&self, module: &str, files: &[(String, String)]) -> String {
        let mut out = String::new();
        for (m, o) in files.iter().chain(&self.cmdline) {
            if m == module && !o.is_empty() {
                push_word(&mut out, o);
            }
        }
        out
    }
}

fn push_word(out: &mut String, w: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(w);
}

/// `node`'s options and then `config`'s (words without blanks or quotes,
/// as the config's check requires), without the node's parameters the
/// config sets: the config wins, and each parameter is given once. Without
/// config parameters the node's text passes as kmod would pass it.
pub fn merge(node: &str, config: &str) -> String {
    if config.is_empty() {
        return node.to_string();
    }
    let set: Vec<String> = config.split(' ').map(param_name).collect();
    let mut out = String::new();
    for w in words(node).filter(|w| !set.contains(&param_name(w))) {
        push_word(&mut out, w);
    }
    push_word(&mut out, config);
    out
}

/// Words as the kernel's `parse_args` splits them: at blanks outside quotes.
fn words(s: &str) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    s.split(move |c: char| {
        if c == '"' {
            quoted = !quoted;
        }
        c.is_ascii_whitespace() && !quoted
    })
    .filter(|w| !w.is_empty())
}

/// `"a-b=1"` → `a_b`: the kernel treats `-` and `_` in a name alike.
fn param_name(w: &str) -> String {
    let w = w.trim_start_matches('"');
    w[..w.find(['=', '"']).unwrap_or(w.len())].replace('-', "_")
}

/// The `options` lines of one file. Lines are joined at a backslash before
/// the newline; any other backslash is dropped before the character it
/// escapes. `options NAME REST`: REST is kept verbatim after the one blank
/// that ends NAME, with tabs made spaces.
fn parse_file(text: &str, out: &mut Vec<(String, String)>) {
    let mut line = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(c) => line.push(c),
            },
            '\n' => {
                parse_line(&line, out);
                line.clear();
            }
            c => line.push(c),
        }
    }
    parse_line(&line, out);
}

fn parse_line(line: &str, out: &mut Vec<(String, String)>) {
    const BLANK: [char; 2] = [' ', '\t'];
    if line.starts_with('#') {
        return;
    }
    let Some(("options", rest)) = line.trim_start_matches(BLANK).split_once(BLANK) else {
        return;
    };
    let Some((name, opts)) = rest.trim_start_matches(BLANK).split_once(BLANK) else {
        return;
    };
    if !opts.is_empty() {
        out.push((module_name_canonical(name), opts.replace('\t', " ")));
    }
}

/// The module options on a kernel command line: kmod's state machine,
/// including its rules for quotes (a word may be quoted whole, as GRUB
/// passes `"m.p=a b"`, or in its value) and for what it ignores.
fn parse_cmdline(line: &str) -> Vec<(String, String)> {
    #[derive(PartialEq)]
    enum S {
        Name,
        Param,
        Value,
        Ignore,
    }
    let b = line.as_bytes();
    let mut out = Vec::new();
    let (mut state, mut quoted, mut quote_start) = (S::Name, false, false);
    let (mut start, mut dot, mut eq) = (0, 0, 0);
    for i in 0..=b.len() {
        match b.get(i).copied().unwrap_or(b' ') {
            b'"' => {
                quoted = !quoted;
                if quoted && state == S::Name && i == start {
                    quote_start = true;
                    start = i + 1;
                } else if state != S::Value {
                    state = S::Ignore;
                }
            }
            b' ' | b'\n' | b'\t' | 0x0b | 0x0c | b'\r' => {
                if quoted {
                    if state != S::Value {
                        state = S::Ignore;
                    }
                    continue;
                }
                if matches!(state, S::Param | S::Value) {
                    let name = &line[start..dot];
                    let mut param = line[dot + 1..i].to_string();
                    if quote_start {
                        param.insert(eq - dot, '"');
                    }
                    let blacklist = name == "modprobe" && param.starts_with("blacklist=");
                    if !blacklist {
                        out.push((module_name_canonical(name), param.replace('\t', " ")));
                    }
                }
                start = i + 1;
                state = S::Name;
                quote_start = false;
            }
            b'.' if state == S::Name => {
                dot = i;
                state = S::Param;
            }
            b'.' if state == S::Param => state = S::Ignore,
            b'=' if state == S::Param => {
                eq = i;
                state = S::Value;
            }
            b'=' if state == S::Name => state = S::Ignore,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
