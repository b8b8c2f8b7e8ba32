//! `use-sigstore-attachments` from `/etc/containers/registries.d/*.yaml`
//! (containers-registries.d(5)): whether containers/image looks for an
//! image's `sha256-<hex>.sig` tag at all. OpenShift writes it for every
//! ClusterImagePolicy scope; without it a `sigstoreSigned` requirement finds
//! no signature and refuses the image, on CRI-O and here alike.
//!
//! The files are YAML. The agent reads the block-mapping subset these files
//! are written in (nested `key: value` maps, plain or quoted scalars,
//! comments) and refuses anything else (flow collections, lists, anchors,
//! block scalars) with the file's name: a file it cannot read could be the
//! one that turns signatures on, so it fails closed.

use std::path::Path;

use anyhow::Result;
use kmm_day1_config::ImageRef;

use super::{identity_scope, namespaces, read_capped, unusable};

/// The merged `use-sigstore-attachments` settings of a registries.d.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Attachments {
    default: Option<bool>,
    /// A file set `default-docker` to something (not just `default-docker:`).
    default_set: bool,
    /// `docker` namespaces; `None` where an entry does not set the switch.
    docker: Vec<(String, Option<bool>)>,
}

impl Attachments {
    /// Every `*.yaml` of `dir` (absent: nothing is enabled). A namespace or
    /// `default-docker` set in two files is an error, as in containers/image.
    pub fn load(dir: &Path) -> Result<Attachments> {
        let mut out = Attachments::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(unusable(dir, e)),
        };
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        paths.sort();
        for path in paths {
            if let Some(text) = read_capped(&path)? {
                out.merge(&text).map_err(|why| unusable(&path, why))?;
            }
        }
        Ok(out)
    }

    /// Merge one file's text in (its error names the line, not the file).
    ///
    /// One pass over the lines: `path` holds the keys of the maps the line
    /// is inside, by indentation. Only `default-docker.use-sigstore-attachments`
    /// and `docker.<namespace>.use-sigstore-attachments` are kept.
    pub fn merge(&mut self, text: &str) -> Result<(), String> {
        // (indentation, key, indentation of its entries) of each open map.
        let mut path: Vec<(usize, String, Option<usize>)> = Vec::new();
        let mut top: Option<usize> = None;
        // The indentation of the last `key: value`: nothing may nest in it.
        let mut leaf: Option<usize> = None;
        let mut default_here = false;
        for (i, raw) in text.split('\n').enumerate() {
            let line = strip_comment(raw).trim_end_matches([' ', '\t', '\r']);
            let body = line.trim_start_matches(' ');
            if body.is_empty() || (i == 0 && body == "---") {
                continue;
            }
            let no = i + 1;
            let indent = line.len() - body.len();
            let bad = |why: &str| format!("line {no}: {why}");
            if body.starts_with('\t') {
                return Err(bad("a tab in the indentation"));
            }
            if leaf.is_some_and(|l| indent > l) {
                return Err(bad("unexpected indentation"));
            }
            while path.last().is_some_and(|(at, _, _)| *at >= indent) {
                path.pop();
            }
            // Entries of one map share one indentation.
            let siblings = match path.last_mut() {
                Some((_, _, child)) => child,
                None => &mut top,
            };
            if *siblings.get_or_insert(indent) != indent {
                return Err(bad("unexpected indentation"));
            }
            let unsupported = || {
                bad(&format!(
                    "`{body}` is YAML kmm-day1 does not read (only nested `key: value` maps)"
                ))
            };
            let (key, value) = split_key(body).ok_or_else(unsupported)?;
            let value = scalar(value).ok_or_else(unsupported)?;
            let keys: Vec<&str> = path.iter().map(|(_, k, _)| k.as_str()).collect();
            match (keys.as_slice(), value) {
                (["docker"], _) => {
                    if self.docker.iter().any(|(n, _)| *n == key) {
                        return Err(bad(&format!(
                            "namespace `{key}` is set twice (here or in another file)"
                        )));
                    }
                    self.docker.push((key.clone(), None));
                }
                (["default-docker"], _) => default_here = true,
                _ => {}
            }
            match (keys.as_slice(), key.as_str(), value) {
                (_, _, None) => {
                    path.push((indent, key, None));
                    leaf = None;
                    continue;
                }
                (["default-docker"], "use-sigstore-attachments", Some(v)) => {
                    self.default = Some(switch(v, no)?)
                }
                (["docker", ns], "use-sigstore-attachments", Some(v)) => {
                    let on = switch(v, no)?;
                    if let Some(e) = self.docker.iter_mut().find(|(n, _)| n == ns) {
                        e.1 = Some(on);
                    }
                }
                _ => {}
            }
            leaf = Some(indent);
        }
        if default_here {
            if self.default_set {
                return Err("`default-docker` is also set in another file".into());
            }
            self.default_set = true;
        }
        Ok(())
    }

    /// Whether signatures are looked for when pulling `image` (the reference
    /// of the endpoint that serves it, a mirror's included).
    pub fn enabled(&self, image: &ImageRef) -> bool {
        for scope in std::iter::once(identity_scope(image)).chain(namespaces(image)) {
            if let Some((_, Some(on))) = self.docker.iter().find(|(n, _)| *n == scope) {
                return *on;
            }
        }
        self.default.unwrap_or(false)
    }
}

