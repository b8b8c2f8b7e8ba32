//! `--from-module FILE`: a Kubernetes manifest, dispatched on its kind.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use super::{module_cr, Loaded};

/// What `--from-module` accepts, for messages.
const ACCEPTED: &str = "Module (kmm.sigs.x-k8s.io/v1beta1)";

pub fn load(path: &Path, name: Option<&str>) -> Result<Loaded> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --from-module {}", path.display()))?;
    let doc = single_document(&text).with_context(|| format!("{}", path.display()))?;
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match kind {
        "Module" if api == module_cr::API_VERSION => {
            module_cr::map(&doc, name).with_context(|| format!("{}", path.display()))
        }
        "Module" => bail!(
            "{}: apiVersion `{api}` of kind Module is not supported; accepted: {ACCEPTED}",
            path.display()
        ),
        "" => bail!(
            "{}: not a Kubernetes object (no `kind`); accepted: {ACCEPTED}",
            path.display()
        ),
        other => bail!(
            "{}: kind `{other}` is not supported; accepted: {ACCEPTED}",
            path.display()
        ),
    }
}

/// The one YAML document of `text` (empty documents, e.g. after a leading
/// `---`, are skipped).
fn single_document(text: &str) -> Result<Value> {
    let mut docs = Vec::new();
    for d in serde_norway::Deserializer::from_str(text) {
        let v = Value::deserialize(d).context("not valid YAML")?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    match docs.len() {
        0 => bail!("the file is empty"),
        1 => Ok(docs.remove(0)),
        n => bail!("{n} YAML documents; pass one object per file"),
    }
}
