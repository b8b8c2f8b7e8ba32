//! What `replace` will do for one config, decided before anything changes
//! (design §5): the modules to remove (holders first), the modules to load
//! (dependencies first) with their files and parameters, and the firmware
//! path. Every refusal — a module in use, a built-in module, an unsigned
//! module under enforcement, a module built for another kernel — happens
//! here, so a refused run has changed nothing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kmm_day1_config::{module_name_canonical, NodeConfig};
use serde::Serialize;

use crate::kernel::Kernel;
use crate::modinfo::{self, ModInfo};
use crate::modprobe::{self, NodeOptions};
use crate::modules::{self, Lookup, Tree};

/// Which tree a module file comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The driver image's tree in the store (or `--modules-root`).
    Image,
    /// The host's `/lib/modules/<kver>`, for dependencies the image lacks.
    Host,
}

/// One module to load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadStep {
    pub name: String,
    pub path: PathBuf,
    pub params: String,
    pub source: Source,
    pub srcversion: Option<String>,
    pub signed: bool,
}

/// The plan for one config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Modules to unload, in order (holders before what they hold).
    pub remove: Vec<String>,
    /// Modules to load, in order (dependencies first).
    pub load: Vec<LoadStep>,
    /// Needed modules that are built into the kernel (nothing to load).
    pub builtin: Vec<String>,
    /// Needed modules already loaded and kept as they are.
    pub kept: Vec<String>,
    /// Unused holders removed only because they held a module being
    /// replaced, with no build in the image: not loaded again (the in-tree
    /// one was built against the in-tree module it held).
    pub not_restored: Vec<String>,
    /// Written to `firmware_class.path` before loading.
    pub firmware_path: Option<String>,
    /// Every configured module is loaded with the image's srcversion.
    pub up_to_date: bool,
}

/// A module in load order: canonical name, file, tree.
pub type Resolved = (String, PathBuf, Source);

/// Caches `.modinfo` reads across the configs of one run (a module shared by
/// several configs is read once).
pub type ModinfoCache = HashMap<PathBuf, ModInfo>;

/// Inputs that do not come from the kernel.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub cfg: &'a NodeConfig,
    /// Modules to remove first (the config's `in_tree_remove`, resolved).
    pub in_tree_remove: &'a [String],
    pub image: &'a Tree,
    pub host: Option<&'a Tree>,
    pub kernel_release: &'a str,
    pub firmware_path: Option<String>,
    /// The node's modprobe.d and command-line options.
    pub node: &'a NodeOptions,
}

struct Resolver<'a> {
    image: &'a Tree,
    host: Option<&'a Tree>,
    visited: HashSet<String>,
    order: Vec<Resolved>,
    builtin: Vec<String>,
    cache: &'a mut ModinfoCache,
}

impl Resolver<'_> {
    fn trees(&self) -> Vec<&Tree> {
        std::iter::once(self.image).chain(self.host).collect()
    }

    fn info(&mut self, path: &Path) -> Result<&ModInfo> {
        if !self.cache.contains_key(path) {
            let info = modinfo::read(path)?;
            self.cache.insert(path.to_path_buf(), info);
        }
        Ok(&self.cache[path])
    }

    /// Depth-first: hard dependencies (modules.dep, plus `.modinfo depends=`
    /// for trees whose modules.dep lacks in-tree modules), pre-softdeps, the
    /// module, post-softdeps — the order modprobe loads them in.
    fn visit(&mut self, name: &str, needed_by: Option<&str>) -> Result<()> {
        let key = module_name_canonical(name);
        if !self.visited.insert(key.clone()) {
            return Ok(());
        }
        let (tree, source) = if self.image.module(&key).is_some() {
            (self.image, Source::Image)
        } else if let Some(h) = self.host.filter(|h| h.module(&key).is_some()) {
            (h, Source::Host)
        } else if self.trees().iter().any(|t| t.is_builtin(&key)) {
            self.builtin.push(key);
            return Ok(());
        } else {
            let host = self.host.map_or("no host module tree".to_string(), |h| {
                h.dir.display().to_string()
            });
            match needed_by {
                Some(by) => bail!(
                    "`{by}` needs module `{key}`, which is neither in the image's tree ({}) nor in the host's ({host}) nor built into the kernel",
                    self.image.dir.display()
                ),
                None => bail!(
                    "module `{key}` is not in the image's tree {} (no such entry in its modules.dep)",
                    self.image.dir.display()
                ),
            }
        };
        let entry = tree
            .module(&key)
            .context("module vanished from its tree")?
            .clone();
        let depends = self
            .info(&entry.path)
            .with_context(|| format!("reading module `{key}`"))?
            .depends
            .clone();
        for dep in entry.deps.iter().rev().chain(&depends) {
            self.visit(dep, Some(&key))?;
        }
        let soft = tree.softdep(&key).cloned();
        if let Some(sd) = &soft {
            for p in &sd.pre {
                self.soft(p)?;
            }
        }
        self.order.push((key, entry.path, source));
        if let Some(sd) = &soft {
            for p in &sd.post {
                self.soft(p)?;
            }
        }
        Ok(())
    }

    /// A softdep names a module or an alias; one that resolves to nothing
    /// is skipped, as modprobe does.
    fn soft(&mut self, name: &str) -> Result<()> {
        let found = modules::lookup(&self.trees(), name);
        match found {
            Lookup::Modules(ms) => {
                for m in ms {
                    self.visit(&m, None)?;
                }
            }
            Lookup::Builtin(bs) => {
                for b in bs {
                    if !self.builtin.contains(&b) {
                        self.builtin.push(b);
                    }
                }
            }
            Lookup::NotFound => {}
        }
        Ok(())
    }
}