/// A `use-sigstore-attachments` value.
fn switch(v: &str, no: usize) -> Result<bool, String> {
    match v {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        other => Err(format!(
            "line {no}: `use-sigstore-attachments: {other}` is not true or false"
        )),
    }
}

/// `key: rest` (rest may be empty); the key plain or quoted.
fn split_key(text: &str) -> Option<(String, &str)> {
    let (key, rest) = if let Some(q @ ('"' | '\'')) = text.chars().next() {
        let end = text[1..].find(q)? + 1;
        let rest = text[end + 1..].strip_prefix(':')?;
        if !rest.is_empty() && !rest.starts_with(' ') {
            return None;
        }
        (&text[1..end], rest)
    } else {
        let (key, rest) = text
            .split_once(": ")
            .or_else(|| Some((text.strip_suffix(':')?, "")))?;
        if key.is_empty() || key.starts_with(['-', '[', '{', '&', '*', '!', '?', '|', '>']) {
            return None;
        }
        (key, rest)
    };
    Some((key.to_string(), rest.trim_start_matches(' ')))
}

/// A scalar value: `None` inside for no value (a map follows, or null),
/// `None` outside for YAML the agent does not read.
fn scalar(s: &str) -> Option<Option<&str>> {
    if s.is_empty() || s == "~" || s == "null" {
        return Some(None);
    }
    if let Some(q @ ('"' | '\'')) = s.chars().next() {
        return (s.len() >= 2 && s.ends_with(q)).then(|| Some(&s[1..s.len() - 1]));
    }
    if s.starts_with(['[', '{', '&', '*', '!', '|', '>', '-', '@', '`']) {
        return None;
    }
    Some(Some(s))
}

/// The line without a `#` comment (one at the start or after a blank,
/// outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = 0u8;
    let mut prev = b' ';
    for (i, c) in line.bytes().enumerate() {
        match c {
            b'"' | b'\'' if quote == 0 => quote = c,
            _ if c == quote => quote = 0,
            b'#' if quote == 0 && (prev == b' ' || prev == b'\t') => return &line[..i],
            _ => {}
        }
        prev = c;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    /// The files OpenShift and RHEL ship: a commented `default-docker:`,
    /// lookaside entries, and the ClusterImagePolicy one.
    #[test]
    fn the_files_nodes_have_are_read() {
        let mut a = Attachments::default();
        a.merge("# comment\ndefault-docker:\n#  lookaside: https://x\n")
            .unwrap();
        a.merge("docker:\n     registry.redhat.io:\n         sigstore: https://registry.redhat.io/containers/sigstore\n").unwrap();
        a.merge("docker:\n  quay.io/acme:\n    use-sigstore-attachments: true\n  'quay.io/acme/old':\n    use-sigstore-attachments: false # kept\n").unwrap();
        assert!(a.enabled(&img("quay.io/acme/drv:1")));
        assert!(a.enabled(&img("quay.io/acme/sub/drv:1")));
        assert!(!a.enabled(&img("quay.io/acme/old:1")));
        assert!(!a.enabled(&img("quay.io/other/drv:1")));
        assert!(!a.enabled(&img("registry.redhat.io/x/y:1")));
        let mut d = Attachments::default();
        d.merge("default-docker:\n  use-sigstore-attachments: true\n")
            .unwrap();
        assert!(d.enabled(&img("any.io/x:1")));
    }

    #[test]
    fn what_is_not_read_is_refused_by_line() {
        for (text, why) in [
            ("docker: {quay.io: {}}\n", "line 1"),
            ("docker:\n  - quay.io\n", "line 2"),
            (
                "docker:\n  quay.io:\n    use-sigstore-attachments: yes\n",
                "not true or false",
            ),
            ("docker:\n  a:\n  a:\n", "namespace `a` is set twice"),
            ("docker:\n  a:\n     x: 1\n    y: 2\n", "indentation"),
            ("a: &x 1\n", "line 1"),
        ] {
            let e = Attachments::default().merge(text).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
        let mut a = Attachments::default();
        a.merge("default-docker:\n").unwrap();
        a.merge("default-docker:\n  lookaside: file:///x\n")
            .unwrap();
        assert!(a
            .merge("default-docker:\n  use-sigstore-attachments: true\n")
            .unwrap_err()
            .contains("another file"));
    }
}
