//! `signedIdentity`: which `docker-reference` in a signature is accepted for
//! the image being pulled (containers-policy.json(5), "signedIdentity").
//! The rules follow containers/image's `policy_reference_match.go`; both
//! references are compared in their normalized form (`docker.io/library/…`).

use kmm_day1_config::ImageRef;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The same reference, tag or digest included.
    MatchExact,
    /// A tag: the same reference. A digest: the same repository (the
    /// digest is checked against the signature anyway). The default.
    MatchRepoDigestOrExact,
    /// The same repository, any tag.
    MatchRepository,
    /// Exactly this reference (with a tag or digest), whatever was pulled.
    ExactReference(ImageRef),
    /// This repository, whatever was pulled.
    ExactRepository(ImageRef),
    /// The pulled reference with `prefix` rewritten to `signed_prefix`,
    /// then `MatchRepoDigestOrExact` (signatures made for another registry).
    Remap {
        prefix: String,
        signed_prefix: String,
    },
}

fn name_only(r: &ImageRef) -> bool {
    r.tag.is_none() && r.digest.is_none()
}

fn repo_digest_or_exact(intended: &ImageRef, signed: &ImageRef) -> bool {
    if name_only(signed) {
        return false;
    }
    if intended.tag.is_some() {
        signed.to_string() == intended.to_string()
    } else {
        intended.digest.is_some() && signed.name() == intended.name()
    }
}

/// A remap prefix: `host[:port]` or `host[:port]/namespace…`, in full.
fn valid_prefix(s: &str) -> bool {
    match s.split_once('/') {
        None => {
            (s.contains('.') || s.contains(':') || s == "localhost")
                && ImageRef::parse_named(&format!("{s}/x")).is_ok_and(|r| r.registry == s)
        }
        Some(_) => ImageRef::parse_named(s).is_ok_and(|r| r.to_string() == s),
    }
}

impl Identity {
    pub fn parse(v: &Value) -> Result<Identity, String> {
        let Value::Object(m) = v else {
            return Err("not a JSON object".into());
        };
        let s = |k: &str| match m.get(k) {
            Some(Value::String(s)) => Ok(s.as_str()),
            _ => Err(format!("`{k}` is missing or not a string")),
        };
        let only = |allowed: &[&str]| match m.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(format!("unknown key `{k}`")),
            None => Ok(()),
        };
        let ty = s("type")?;
        Ok(match ty {
            "matchExact" | "matchRepoDigestOrExact" | "matchRepository" => {
                only(&["type"])?;
                match ty {
                    "matchExact" => Identity::MatchExact,
                    "matchRepository" => Identity::MatchRepository,
                    _ => Identity::MatchRepoDigestOrExact,
                }
            }
            "exactReference" => {
                only(&["type", "dockerReference"])?;
                let r = s("dockerReference")?;
                let parsed = ImageRef::parse_named(r).map_err(|e| e.to_string())?;
                if name_only(&parsed) {
                    return Err(format!(
                        "dockerReference `{r}` has neither a tag nor a digest"
                    ));
                }
                Identity::ExactReference(parsed)
            }
            "exactRepository" => {
                only(&["type", "dockerRepository"])?;
                let r = s("dockerRepository")?;
                Identity::ExactRepository(ImageRef::parse_named(r).map_err(|e| e.to_string())?)
            }
            "remapIdentity" => {
                only(&["type", "prefix", "signedPrefix"])?;
                let (prefix, signed_prefix) = (s("prefix")?, s("signedPrefix")?);
                for p in [prefix, signed_prefix] {
                    if !valid_prefix(p) {
                        return Err(format!(
                            "prefix `{p}` is not a host[:port] or host[:port]/namespace"
                        ));
                    }
                }
                Identity::Remap {
                    prefix: prefix.to_string(),
                    signed_prefix: signed_prefix.to_string(),
                }
            }
            other => return Err(format!("unknown type `{other}`")),
        })
    }

    /// The `type` as policy.json spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Identity::MatchExact => "matchExact",
            Identity::MatchRepoDigestOrExact => "matchRepoDigestOrExact",
            Identity::MatchRepository => "matchRepository",
            Identity::ExactReference(_) => "exactReference",
            Identity::ExactRepository(_) => "exactRepository",
            Identity::Remap { .. } => "remapIdentity",
        }
    }

    /// Whether a signature for `signed` is accepted for pulling `intended`.
    pub fn accepts(&self, intended: &ImageRef, signed: &str) -> bool {
        let Ok(signed) = ImageRef::parse_named(signed) else {
            return false;
        };
        match self {
            Identity::MatchExact => {
                !name_only(intended)
                    && !name_only(&signed)
                    && signed.to_string() == intended.to_string()
            }
            Identity::MatchRepoDigestOrExact => repo_digest_or_exact(intended, &signed),
            Identity::MatchRepository => signed.name() == intended.name(),
            Identity::ExactReference(r) => {
                !name_only(&signed) && signed.to_string() == r.to_string()
            }
            Identity::ExactRepository(r) => signed.name() == r.name(),
            Identity::Remap {
                prefix,
                signed_prefix,
            } => {
                let name = intended.name();
                let under = name == *prefix
                    || name
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'));
                let remapped = if under {
                    match ImageRef::parse_named(&intended.to_string().replacen(
                        prefix.as_str(),
                        signed_prefix,
                        1,
                    )) {
                        Ok(r) => r,
                        Err(_) => return false,
                    }
                } else {
                    intended.clone()
                };
                repo_digest_or_exact(&remapped, &signed)
            }
        }
    }
}
