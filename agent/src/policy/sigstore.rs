//! Cosign "simple signing" signatures, verified as containers/image's
//! `sigstoreSigned` does with public keys: the layer's base64 annotation is
//! an ECDSA P-256 signature (ASN.1 DER) over SHA-256 of the payload bytes;
//! only a payload whose signature verifies is parsed, strictly; then its
//! `docker-manifest-digest` must be the pulled digest and its
//! `docker-reference` must satisfy `signedIdentity`.

use std::fmt::Write as _;

use kmm_day1_config::ImageRef;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use serde_json::Value;

use super::{strict_json, Attachment, Identity, Keys};

/// The media type of a signature layer.
pub const SIGNATURE_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const PAYLOAD_TYPE: &str = "cosign container image signature";

/// SubjectPublicKeyInfo of an uncompressed P-256 key up to its point:
/// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused
/// bits) }, then the 65-byte point (RFC 5480).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A usable public key: its uncompressed point, and a short name for logs
/// (the first 8 bytes of the SHA-256 of its SubjectPublicKeyInfo).
#[derive(Debug, Clone)]
pub struct Key {
    point: Vec<u8>,
    pub id: String,
}

/// Parse one PEM public key; `what` names it in the error.
pub fn parse_key(pem: &[u8], what: &str) -> Result<Key, String> {
    let der = pem_public_key(pem).ok_or_else(|| format!("{what} is not a PEM `PUBLIC KEY`"))?;
    let der = der.as_slice();
    if der.len() != P256_SPKI_PREFIX.len() + 65 || !der.starts_with(&P256_SPKI_PREFIX) {
        return Err(format!(
            "{what} is not an ECDSA P-256 public key (cosign's default); kmm-day1 verifies only those"
        ));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut id = String::new();
    for b in &digest.as_ref()[..8] {
        let _ = write!(id, "{b:02x}");
    }
    Ok(Key {
        point: der[P256_SPKI_PREFIX.len()..].to_vec(),
        id,
    })
}

/// The DER of the first `PUBLIC KEY` block of a PEM text (RFC 7468).
fn pem_public_key(pem: &[u8]) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    let text = std::str::from_utf8(pem).ok()?;
    let body = &text[text.find(BEGIN)? + BEGIN.len()..];
    let body = &body[..body.find("-----END PUBLIC KEY-----")?];
    crate::auth::base64_decode(body).filter(|d| !d.is_empty())
}

/// The requirement's keys, read now (a key that cannot be used refuses the
/// image: the agent cannot tell what it would have accepted).
pub fn load_keys(keys: &Keys) -> Result<Vec<Key>, String> {
    match keys {
        Keys::Paths(paths) => paths
            .iter()
            .map(|p| {
                let what = format!("key file {}", p.display());
                let pem = std::fs::read(p).map_err(|e| format!("{what}: {e}"))?;
                parse_key(&pem, &what)
            })
            .collect(),
        Keys::Data(datas) => datas
            .iter()
            .enumerate()
            .map(|(i, d)| parse_key(d, &format!("keyData {}", i + 1)))
            .collect(),
    }
}

/// The signed claims of a verified payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Payload {
    pub digest: String,
    pub reference: String,
}

/// `v` as an object with exactly the fields `keys`.
fn exact<'a>(
    v: &'a Value,
    what: &str,
    keys: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, String> {
    let Value::Object(m) = v else {
        return Err(format!("payload `{what}` is not an object"));
    };
    if m.len() != keys.len() || !keys.iter().all(|k| m.contains_key(*k)) {
        return Err(format!(
            "payload `{what}` must have exactly {}",
            keys.join(", ")
        ));
    }
    Ok(m)
}

/// Parse a payload as containers/image does: exactly `critical` and
/// `optional`; `critical` exactly `type`, `image` and `identity`, each with
/// exactly their one field; `optional` null or an object.
pub fn parse_payload(bytes: &[u8]) -> Result<Payload, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the payload is not UTF-8".to_string())?;
    let v = strict_json(text).map_err(|e| format!("the payload is {e}"))?;
    let top = exact(&v, "", &["critical", "optional"])?;
    if !matches!(top["optional"], Value::Null | Value::Object(_)) {
        return Err("payload `optional` is not an object".into());
    }
    let critical = exact(&top["critical"], "critical", &["type", "image", "identity"])?;
    if critical["type"] != PAYLOAD_TYPE {
        return Err(format!("payload type is not `{PAYLOAD_TYPE}`"));
    }
    let image = exact(
        &critical["image"],
        "critical.image",
        &["docker-manifest-digest"],
    )?;
    let identity = exact(
        &critical["identity"],
        "critical.identity",
        &["docker-reference"],
    )?;
    let (Value::String(digest), Value::String(reference)) = (
        &image["docker-manifest-digest"],
        &identity["docker-reference"],
    ) else {
        return Err("payload digest and reference must be strings".into());
    };
    Ok(Payload {
        digest: digest.clone(),
        reference: reference.clone(),
    })
}

/// Verify one attachment; the id of the key that verified it.
fn verify(
    keys: &[Key],
    identity: &Identity,
    image: &ImageRef,
    digest: &str,
    a: &Attachment,
) -> Result<String, String> {
    let b64 = a
        .signature
        .as_deref()
        .ok_or_else(|| format!("a signature layer has no `{SIGNATURE_ANNOTATION}` annotation"))?;
    let sig = crate::auth::base64_decode(b64).ok_or("a signature is not base64")?;
    let key = keys
        .iter()
        .find(|k| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &k.point)
                .verify(&a.payload, &sig)
                .is_ok()
        })
        .ok_or_else(|| {
            format!(
                "bad signature: it does not verify with {} of the policy",
                if keys.len() == 1 {
                    "the key".to_string()
                } else {
                    format!("any of the {} keys", keys.len())
                }
            )
        })?;
    let p = parse_payload(&a.payload)?;
    if p.digest != digest {
        return Err(format!(
            "digest mismatch: the signature is for {}, the registry served {digest} (the tag moved after signing?)",
            p.digest
        ));
    }
    if !identity.accepts(image, &p.reference) {
        return Err(format!(
            "identity mismatch: the signature is for `{}`, which signedIdentity `{}` does not accept for {image}",
            p.reference,
            identity.name()
        ));
    }
    Ok(key.id.clone())
}

/// One accepted signature is enough; otherwise why none was.
pub fn accept(
    keys: &[Key],
    identity: &Identity,
    image: &ImageRef,
    digest: &str,
    attachments: &[Attachment],
) -> Result<String, String> {
    let mut reasons = Vec::new();
    for a in attachments
        .iter()
        .filter(|a| a.media_type == SIGNATURE_TYPE)
    {
        match verify(keys, identity, image, digest, a) {
            Ok(id) => return Ok(id),
            Err(e) => reasons.push(e),
        }
    }
    Err(match reasons.len() {
        0 => format!(
            "no signature: a sigstore signature is required and {} has none{}",
            digest,
            match attachments.len() {
                0 => String::new(),
                n => format!(" ({n} attachments of other types)"),
            }
        ),
        1 => reasons.remove(0),
        n => format!(
            "none of the {n} signatures is accepted: {}",
            reasons.join("; ")
        ),
    })
}
