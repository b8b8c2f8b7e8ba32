//! A KMM `Module` CR (kmm.sigs.x-k8s.io/v1beta1) mapped onto a node config,
//! so Day-1 (this MachineConfig) and Day-2 (KMM) share one image.
//!
//! Every field is either mapped, warned about (named, with why it cannot be
//! honoured at first boot), or refused when ignoring it would change what is
//! loaded. Nothing is dropped silently. The table is in docs/kmm.md.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use kmm_day1_config::{KernelMapping, NodeConfig};
use serde_json::{Map, Value};

use super::{crd, Loaded};

pub const API_VERSION: &str = "kmm.sigs.x-k8s.io/v1beta1";

/// The label KMM users select a pool's nodes with.
const ROLE_PREFIX: &str = "node-role.kubernetes.io/";

/// Fields of the CR that cannot be honoured, and why; each found one is a warning.
const IGNORED: &[(&str, &str)] = &[
    ("spec.devicePlugin", "kmm-day1 only loads the module; deploy the device plugin with KMM (Day-2)"),
    ("spec.dra", "kmm-day1 only loads the module; deploy the DRA driver with KMM (Day-2)"),
    ("spec.tolerations", "tolerations place KMM's pods; a MachineConfig applies to every node of the pool"),
    ("spec.imageRepoSecret", "the agent authenticates with the node's pull secret (/var/lib/kubelet/config.json): add these credentials to the cluster's global pull secret, or pass --auth-file"),
    ("spec.imageRebuildTriggerGeneration", "in-cluster builds do not exist at first boot; the image must already be pushed"),
    ("spec.moduleLoader.serviceAccountName", "the agent runs as a systemd service, not in a pod"),
    ("spec.moduleLoader.container.build", "in-cluster builds do not exist at first boot; build and push the image beforehand and name it in containerImage"),
    ("spec.moduleLoader.container.sign", "in-cluster signing does not exist at first boot; containerImage must already hold the signed modules"),
    ("spec.moduleLoader.container.version", "ordered upgrades are driven by KMM's node labels; a MachineConfig change rolls through the pool instead"),
    ("spec.moduleLoader.container.imagePullPolicy", "the agent resolves the image once per kernel and keeps the tree by digest; there is no pull policy"),
    ("spec.moduleLoader.container.modprobe.args", "the agent loads modules itself (finit_module), it does not run modprobe, so modprobe flags do not apply"),
];

const KERNEL_MAPPING_IGNORED: &[(&str, &str)] = &[
    ("build", "in-cluster builds do not exist at first boot; build and push this mapping's image beforehand"),
    ("sign", "in-cluster signing does not exist at first boot; this mapping's image must already hold the signed modules"),
];

struct Ctx {
    warnings: Vec<String>,
}

impl Ctx {
    /// Refuse keys of `map` (at `path`, schema path `schema`) that the CRD
    /// does not define; warn about those that are defined but not handled.
    fn leftover(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        schema: &str,
        handled: &[&str],
    ) -> Result<()> {
        crd::check(crd::MODULE, "Module", schema, path, map.keys())?;
        for key in map.keys() {
            let full = format!("{path}.{key}");
            if handled.contains(&key.as_str()) {
                continue;
            }
            if let Some((_, why)) = IGNORED.iter().find(|(f, _)| *f == full) {
                self.warnings.push(format!("{full} is ignored: {why}"));
            } else {
                self.warnings.push(format!(
                    "{full} is ignored: kmm-day1 does not support it in a {API_VERSION} Module"
                ));
            }
        }
        Ok(())
    }
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .with_context(|| format!("`{path}` must be an object"))
}

fn string(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => bail!("`{path}.{key}` must be a string"),
    }
}

fn boolean(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => bail!("`{path}.{key}` must be true or false"),
    }
}

fn strings(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<Vec<String>>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .with_context(|| format!("`{path}.{key}[{i}]` must be a string"))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => bail!("`{path}.{key}` must be a list of strings"),
    }
}

/// `inTreeModulesToRemove`, or the deprecated single `inTreeModuleToRemove`.
fn in_tree(map: &Map<String, Value>, path: &str) -> Result<Option<Vec<String>>> {
    let many = strings(map, "inTreeModulesToRemove", path)?;
    let one = string(map, "inTreeModuleToRemove", path)?;
    match (many, one) {
        (Some(_), Some(_)) => bail!(
            "`{path}` sets both inTreeModulesToRemove and the deprecated inTreeModuleToRemove; keep only inTreeModulesToRemove"
        ),
        (Some(m), None) => Ok(Some(m)),
        (None, Some(o)) => Ok(Some(vec![o])),
        (None, None) => Ok(None),
    }
}

