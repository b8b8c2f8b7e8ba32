#!/usr/bin/env python3
"""Cosign-layout signatures for the tests, made by something that is not the
agent: Python's `cryptography` signs, this script pushes over the registry's
plain HTTP API on 127.0.0.1. The layout is the one containers/image reads
with `use-sigstore-attachments: true`: an OCI image manifest tagged
`sha256-<hex>.sig` in the image's repository, one layer per signature, of
type application/vnd.dev.cosign.simplesigning.v1+json, whose blob is the
signed payload and whose `dev.cosignproject.cosign/signature` annotation is
the base64 ECDSA signature of that blob.

  cosign-sign.py keygen PREFIX [--curve p256|p384]
      PREFIX.key (PKCS#8 PEM) and PREFIX.pub (SubjectPublicKeyInfo PEM).
  cosign-sign.py sign KEY FILE
      Print the base64 signature of FILE's bytes (for fixtures).
  cosign-sign.py payload DIGEST REFERENCE
      Print the payload cosign signs for DIGEST as REFERENCE.
  cosign-sign.py push HOST REPO DIGEST [--sign KEY REFERENCE]...
                 [--payload-digest D] [--other N] [--pad BYTES]
      Replace the signatures of REPO@DIGEST on HOST (127.0.0.1:PORT, plain
      HTTP) with one layer per --sign: a payload for D (default DIGEST) and
      REFERENCE, signed by KEY. --other adds N attachments of another type
      (as attestations would be); --pad grows each payload's `optional`
      object by BYTES bytes.
"""

import argparse
import base64
import hashlib
import http.client
import json
import sys
import urllib.parse

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OTHER_TYPE = "application/vnd.dsse.envelope.v1+json"


def keygen(prefix, curve):
    key = ec.generate_private_key(ec.SECP256R1() if curve == "p256" else ec.SECP384R1())
    with open(prefix + ".key", "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(prefix + ".pub", "wb") as f:
        f.write(
            key.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )


def sign_bytes(key_path, data):
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    # DER-encoded ECDSA over SHA-256, as cosign signs with a P-256 key.
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def payload(digest, reference, pad=0):
    optional = {"pad": "x" * pad} if pad else None
    doc = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": optional,
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


class Registry:
    def __init__(self, host):
        if not host.startswith("127."):
            sys.exit(f"cosign-sign.py: {host}: only a registry on 127.0.0.0/8 is pushed to")
        self.host = host

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(self.host, timeout=30)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if resp.status >= 300:
            sys.exit(f"cosign-sign.py: {method} {path}: HTTP {resp.status}: {data[:200]!r}")
        return resp, data

    def blob(self, repo, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        resp, _ = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        loc = urllib.parse.urlsplit(resp.getheader("Location"))
        query = (loc.query + "&" if loc.query else "") + "digest=" + urllib.parse.quote(digest)
        self.request(
            "PUT",
            f"{loc.path}?{query}",
            body=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        return {"mediaType": None, "digest": digest, "size": len(data)}

    def manifest(self, repo, tag, doc):
        self.request(
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            body=json.dumps(doc).encode(),
            headers={"Content-Type": OCI_MANIFEST},
        )


def push(args):
    reg = Registry(args.host)
    layers = []
    for key, reference in args.sign or []:
        data = payload(args.payload_digest or args.digest, reference, args.pad)
        desc = reg.blob(args.repo, data)
        desc["mediaType"] = SIGNATURE_TYPE
        desc["annotations"] = {ANNOTATION: sign_bytes(key, data)}
        layers.append(desc)
    if args.other:
        other = reg.blob(args.repo, b'{"payloadType":"test","payload":"","signatures":[]}')
        other["mediaType"] = OTHER_TYPE
        layers.extend(dict(other) for _ in range(args.other))
    config = reg.blob(
        args.repo,
        json.dumps(
            {
                "architecture": "",
                "os": "",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
            }
        ).encode(),
    )
    config["mediaType"] = OCI_CONFIG
    hex_ = args.digest.split(":", 1)[1]
    reg.manifest(
        args.repo,
        f"sha256-{hex_}.sig",
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers},
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen")
    k.add_argument("prefix")
    k.add_argument("--curve", choices=["p256", "p384"], default="p256")
    s = sub.add_parser("sign")
    s.add_argument("key")
    s.add_argument("file")
    y = sub.add_parser("payload")
    y.add_argument("digest")
    y.add_argument("reference")
    u = sub.add_parser("push")
    u.add_argument("host")
    u.add_argument("repo")
    u.add_argument("digest")
    u.add_argument("--sign", nargs=2, action="append", metavar=("KEY", "REFERENCE"))
    u.add_argument("--payload-digest")
    u.add_argument("--other", type=int, default=0)
    u.add_argument("--pad", type=int, default=0)
    args = p.parse_args()
    if args.cmd == "keygen":
        keygen(args.prefix, args.curve)
    elif args.cmd == "sign":
        with open(args.file, "rb") as f:
            print(sign_bytes(args.key, f.read()))
    elif args.cmd == "payload":
        sys.stdout.buffer.write(payload(args.digest, args.reference))
    else:
        push(args)


if __name__ == "__main__":
    main()
