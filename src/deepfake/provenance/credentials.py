"""Content Credentials (C2PA): a signed manifest inside every JPEG, PNG and MP4 the tool writes.

The manifest says, in the open standard of the Coalition for Content Provenance and Authenticity
(c2pa.org, written with the CAI's `c2pa-python`):
- `c2pa.actions`: first `c2pa.opened` (a swap opens a real picture or video, named as the ingredient) or
  `c2pa.created` (nothing was opened), then `c2pa.edited`, each with IPTC's digital source type:
  `compositeWithTrainedAlgorithmicMedia` for a swap into real media, `trainedAlgorithmicMedia` otherwise;
- `org.deepfake.provenance`: the tool and its version, the model's identity (a SHA-256 of its weights
  and config, never a path), the source's SHA-256 and title, and whether the invisible mark is on.

Signing uses the user's own certificate and key when given; otherwise a local chain made on first use in
the user's config folder ($XDG_CONFIG_HOME/deepfake or ~/.config/deepfake, 0700, the key 0600): a local
root CA and a signing certificate with the profile C2PA asks for (digitalSignature key usage, the
emailProtection extended key usage, subject and authority key identifiers). A bare self-signed
certificate is refused by the library. A locally signed manifest validates with the single status
`signingCredential.untrusted`: the file is unaltered since this tool signed it, but nobody vouches for
who ran the tool.

Writes stay atomic: the unsigned file is written under a hidden staging name, signed into a temp file and
renamed onto the output in one step (`signed_output`); a failure leaves nothing under the output's name.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from deepfake import __version__
from deepfake.errors import BadInputError, OutputError

# Output suffix -> MIME type the manifest can be embedded in.
CREDENTIAL_FORMATS: dict[str, str] = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
                                      ".mp4": "video/mp4"}
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
SOURCE_TYPES = {"composite": IPTC + "compositeWithTrainedAlgorithmicMedia",
                "trained": IPTC + "trainedAlgorithmicMedia"}
ASSERTION = "org.deepfake.provenance"
CONFIG_ENV = "XDG_CONFIG_HOME"
LOCAL_CERT = "c2pa-chain.pem"  # signing certificate, then the local root
LOCAL_KEY = "c2pa-signer.key"
LOCAL_ROOT = "c2pa-root.pem"
# The only status a locally signed, unaltered file reports; anything else means it no longer validates.
UNTRUSTED = "signingCredential.untrusted"


@dataclass
class Credential:
    """What one output's manifest says, and who signs it."""

    source: Path | None = None  # the real file that was opened (the ingredient), None when nothing was
    source_type: str = "composite"  # composite (a swap into real media) | trained (wholly generated)
    model: dict[str, str] | None = None  # model_identity(...)
    invisible_mark: str | None = None  # the payload as hex when the mark is on; None = turned off
    description: str = "face swap"
    sign_cert: Path | None = None  # the user's PEM chain (signing cert first); None = the local chain
    sign_key: Path | None = None  # its PEM private key


def config_dir() -> Path:
    """The user's config folder for this tool ($XDG_CONFIG_HOME/deepfake, else ~/.config/deepfake)."""
    base = os.environ.get(CONFIG_ENV) or str(Path.home() / ".config")
    return Path(base) / "deepfake"


def why_unsigned(path: str | Path) -> str | None:
    """None when `path`'s format carries a manifest, else the one-line reason it carries none."""
    suffix = Path(path).suffix.lower()
    if suffix in CREDENTIAL_FORMATS:
        return None
    return (f"{Path(path).name}: no Content Credentials: {suffix or 'no suffix'} is not one of the formats "
            f"they are written into here ({', '.join(sorted(set(CREDENTIAL_FORMATS)))}); the metadata label "
            "and the invisible mark still apply")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_identity(model_dir: str | Path, weights: str | Path | None = None) -> dict[str, str]:
    """The model's identity: SHA-256 of its config.json and of the weights swap uses (never a path)."""
    model_dir = Path(model_dir)
    weights = Path(weights) if weights is not None else model_dir / "autoencoder.safetensors"
    h = hashlib.sha256()
    parts = {}
    for name, p in (("config", model_dir / "config.json"), ("weights", weights)):
        if p.is_file():
            parts[name] = file_sha256(p)
            h.update(name.encode() + b"=" + parts[name].encode() + b"\n")
    return {"sha256": h.hexdigest(), "config_sha256": parts.get("config", ""),
            "weights_sha256": parts.get("weights", "")}