/// `registryTLS` → (insecure, insecureSkipTLSVerify).
fn registry_tls(
    map: &Map<String, Value>,
    path: &str,
    schema: &str,
    ctx: &mut Ctx,
) -> Result<(Option<bool>, Option<bool>)> {
    let Some(tls) = map.get("registryTLS") else {
        return Ok((None, None));
    };
    let p = format!("{path}.registryTLS");
    let tls = object(tls, &p)?;
    ctx.leftover(
        tls,
        &p,
        &format!("{schema}.registryTLS"),
        &["insecure", "insecureSkipTLSVerify"],
    )?;
    Ok((
        boolean(tls, "insecure", &p)?,
        boolean(tls, "insecureSkipTLSVerify", &p)?,
    ))
}

pub fn map(doc: &Value, name: Option<&str>) -> Result<Loaded> {
    let mut ctx = Ctx {
        warnings: Vec::new(),
    };
    let root = object(doc, "")?;
    let meta = object(root.get("metadata").unwrap_or(&Value::Null), "metadata")?;
    let cr_name = string(meta, "name", "metadata")?
        .context("`metadata.name` is missing; it names the config and `${MOD_NAME}`")?;
    let namespace = string(meta, "namespace", "metadata")?;
    let spec = object(root.get("spec").unwrap_or(&Value::Null), "spec")?;
    // `status` is the cluster's, not the user's; the rest is identity.
    crd::check(crd::MODULE, "Module", "", "", root.keys())?;
    ctx.leftover(spec, "spec", "spec", &["moduleLoader", "selector"])?;
    let pool = match spec.get("selector") {
        Some(s) => pool_from_selector(object(s, "spec.selector")?, &mut ctx),
        None => None,
    };

    let ml_path = "spec.moduleLoader";
    let ml = object(
        spec.get("moduleLoader").with_context(|| {
            format!("`{ml_path}` is missing: it is what says which module to load")
        })?,
        ml_path,
    )?;
    ctx.leftover(ml, ml_path, ml_path, &["container"])?;
    let c_path = "spec.moduleLoader.container";
    let c = object(
        ml.get("container")
            .with_context(|| format!("`{c_path}` is missing"))?,
        c_path,
    )?;
    ctx.leftover(
        c,
        c_path,
        c_path,
        &[
            "modprobe",
            "containerImage",
            "inTreeModulesToRemove",
            "inTreeModuleToRemove",
            "kernelMappings",
            "registryTLS",
        ],
    )?;

    let mp_path = "spec.moduleLoader.container.modprobe";
    let mp = object(
        c.get("modprobe")
            .with_context(|| format!("`{mp_path}` is missing: set modprobe.moduleName"))?,
        mp_path,
    )?;
    if mp.get("rawArgs").is_some_and(|v| !v.is_null()) {
        bail!("`{mp_path}.rawArgs` cannot be honoured: kmm-day1 does not run modprobe and cannot know which modules raw arguments would load; use modprobe.moduleName (and parameters) instead");
    }
    ctx.leftover(
        mp,
        mp_path,
        mp_path,
        &[
            "moduleName",
            "parameters",
            "firmwarePath",
            "dirName",
            "modulesLoadingOrder",
        ],
    )?;
    let module = string(mp, "moduleName", mp_path)?.with_context(|| {
        format!("`{mp_path}.moduleName` is missing: name the kernel module to load")
    })?;
    let modules = match strings(mp, "modulesLoadingOrder", mp_path)? {
        None => vec![module.clone()],
        Some(order) if order.is_empty() => vec![module.clone()],
        Some(order) => {
            // KMM lists the upmost module first, then what it depends on; we
            // load in list order, so the dependencies come first.
            if order[0] != module {
                bail!(
                    "`{mp_path}.modulesLoadingOrder` must start with moduleName `{module}` (KMM lists the upmost module first), not `{}`",
                    order[0]
                );
            }
            order.into_iter().rev().collect()
        }
    };

    let mut config = NodeConfig::new(String::new(), modules);
    config.image = string(c, "containerImage", c_path)?;
    if let Some(params) = strings(mp, "parameters", mp_path)? {
        if !params.is_empty() {
            config.parameters = BTreeMap::from([(module.clone(), params)]);
        }
    }
    config.firmware_dir = string(mp, "firmwarePath", mp_path)?;
    if let Some(d) = string(mp, "dirName", mp_path)? {
        config.module_root = d;
    }
    config.in_tree_remove = in_tree(c, c_path)?;
    let (insecure, skip) = registry_tls(c, c_path, c_path, &mut ctx)?;
    config.pull.insecure = insecure.unwrap_or(false);
    config.pull.insecure_skip_tls_verify = skip.unwrap_or(false);
    config.mod_name = Some(cr_name.clone());
    config.mod_namespace = namespace;

    if let Some(list) = c.get("kernelMappings") {
        let km_path = format!("{c_path}.kernelMappings");
        let list = list
            .as_array()
            .with_context(|| format!("`{km_path}` must be a list"))?;
        for (i, item) in list.iter().enumerate() {
            let p = format!("{km_path}[{i}]");
            let m = object(item, &p)?;
            let schema = format!("{km_path}[]");
            crd::check(crd::MODULE, "Module", &schema, &p, m.keys())?;
            for key in m.keys() {
                match key.as_str() {
                    "literal" | "regexp" | "containerImage" | "inTreeModulesToRemove"
                    | "inTreeModuleToRemove" | "registryTLS" => {}
                    k => match KERNEL_MAPPING_IGNORED.iter().find(|(f, _)| *f == k) {
                        Some((_, why)) => ctx.warnings.push(format!("{p}.{k} is ignored: {why}")),
                        None => ctx.warnings.push(format!(
                            "{p}.{k} is ignored: kmm-day1 does not support it in a {API_VERSION} Module"
                        )),
                    },
                }
            }
            let (insecure, insecure_skip_tls_verify) = registry_tls(m, &p, &schema, &mut ctx)?;
            config.kernel_mappings.push(KernelMapping {
                literal: string(m, "literal", &p)?,
                regexp: string(m, "regexp", &p)?,
                image: string(m, "containerImage", &p)?,
                in_tree_remove: in_tree(m, &p)?,
                insecure,
                insecure_skip_tls_verify,
            });
        }
    }

    Ok(Loaded {
        name: name.map_or(cr_name, str::to_string),
        config,
        pool,
        pool_source: "the Module's selector role",
        mc_name: None,
        warnings: ctx.warnings,
    })
}

