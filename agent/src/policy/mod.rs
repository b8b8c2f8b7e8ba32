//! The node's image signature policy, applied to driver images before any
//! of their bytes are used: `/etc/containers/policy.json`
//! (containers-policy.json(5)) and the `use-sigstore-attachments` switch of
//! `/etc/containers/registries.d` (containers-registries.d(5)), read and
//! evaluated as containers/image does for CRI-O and podman on the same
//! node, so a node that refuses an unsigned pod also refuses an unsigned
//! kernel module (docs/security.md#image-signatures).
//!
//! - Only the `docker` transport's scopes and `default` apply: the agent
//!   pulls from registries. The scope is the longest match of the image's
//!   own reference: `host/ns/repo:tag` (or `@digest`), `host/ns/repo`,
//!   `host/ns`, `host`, `*.domain` suffixes, the transport's `""`, then
//!   `default`. Every requirement of that scope must allow the image.
//! - Requirements: `insecureAcceptAnything`, `reject`, and `sigstoreSigned`
//!   with public keys (`keyPath`, `keyPaths`, `keyData`, `keyDatas`; ECDSA
//!   P-256, cosign's default) and every `signedIdentity`. `signedBy` (GPG),
//!   `signedBaseLayer` and the Fulcio, Rekor and PKI forms of
//!   `sigstoreSigned` are parsed and refused when they apply: the agent
//!   cannot evaluate them, so it fails closed.
//! - A policy file that cannot be read or parsed (as strictly as
//!   containers/image: unknown and duplicate keys are errors) stops every
//!   pull. No policy file: images are not verified, as before, and
//!   `status` says so.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Result;
use kmm_day1_config::ImageRef;
use serde_json::{Map, Value};

use crate::oci::ResolvedImage;
use crate::registry::Registry;

mod identity;
pub mod registries_d;
pub mod sigstore;

pub use identity::Identity;

/// Where CRI-O and podman read the policy on RHCOS.
pub const POLICY_FILE: &str = "/etc/containers/policy.json";
pub const REGISTRIES_D: &str = "/etc/containers/registries.d";
/// Policy and registries.d files larger than this are refused unread.
const MAX_FILE: u64 = 1 << 20;

/// Why an image was not allowed, or why the policy could not be used.
/// Callers tell these apart from network failures with `downcast_ref`.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy or registries.d cannot be used: no image is pulled.
    #[error(
        "{file}: {why}; no image is pulled until it is fixed (docs/security.md#image-signatures)"
    )]
    Unusable { file: String, why: String },
    /// The image does not satisfy its scope's requirements.
    #[error("{image} is refused by {file} ({scope}): {why}")]
    Refused {
        image: String,
        file: String,
        scope: String,
        why: String,
    },
}

/// One requirement of a scope.
#[derive(Debug)]
pub enum Requirement {
    InsecureAcceptAnything,
    Reject,
    SigstoreSigned {
        keys: Keys,
        identity: Identity,
    },
    /// Parsed, never evaluated: refused when it applies, with this reason.
    Unsupported(&'static str),
}

/// The public keys of a `sigstoreSigned` requirement, read when it applies
/// (as containers/image does: a key file of an unrelated scope may be absent).
#[derive(Debug)]
pub enum Keys {
    Paths(Vec<PathBuf>),
    /// `keyData`/`keyDatas`, already base64-decoded (PEM bytes).
    Data(Vec<Vec<u8>>),
}

/// A parsed policy.json.
#[derive(Debug)]
pub struct Policy {
    pub file: PathBuf,
    default: Vec<Requirement>,
    /// The `docker` transport's scopes; `""` is the transport's default.
    /// A list, not a map: scopes are unique (duplicate keys are refused),
    /// few, and one more map type costs the static agent bytes.
    docker: Vec<(String, Vec<Requirement>)>,
}

/// A signature attached to an image (one layer of its `sha256-<hex>.sig`
/// manifest), as the registry served it: nothing in it is trusted yet.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub media_type: String,
    pub payload: Vec<u8>,
    /// The layer's `dev.cosignproject.cosign/signature` annotation.
    pub signature: Option<String>,
}

