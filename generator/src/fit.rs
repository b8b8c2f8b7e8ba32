//! `--rendered`: will the pool still fit once this MachineConfig is in it?
//!
//! The MCO merges every MachineConfig of a pool into one rendered
//! MachineConfig and stores it as one object; the API server refuses objects
//! above etcd's request limit (1.5 MiB), and then the pool cannot render at
//! all. This module takes the pool's current rendered MachineConfig
//! (`oc get mc rendered-<pool>-<hash> -o json`), merges our Ignition files
//! and units into its `spec.config` the way the MCO does (a file with the
//! same path or a unit with the same name is replaced, anything else is
//! appended), and measures the result as the API server stores it: compact
//! JSON, with Go's HTML escaping of `<`, `>` and `&` in strings.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// etcd's default `--max-request-bytes`, which OpenShift keeps.
pub const LIMIT: usize = 1536 * 1024;
/// Below this margin an upgrade that grows the pool's base configs, or
/// another MachineConfig, can push the pool over.
const TIGHT_MARGIN: usize = LIMIT / 10;

/// The pool's rendered MachineConfig as read from the user's file.
pub struct Rendered {
    name: String,
    object: Value,
    /// Its own size, measured the same way as the merged one.
    bytes: usize,
}

/// What `--rendered` says about one merge.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub merged_bytes: usize,
    /// `LIMIT - merged_bytes`; negative when it does not fit.
    pub margin: i64,
}

/// Read `oc get mc rendered-… -o json` (or `-o yaml`) from `path`, `-` for stdin.
pub fn load(path: &Path) -> Result<Rendered> {
    let shown = path.display();
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("--rendered -: reading stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("--rendered {shown}"))?
    };
    let object: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text)
            .with_context(|| format!("--rendered {shown}: not valid JSON"))?
    } else {
        serde_norway::from_str(&text)
            .with_context(|| format!("--rendered {shown}: neither JSON nor YAML"))?
    };
    parse(object).with_context(|| {
        format!("--rendered {shown}: give the output of `oc get mc rendered-<pool>-<hash> -o json`")
    })
}

fn parse(object: Value) -> Result<Rendered> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != "MachineConfig" {
        if kind.is_empty() {
            bail!("not a Kubernetes object (no `kind`)");
        }
        bail!("it is a {kind}, not a MachineConfig");
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match object.pointer("/spec/config") {
        Some(Value::Object(_)) => {}
        _ => bail!("MachineConfig `{name}` has no spec.config object"),
    }
    let bytes = stored_size(&object);
    Ok(Rendered {
        name,
        object,
        bytes,
    })
}

impl Rendered {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pool this rendered config belongs to, from its name.
    pub fn pool(&self) -> Option<&str> {
        let rest = self.name.strip_prefix("rendered-")?;
        rest.rsplit_once('-').map(|(pool, _hash)| pool)
    }

    /// Merge our Ignition configs (as JSON) into a copy and measure it.
    pub fn merge(&self, ours: &[Value]) -> Verdict {
        let mut merged = self.object.clone();
        if let Some(config) = merged.pointer_mut("/spec/config") {
            for ign in ours {
                merge_list(config, ign, &["storage", "files"], "path");
                merge_list(config, ign, &["systemd", "units"], "name");
            }
        }
        let merged_bytes = stored_size(&merged);
        Verdict {
            merged_bytes,
            margin: LIMIT as i64 - merged_bytes as i64,
        }
    }

    /// The line(s) to print, or the error when it does not fit.
    pub fn report(&self, v: &Verdict, what: &str) -> Result<Vec<String>> {
        let head = format!(
            "the pool's rendered MachineConfig {} is {} bytes; with {what} it would be {} bytes",
            self.name,
            thousands(self.bytes as i64),
            thousands(v.merged_bytes as i64),
        );
        if v.margin < 0 {
            bail!(
                "{head}: over etcd's {}-byte (1.5 MiB) limit by {} bytes, so the MCO could not store the pool's rendered config; nothing was written (remove or shrink other MachineConfigs of the pool first)",
                thousands(LIMIT as i64),
                thousands(-v.margin),
            );
        }
        let mut lines = vec![format!(
            "kmm-day1: {head}: fits under the {}-byte (1.5 MiB) limit with {} bytes ({:.1}%) to spare",
            thousands(LIMIT as i64),
            thousands(v.margin),
            v.margin as f64 * 100.0 / LIMIT as f64,
        )];
        if (v.margin as usize) < TIGHT_MARGIN {
            lines.push(
                "warning: less than 10% of the limit is left: an OpenShift upgrade that grows the pool's base configs, or one more MachineConfig, can push the pool over".to_string(),
            );
        }
        Ok(lines)
    }
}

/// Replace entries of `into`'s list at `path` that share `key` with an entry
/// of `from`'s list, append the rest: Ignition's merge for keyed lists.
fn merge_list(into: &mut Value, from: &Value, path: &[&str], key: &str) {
    let Some(ours) = path
        .iter()
        .try_fold(from, |v, k| v.get(k))
        .and_then(Value::as_array)
    else {
        return;
    };
    let mut node = &mut *into;
    for k in path {
        if !node.is_object() {
            *node = Value::Object(serde_json::Map::new());
        }
        node = node
            .as_object_mut()
            .map(|m| m.entry(*k).or_insert(Value::Null))
            .unwrap_or_else(|| unreachable!("made an object above"));
    }
    if !node.is_array() {
        *node = Value::Array(Vec::new());
    }
    let Some(list) = node.as_array_mut() else {
        unreachable!("made an array above")
    };
    for entry in ours {
        let id = entry.get(key);
        match list.iter_mut().find(|e| id.is_some() && e.get(key) == id) {
            Some(old) => *old = entry.clone(),
            None => list.push(entry.clone()),
        }
    }
}

