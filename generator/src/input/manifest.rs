//! `--from-module FILE`: a stream of Kubernetes manifests (`---` separated),
//! each dispatched on its kind. Each object becomes one node config, and so
//! one MachineConfig. A `List` (what `oc get bmc -o yaml` prints) or a
//! `<Kind>List` stands for its `items`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use super::{boot_module_config, module_cr, Loaded};

/// What `--from-module` accepts, for messages.
const ACCEPTED: &str = "Module or BootModuleConfig (kmm.sigs.x-k8s.io/v1beta1)";

/// Each object's node config, with where it came from (`FILE[: document i
/// of n][: items[j]]`) for later messages.
pub fn load(path: &Path, name: Option<&str>) -> Result<Vec<(String, Loaded)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --from-module {}", path.display()))?;
    let docs = documents(&text).with_context(|| format!("{}", path.display()))?;
    let n = docs.len();
    let objects = objects(&docs).with_context(|| format!("{}", path.display()))?;
    if objects.len() > 1 && name.is_some() {
        bail!(
            "{}: --name names one config, but the file has {} objects; drop --name (each object's metadata.name names its config)",
            path.display(),
            objects.len()
        );
    }
    if objects.is_empty() {
        bail!("{}: the List has no items", path.display());
    }
    let several = objects.len() > 1;
    let mut out = Vec::with_capacity(objects.len());
    for (doc_index, item, obj) in objects {
        // Errors and warnings say which document (counted from 1, empty
        // documents not counted) and which List item, when there are several.
        let mut at = path.display().to_string();
        if n > 1 {
            at += &format!(": document {} of {n}", doc_index + 1);
        }
        if let Some(j) = item {
            at += &format!(": items[{j}]");
        }
        let mut loaded = one(obj, name).with_context(|| at.clone())?;
        if several {
            for w in &mut loaded.warnings {
                *w = format!("{at} ({}): {w}", loaded.name);
            }
        }
        out.push((at, loaded));
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

/// The objects of the documents: each document, or each item of a list
/// document, with the document's index and the item's.
fn objects(docs: &[Value]) -> Result<Vec<(usize, Option<usize>, &Value)>> {
    let mut out = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind == "List" || (kind.ends_with("List") && doc.get("items").is_some()) {
            let items = doc
                .get("items")
                .and_then(Value::as_array)
                .with_context(|| format!("document {}: a {kind} without an `items` list", i + 1))?;
            out.extend(items.iter().enumerate().map(|(j, v)| (i, Some(j), v)));
        } else {
            out.push((i, None, doc));
        }
    }
    Ok(out)
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