# ----------------------------------------------------------------------------------------------------
# Signing identities.


def _private(path: Path, data: bytes) -> None:
    """Write `data` readable by the user alone (0600), atomically."""
    from deepfake.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        os.chmod(tmp, 0o600)
        tmp.write_bytes(data)
    os.chmod(path, 0o600)


def make_local_chain(folder: Path) -> None:
    """A local root CA and a signing certificate issued by it (ECDSA P-256), written into `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "deepfake (local, unverified)")])

    def usage(sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
                             crl_sign=not sign, encipher_only=False, decipher_only=False)

    now = _dt.datetime.now(_dt.timezone.utc)
    valid = dict(not_valid_before=now - _dt.timedelta(days=1), not_valid_after=now + _dt.timedelta(days=3650))
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = name(f"deepfake local root ({os.environ.get('USER', 'user')})")
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage(False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name("deepfake local signer")).issuer_name(root_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    # The root's key is not kept: nothing else is ever issued from it.
    _private(folder / LOCAL_ROOT, root.public_bytes(pem))
    _private(folder / LOCAL_KEY, key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    _private(folder / LOCAL_CERT, leaf.public_bytes(pem) + root.public_bytes(pem))


def signing_files(credential: Credential) -> tuple[Path, Path]:
    """(chain PEM, key PEM): the user's own, or the local chain (made on first use)."""
    if credential.sign_cert or credential.sign_key:
        if not (credential.sign_cert and credential.sign_key):
            raise OutputError("signing: give both --sign-cert and --sign-key")
        for p in (credential.sign_cert, credential.sign_key):
            if not Path(p).is_file():
                raise BadInputError(p, "signing file not found")
        return Path(credential.sign_cert), Path(credential.sign_key)
    folder = config_dir()
    if not (folder / LOCAL_CERT).is_file() or not (folder / LOCAL_KEY).is_file():
        make_local_chain(folder)
    return folder / LOCAL_CERT, folder / LOCAL_KEY


def _algorithm(key_pem: bytes, key_path: Path) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise BadInputError(key_path, f"not an unencrypted PEM private key ({e})") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {256: "es256", 384: "es384", 521: "es512"}.get(key.curve.key_size, "es256")
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise BadInputError(key_path, "unsupported key type (use EC P-256/384/521, RSA or Ed25519)")


def make_signer(credential: Credential):
    import c2pa

    cert_path, key_path = signing_files(credential)
    cert, key = cert_path.read_bytes(), key_path.read_bytes()
    try:
        return c2pa.Signer.from_info(c2pa.C2paSignerInfo(_algorithm(key, key_path), cert, key, None))
    except c2pa.C2paError as e:
        raise OutputError(f"{cert_path}: cannot sign with this certificate ({e})") from None


# ----------------------------------------------------------------------------------------------------
# Writing.


def manifest_definition(title: str, fmt: str, credential: Credential) -> dict[str, Any]:
    source_type = SOURCE_TYPES[credential.source_type]
    agent = {"name": "deepfake", "version": __version__}
    opened = credential.source is not None
    first: dict[str, Any] = {"action": "c2pa.opened" if opened else "c2pa.created", "digitalSourceType": source_type,
                             "softwareAgent": agent}
    if opened:
        first["parameters"] = {"ingredientIds": ["source"]}
    record: dict[str, Any] = {
        "tool": "deepfake", "version": __version__, "synthetic": True,
        "model": credential.model or {},
        "invisible_mark": credential.invisible_mark is not None,
    }
    if credential.invisible_mark is not None:
        record["invisible_mark_payload"] = credential.invisible_mark
    if opened:
        record["source"] = {"title": credential.source.name, "sha256": file_sha256(credential.source)}
    return {
        "claim_generator_info": [agent],
        "title": title,
        "format": fmt,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [
                first,
                {"action": "c2pa.edited", "digitalSourceType": source_type, "softwareAgent": agent,
                 "description": credential.description},
            ]}},
            {"label": ASSERTION, "data": record},
        ],
    }


