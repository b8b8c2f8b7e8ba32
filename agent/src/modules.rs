//! Module trees and the kernel's module lists, parsed without libkmod:
//! `modules.dep`, `modules.softdep`, `modules.alias`, `modules.builtin`,
//! `modules.builtin.modinfo` (as depmod writes them) and `/proc/modules`.
//!
//! Names are compared in canonical form (`-` → `_`), as the kernel and kmod
//! do. Lookups follow kmod's order for one name: a module file, then
//! `modules.alias` patterns, then built-in modules and their aliases.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kmm_day1_config::module_name_canonical;

/// One `lib/modules/<kver>` directory with its depmod indexes.
#[derive(Debug)]
pub struct Tree {
    /// `…/lib/modules/<kver>`.
    pub dir: PathBuf,
    modules: HashMap<String, DepEntry>,
    softdeps: Vec<Softdep>,
    builtin: HashSet<String>,
    /// Read on first use: only softdeps name aliases, and few modules have them.
    aliases: OnceCell<Vec<(String, String)>>,
    builtin_aliases: OnceCell<Vec<(String, String)>>,
}

/// A `modules.dep` line: the module file and every module it needs (the
/// transitive closure, as depmod writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepEntry {
    pub path: PathBuf,
    /// Canonical names, in `modules.dep` order (depmod puts the deepest last).
    pub deps: Vec<String>,
}

/// A `softdep <pattern> pre: … post: …` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Softdep {
    pub pattern: String,
    pub pre: Vec<String>,
    pub post: Vec<String>,
}

/// What a name (module, alias) stands for in one tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Loadable modules (canonical names); an alias may match several.
    Modules(Vec<String>),
    /// Built into the kernel: nothing to load.
    Builtin(Vec<String>),
    NotFound,
}

impl Tree {
    /// Read `dir/modules.dep` (required) and the other indexes (optional).
    pub fn open(dir: &Path) -> Result<Tree> {
        let dep_path = dir.join("modules.dep");
        let text = fs::read_to_string(&dep_path).with_context(|| {
            format!(
                "reading {} (a module tree needs depmod's output)",
                dep_path.display()
            )
        })?;
        let root = depmod_root(dir);
        let mut modules = HashMap::new();
        for (module, deps) in parse_modules_dep(&text) {
            let name = module_name_from_path(module);
            let entry = DepEntry {
                path: resolve_dep_path(dir, &root, module),
                deps: deps.iter().map(|d| module_name_from_path(d)).collect(),
            };
            // depmod writes one line per name; should a tree have two, the
            // first wins, as in kmod's index.
            modules.entry(name).or_insert(entry);
        }
        let optional = |file: &str| -> Result<String> {
            match fs::read_to_string(dir.join(file)) {
                Ok(t) => Ok(t),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
                Err(e) => Err(e).with_context(|| format!("reading {}", dir.join(file).display())),
            }
        };
        Ok(Tree {
            dir: dir.to_path_buf(),
            modules,
            softdeps: parse_softdeps(&optional("modules.softdep")?),
            builtin: parse_builtin(&optional("modules.builtin")?),
            aliases: OnceCell::new(),
            builtin_aliases: OnceCell::new(),
        })
    }

