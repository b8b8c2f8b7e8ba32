//! Sigstore attachments: the signatures of an image, stored by cosign in the
//! same repository under the tag `sha256-<hex>.sig` (the hex of the digest
//! the tag resolved to), as an OCI manifest whose layers are the signed
//! payloads. Fetched from the endpoint that served the image, mirror or
//! source, as containers/image does; bounded in count and size, since
//! nothing in them is trusted before the policy has checked it.

use anyhow::Result;
use serde_json::Value;

use super::{Registry, RegistryError};
use crate::oci::{
    digest_hex, sha256_digest, Descriptor, ImageSource, ResolvedImage, MEDIA_OCI_MANIFEST,
};
use crate::policy::{sigstore, Attachment};

/// Signature layers read from one attachment manifest; more is refused.
pub const MAX_SIGNATURES: usize = 64;
/// A signature payload larger than this is refused (cosign's are ~300 bytes).
pub const MAX_PAYLOAD: u64 = 64 << 10;

impl Registry {
    /// The attachments of `image` (empty when it has no `.sig` tag).
    pub fn sigstore_attachments(&mut self, image: &ResolvedImage) -> Result<Vec<Attachment>> {
        let top = image.index_digest.as_deref().unwrap_or(&image.digest);
        let tag = format!("sha256-{}.sig", digest_hex(top)?);
        let ep = self.endpoint_for(&image.source)?;
        let what = format!("signatures {}:{tag}", ep.name());
        let mut attempt = 0;
        let (bytes, media_type) = loop {
            match self.fetch_manifest(&ep, &tag, &what) {
                Ok(m) => break m,
                Err(RegistryError::NotFound { .. }) => return Ok(Vec::new()),
                Err(e) if e.retryable() => self.backoff(&mut attempt, &what, e.into())?,
                Err(e) => return Err(e.into()),
            }
        };
        let bad = |why: String| RegistryError::Other {
            endpoint: ep.name(),
            detail: format!("{what}: {why}"),
        };
        if media_type.as_deref() != Some(MEDIA_OCI_MANIFEST) {
            return Err(bad(format!(
                "served as {media_type:?}, not an OCI image manifest"
            ))
            .into());
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        let layers = match v.get("layers") {
            Some(Value::Array(l)) => l,
            _ => return Err(bad("no `layers` array".into()).into()),
        };
        if layers.len() > MAX_SIGNATURES {
            return Err(bad(format!(
                "{} layers, more than the {MAX_SIGNATURES} the agent reads",
                layers.len()
            ))
            .into());
        }
        let mut out = Vec::with_capacity(layers.len());
        for l in layers {
            let field = |k: &str| {
                l.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let media_type = field("mediaType");
            let signature = l
                .pointer(&format!(
                    "/annotations/{}",
                    sigstore::SIGNATURE_ANNOTATION.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                .map(str::to_string);
            let mut payload = Vec::new();
            // Only signatures are downloaded: other attachments
            // (attestations, SBOMs) are counted, not read.
            if media_type == sigstore::SIGNATURE_TYPE {
                let desc = Descriptor {
                    media_type: media_type.clone(),
                    digest: field("digest"),
                    size: l.get("size").and_then(Value::as_u64).unwrap_or(u64::MAX),
                };
                digest_hex(&desc.digest).map_err(|e| bad(e.to_string()))?;
                if desc.size > MAX_PAYLOAD {
                    return Err(RegistryError::TooLarge {
                        what: format!("{what}: signature payload {}", desc.digest),
                        limit: MAX_PAYLOAD,
                    }
                    .into());
                }
                self.fetch_blob(image, &desc, 0, &mut payload)?;
                let got = sha256_digest(&payload);
                if got != desc.digest {
                    return Err(RegistryError::DigestMismatch {
                        what: format!("{what}: signature payload"),
                        expected: desc.digest,
                        actual: got,
                    }
                    .into());
                }
            }
            out.push(Attachment {
                media_type,
                payload,
                signature,
            });
        }
        Ok(out)
    }
}