def sign_file(unsigned: Path, signed: Path, title: str, credential: Credential) -> None:
    """Embed a signed manifest: read `unsigned`, write the signed copy to `signed` (its format by title)."""
    import c2pa

    fmt = CREDENTIAL_FORMATS[Path(title).suffix.lower()]
    signer = make_signer(credential)
    try:
        builder = c2pa.Builder(manifest_definition(title, fmt, credential))
        if credential.source is not None:
            src = Path(credential.source)
            src_fmt = CREDENTIAL_FORMATS.get(src.suffix.lower()) or _mime(src)
            with open(src, "rb") as f:
                builder.add_ingredient({"title": src.name, "relationship": "parentOf", "label": "source"}, src_fmt, f)
        with open(unsigned, "rb") as s, open(signed, "w+b") as d:
            builder.sign(signer, fmt, s, d)
    except c2pa.C2paError as e:
        raise OutputError(f"{title}: signing the Content Credentials failed ({e})") from None
    finally:
        signer.close()


def _mime(path: Path) -> str:
    import mimetypes

    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


@contextlib.contextmanager
def signed_output(path: str | Path, credential: Credential | None) -> Iterator[Path]:
    """Yield the path to write the unsigned output to; on success it is signed into `path` in one rename.

    For a format without credentials (or credential None) the yielded path is `path` itself. A failure
    anywhere, signing included, leaves nothing under `path` (and removes the staging file)."""
    from deepfake.io.atomic import atomic_path

    path = Path(path)
    if credential is None or why_unsigned(path) is not None:
        yield path
        return
    staging = path.with_name(f".{path.stem}.unsigned{path.suffix}")
    try:
        yield staging
        with atomic_path(path) as tmp:
            sign_file(staging, tmp, path.name, credential)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()


# ----------------------------------------------------------------------------------------------------
# Reading.


@dataclass
class CredentialReport:
    present: bool = False
    valid: bool | None = None  # the signature and the hashes check out (an untrusted signer is still valid)
    tampered: bool = False  # signed, but the content or the manifest no longer matches its signature
    signer: str | None = None
    issuer: str | None = None
    trusted: bool | None = None  # signer chains to a trust anchor the reader knows
    actions: list[str] | None = None
    digital_source_type: str | None = None
    ours: dict[str, Any] | None = None  # our org.deepfake.provenance assertion
    status: list[str] | None = None  # validation codes that are not successes
    error: str | None = None  # the manifest could not be read: the reason


def read_credentials(path: str | Path) -> CredentialReport:
    """What the file's C2PA manifest says, and whether it still validates."""
    import c2pa

    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "file not found")
    try:
        reader = c2pa.Reader.try_create(str(path))
    except c2pa.C2paError as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "NotSupported" in type(e).__name__ or "not supported" in text.lower():
            return CredentialReport(error=f"{path.suffix or 'this format'} carries no C2PA manifest here")
        return CredentialReport(present=True, valid=False, tampered=True, error=f"corrupt manifest ({text})")
    if reader is None:
        return CredentialReport()
    with reader:
        store = json.loads(reader.json())
    manifest = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    codes = [s.get("code", "") for s in store.get("validation_status", []) or []]
    bad = [c for c in codes if c != UNTRUSTED]
    actions, dst, ours = [], None, None
    for a in manifest.get("assertions", []):
        if a.get("label", "").startswith("c2pa.actions"):
            for act in a.get("data", {}).get("actions", []):
                actions.append(act.get("action", "?"))
                dst = dst or act.get("digitalSourceType")
        elif a.get("label") == ASSERTION:
            ours = a.get("data")
    sig = manifest.get("signature_info", {})
    return CredentialReport(
        present=True, valid=not bad, tampered=bool(bad), signer=sig.get("common_name"), issuer=sig.get("issuer"),
        trusted=UNTRUSTED not in codes, actions=actions, digital_source_type=dst, ours=ours, status=codes,
    )
