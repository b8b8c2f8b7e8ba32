//! The fields the KMM CRDs define, at each object level the generator reads.
//!
//! The API server rejects a CR with a field its CRD does not define, so such
//! a field in `--from-module` is a typo (`kernelMapping` for
//! `kernelMappings`) that KMM would never have accepted: ignoring it would
//! silently drop mappings or modules. Those are errors, with the nearest
//! defined field as a suggestion. Fields the CRD defines but kmm-day1 cannot
//! honour stay warnings (the input modules decide which).
//!
//! The tables are ours; a test checks each against the CRDs in
//! `../shared/reference/` (the tests may read them; the project ships no copy).

use anyhow::{bail, Result};

/// `(schema path, fields)`; `[]` steps into a list's items.
pub type Table = &'static [(&'static str, &'static [&'static str])];

/// Every object has these at its root.
const ROOT: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];
const REGISTRY_TLS: &[&str] = &["insecure", "insecureSkipTLSVerify"];

/// `Module` (kmm.sigs.x-k8s.io/v1beta1), from `config/crd/bases/kmm.sigs.x-k8s.io_modules.yaml`.
pub const MODULE: Table = &[
    ("", ROOT),
    (
        "spec",
        &[
            "devicePlugin",
            "dra",
            "imageRebuildTriggerGeneration",
            "imageRepoSecret",
            "moduleLoader",
            "selector",
            "tolerations",
        ],
    ),
    ("spec.moduleLoader", &["container", "serviceAccountName"]),
    (
        "spec.moduleLoader.container",
        &[
            "build",
            "containerImage",
            "imagePullPolicy",
            "inTreeModuleToRemove",
            "inTreeModulesToRemove",
            "kernelMappings",
            "modprobe",
            "registryTLS",
            "sign",
            "version",
        ],
    ),
    (
        "spec.moduleLoader.container.modprobe",
        &[
            "args",
            "dirName",
            "firmwarePath",
            "moduleName",
            "modulesLoadingOrder",
            "parameters",
            "rawArgs",
        ],
    ),
    ("spec.moduleLoader.container.registryTLS", REGISTRY_TLS),
    (
        "spec.moduleLoader.container.kernelMappings[]",
        &[
            "build",
            "containerImage",
            "inTreeModuleToRemove",
            "inTreeModulesToRemove",
            "literal",
            "regexp",
            "registryTLS",
            "sign",
        ],
    ),
    (
        "spec.moduleLoader.container.kernelMappings[].registryTLS",
        REGISTRY_TLS,
    ),
];

/// `BootModuleConfig`, from `config/crd/bases/kmm.sigs.x-k8s.io_bootmoduleconfigs.yaml`.
pub const BOOT_MODULE_CONFIG: Table = &[
    ("", ROOT),
    (
        "spec",
        &[
            "firmwareFilesPath",
            "inTreeModulesToRemove",
            "kernelModuleImage",
            "kernelModuleName",
            "machineConfigName",
            "machineConfigPoolName",
            "workerImage",
        ],
    ),
];

/// Refuse any key of `keys` that the CRD (`table`, kind `kind`) does not
/// define at `schema`; `at` is where the object is, for the message
/// (`spec.moduleLoader.container.kernelMappings[2]`).
pub fn check<'a>(
    table: Table,
    kind: &str,
    schema: &str,
    at: &str,
    keys: impl IntoIterator<Item = &'a String>,
) -> Result<()> {
    let Some((_, fields)) = table.iter().find(|(p, _)| *p == schema) else {
        unreachable!("no CRD table entry for `{schema}`: a bug in the generator");
    };
    for key in keys {
        if fields.contains(&key.as_str()) {
            continue;
        }
        let full = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        let hint = match nearest(key, fields) {
            Some(f) => format!("did you mean `{f}`?"),
            None => format!("{} defines {}", where_(at), fields.join(", ")),
        };
        bail!("`{full}` is not a field of a {kind}: the API server would reject it; {hint}");
    }
    Ok(())
}

fn where_(at: &str) -> String {
    if at.is_empty() {
        "the object's root".into()
    } else {
        format!("`{at}`")
    }
}

/// The field closest to `key`, when it is close enough to be a typo: the
/// same but for case, or a few edits away (fewer for short names).
fn nearest<'f>(key: &str, fields: &[&'f str]) -> Option<&'f str> {
    let lower = key.to_ascii_lowercase();
    if let Some(f) = fields.iter().find(|f| f.to_ascii_lowercase() == lower) {
        return Some(f);
    }
    let limit = (key.chars().count() / 4).clamp(1, 3);
    fields
        .iter()
        .map(|f| (distance(&lower, &f.to_ascii_lowercase()), *f))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, f)| f)
}

/// Levenshtein distance (insertions, deletions, substitutions).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The `properties` of the schema at `path` in a CRD's first version.
    fn crd_fields(crd: &Value, path: &str) -> Vec<String> {
        let mut node = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        for seg in path.split('.').filter(|s| !s.is_empty()) {
            let (name, items) = match seg.strip_suffix("[]") {
                Some(n) => (n, true),
                None => (seg, false),
            };
            node = &node["properties"][name];
            if items {
                node = &node["items"];
            }
        }
        let props = node["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{path}: no properties in the CRD"));
        let mut keys: Vec<String> = props.keys().cloned().collect();
        keys.sort();
        keys
    }

    #[test]
    fn tables_are_the_crds_fields() {
        for (file, table) in [
            ("kmm-module-crd.yaml", MODULE),
            ("kmm-bootmoduleconfig-crd.yaml", BOOT_MODULE_CONFIG),
        ] {
            let path = kmm_day1_tests::shared_reference(file);
            let Ok(text) = std::fs::read_to_string(&path) else {
                assert!(
                    !kmm_day1_tests::full_suite(),
                    "{} is missing",
                    path.display()
                );
                eprintln!("skipping: {} is missing", path.display());
                continue;
            };
            let crd: Value = serde_norway::from_str(&text).unwrap();
            for (schema, fields) in table {
                let mut ours: Vec<&str> = fields.to_vec();
                ours.sort_unstable();
                assert_eq!(crd_fields(&crd, schema), ours, "{file}: `{schema}`");
            }
        }
    }

    #[test]
    fn typos_get_the_nearest_field() {
        let c = &["kernelMappings", "modprobe", "containerImage", "version"];
        assert_eq!(nearest("kernelMapping", c), Some("kernelMappings"));
        assert_eq!(nearest("ContainerImage", c), Some("containerImage"));
        assert_eq!(nearest("modprob", c), Some("modprobe"));
        assert_eq!(nearest("bogus", c), None);
        assert_eq!(nearest("v", c), None);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn unknown_fields_are_errors_that_name_the_field() {
        let keys = ["modprobe".to_string(), "kernelMapping".to_string()];
        let e = check(
            MODULE,
            "Module",
            "spec.moduleLoader.container",
            "spec.moduleLoader.container",
            &keys,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "`spec.moduleLoader.container.kernelMapping` is not a field of a Module: the API server would reject it; did you mean `kernelMappings`?");
        let keys = ["zzz".to_string()];
        let e = check(BOOT_MODULE_CONFIG, "BootModuleConfig", "", "", &keys)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("`zzz` is not a field")
                && e.ends_with(
                    "the object's root defines apiVersion, kind, metadata, spec, status"
                ),
            "{e}"
        );
        check(MODULE, "Module", "spec", "spec", &["selector".to_string()]).unwrap();
    }
}