    /// The tree at `dir` if it has a `modules.dep`, `None` if it does not
    /// exist at all (a host without that kernel's modules).
    pub fn open_if_exists(dir: &Path) -> Result<Option<Tree>> {
        if dir.join("modules.dep").exists() {
            Tree::open(dir).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn module(&self, name: &str) -> Option<&DepEntry> {
        self.modules.get(&module_name_canonical(name))
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&module_name_canonical(name))
    }

    /// The first softdep line whose pattern matches `name`: kmod uses only
    /// that one.
    pub fn softdep(&self, name: &str) -> Option<&Softdep> {
        let name = module_name_canonical(name);
        self.softdeps.iter().find(|s| fnmatch(&s.pattern, &name))
    }

    /// Modules whose `modules.alias` pattern matches `name`.
    pub fn alias_matches(&self, name: &str) -> Vec<String> {
        let aliases = self.aliases.get_or_init(|| {
            let text = fs::read_to_string(self.dir.join("modules.alias")).unwrap_or_default();
            parse_aliases(&text)
        });
        matches(aliases, name)
    }

    /// Built-in modules whose alias (`modules.builtin.modinfo`) matches.
    pub fn builtin_alias_matches(&self, name: &str) -> Vec<String> {
        let aliases = self.builtin_aliases.get_or_init(|| {
            let bytes = fs::read(self.dir.join("modules.builtin.modinfo")).unwrap_or_default();
            parse_builtin_modinfo_aliases(&bytes)
        });
        matches(aliases, name)
    }
}

fn matches(aliases: &[(String, String)], name: &str) -> Vec<String> {
    let Some(key) = alias_normalize(name) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for (pattern, module) in aliases {
        if fnmatch(pattern, &key) && !out.contains(module) {
            out.push(module.clone());
        }
    }
    out
}

/// Look `name` up across trees in kmod's order: module files in every tree
/// (first tree first), then aliases, then built-ins.
pub fn lookup(trees: &[&Tree], name: &str) -> Lookup {
    let Some(key) = alias_normalize(name) else {
        return Lookup::NotFound;
    };
    if trees.iter().any(|t| t.modules.contains_key(&key)) {
        return Lookup::Modules(vec![key]);
    }
    for t in trees {
        let found = t.alias_matches(&key);
        if !found.is_empty() {
            return Lookup::Modules(found);
        }
    }
    if trees.iter().any(|t| t.builtin.contains(&key)) {
        return Lookup::Builtin(vec![key]);
    }
    for t in trees {
        let found = t.builtin_alias_matches(&key);
        if !found.is_empty() {
            return Lookup::Builtin(found);
        }
    }
    Lookup::NotFound
}

/// The directory depmod was given with `-b`: `dir` is `<root>/lib/modules/<kver>`.
fn depmod_root(dir: &Path) -> PathBuf {
    dir.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

/// depmod writes paths relative to the tree; older versions wrote absolute
/// paths, which are relative to the root depmod was given.
fn resolve_dep_path(dir: &Path, root: &Path, p: &str) -> PathBuf {
    match p.strip_prefix('/') {
        Some(abs) => root.join(abs),
        None => dir.join(p),
    }
}

/// `kernel/drivers/net/foo-bar.ko.xz` → `foo_bar` (kmod's rule: the file
/// name up to the first dot, canonicalised).
pub fn module_name_from_path(p: &str) -> String {
    let base = p.rsplit('/').next().unwrap_or(p);
    let stem = base.split('.').next().unwrap_or(base);
    module_name_canonical(stem)
}

/// `modules.dep`: `path: dep dep …` lines, in file order.
pub fn parse_modules_dep(text: &str) -> Vec<(&str, Vec<&str>)> {
    text.lines()
        .filter_map(|line| {
            let (module, deps) = line.split_once(':')?;
            let module = module.trim();
            (!module.is_empty() && !module.starts_with('#'))
                .then(|| (module, deps.split_ascii_whitespace().collect()))
        })
        .collect()
}

/// `modules.builtin`: one path per line → canonical names.
pub fn parse_builtin(text: &str) -> HashSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(module_name_from_path)
        .collect()
}

/// `modules.alias`: `alias <pattern> <module>` → (normalised pattern, module).
pub fn parse_aliases(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut w = line.split_ascii_whitespace();
            if w.next()? != "alias" {
                return None;
            }
            let pattern = alias_normalize(w.next()?)?;
            Some((pattern, module_name_canonical(w.next()?)))
        })
        .collect()
}

/// `modules.builtin.modinfo`: NUL-separated `module.key=value` records;
/// the `alias` ones as (normalised pattern, module).
pub fn parse_builtin_modinfo_aliases(bytes: &[u8]) -> Vec<(String, String)> {
    bytes
        .split(|&b| b == 0)
        .filter_map(|rec| {
            let rec = std::str::from_utf8(rec).ok()?;
            let (module, value) = rec.split_once(".alias=")?;
            (!module.contains('=')).then_some(())?;
            Some((alias_normalize(value)?, module_name_canonical(module)))
        })
        .collect()
}

