//! Kernel releases and the KMM template variables derived from them.
//!
//! KMM matches kernel mappings against the raw release (`uname -r`) but
//! substitutes variables from a *normalised* release in which every character
//! that is not allowed in an image tag is replaced by `_` (so the RT kernel
//! `5.14.0-427.13.1.el9_4.x86_64+rt` becomes `…x86_64_rt`). We do the same so
//! that one image serves both Day-1 and KMM Day-2.

use crate::ConfigError;

/// Replace every character outside `[A-Za-z0-9._-]` by `_`, as KMM does.
pub fn normalize(release: &str) -> String {
    release
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The values of KMM's kernel variables for one kernel release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelVars {
    /// `${KERNEL_FULL_VERSION}` and its older alias `${KERNEL_VERSION}`.
    pub full: String,
    /// `${KERNEL_XYZ}`: `major.minor.patch`.
    pub xyz: String,
    pub x: String,
    pub y: String,
    pub z: String,
}

impl KernelVars {
    /// Split a release into KMM's components: fields separated by `.`, `,`
    /// or `-`, of which at least three must exist.
    pub fn new(release: &str) -> Result<Self, ConfigError> {
        let full = normalize(release);
        let fields: Vec<&str> = full.split(['.', ',', '-']).collect();
        if release.is_empty() || fields.len() < 3 || fields[..3].iter().any(|f| f.is_empty()) {
            return Err(ConfigError::InvalidKernelRelease(release.to_string()));
        }
        Ok(KernelVars {
            xyz: fields[..3].join("."),
            x: fields[0].to_string(),
            y: fields[1].to_string(),
            z: fields[2].to_string(),
            full,
        })
    }
}

/// The variables a template may use, for error messages.
pub const VARIABLES: &[&str] = &[
    "KERNEL_FULL_VERSION",
    "KERNEL_VERSION",
    "KERNEL_XYZ",
    "KERNEL_X",
    "KERNEL_Y",
    "KERNEL_Z",
    "MOD_NAME",
    "MOD_NAMESPACE",
];

/// Substitute `${VAR}` and `$VAR` in `template`.
///
/// Unlike KMM (whose envsubst turns an unknown variable into an empty string)
/// an unknown variable is an error: an image reference silently missing its
/// tag would pull the wrong image on every node.
pub fn substitute(
    template: &str,
    kernel: &KernelVars,
    mod_name: &str,
    mod_namespace: &str,
) -> Result<String, ConfigError> {
    let lookup = |name: &str| -> Option<&str> {
        Some(match name {
            "KERNEL_FULL_VERSION" | "KERNEL_VERSION" => &kernel.full,
            "KERNEL_XYZ" => &kernel.xyz,
            "KERNEL_X" => &kernel.x,
            "KERNEL_Y" => &kernel.y,
            "KERNEL_Z" => &kernel.z,
            "MOD_NAME" => mod_name,
            "MOD_NAMESPACE" => mod_namespace,
            _ => return None,
        })
    };
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or_else(|| {
                ConfigError::Template(template.to_string(), "unclosed `${`".into())
            })?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if name.is_empty() {
            return Err(ConfigError::Template(
                template.to_string(),
                "`$` must be followed by a variable name".into(),
            ));
        }
        let value = lookup(name).ok_or_else(|| {
            ConfigError::Template(
                template.to_string(),
                format!(
                    "unknown variable `{name}` (allowed: {})",
                    VARIABLES.join(", ")
                ),
            )
        })?;
        out.push_str(value);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(r: &str) -> KernelVars {
        KernelVars::new(r).expect("valid release")
    }

    #[test]
    fn rhel_release_components() {
        let v = vars("5.14.0-427.13.1.el9_4.x86_64");
        assert_eq!(v.full, "5.14.0-427.13.1.el9_4.x86_64");
        assert_eq!(v.xyz, "5.14.0");
        assert_eq!((v.x.as_str(), v.y.as_str(), v.z.as_str()), ("5", "14", "0"));
    }

    #[test]
    fn rt_release_is_normalised_for_tags() {
        let v = vars("5.14.0-427.13.1.el9_4.x86_64+rt");
        assert_eq!(v.full, "5.14.0-427.13.1.el9_4.x86_64_rt");
        assert_eq!(v.xyz, "5.14.0");
    }

    #[test]
    fn rhcos_64k_and_debian_releases() {
        assert_eq!(
            vars("5.14.0-570.12.1.el9_6.aarch64+64k").full,
            "5.14.0-570.12.1.el9_6.aarch64_64k"
        );
        let d = vars("6.1.0-56-amd64");
        assert_eq!((d.xyz.as_str(), d.z.as_str()), ("6.1.0", "0"));
    }

    #[test]
    fn too_short_release_is_rejected() {
        assert!(KernelVars::new("6.1").is_err());
        assert!(KernelVars::new("").is_err());
        assert!(KernelVars::new("6..1").is_err());
    }

    #[test]
    fn substitution_braced_and_bare() {
        let v = vars("5.14.0-284.59.1.el9_2.x86_64");
        let s = substitute(
            "quay.io/acme/${MOD_NAME}:$KERNEL_XYZ-${KERNEL_FULL_VERSION}",
            &v,
            "sfc",
            "",
        )
        .unwrap();
        assert_eq!(s, "quay.io/acme/sfc:5.14.0-5.14.0-284.59.1.el9_2.x86_64");
        assert_eq!(
            substitute("r/i:${KERNEL_X}.${KERNEL_Y}.${KERNEL_Z}", &v, "", "").unwrap(),
            "r/i:5.14.0"
        );
        assert_eq!(
            substitute("r/i:${KERNEL_VERSION}", &v, "", "").unwrap(),
            "r/i:5.14.0-284.59.1.el9_2.x86_64"
        );
    }

    #[test]
    fn unknown_or_malformed_variables_are_errors() {
        let v = vars("6.1.0-56-amd64");
        let e = substitute("r/i:${KERNEL}", &v, "", "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variable `KERNEL`"), "{e}");
        assert!(e.contains("KERNEL_FULL_VERSION"), "{e}");
        assert!(substitute("r/i:${KERNEL_X", &v, "", "").is_err());
        assert!(substitute("r/i:$", &v, "", "").is_err());
    }
}
