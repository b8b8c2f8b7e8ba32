//! A node config from command-line flags.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use kmm_day1_config::{KernelMapping, NodeConfig};

use super::Loaded;
use crate::cli::GenerateArgs;

pub fn load(args: &GenerateArgs) -> Result<Loaded> {
    let Some(first) = args.module.first() else {
        bail!("no kernel module to load: name at least one with --module NAME (or pass --config FILE.toml or --from-module FILE)");
    };
    let name = args.name.clone().unwrap_or_else(|| first.clone());
    let mut warnings = Vec::new();
    let mut config = NodeConfig::new(String::new(), args.module.clone());
    config.image = args.image.as_deref().map(|i| {
        let (image, note) = super::kmm_image::flag_image(&format!("--image `{i}`"), i);
        warnings.extend(note);
        image
    });
    // day1-utility passes a comma-separated list, and "" for none: both
    // arrive here split (`--in-tree-remove ""` is an explicit empty list).
    if let Some(list) = &args.in_tree_remove {
        config.in_tree_remove = Some(list.iter().filter(|m| !m.is_empty()).cloned().collect());
    }
    config.parameters = parameters(&args.param)?;
    config.firmware_dir = args.firmware_dir.clone();
    if let Some(root) = &args.module_root {
        config.module_root = root.clone();
    }
    config.mod_namespace = args.mod_namespace.clone();
    // Literal mappings first: an exact kernel is the more specific rule, and
    // two separate flags cannot express an interleaved order.
    for m in &args.kernel_mapping_literal {
        let Some((kver, image)) = m.split_once('=') else {
            bail!("--kernel-mapping-literal `{m}`: expected KERNEL_RELEASE=IMAGE");
        };
        let what = format!("the image of --kernel-mapping-literal `{m}`");
        let (image, note) = super::kmm_image::flag_image(&what, image);
        warnings.extend(note);
        config.kernel_mappings.push(KernelMapping {
            literal: Some(kver.to_string()),
            image: Some(image),
            ..KernelMapping::default()
        });
    }
    for m in &args.kernel_mapping {
        // An image has no `=`, a regexp may: split at the last one.
        let Some((re, image)) = m.rsplit_once('=') else {
            bail!("--kernel-mapping `{m}`: expected REGEXP=IMAGE");
        };
        let what = format!("the image of --kernel-mapping `{m}`");
        let (image, note) = super::kmm_image::flag_image(&what, image);
        warnings.extend(note);
        config.kernel_mappings.push(KernelMapping {
            regexp: Some(re.to_string()),
            image: Some(image),
            ..KernelMapping::default()
        });
    }
    apply_pull_flags(args, &mut config);
    Ok(Loaded::plain(name, config, warnings))
}

/// `MODULE=KEY=VALUE` (or `MODULE=KEY`) → `parameters.MODULE += ["KEY=VALUE"]`.
fn parameters(params: &[String]) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in params {
        match p.split_once('=') {
            Some((m, kv)) if !m.is_empty() && !kv.is_empty() => {
                out.entry(m.to_string()).or_default().push(kv.to_string());
            }
            _ => bail!("--param `{p}`: expected MODULE=KEY=VALUE, e.g. --param sfc=rss_cpus=4"),
        }
    }
    Ok(out)
}

/// The `[pull]` flags, also allowed on top of a Module CR (which has no
/// equivalent for most of them).
pub fn apply_pull_flags(args: &GenerateArgs, config: &mut NodeConfig) {
    if let Some(a) = args.after_pull {
        config.pull.after_pull = a.into();
    }
    config.pull.insecure |= args.insecure;
    config.pull.insecure_skip_tls_verify |= args.insecure_skip_tls_verify;
    if !args.auth_file.is_empty() {
        config.pull.auth_files = args.auth_file.clone();
    }
    if let Some(d) = &args.ca_dir {
        config.pull.ca_dir = Some(d.clone());
    }
    if let Some(n) = args.max_reboots {
        config.pull.max_reboots_per_kernel = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_split_at_the_first_equals() {
        let p = parameters(&[
            "sfc=rss_cpus=4".into(),
            "sfc=debug".into(),
            "mlx5_core=a=b=c".into(),
        ])
        .unwrap();
        assert_eq!(p["sfc"], ["rss_cpus=4", "debug"]);
        assert_eq!(p["mlx5_core"], ["a=b=c"]);
        for bad in ["sfc", "=x=1", "sfc="] {
            let e = parameters(&[bad.into()]).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("MODULE=KEY=VALUE"), "{e}");
        }
    }
}