/// What the policy decided for an image it allows, for the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub scope: String,
    /// `insecureAcceptAnything`, or which key verified the signature.
    pub by: String,
    /// Some requirement checked a signature.
    pub signed: bool,
}

fn unusable(file: &Path, why: impl fmt::Display) -> anyhow::Error {
    PolicyError::Unusable {
        file: file.display().to_string(),
        why: why.to_string(),
    }
    .into()
}

/// Read a small file whole; `None` when it does not exist.
pub(crate) fn read_capped(path: &Path) -> Result<Option<String>> {
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unusable(path, e)),
    };
    let mut text = String::new();
    f.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| unusable(path, e))?;
    if text.len() as u64 > MAX_FILE {
        return Err(unusable(path, format!("larger than {MAX_FILE} bytes")));
    }
    Ok(Some(text))
}

impl Policy {
    /// The node's policy at `path`; `None` when there is no such file.
    pub fn load(path: &Path) -> Result<Option<Policy>> {
        let Some(text) = read_capped(path)? else {
            return Ok(None);
        };
        Policy::parse(&text, path)
            .map(Some)
            .map_err(|why| unusable(path, why))
    }

    pub fn parse(text: &str, file: &Path) -> Result<Policy, String> {
        let v = strict_json(text)?;
        let top = fields(&v, "the policy", &["default", "transports"])?;
        let default = requirements(
            top.get("default")
                .ok_or("`default` is missing (containers-policy.json(5) requires it)")?,
            "`default`",
        )?;
        let mut docker = Vec::new();
        if let Some(t) = top.get("transports") {
            let Value::Object(transports) = t else {
                return Err("`transports` is not an object".into());
            };
            // Every transport's requirements must parse, as CRI-O reads
            // them: a file it refuses is one the agent refuses too.
            for (name, scopes) in transports {
                let Value::Object(scopes) = scopes else {
                    return Err(format!("transport `{name}` is not an object of scopes"));
                };
                for (scope, reqs) in scopes {
                    let what = format!("`transports.{name}` scope `{scope}`");
                    let reqs = requirements(reqs, &what)?;
                    if name == "docker" {
                        docker.push((scope.clone(), reqs));
                    }
                }
            }
        }
        Ok(Policy {
            file: file.to_path_buf(),
            default,
            docker,
        })
    }

    fn scope(&self, name: &str) -> Option<&[Requirement]> {
        self.docker
            .iter()
            .find(|(s, _)| s == name)
            .map(|(_, r)| r.as_slice())
    }

    /// The requirements for `image` and the name of the scope they came from.
    pub fn requirements_for(&self, image: &ImageRef) -> (String, &[Requirement]) {
        for scope in std::iter::once(identity_scope(image)).chain(namespaces(image)) {
            if let Some(r) = self.scope(&scope) {
                return (format!("docker scope `{scope}`"), r);
            }
        }
        match self.scope("") {
            Some(r) => ("docker scope `\"\"`".to_string(), r),
            None => ("`default`".to_string(), &self.default),
        }
    }

