//! A KMM `BootModuleConfig` CR (kmm.sigs.x-k8s.io/v1beta1): KMM's own
//! in-cluster Day-1 object, mapped onto a node config so a cluster that has
//! one can move to kmm-day1 without rewriting it.
//!
//! It names the MachineConfig and its pool itself (`machineConfigName`,
//! `machineConfigPoolName`), so no `--pool` or `--mc-name` is needed.
//! `kernelModuleImage` is a repository *without* a tag: KMM's pull script
//! appends `:$(uname -r)`, which is our `${KERNEL_FULL_VERSION}`. The table
//! is in docs/kmm.md.

use anyhow::{bail, Context, Result};
use kmm_day1_config::NodeConfig;
use serde_json::{Map, Value};

use super::{crd, kmm_image, Loaded};

pub const API_VERSION: &str = "kmm.sigs.x-k8s.io/v1beta1";

const KIND: &str = "BootModuleConfig";

const WORKER_IMAGE_WHY: &str = "the kmm-day1 agent pulls and loads the module itself; there is no KMM worker container at boot";

fn object<'a>(v: Option<&'a Value>, path: &str) -> Result<&'a Map<String, Value>> {
    v.and_then(Value::as_object)
        .with_context(|| format!("`{path}` must be an object"))
}

fn string(map: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => bail!("`spec.{key}` must be a string"),
    }
}

/// A required, non-empty spec string; `why` says what it is for.
fn required(map: &Map<String, Value>, key: &str, why: &str) -> Result<String> {
    match string(map, key)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => bail!("`spec.{key}` is missing: {why}"),
    }
}

