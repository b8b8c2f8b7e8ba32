//! `--from-module FILE`: a stream of Kubernetes manifests (`---` separated),
//! each dispatched on its kind. Each document becomes one node config, and
//! so one MachineConfig.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use super::{boot_module_config, module_cr, Loaded};

/// What `--from-module` accepts, for messages.
const ACCEPTED: &str = "Module or BootModuleConfig (kmm.sigs.x-k8s.io/v1beta1)";

pub fn load(path: &Path, name: Option<&str>) -> Result<Vec<Loaded>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --from-module {}", path.display()))?;
    let docs = documents(&text).with_context(|| format!("{}", path.display()))?;
    let n = docs.len();
    if n > 1 && name.is_some() {
        bail!(
            "{}: --name names one config, but the file has {n} documents; drop --name (each document's metadata.name names its config)",
            path.display()
        );
    }
    let mut out = Vec::with_capacity(n);
    for (i, doc) in docs.iter().enumerate() {
        // Errors and warnings say which document when there are several
        // (counted from 1, empty documents not counted).
        let at = if n > 1 {
            format!("{}: document {} of {n}", path.display(), i + 1)
        } else {
            path.display().to_string()
        };
        let mut loaded = one(doc, name).with_context(|| at.clone())?;
        if n > 1 {
            for w in &mut loaded.warnings {
                *w = format!("{at} ({}): {w}", loaded.name);
            }
        }
        out.push(loaded);
    }
    Ok(out)
}

fn one(doc: &Value, name: Option<&str>) -> Result<Loaded> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match kind {
        "Module" if api == module_cr::API_VERSION => module_cr::map(doc, name),
        "BootModuleConfig" if api == boot_module_config::API_VERSION => {
            boot_module_config::map(doc, name)
        }
        "Module" | "BootModuleConfig" => {
            bail!("apiVersion `{api}` of kind {kind} is not supported; accepted: {ACCEPTED}")
        }
        "" => bail!("not a Kubernetes object (no `kind`); accepted: {ACCEPTED}"),
        other => bail!("kind `{other}` is not supported; accepted: {ACCEPTED}"),
    }
}

/// The YAML documents of `text`; empty ones (after a leading `---`, or
/// only comments) are skipped.
fn documents(text: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for d in serde_norway::Deserializer::from_str(text) {
        let v = Value::deserialize(d)
            .with_context(|| format!("document {}: not valid YAML", docs.len() + 1))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    if docs.is_empty() {
        bail!("the file is empty");
    }
    Ok(docs)
}