    /// Decide whether `image` (as the config names it), whose tag or digest
    /// resolved to the top-level manifest `digest`, may be used. `signatures`
    /// fetches its attachments, once, only when a requirement needs them;
    /// `None` from it means registries.d says not to look. A refusal is a
    /// [`PolicyError::Refused`] inside the error; a failure to fetch is the
    /// fetch's own error.
    pub fn check(
        &self,
        image: &ImageRef,
        digest: &str,
        signatures: &mut dyn FnMut() -> Result<Option<Vec<Attachment>>>,
    ) -> Result<Allowed> {
        let (scope, reqs) = self.requirements_for(image);
        let refuse = |why: String| -> anyhow::Error {
            PolicyError::Refused {
                image: image.to_string(),
                file: self.file.display().to_string(),
                scope: scope.clone(),
                why,
            }
            .into()
        };
        let mut by = Vec::new();
        let mut fetched: Option<Vec<Attachment>> = None;
        for req in reqs {
            match req {
                Requirement::InsecureAcceptAnything => {
                    by.push("insecureAcceptAnything".to_string())
                }
                Requirement::Reject => return Err(refuse("the requirement is `reject`".into())),
                Requirement::Unsupported(why) => return Err(refuse((*why).into())),
                Requirement::SigstoreSigned { keys, identity } => {
                    let keys = sigstore::load_keys(keys).map_err(refuse)?;
                    let sigs = match &mut fetched {
                        Some(s) => s,
                        None => fetched.insert(signatures()?.ok_or_else(|| {
                            refuse(format!(
                                "no signature was looked for: {REGISTRIES_D} does not set `use-sigstore-attachments: true` for this image's registry (OpenShift sets it for each ClusterImagePolicy scope)"
                            ))
                        })?),
                    };
                    let key =
                        sigstore::accept(&keys, identity, image, digest, sigs).map_err(refuse)?;
                    by.push(format!("sigstoreSigned (key {key})"));
                }
            }
        }
        if by.is_empty() {
            // Parsing refuses empty lists; this is the evaluation's own guard.
            return Err(refuse("the scope has no requirements".into()));
        }
        Ok(Allowed {
            scope,
            signed: fetched.is_some(),
            by: by.join(", "),
        })
    }
}

/// The node's policy.json and registries.d, read together under `root`
/// (`/` on a node).
#[derive(Debug)]
pub struct NodePolicy {
    /// `None`: the node has no policy.json; images are not verified.
    pub policy: Option<Policy>,
    pub attachments: registries_d::Attachments,
}

impl NodePolicy {
    pub fn load(root: &Path) -> Result<NodePolicy> {
        NodePolicy::load_files(
            &root.join(&POLICY_FILE[1..]),
            &root.join(&REGISTRIES_D[1..]),
        )
    }

    /// `policy` and `registries_d` where `verify --policy` points.
    pub fn load_files(policy: &Path, registries_d: &Path) -> Result<NodePolicy> {
        let policy = Policy::load(policy)?;
        let attachments = match &policy {
            Some(_) => registries_d::Attachments::load(registries_d)?,
            None => registries_d::Attachments::default(),
        };
        Ok(NodePolicy {
            policy,
            attachments,
        })
    }

    /// The policy's decision for `image` (the config's reference), which
    /// `reg` resolved to `resolved`; `None` without a policy.json.
    /// Signatures are looked for only where registries.d enables them for
    /// the endpoint that served the image (a mirror's own reference, as
    /// containers/image does), and read from that endpoint.
    pub fn check_pull(
        &self,
        image: &ImageRef,
        resolved: &ResolvedImage,
        reg: &mut Registry,
    ) -> Result<Option<Allowed>> {
        let Some(p) = &self.policy else {
            return Ok(None);
        };
        let physical = ImageRef::parse(&format!(
            "{}{}",
            resolved.source,
            &identity_scope(image)[image.name().len()..]
        ))
        .unwrap_or_else(|_| image.clone());
        let look = self.attachments.enabled(&physical);
        let top = resolved.index_digest.as_deref().unwrap_or(&resolved.digest);
        p.check(image, top, &mut || {
            if look {
                reg.sigstore_attachments(resolved).map(Some)
            } else {
                Ok(None)
            }
        })
        .map(Some)
    }

    /// Whether `image` may be used without asking its registry: no policy,
    /// or its scope accepts anything. Then a digest-pinned image already in
    /// the store is used offline; otherwise the registry is asked, for the
    /// signatures (and a `reject` is reported from there).
    pub fn accepts_offline(&self, image: &ImageRef) -> bool {
        self.policy.as_ref().is_none_or(|p| {
            p.requirements_for(image)
                .1
                .iter()
                .all(|r| matches!(r, Requirement::InsecureAcceptAnything))
        })
    }