/// Every module `modules` needs, in load order, with where it comes from.
pub fn resolve(
    image: &Tree,
    host: Option<&Tree>,
    wanted: &[String],
    cache: &mut ModinfoCache,
) -> Result<(Vec<Resolved>, Vec<String>)> {
    let mut r = Resolver {
        image,
        host,
        visited: HashSet::new(),
        order: Vec::new(),
        builtin: Vec::new(),
        cache,
    };
    for m in wanted {
        r.visit(m, None)?;
    }
    Ok((r.order, r.builtin))
}

/// Decide what to do; `kernel` is only read.
pub fn plan(inp: &Inputs<'_>, kernel: &dyn Kernel, cache: &mut ModinfoCache) -> Result<Plan> {
    let cfg = inp.cfg;
    for m in cfg.modules.iter().chain(inp.in_tree_remove) {
        if inp.image.is_builtin(m) || inp.host.is_some_and(|h| h.is_builtin(m)) {
            bail!(
                "module `{m}` is built into the kernel {}: it cannot be removed or replaced (only modules listed in modules.builtin are; build the kernel with it as a module)",
                inp.kernel_release
            );
        }
    }
    // Configured modules come from the image itself, never the host.
    for m in &cfg.modules {
        if inp.image.module(m).is_none() {
            bail!(
                "module `{m}` is not in the image's tree {} (no such entry in its modules.dep)",
                inp.image.dir.display()
            );
        }
    }
    let (order, builtin) = resolve(inp.image, inp.host, &cfg.modules, cache)?;

    let loaded: HashMap<String, modules::Loaded> = kernel
        .loaded()
        .context("reading /proc/modules")?
        .into_iter()
        .map(|l| (module_name_canonical(&l.name), l))
        .collect();

    // A configured module is current when the kernel runs the image's build.
    let is_current = |name: &str, path: &Path| -> bool {
        loaded.contains_key(name)
            && kernel.srcversion(name).is_some_and(|s| {
                cache
                    .get(path)
                    .and_then(|i| i.srcversion.as_deref())
                    .is_some_and(|w| w == s)
            })
    };
    let configured: HashSet<String> = cfg
        .modules
        .iter()
        .map(|m| module_name_canonical(m))
        .collect();
    let mut plan = Plan {
        builtin,
        firmware_path: inp.firmware_path.clone(),
        ..Plan::default()
    };
    if order
        .iter()
        .filter(|(n, _, _)| configured.contains(n))
        .all(|(n, p, _)| is_current(n, p))
    {
        plan.up_to_date = true;
        plan.firmware_path = None;
        return Ok(plan);
    }

    // What to remove: the configured removals that are loaded, and any
    // configured module loaded from elsewhere (it would make our load fail
    // with EEXIST).
    let mut targets: Vec<String> = Vec::new();
    for m in inp.in_tree_remove.iter().map(|m| module_name_canonical(m)) {
        if loaded.contains_key(&m) && !targets.contains(&m) {
            targets.push(m);
        }
    }
    for (n, p, _) in &order {
        if configured.contains(n)
            && loaded.contains_key(n)
            && !is_current(n, p)
            && !targets.contains(n)
        {
            targets.push(n.clone());
        }
    }
    let mut remove = Vec::new();
    for t in &targets {
        removal_order(t, &loaded, kernel, &mut remove, &mut Vec::new())?;
    }

    // Holders that go only because they stand in the way come back after
    // the swap, from the image, when it has a build of them (after what
    // they hold: resolve puts dependencies first).
    let mut order = order;
    for h in remove
        .iter()
        .filter(|m| !targets.contains(m) && !configured.contains(*m))
    {
        if inp.image.module(h).is_none() {
            plan.not_restored.push(h.clone());
            continue;
        }
        let (extra, _) = resolve(inp.image, inp.host, std::slice::from_ref(h), cache)?;
        for r in extra {
            if !order.iter().any(|(n, _, _)| *n == r.0) {
                order.push(r);
            }
        }
    }

    let removed: HashSet<&String> = remove.iter().collect();
    let enforce = kernel.signatures_required();
    let mut unsigned = Vec::new();
    for (name, path, source) in order {
        if loaded.contains_key(&name) && !removed.contains(&name) {
            plan.kept.push(name);
            continue;
        }
        let info = &cache[&path];
        if let Some(built_for) = info.vermagic_release() {
            if built_for != inp.kernel_release {
                bail!(
                    "{}: built for kernel {built_for}, but the kernel is {} (vermagic `{}`): the image has no build for this kernel",
                    path.display(),
                    inp.kernel_release,
                    info.vermagic.as_deref().unwrap_or_default().trim()
                );
            }
        }
        if !info.signed {
            unsigned.push(path.display().to_string());
        }
        // As modprobe would load it, except that modprobe.d's lines, written
        // for the in-tree driver, do not reach the image's modules; the
        // config wins over the node (docs/replace.md#module-options).
        let node = match source {
            Source::Host => inp.node.host(&name),
            Source::Image => inp.node.cmdline(&name),
        };
        plan.load.push(LoadStep {
            params: modprobe::merge(&node, &cfg.parameters_for(&name)),
            srcversion: info.srcversion.clone(),
            signed: info.signed,
            name,
            path,
            source,
        });
    }
    if let (Some(why), false) = (&enforce, unsigned.is_empty()) {
        bail!(
            "{why}, and these modules are unsigned: {}; sign them with a key the kernel trusts (or enroll one with MOK); nothing was changed",
            unsigned.join(", ")
        );
    }
    plan.remove = remove;
    Ok(plan)
}