/// `modules.softdep` (and the same syntax in modprobe.d): `softdep <pattern>
/// pre: a b post: c`. Words before `pre:`/`post:` are ignored, as kmod does.
pub fn parse_softdeps(text: &str) -> Vec<Softdep> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("softdep") {
            continue;
        }
        let Some(pattern) = words.next() else {
            continue;
        };
        let mut sd = Softdep {
            pattern: underscores(pattern),
            pre: Vec::new(),
            post: Vec::new(),
        };
        let mut mode = 0; // 0 none, 1 pre, 2 post
        for w in words {
            match w {
                "pre:" => mode = 1,
                "post:" => mode = 2,
                _ if mode == 1 => sd.pre.push(w.to_string()),
                _ if mode == 2 => sd.post.push(w.to_string()),
                _ => {}
            }
        }
        out.push(sd);
    }
    out
}

/// kmod's `alias_normalize`: `-` → `_` outside `[...]`; `None` for an
/// unbalanced bracket.
pub fn alias_normalize(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '-' => out.push('_'),
            ']' => return None,
            '[' => {
                out.push('[');
                loop {
                    let c = chars.next()?;
                    out.push(c);
                    if c == ']' {
                        break;
                    }
                }
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// kmod's `underscores` for config module names: like [`alias_normalize`]
/// but keeps the text when brackets do not balance.
fn underscores(s: &str) -> String {
    alias_normalize(s).unwrap_or_else(|| s.to_string())
}

/// fnmatch(3) without flags: `*`, `?`, `[...]` with ranges and `!`/`^`
/// negation, `\` escapes. Enough for module aliases (`pci:v*d*…`,
/// `usb:v…d0[0-3]*`).
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index).
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi + 1, ti));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = bracket(p, pi, t[ti]) {
                        if matched {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == b'[' {
                        // No closing `]`: a literal `[`.
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                b'\\' if pi + 1 < p.len() && p[pi + 1] == t[ti] => {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Match `c` against the bracket expression at `p[start]` (`[`): whether it
/// matched and the index after `]`, or `None` when there is no `]`.
fn bracket(p: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = p[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

/// One line of `/proc/modules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub name: String,
    /// `None` when the kernel cannot unload modules (`-`).
    pub refcount: Option<u32>,
    /// Modules that use this one (the "used by" column).
    pub users: Vec<String>,
    /// `Live`, `Loading` or `Unloading`.
    pub state: String,
}

/// `/proc/modules`: `name size refcount users state address [taint]`, where
/// users is `a,b,` or `-`.
pub fn parse_proc_modules(text: &str) -> Vec<Loaded> {
    text.lines()
        .filter_map(|line| {
            let mut w = line.split_ascii_whitespace();
            let name = w.next()?.to_string();
            let _size = w.next()?;
            let refcount = w.next()?.parse().ok();
            let users = w
                .next()?
                .split(',')
                .filter(|u| !u.is_empty() && *u != "-")
                .map(str::to_string)
                .collect();
            let state = w.next()?.to_string();
            Some(Loaded {
                name,
                refcount,
                users,
                state,
            })
        })
        .collect()
}

/// Entries of a `/sys/module/<m>/holders` directory (symlinks named after
/// the holding modules); an absent directory has none.
pub fn read_holders(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in entries {
        out.push(e?.file_name().to_string_lossy().into_owned());
    }
    out.sort();
    Ok(out)
}

// ------------------------------------------------------------ tree checks

/// Which modules of an image's tree [`check_tree`] examines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The configured modules and what they need: what a node loads
    /// (`pull` refuses an image only for these).
    Loads,
    /// Every module of the tree (`verify` reports them all).
    Whole,
}

/// What a finding is about: one line of `verify`'s report each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `<module_root>/lib/modules/<kver>` itself.
    Tree,
    /// `modules.dep` is not there: nothing else can be checked.
    NoModulesDep,
    /// `modules.dep`: every path inside the tree and present.
    ModulesDep,
    /// A configured module: named in `modules.dep`.
    Module(String),
    /// Every examined module built for this kernel.
    Vermagic,
    /// A configured module's parameters: each one it declares, of a value
    /// its type takes.
    Parameters(String),
}

impl Check {
    pub fn label(&self) -> String {
        match self {
            Check::Tree => "tree".into(),
            Check::NoModulesDep | Check::ModulesDep => "modules.dep".into(),
            Check::Module(m) => format!("module {m}"),
            Check::Vermagic => "vermagic".into(),
            Check::Parameters(m) => format!("parameters {m}"),
        }
    }

    /// What to do about this check's problems, after them (with its `: `,
    /// so the line's text is all in literals: tests/docs.rs reads them).
    fn advice(&self, root: &str, kver: &str) -> Option<String> {
        match self {
            Check::Tree => Some(": build it for this kernel or fix kernel_mappings".into()),
            Check::NoModulesDep => {
                Some(format!(": build the image with `depmod -b {root} {kver}`"))
            }
            Check::ModulesDep => Some(format!(": rebuild it with `depmod -b {root} {kver}`")),
            Check::Module(_) => None,
            Check::Vermagic => Some(format!(": rebuild them against kernel {kver}'s headers")),
            Check::Parameters(_) => {
                Some(": fix `[parameters]` in the config (the kernel would ignore an unknown one and refuse a bad value)".into())
            }
        }
    }
}

/// One problem of an image's module tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: Check,
    pub problem: String,
    /// About a file a node would load (a configured module or one it needs).
    pub loads: bool,
}

/// One module file of the tree, with what its `.modinfo` says.
#[derive(Debug)]
pub struct TreeModule {
    /// Its `modules.dep` path, relative to the tree.
    pub rel: String,
    pub info: Option<crate::modinfo::ModInfo>,
}

/// What [`check_tree`] found in `<root>/lib/modules/<kver>` of an extracted image.
#[derive(Debug)]
pub struct TreeCheck {
    /// `<module_root>/lib/modules/<kver>` as the image names it, for messages.
    pub place: String,
    pub module_root: String,
    pub kver: String,
    /// The `modules.dep` lines, in file order.
    pub entries: Vec<(String, Vec<String>)>,
    /// The examined module files (in the scope), inside the tree and present.
    pub modules: Vec<TreeModule>,
    /// Each configured module and its `modules.dep` line, if it has one.
    pub configured: Vec<(String, Option<usize>)>,
    pub findings: Vec<Finding>,
    /// False when the tree itself or its `modules.dep` is missing: nothing
    /// else could be checked.
    pub complete: bool,
}

impl TreeCheck {
    /// The first problem a node would load, as one line: what `pull`
    /// refuses the image with.
    pub fn first_refusal(&self) -> Option<String> {
        let f = self.findings.iter().find(|f| f.loads)?;
        Some(self.line(&f.check, std::slice::from_ref(&f.problem)))
    }

    /// `<check> [<kver>]: <problems>: <advice>`: one line of `verify`'s
    /// report, and the text of `pull`'s refusal.
    pub fn line(&self, check: &Check, problems: &[String]) -> String {
        let mut s = format!("{} [{}]: {}", check.label(), self.kver, problems.join("; "));
        if let Some(a) = check.advice(&self.module_root, &self.kver) {
            s.push_str(&a);
        }
        s
    }

    /// The problems of `check`, in the order found.
    pub fn problems(&self, check: &Check) -> Vec<String> {
        self.findings
            .iter()
            .filter(|f| f.check == *check)
            .map(|f| f.problem.clone())
            .collect()
    }
}

/// `modules.dep` names a path outside the tree (`replace` loads what it names).
fn leaves_tree(p: &str) -> bool {
    p.starts_with('/') || p.split('/').any(|c| c == "..")
}

/// Check the module tree of an image extracted to `extracted` (the root
/// whose `lib/modules/<kver>` is the image's `<module_root>/lib/modules/<kver>`):
/// it exists, its `modules.dep` names only files inside the tree that are
/// there, each of `modules` is in it, and the examined modules were built
/// for `kver`. One check for `pull` (which refuses at the first finding
/// about what a node loads) and `verify` (which reports every finding).
/// `kernels_seen`: the kernel trees the image has, for the message when
/// this one is missing. Only I/O failures of the extracted files are errors.
pub fn check_tree(
    extracted: &Path,
    module_root: &str,
    kver: &str,
    modules: &[String],
    parameters: &std::collections::BTreeMap<String, Vec<String>>,
    kernels_seen: &std::collections::BTreeSet<String>,
    scope: Scope,
) -> Result<TreeCheck> {
    let root = module_root.trim_end_matches('/');
    let place = format!("{root}/lib/modules/{kver}");
    let mdir = extracted.join("lib/modules").join(kver);
    let mut out = TreeCheck {
        place: place.clone(),
        module_root: root.to_string(),
        kver: kver.to_string(),
        entries: Vec::new(),
        modules: Vec::new(),
        configured: Vec::new(),
        findings: Vec::new(),
        complete: false,
    };
    let mut found: Vec<Finding> = Vec::new();
    let mut find = |check: Check, problem: String, loads: bool| {
        found.push(Finding {
            check,
            problem,
            loads,
        })
    };
    if !mdir.is_dir() {
        let has = if kernels_seen.is_empty() {
            "none".to_string()
        } else {
            kernels_seen.iter().cloned().collect::<Vec<_>>().join(", ")
        };
        find(
            Check::Tree,
            format!("the image has no {place} (its kernel trees: {has})"),
            true,
        );
        out.findings = found;
        return Ok(out);
    }
    let dep_path = mdir.join("modules.dep");
    let text = match fs::read_to_string(&dep_path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            find(
                Check::NoModulesDep,
                format!("the image has no {place}/modules.dep"),
                true,
            );
            out.findings = found;
            return Ok(out);
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", dep_path.display())),
    };
    let entries: Vec<(String, Vec<String>)> = parse_modules_dep(&text)
        .into_iter()
        .map(|(p, d)| (p.to_string(), d.into_iter().map(str::to_string).collect()))
        .collect();

    // The configured modules, by kmod's name rule (file name up to the
    // first dot, canonical), and the files a node loads for them.
    let mut load_set: Vec<&str> = Vec::new();
    for m in modules {
        let want = module_name_canonical(m);
        let idx = entries
            .iter()
            .position(|(p, _)| module_name_from_path(p) == want);
        match idx {
            Some(i) => {
                let (path, deps) = &entries[i];
                for f in std::iter::once(path).chain(deps) {
                    if !load_set.contains(&f.as_str()) {
                        load_set.push(f);
                    }
                }
            }
            None => {
                let names: Vec<String> = entries
                    .iter()
                    .map(|(p, _)| module_name_from_path(p))
                    .take(20)
                    .collect();
                find(
                    Check::Module(m.clone()),
                    format!(
                        "not in {place}/modules.dep (it lists: {})",
                        if names.is_empty() {
                            "nothing".to_string()
                        } else {
                            names.join(", ")
                        }
                    ),
                    true,
                );
            }
        }
        out.configured.push((m.clone(), idx));
    }
    let loads = |f: &str| load_set.contains(&f);

    // Every path inside the tree and present; in the whole tree, every
    // dependency a module with a line of its own.
    let listed: std::collections::BTreeSet<&str> =
        entries.iter().map(|(p, _)| p.as_str()).collect();
    let mut files: Vec<(&str, Option<&str>)> = Vec::new(); // (file, needed by)
    match scope {
        // A path leaving the tree is the worst a node could be asked to
        // load: it comes first, so `pull` names it before a missing file.
        Scope::Loads => {
            let (out_of_tree, inside): (Vec<&str>, Vec<&str>) =
                load_set.iter().partition(|f| leaves_tree(f));
            files.extend(out_of_tree.into_iter().chain(inside).map(|f| (f, None)));
        }
        Scope::Whole => {
            for (path, deps) in &entries {
                files.push((path, None));
                files.extend(deps.iter().map(|d| (d.as_str(), Some(path.as_str()))));
            }
        }
    }
    let mut dep_problems: Vec<(String, bool)> = Vec::new();
    for (f, needed_by) in &files {
        let problem = if leaves_tree(f) {
            format!("`{f}` is outside the module tree")
        } else if !mdir.join(f).is_file() {
            format!("`{f}` is listed but missing")
        } else if let (Some(by), false) = (needed_by, listed.contains(f)) {
            format!("`{f}` (needed by {by}) has no line of its own")
        } else {
            continue;
        };
        // A node never loads a dependency through a line of its own, so
        // that problem alone is verify's, not a reason to refuse.
        let refuse = loads(f) && !problem.ends_with("has no line of its own");
        if !dep_problems.iter().any(|(p, _)| *p == problem) {
            dep_problems.push((problem, refuse));
        }
    }
    for (problem, refuse) in dep_problems {
        find(Check::ModulesDep, problem, refuse);
    }

    // vermagic of every examined module file that is there.
    let examined: Vec<&str> = match scope {
        Scope::Loads => load_set.clone(),
        Scope::Whole => entries.iter().map(|(p, _)| p.as_str()).collect(),
    };
    for rel in examined {
        if leaves_tree(rel) || !mdir.join(rel).is_file() {
            continue;
        }
        let info = match crate::modinfo::read(&mdir.join(rel)) {
            Ok(i) => Some(i),
            Err(
                e @ (crate::modinfo::ModinfoError::Format { .. }
                | crate::modinfo::ModinfoError::Decompress { .. }),
            ) => {
                find(
                    Check::Vermagic,
                    format!("{rel} is not a readable module ({e})"),
                    loads(rel),
                );
                None
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(i) = &info {
            match i.vermagic_release() {
                Some(v) if v == kver => {}
                Some(v) => find(
                    Check::Vermagic,
                    format!("{rel} was built for kernel {v}, not {kver}"),
                    loads(rel),
                ),
                None => find(
                    Check::Vermagic,
                    format!("{rel} has no vermagic: not a loadable module"),
                    loads(rel),
                ),
            }
        }
        out.modules.push(TreeModule {
            rel: rel.to_string(),
            info,
        });
    }
    // The configured parameters against each configured module's own.
    for (m, idx) in &out.configured {
        let (Some(i), Some(params)) = (idx, parameters.get(m)) else {
            continue;
        };
        let rel = &entries[*i].0;
        let Some(info) = out
            .modules
            .iter()
            .find(|t| t.rel == *rel)
            .and_then(|t| t.info.as_ref())
        else {
            continue;
        };
        for problem in crate::params::check(m, params, &info.params) {
            find(Check::Parameters(m.clone()), problem, true);
        }
    }
    out.entries = entries;
    out.findings = found;
    out.complete = true;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmm_day1_tests::scratch::TempDir;
    use std::collections::BTreeMap;

    /// The one tree check `pull` and `verify` share: a module file named
    /// with several dots is the module kmod names (up to the first dot;
    /// pull's own rule once took `sfc.v2`), and a problem of a module no node
    /// loads is reported in the whole tree but refuses nothing.
    #[test]
    fn check_tree_names_modules_as_kmod_and_refuses_only_what_loads() {
        let tmp = TempDir::new("treecheck").unwrap();
        let root = tmp.path();
        let k = "6.1.0-1-amd64";
        let mdir = root.join("lib/modules").join(k);
        fs::create_dir_all(mdir.join("extra")).unwrap();
        fs::write(
            mdir.join("modules.dep"),
            "extra/sfc.v2.ko: extra/mdio-x.ko\nextra/mdio-x.ko:\nextra/other.ko:\n",
        )
        .unwrap();
        // Not ELF files: a vermagic finding each, about what sfc loads.
        fs::write(mdir.join("extra/sfc.v2.ko"), b"not a module").unwrap();
        fs::write(mdir.join("extra/mdio-x.ko"), b"not a module").unwrap();
        let seen = std::collections::BTreeSet::new();
        let want = ["sfc".to_string()];
        let loads = check_tree(
            root,
            "/opt",
            k,
            &want,
            &BTreeMap::new(),
            &seen,
            Scope::Loads,
        )
        .unwrap();
        assert_eq!(loads.configured, [("sfc".to_string(), Some(0))]);
        assert!(
            !loads
                .findings
                .iter()
                .any(|f| matches!(f.check, Check::Module(_))),
            "{:?}",
            loads.findings
        );
        assert!(!loads
            .findings
            .iter()
            .any(|f| f.problem.contains("other.ko")));
        let refusal = loads.first_refusal().unwrap();
        assert!(
            refusal.starts_with(&format!(
                "vermagic [{k}]: extra/sfc.v2.ko is not a readable module"
            )),
            "{refusal}"
        );
        let whole = check_tree(
            root,
            "/opt",
            k,
            &want,
            &BTreeMap::new(),
            &seen,
            Scope::Whole,
        )
        .unwrap();
        let other: Vec<&Finding> = whole
            .findings
            .iter()
            .filter(|f| f.problem.contains("other.ko"))
            .collect();
        assert_eq!(other.len(), 1, "{:?}", whole.findings);
        assert_eq!(
            (other[0].problem.as_str(), other[0].loads),
            ("`extra/other.ko` is listed but missing", false)
        );
        assert_eq!(
            whole.line(&Check::ModulesDep, &whole.problems(&Check::ModulesDep)),
            format!("modules.dep [{k}]: `extra/other.ko` is listed but missing: rebuild it with `depmod -b /opt {k}`")
        );
    }

    // Excerpts of Debian 12's 6.1.0 tree, as depmod writes them.
    const DEP: &str = "\
kernel/drivers/net/ethernet/sfc/sfc.ko: kernel/drivers/mtd/mtd.ko kernel/drivers/net/mdio.ko
kernel/drivers/mtd/mtd.ko:
kernel/drivers/net/mdio.ko:
kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko
kernel/arch/x86/crypto/crc32c-intel.ko:
";
    const SOFTDEP: &str = "\
# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep cifs gcm
softdep cifs ccm
softdep ksmbd pre: crc32
softdep ksmbd pre: gcm
softdep mod-x pre: a b post: c
";
    const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias crypto-crc32c crc32c_intel
alias crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias pci:v00001924d00000803sv*sd*bc*sc*i* sfc
alias usb:v0B95p1790d*dc*dsc*dp*ic*isc*ip*in* ax88179_178a
alias usb:v05ACp8213d01[0-5]*dc*dsc*dp*ic*isc*ip*in* btusb
";
    const PROC_MODULES: &str = "\
sfc 659456 0 - Live 0xffffffffc0a1c000
mdio 16384 1 sfc, Live 0xffffffffc0a0f000
mtd 81920 2 sfc,ubi, Live 0xffffffffc09f4000 (E)
hello 16384 0 - Loading 0xffffffffc0300000 (OE)
nounload 16384 - - Live 0xffffffffc0310000
";

    #[test]
    fn modules_dep_lines() {
        let d = parse_modules_dep(DEP);
        assert_eq!(d.len(), 5);
        assert_eq!(d[0].0, "kernel/drivers/net/ethernet/sfc/sfc.ko");
        assert_eq!(
            d[0].1,
            ["kernel/drivers/mtd/mtd.ko", "kernel/drivers/net/mdio.ko"]
        );
        assert!(d[1].1.is_empty());
        assert_eq!(module_name_from_path(d[4].0), "crc32c_intel");
        assert_eq!(module_name_from_path("extra/foo-bar.ko.zst"), "foo_bar");
    }

    #[test]
    fn tree_resolves_relative_and_absolute_paths() {
        let tmp = TempDir::new("modules").unwrap();
        let dir = tmp.path();
        let kdir = dir.join("lib/modules/6.1.0-56-amd64");
        fs::create_dir_all(&kdir).unwrap();
        fs::write(
            kdir.join("modules.dep"),
            format!("{DEP}/lib/modules/6.1.0-56-amd64/extra/old.ko: kernel/drivers/net/mdio.ko\n"),
        )
        .unwrap();
        fs::write(kdir.join("modules.softdep"), SOFTDEP).unwrap();
        fs::write(kdir.join("modules.alias"), ALIAS).unwrap();
        fs::write(kdir.join("modules.builtin"), "kernel/crypto/md5.ko\n").unwrap();
        let t = Tree::open(&kdir).unwrap();
        assert_eq!(
            t.module("sfc").unwrap().path,
            kdir.join("kernel/drivers/net/ethernet/sfc/sfc.ko")
        );
        assert_eq!(t.module("sfc").unwrap().deps, ["mtd", "mdio"]);
        assert_eq!(
            t.module("old").unwrap().path,
            dir.join("lib/modules/6.1.0-56-amd64/extra/old.ko")
        );
        assert!(t.module("crc32c-intel").is_some());
        assert!(t.is_builtin("md5"));
        assert_eq!(
            lookup(&[&t], "crypto-crc32c"),
            Lookup::Modules(vec!["crc32c_intel".into(), "crc32c_generic".into()])
        );
        assert_eq!(lookup(&[&t], "md5"), Lookup::Builtin(vec!["md5".into()]));
        assert_eq!(lookup(&[&t], "mdio"), Lookup::Modules(vec!["mdio".into()]));
        assert_eq!(lookup(&[&t], "nothing"), Lookup::NotFound);
        // Only the first matching softdep line counts (kmod), and words
        // outside pre:/post: are ignored.
        assert!(t.softdep("cifs").unwrap().pre.is_empty());
        assert_eq!(t.softdep("ksmbd").unwrap().pre, ["crc32"]);
        assert_eq!(t.softdep("mod_x").unwrap().post, ["c"]);
        assert!(Tree::open(dir).is_err());
        assert!(Tree::open_if_exists(dir).unwrap().is_none());
    }

    #[test]
    fn aliases_with_globs_and_ranges() {
        let a = parse_aliases(ALIAS);
        assert_eq!(
            matches(&a, "pci:v00001924d00000803sv00001924sd00000001bc02sc00i00"),
            ["sfc"]
        );
        assert_eq!(
            matches(&a, "usb:v05ACp8213d0104dc00dsc00dp00icFFisc01ip01in00"),
            ["btusb"]
        );
        assert!(matches(&a, "usb:v05ACp8213d0164dc00dsc00dp00icFFisc01ip01in00").is_empty());
        assert_eq!(
            matches(&a, "crypto_crc32c"),
            ["crc32c_intel", "crc32c_generic"]
        );
    }

    #[test]
    fn fnmatch_cases() {
        assert!(fnmatch("a*b?c", "axxxbyc"));
        assert!(!fnmatch("a*b?c", "axxxbc"));
        assert!(fnmatch("*", ""));
        assert!(fnmatch("[!a-c]x", "dx"));
        assert!(!fnmatch("[!a-c]x", "bx"));
        assert!(fnmatch("[]a]", "]"));
        assert!(fnmatch("a[b", "a[b"));
        assert!(fnmatch("\\*", "*"));
        assert!(fnmatch("*d0[0-1]*", "v1d01x"));
        assert!(!fnmatch("ab", "abc"));
    }

    #[test]
    fn normalise() {
        assert_eq!(alias_normalize("crypto-crc32c").unwrap(), "crypto_crc32c");
        assert_eq!(alias_normalize("a-[x-y]-b").unwrap(), "a_[x-y]_b");
        assert_eq!(alias_normalize("a]"), None);
        assert_eq!(alias_normalize("a[b"), None);
    }

    #[test]
    fn builtin_lists() {
        let b = parse_builtin("kernel/crypto/md5.ko\nkernel/net/mpls/mpls_gso.ko\n");
        assert!(b.contains("md5") && b.contains("mpls_gso"));
        let m = parse_builtin_modinfo_aliases(
            b"md5.alias=crypto-md5\0md5.alias=md5\0md5.file=crypto/md5\0",
        );
        assert_eq!(
            m,
            [
                ("crypto_md5".to_string(), "md5".to_string()),
                ("md5".to_string(), "md5".to_string())
            ]
        );
    }

    #[test]
    fn proc_modules() {
        let l = parse_proc_modules(PROC_MODULES);
        assert_eq!(l.len(), 5);
        assert_eq!(l[0].name, "sfc");
        assert_eq!(l[0].refcount, Some(0));
        assert!(l[0].users.is_empty());
        assert_eq!(l[2].users, ["sfc", "ubi"]);
        assert_eq!(l[2].refcount, Some(2));
        assert_eq!(l[3].state, "Loading");
        assert_eq!(l[4].refcount, None);
    }

    #[test]
    fn holders_dir() {
        let tmp = TempDir::new("holders").unwrap();
        // Not created yet: a module without a holders dir has no holders.
        let dir = tmp.join("holders");
        assert!(read_holders(&dir).unwrap().is_empty());
        fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("../../sfc", dir.join("sfc")).unwrap();
        std::os::unix::fs::symlink("../../ubi", dir.join("ubi")).unwrap();
        assert_eq!(read_holders(&dir).unwrap(), ["sfc", "ubi"]);
    }
}