    /// The `signatures:` line of `status`.
    pub fn status_line(root: &Path) -> String {
        match NodePolicy::load(root) {
            Ok(NodePolicy { policy: None, .. }) => format!(
                "not verified: {POLICY_FILE} does not exist, so driver images are used unsigned, as container images are"
            ),
            Ok(NodePolicy {
                policy: Some(p), ..
            }) => format!(
                "{POLICY_FILE} applies to driver images ({} docker scopes; the last pull says what it decided)",
                p.docker.len()
            ),
            Err(e) => format!("{e:#}"),
        }
    }
}

/// containers/image's `PolicyConfigurationIdentity` of a docker reference:
/// `name:tag`, or `name@digest` for a digest (what is pulled then).
pub fn identity_scope(image: &ImageRef) -> String {
    match (&image.digest, &image.tag) {
        (Some(d), _) => format!("{}@{d}", image.name()),
        (None, Some(t)) => format!("{}:{t}", image.name()),
        (None, None) => image.name(),
    }
}

/// `PolicyConfigurationNamespaces`: the name, each parent namespace, the
/// host, then `*.` and the host (port dropped) without its first labels.
pub fn namespaces(image: &ImageRef) -> Vec<String> {
    let mut out = Vec::new();
    let mut name = image.name();
    loop {
        out.push(name.clone());
        match name.rfind('/') {
            Some(i) => name.truncate(i),
            None => break,
        }
    }
    let mut host = name.split(':').next().unwrap_or_default();
    while let Some((_, rest)) = host.split_once('.') {
        out.push(format!("*.{rest}"));
        host = rest;
    }
    out
}

/// `text` as JSON, refusing duplicate keys anywhere (serde_json keeps the
/// last; containers/image refuses the file, and so does the agent: a
/// second `default` must not quietly win).
pub(crate) fn strict_json(text: &str) -> Result<Value, String> {
    // `from_slice`: the one serde_json parser the agent already carries.
    let v: Value =
        serde_json::from_slice(text.as_bytes()).map_err(|e| format!("not valid JSON: {e}"))?;
    if let Some(k) = duplicate_key(text) {
        return Err(format!("the key `{k}` appears twice in one object"));
    }
    Ok(v)
}

/// The first key repeated within one object of `text` (valid JSON).
fn duplicate_key(text: &str) -> Option<String> {
    let b = text.as_bytes();
    // One entry per open bracket: the keys seen, for objects.
    let mut stack: Vec<Option<BTreeSet<String>>> = Vec::new();
    let mut want_key = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' => {
                stack.push(Some(BTreeSet::new()));
                want_key = true;
            }
            b'[' => {
                stack.push(None);
                want_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                want_key = false;
            }
            b',' => want_key = matches!(stack.last(), Some(Some(_))),
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if want_key {
                    let Ok(Value::String(key)) = serde_json::from_slice(b.get(start..=i)?) else {
                        return None;
                    };
                    if let Some(Some(keys)) = stack.last_mut() {
                        if !keys.insert(key.clone()) {
                            return Some(key);
                        }
                    }
                    want_key = false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `v` as an object with no keys besides `allowed`.
fn fields<'a>(
    v: &'a Value,
    what: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, String> {
    let Value::Object(m) = v else {
        return Err(format!("{what} is not a JSON object"));
    };
    if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("{what}: unknown key `{k}`"));
    }
    Ok(m)
}

fn string<'a>(m: &'a Map<String, Value>, key: &str, what: &str) -> Result<Option<&'a str>, String> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{what}: `{key}` is not a string")),
    }
}

fn strings(m: &Map<String, Value>, key: &str, what: &str) -> Result<Option<Vec<String>>, String> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(format!("{what}: `{key}` is not an array of strings")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(format!("{what}: `{key}` is not an array of strings")),
    }
}

fn requirements(v: &Value, what: &str) -> Result<Vec<Requirement>, String> {
    let Value::Array(list) = v else {
        return Err(format!("{what} is not an array of requirements"));
    };
    if list.is_empty() {
        return Err(format!("{what} is an empty list of requirements"));
    }
    list.iter().map(|r| requirement(r, what)).collect()
}