/// Append `m` to `out` after everything holding it, like `modprobe -r`
/// with `--remove-holders`: a holder may go only if it is itself unused
/// (its refcount is all holders that also go). Anything else in use stops
/// the plan with the holder's name.
fn removal_order(
    m: &str,
    loaded: &HashMap<String, modules::Loaded>,
    kernel: &dyn Kernel,
    out: &mut Vec<String>,
    path: &mut Vec<String>,
) -> Result<()> {
    if out.iter().any(|o| o == m) || path.iter().any(|p| p == m) {
        return Ok(());
    }
    let Some(l) = loaded.get(m) else {
        return Ok(());
    };
    let chain = || {
        path.iter()
            .rev()
            .map(|p| format!(", which holds `{p}`"))
            .collect::<String>()
    };
    let Some(refcount) = l.refcount else {
        bail!(
            "cannot remove `{m}`{}: this kernel cannot unload modules (CONFIG_MODULE_UNLOAD is off); nothing was changed",
            chain()
        );
    };
    let mut holders = kernel
        .holders(m)
        .with_context(|| format!("reading /sys/module/{m}/holders"))?;
    for u in &l.users {
        let u = module_name_canonical(u);
        if !holders.contains(&u) {
            holders.push(u);
        }
    }
    let holders: Vec<String> = holders.iter().map(|h| module_name_canonical(h)).collect();
    let others = refcount.saturating_sub(holders.len() as u32);
    if others > 0 {
        let held = if holders.is_empty() {
            String::new()
        } else {
            format!(", held by {}", holders.join(", "))
        };
        bail!(
            "`{m}`{} is in use (refcount {refcount}{held}): stop what uses it first; nothing was changed",
            chain()
        );
    }
    path.push(m.to_string());
    // Holders go first, whether they are removal targets themselves or
    // merely unused modules standing in the way.
    for h in &holders {
        removal_order(h, loaded, kernel, out, path)?;
    }
    path.pop();
    out.push(m.to_string());
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernel::tests::Fake;
    use kmm_day1_tests::scratch::TempDir;
    use std::fs;

    /// A module tree on disk with real (tiny) ELF modules.
    pub(crate) struct Fixture {
        pub dir: TempDir,
    }

    impl Fixture {
        /// `mods`: (name, deps in modules.dep order, srcversion).
        pub fn new(tag: &str, kver: &str, mods: &[(&str, &[&str], &str)]) -> Fixture {
            let dir = TempDir::new(&format!("plan-{tag}")).unwrap();
            let kdir = dir.join("lib/modules").join(kver);
            fs::create_dir_all(kdir.join("extra")).unwrap();
            let mut dep = String::new();
            for (name, deps, src) in mods {
                let info =
                    format!("name={name}\0vermagic={kver} SMP mod_unload \0srcversion={src}\0");
                let ko = crate::modinfo::tests::tiny_ko(true, false, info.as_bytes(), false);
                fs::write(kdir.join(format!("extra/{name}.ko")), ko).unwrap();
                let deps: Vec<String> = deps.iter().map(|d| format!("extra/{d}.ko")).collect();
                dep.push_str(&format!("extra/{name}.ko: {}\n", deps.join(" ")));
            }
            fs::write(kdir.join("modules.dep"), dep).unwrap();
            Fixture { dir }
        }

        pub fn kdir(&self, kver: &str) -> PathBuf {
            self.dir.join("lib/modules").join(kver)
        }
    }

    const K: &str = "6.1.0-56-amd64";

    fn cfg(modules: &[&str]) -> NodeConfig {
        NodeConfig::new(
            "quay.io/acme/sfc:1",
            modules.iter().map(|m| m.to_string()).collect(),
        )
    }

    #[test]
    fn load_order_is_dependencies_first_and_host_fills_gaps() {
        // The image's modules.dep lists only its own modules (depmod ran
        // without the in-tree ones); sfc's .modinfo says it needs mdio.
        let image = Fixture::new(
            "order-img",
            K,
            &[("sfc", &["sfc_x"], "S1"), ("sfc_x", &[], "X1")],
        );
        let host = Fixture::new(
            "order-host",
            K,
            &[("mdio", &["libphy"], "M"), ("libphy", &[], "L")],
        );
        // Give the image's sfc a depends= on the host's mdio.
        let info = format!("name=sfc\0vermagic={K} SMP \0srcversion=S1\0depends=sfc_x,mdio\0");
        fs::write(
            image.kdir(K).join("extra/sfc.ko"),
            crate::modinfo::tests::tiny_ko(true, false, info.as_bytes(), false),
        )
        .unwrap();
        let (it, ht) = (
            Tree::open(&image.kdir(K)).unwrap(),
            Tree::open(&host.kdir(K)).unwrap(),
        );
        let mut c = cfg(&["sfc"]);
        c.parameters.insert("sfc".into(), vec!["rss_cpus=4".into()]);
        // The host's modules get modprobe.d's and the command line's
        // options; the image's only the command line's, under the config's.
        let root = TempDir::new("plan-order-node").unwrap();
        fs::create_dir_all(root.join("lib/modprobe.d")).unwrap();
        fs::create_dir_all(root.join("proc")).unwrap();
        fs::write(
            root.join("lib/modprobe.d/x.conf"),
            "options mdio a=1\noptions sfc for=in-tree\n",
        )
        .unwrap();
        fs::write(
            root.join("proc/cmdline"),
            "mdio.b=2 libphy.c sfc.rss_cpus=1 sfc.x=y",
        )
        .unwrap();
        let node = NodeOptions::read(&root);
        let fake = Fake::default();
        let p = plan(
            &Inputs {
                cfg: &c,
                in_tree_remove: &["sfc".into()],
                image: &it,
                host: Some(&ht),
                kernel_release: K,
                firmware_path: None,
                node: &node,
            },
            &fake,
            &mut ModinfoCache::new(),
        )
        .unwrap();
        let names: Vec<_> = p.load.iter().map(|l| (l.name.as_str(), l.source)).collect();
        assert_eq!(
            names,
            [
                ("sfc_x", Source::Image),
                ("libphy", Source::Host),
                ("mdio", Source::Host),
                ("sfc", Source::Image)
            ]
        );
        let params: Vec<_> = p.load.iter().map(|l| l.params.as_str()).collect();
        assert_eq!(params, ["", "c", "a=1 b=2", "x=y rss_cpus=4"]);
        assert_eq!(p.load[3].srcversion.as_deref(), Some("S1"));
        assert!(p.remove.is_empty(), "nothing loaded, nothing to remove");
    }
}