/// Bytes of `v` as compact JSON the way Go's encoding/json writes it (the
/// API server's encoder): serde_json's compact form, plus the five extra bytes
/// of each `\u003c`-style escape Go uses for `<`, `>` and `&` (those bytes
/// can only occur inside strings in JSON).
fn stored_size(v: &Value) -> usize {
    let s = serde_json::to_string(v).unwrap_or_default();
    let html = s
        .bytes()
        .filter(|b| matches!(b, b'<' | b'>' | b'&'))
        .count();
    // Go also escapes U+2028 and U+2029 (3 bytes in UTF-8) as 6-byte escapes.
    let seps = s.matches(['\u{2028}', '\u{2029}']).count();
    s.len() + 5 * html + 3 * seps
}

fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rendered(files: Value, units: Value) -> Rendered {
        parse(json!({
            "apiVersion": "machineconfiguration.openshift.io/v1",
            "kind": "MachineConfig",
            "metadata": {"name": "rendered-worker-0123456789abcdef"},
            "spec": {"config": {
                "ignition": {"version": "3.4.0"},
                "storage": {"files": files},
                "systemd": {"units": units},
            }},
        }))
        .unwrap()
    }

    fn ours(path: &str, unit: &str) -> Value {
        json!({
            "ignition": {"version": "3.2.0"},
            "storage": {"files": [{"path": path, "contents": {"source": "data:,new"}}]},
            "systemd": {"units": [{"name": unit, "enabled": true, "contents": "[Unit]\n"}]},
        })
    }

    #[test]
    fn same_path_and_unit_name_are_replaced_others_appended() {
        let r = rendered(
            json!([{"path": "/etc/a", "contents": {"source": "data:,old"}}]),
            json!([{"name": "x.service", "enabled": true}]),
        );
        let mut merged = r.object.clone();
        let config = merged.pointer_mut("/spec/config").unwrap();
        merge_list(
            config,
            &ours("/etc/a", "y.service"),
            &["storage", "files"],
            "path",
        );
        merge_list(
            config,
            &ours("/etc/a", "y.service"),
            &["systemd", "units"],
            "name",
        );
        let files = merged.pointer("/spec/config/storage/files").unwrap();
        assert_eq!(files.as_array().unwrap().len(), 1);
        assert_eq!(files[0]["contents"]["source"], "data:,new");
        let units = merged.pointer("/spec/config/systemd/units").unwrap();
        let names: Vec<_> = units
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].clone())
            .collect();
        assert_eq!(names, [json!("x.service"), json!("y.service")]);
    }

    #[test]
    fn merging_twice_is_merging_once() {
        // Checking again after our MachineConfig is already in the pool.
        let r = rendered(json!([]), json!([]));
        let once = r.merge(&[ours("/usr/local/bin/a", "a.service")]);
        let twice = r.merge(&[
            ours("/usr/local/bin/a", "a.service"),
            ours("/usr/local/bin/a", "a.service"),
        ]);
        assert_eq!(once, twice);
        assert!(once.merged_bytes > r.bytes);
    }

    #[test]
    fn a_rendered_config_without_lists_gets_them() {
        let r = parse(json!({
            "kind": "MachineConfig",
            "metadata": {"name": "rendered-infra-1"},
            "spec": {"config": {"ignition": {"version": "3.4.0"}}},
        }))
        .unwrap();
        let v = r.merge(&[ours("/etc/b", "b.service")]);
        assert_eq!(r.pool(), Some("infra"));
        assert!(v.merged_bytes > r.bytes, "{v:?}");
    }

    #[test]
    fn size_counts_go_html_escapes() {
        assert_eq!(stored_size(&json!("a<b")), "\"a\\u003cb\"".len());
        assert_eq!(stored_size(&json!({"k": "&"})), "{\"k\":\"\\u0026\"}".len());
        assert_eq!(stored_size(&json!("\u{2028}")), "\"\\u2028\"".len());
    }

    #[test]
    fn not_a_machineconfig_is_named() {
        let e = parse(json!({"kind": "MachineConfigPool"})).err().unwrap();
        assert_eq!(
            e.to_string(),
            "it is a MachineConfigPool, not a MachineConfig"
        );
        let e = parse(json!([1])).err().unwrap();
        assert!(e.to_string().contains("no `kind`"), "{e}");
        let e = parse(json!({"kind": "MachineConfig", "metadata": {"name": "m"}, "spec": {}}))
            .err()
            .unwrap();
        assert!(e.to_string().contains("no spec.config"), "{e}");
    }

    #[test]
    fn report_margin_and_refusal() {
        let r = rendered(json!([]), json!([]));
        let fits = Verdict {
            merged_bytes: 1_000_000,
            margin: LIMIT as i64 - 1_000_000,
        };
        let lines = r.report(&fits, "this MachineConfig").unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("1,000,000 bytes: fits under the 1,572,864-byte"),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].contains("572,864 bytes (36.4%) to spare"),
            "{}",
            lines[0]
        );
        let tight = Verdict {
            merged_bytes: 1_500_000,
            margin: LIMIT as i64 - 1_500_000,
        };
        let lines = r.report(&tight, "it").unwrap();
        assert!(lines[1].starts_with("warning: less than 10%"), "{lines:?}");
        let over = Verdict {
            merged_bytes: 1_600_000,
            margin: LIMIT as i64 - 1_600_000,
        };
        let e = r.report(&over, "it").unwrap_err().to_string();
        assert!(
            e.contains("over etcd's 1,572,864-byte (1.5 MiB) limit by 27,136 bytes"),
            "{e}"
        );
    }
}