const SIGSTORE_KEYS: [&str; 12] = [
    "type",
    "keyPath",
    "keyPaths",
    "keyData",
    "keyDatas",
    "fulcio",
    "rekorPublicKeyPath",
    "rekorPublicKeyPaths",
    "rekorPublicKeyData",
    "rekorPublicKeyDatas",
    "pki",
    "signedIdentity",
];

fn requirement(v: &Value, what: &str) -> Result<Requirement, String> {
    let Value::Object(m) = v else {
        return Err(format!("{what}: a requirement is not a JSON object"));
    };
    let ty =
        string(m, "type", what)?.ok_or_else(|| format!("{what}: a requirement has no `type`"))?;
    let what = &format!("{what} requirement `{ty}`");
    Ok(match ty {
        "insecureAcceptAnything" => {
            fields(v, what, &["type"])?;
            Requirement::InsecureAcceptAnything
        }
        "reject" => {
            fields(v, what, &["type"])?;
            Requirement::Reject
        }
        "signedBy" => {
            fields(
                v,
                what,
                &[
                    "type",
                    "keyType",
                    "keyPath",
                    "keyPaths",
                    "keyData",
                    "signedIdentity",
                ],
            )?;
            Requirement::Unsupported(
                "it requires a `signedBy` (GPG) signature, which kmm-day1 does not verify; sign the driver image with cosign and require `sigstoreSigned` for its scope",
            )
        }
        "signedBaseLayer" => {
            fields(v, what, &["type", "baseLayerIdentity"])?;
            Requirement::Unsupported(
                "it requires `signedBaseLayer`, which containers/image does not implement either",
            )
        }
        "sigstoreSigned" => sigstore_signed(v, what)?,
        other => return Err(format!("{what}: unknown requirement type `{other}`")),
    })
}

fn sigstore_signed(v: &Value, what: &str) -> Result<Requirement, String> {
    let m = fields(v, what, &SIGSTORE_KEYS)?;
    let sources = [
        "keyPath", "keyPaths", "keyData", "keyDatas", "fulcio", "pki",
    ];
    if sources.iter().filter(|k| m.contains_key(**k)).count() != 1 {
        return Err(format!(
            "{what}: exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio and pki must be given"
        ));
    }
    let identity = match m.get("signedIdentity") {
        None => Identity::MatchRepoDigestOrExact,
        Some(i) => Identity::parse(i).map_err(|e| format!("{what}: `signedIdentity`: {e}"))?,
    };
    let rekor = m.keys().any(|k| k.starts_with("rekorPublicKey"));
    if m.contains_key("fulcio") || m.contains_key("pki") || rekor {
        return Ok(Requirement::Unsupported(
            "it requires a Fulcio, Rekor or PKI-verified sigstore signature, which kmm-day1 does not verify; require `sigstoreSigned` with `keyPath` or `keyData` (a cosign public key) for its scope",
        ));
    }
    let keys = if let Some(p) = string(m, "keyPath", what)? {
        Keys::Paths(vec![PathBuf::from(p)])
    } else if let Some(ps) = strings(m, "keyPaths", what)? {
        Keys::Paths(ps.into_iter().map(PathBuf::from).collect())
    } else {
        // JSON []byte in Go: base64 of the PEM text.
        let datas = match string(m, "keyData", what)? {
            Some(d) => vec![d.to_string()],
            None => strings(m, "keyDatas", what)?.unwrap_or_default(),
        };
        Keys::Data(
            datas
                .iter()
                .map(|d| {
                    crate::auth::base64_decode(d)
                        .ok_or_else(|| format!("{what}: a key's data is not base64"))
                })
                .collect::<Result<_, _>>()?,
        )
    };
    let n = match &keys {
        Keys::Paths(p) => p.len(),
        Keys::Data(d) => d.len(),
    };
    if n == 0 {
        return Err(format!("{what}: the list of keys is empty"));
    }
    Ok(Requirement::SigstoreSigned { keys, identity })
}

#[cfg(test)]
mod tests;