/// `node-role.kubernetes.io/<role>` in the selector names the pool; any
/// other label cannot select nodes inside a pool and is warned about.
fn pool_from_selector(sel: &Map<String, Value>, ctx: &mut Ctx) -> Option<String> {
    let mut roles = Vec::new();
    for key in sel.keys() {
        match key.strip_prefix(ROLE_PREFIX) {
            Some(role) if !role.is_empty() => roles.push(role.to_string()),
            _ => ctx.warnings.push(format!(
                "spec.selector.{key} is ignored: a MachineConfig applies to every node of a pool (--pool), not to nodes chosen by label"
            )),
        }
    }
    if roles.len() > 1 {
        ctx.warnings.push(format!(
            "spec.selector names several roles ({}); pass --pool to choose one",
            roles.join(", ")
        ));
        return None;
    }
    roles.pop()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::cr;

    const BASE: &str = "
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: sfc-oot, namespace: kmm}
spec:
  selector: {node-role.kubernetes.io/worker: ''}
  moduleLoader:
    container:
      containerImage: quay.io/acme/sfc:${KERNEL_FULL_VERSION}
      modprobe:
        moduleName: sfc
";

    #[test]
    fn minimal_module_maps_name_pool_image() {
        let l = map(&cr(BASE), None).unwrap();
        assert_eq!(l.config.in_tree_remove, None, "default: the modules' names");
        assert_eq!(l.name, "sfc-oot");
        assert_eq!(l.pool.as_deref(), Some("worker"));
        assert_eq!(l.config.modules, ["sfc"]);
        assert_eq!(
            l.config.image.as_deref(),
            Some("quay.io/acme/sfc:${KERNEL_FULL_VERSION}")
        );
        assert_eq!(l.config.mod_name.as_deref(), Some("sfc-oot"));
        assert_eq!(l.config.mod_namespace.as_deref(), Some("kmm"));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(map(&cr(BASE), Some("x")).unwrap().name, "x");
        // KMM's behaviour (remove nothing) stays expressible.
        let y = BASE.replace(
            "      modprobe:\n",
            "      inTreeModulesToRemove: []\n      modprobe:\n",
        );
        let l = map(&cr(&y), None).unwrap();
        assert_eq!(l.config.in_tree_remove, Some(Vec::new()));
        l.config
            .validate(std::path::Path::new("sfc-oot.toml"))
            .unwrap();
    }

    #[test]
    fn loading_order_is_reversed_and_must_start_with_module_name() {
        let y = BASE.replace(
            "moduleName: sfc\n",
            "moduleName: sfc\n        modulesLoadingOrder: [sfc, mdio, libphy]\n",
        );
        assert_eq!(
            map(&cr(&y), None).unwrap().config.modules,
            ["libphy", "mdio", "sfc"]
        );
        let y = BASE.replace(
            "moduleName: sfc\n",
            "moduleName: sfc\n        modulesLoadingOrder: [mdio, sfc]\n",
        );
        let e = format!("{:#}", map(&cr(&y), None).unwrap_err());
        assert!(e.contains("must start with moduleName `sfc`"), "{e}");
    }

    #[test]
    fn raw_args_are_refused() {
        let y = BASE.replace(
            "moduleName: sfc\n",
            "moduleName: sfc\n        rawArgs: {load: [-d, /x, sfc]}\n",
        );
        let e = format!("{:#}", map(&cr(&y), None).unwrap_err());
        assert!(e.contains("modprobe.rawArgs"), "{e}");
    }

    #[test]
    fn unhonoured_fields_are_each_warned_about() {
        let y = BASE.replace(
            "  moduleLoader:\n",
            "  tolerations: [{key: a}]\n  imageRepoSecret: {name: s}\n  devicePlugin: {container: {image: x}}\n  moduleLoader:\n    serviceAccountName: sa\n",
        ).replace(
            "      modprobe:\n",
            "      build: {dockerfileConfigMap: {name: d}}\n      sign: {keySecret: {name: k}}\n      version: v1\n      imagePullPolicy: Always\n      kernelMappings:\n      - regexp: '^.+$'\n        build: {}\n        sign: {}\n      modprobe:\n        args: {load: [-v]}\n",
        ).replace("node-role.kubernetes.io/worker: ''", "node-role.kubernetes.io/worker: '', feature.node.kubernetes.io/x: 'true'");
        let l = map(&cr(&y), None).unwrap();
        for field in [
            "spec.tolerations",
            "spec.imageRepoSecret",
            "spec.devicePlugin",
            "spec.moduleLoader.serviceAccountName",
            "spec.moduleLoader.container.build",
            "spec.moduleLoader.container.sign",
            "spec.moduleLoader.container.version",
            "spec.moduleLoader.container.imagePullPolicy",
            "spec.moduleLoader.container.kernelMappings[0].build",
            "spec.moduleLoader.container.kernelMappings[0].sign",
            "spec.moduleLoader.container.modprobe.args",
            "spec.selector.feature.node.kubernetes.io/x",
        ] {
            assert!(
                l.warnings
                    .iter()
                    .any(|w| w.starts_with(&format!("{field} is ignored: "))),
                "{field} not warned about: {:#?}",
                l.warnings
            );
        }
        assert_eq!(l.warnings.len(), 12, "{:#?}", l.warnings);
        assert_eq!(l.pool.as_deref(), Some("worker"));
    }

    #[test]
    fn kernel_mappings_and_tls_map_field_by_field() {
        let y = BASE.replace(
            "      modprobe:\n",
            "      registryTLS: {insecureSkipTLSVerify: true}\n      inTreeModuleToRemove: sfc\n      kernelMappings:\n      - literal: 5.14.0-427.13.1.el9_4.x86_64\n        containerImage: r.local/a:1\n        inTreeModulesToRemove: [sfc, mdio]\n        registryTLS: {insecure: true}\n      - regexp: '^.+\\.el9_4\\.x86_64$'\n      modprobe:\n        parameters: [rss_cpus=4]\n        firmwarePath: /firmware\n        dirName: /opt/alt\n",
        );
        let l = map(&cr(&y), None).unwrap();
        let c = &l.config;
        assert!(c.pull.insecure_skip_tls_verify && !c.pull.insecure);
        assert_eq!(c.in_tree_remove.as_deref(), Some(&["sfc".to_string()][..]));
        assert_eq!(c.parameters["sfc"], ["rss_cpus=4"]);
        assert_eq!(c.firmware_dir.as_deref(), Some("/firmware"));
        assert_eq!(c.module_root, "/opt/alt");
        assert_eq!(c.kernel_mappings.len(), 2);
        let m = &c.kernel_mappings[0];
        assert_eq!(m.literal.as_deref(), Some("5.14.0-427.13.1.el9_4.x86_64"));
        assert_eq!(m.image.as_deref(), Some("r.local/a:1"));
        assert_eq!(m.in_tree_remove.as_ref().unwrap(), &["sfc", "mdio"]);
        assert_eq!((m.insecure, m.insecure_skip_tls_verify), (Some(true), None));
        assert_eq!(
            c.kernel_mappings[1].regexp.as_deref(),
            Some("^.+\\.el9_4\\.x86_64$")
        );
        assert_eq!(c.kernel_mappings[1].image, None);
        c.validate(std::path::Path::new("sfc-oot.toml")).unwrap();
    }
}