pub fn map(doc: &Value, name: Option<&str>) -> Result<Loaded> {
    let mut warnings = Vec::new();
    let root = object(Some(doc), "")?;
    let meta = object(root.get("metadata"), "metadata")?;
    let cr_name = match meta.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => bail!("`metadata.name` is missing; it names the node config"),
    };
    crd::check(crd::BOOT_MODULE_CONFIG, KIND, "", "", root.keys())?;
    let spec = object(root.get("spec"), "spec")?;
    // Every field the CRD defines is mapped but workerImage.
    crd::check(crd::BOOT_MODULE_CONFIG, KIND, "spec", "spec", spec.keys())?;
    if spec.contains_key("workerImage") {
        warnings.push(format!("spec.workerImage is ignored: {WORKER_IMAGE_WHY}"));
    }

    let mc_name = required(
        spec,
        "machineConfigName",
        "it names the MachineConfig to write",
    )?;
    let pool = required(
        spec,
        "machineConfigPoolName",
        "it names the MachineConfigPool (the machineconfiguration.openshift.io/role label) the MachineConfig is for",
    )?;
    crate::output::check_pool(&pool, "`spec.machineConfigPoolName`")?;
    let repo = required(
        spec,
        "kernelModuleImage",
        "name the driver image repository (without a tag: the node's kernel release is the tag)",
    )?;
    let image = kmm_image::kernel_tagged(&repo).context("`spec.kernelModuleImage`")?;
    let module = required(
        spec,
        "kernelModuleName",
        "name the kernel module to load (the .ko file's name without .ko)",
    )?;

    let mut config = NodeConfig::new(image, vec![module]);
    config.in_tree_remove = match spec.get("inTreeModulesToRemove") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().map(str::to_string).with_context(|| {
                        format!("`spec.inTreeModulesToRemove[{i}]` must be a string")
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        Some(_) => bail!("`spec.inTreeModulesToRemove` must be a list of strings"),
    };
    // KMM treats an empty path as "no firmware".
    config.firmware_dir = string(spec, "firmwareFilesPath")?.filter(|s| !s.is_empty());

    Ok(Loaded {
        name: name.map_or(cr_name, str::to_string),
        config,
        pool: Some(pool),
        pool_source: "the BootModuleConfig's machineConfigPoolName",
        mc_name: Some(mc_name),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::cr;

    const BASE: &str = "
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: BootModuleConfig
metadata: {name: sfc-bmc, namespace: openshift-machine-config-operator}
spec:
  machineConfigName: 99-worker-sfc
  machineConfigPoolName: worker
  kernelModuleImage: quay.io/acme/sfc
  kernelModuleName: sfc
";

    #[test]
    fn required_fields_map_to_name_pool_image_module() {
        let l = map(&cr(BASE), None).unwrap();
        assert_eq!(l.name, "sfc-bmc");
        assert_eq!(l.mc_name.as_deref(), Some("99-worker-sfc"));
        assert_eq!(l.pool.as_deref(), Some("worker"));
        assert_eq!(
            l.config.image.as_deref(),
            Some("quay.io/acme/sfc:${KERNEL_FULL_VERSION}")
        );
        assert_eq!(l.config.modules, ["sfc"]);
        assert_eq!(l.config.in_tree_remove, None);
        assert_eq!(l.config.firmware_dir, None);
        assert_eq!(l.config.module_root, "/opt", "KMM's day1 dirName");
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(map(&cr(BASE), Some("x")).unwrap().name, "x");
        l.config
            .validate(std::path::Path::new("sfc-bmc.toml"))
            .unwrap();
    }

    #[test]
    fn optional_fields_and_worker_image() {
        let y = format!(
            "{BASE}  inTreeModulesToRemove: [sfc, mdio]\n  firmwareFilesPath: /firmware\n  workerImage: quay.io/kmm/worker:1\nstatus: {{configStatus: done}}\n"
        );
        let l = map(&cr(&y), None).unwrap();
        assert_eq!(l.config.in_tree_remove.as_ref().unwrap(), &["sfc", "mdio"]);
        assert_eq!(l.config.firmware_dir.as_deref(), Some("/firmware"));
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
        assert!(l.warnings[0].starts_with("spec.workerImage is ignored: "));
        // Not in the CRD: the API server would refuse it, so do we.
        let y = format!("{BASE}  inTreeModuleToRemove: sfc\n");
        let e = format!("{:#}", map(&cr(&y), None).unwrap_err());
        assert!(
            e.contains("`spec.inTreeModuleToRemove` is not a field of a BootModuleConfig")
                && e.ends_with("did you mean `inTreeModulesToRemove`?"),
            "{e}"
        );
        // KMM: an empty firmware path is no firmware; an empty list removes nothing.
        let y = format!("{BASE}  inTreeModulesToRemove: []\n  firmwareFilesPath: ''\n");
        let l = map(&cr(&y), None).unwrap();
        assert_eq!(l.config.in_tree_remove, Some(Vec::new()));
        assert_eq!(l.config.firmware_dir, None);
    }

    #[test]
    fn each_required_field_is_named_when_missing() {
        for field in [
            "machineConfigName",
            "machineConfigPoolName",
            "kernelModuleImage",
            "kernelModuleName",
        ] {
            let y: String = BASE
                .lines()
                .filter(|l| !l.trim_start().starts_with(&format!("{field}:")))
                .map(|l| format!("{l}\n"))
                .collect();
            let e = format!("{:#}", map(&cr(&y), None).unwrap_err());
            assert!(
                e.starts_with(&format!("`spec.{field}` is missing: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn tagged_image_and_bad_pool_are_refused() {
        let y = BASE.replace("quay.io/acme/sfc", "quay.io/acme/sfc:1.0");
        let e = format!("{:#}", map(&cr(&y), None).unwrap_err());
        assert!(e.starts_with("`spec.kernelModuleImage`: "), "{e}");
        assert!(e.contains("tag `1.0`"), "{e}");
        let y = BASE.replace(
            "machineConfigPoolName: worker",
            "machineConfigPoolName: -bad",
        );
        let e = format!("{:#}", map(&cr(&y), None).unwrap_err());
        assert!(
            e.starts_with("`spec.machineConfigPoolName` `-bad` is not a pool role"),
            "{e}"
        );
    }
}
