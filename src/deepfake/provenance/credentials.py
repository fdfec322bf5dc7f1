"""Content Credentials (C2PA): a signed manifest inside every JPEG, PNG and MP4 the tool writes.

The manifest says, in the open standard of the Coalition for Content Provenance and Authenticity
(c2pa.org, written with the CAI's `c2pa-python`):
- `c2pa.actions`: first `c2pa.opened` (a swap opens a real picture or video, named as the ingredient) or
  `c2pa.created` (nothing was opened), then `c2pa.edited`, each with IPTC's digital source type:
  `compositeWithTrainedAlgorithmicMedia` for a swap into real media, `trainedAlgorithmicMedia` otherwise;
- `org.deepfake.provenance`: the tool and its version, the model's identity (a SHA-256 of its weights
  and config, never a path), the source's SHA-256 and title, and whether the invisible mark is on.

Signing (provenance/signing.py) uses the user's own certificate and key when given, otherwise a local
chain made on first use in the user's config folder. A locally signed manifest validates with the
single status `signingCredential.untrusted`: the file is unaltered since this tool signed it, but nobody
vouches for who ran the tool. Whether a signer is trusted is only checked against trust anchors the
reader is given (`read_credentials(..., trust_anchors=PEM)`); without them it is reported as not checked.

No thumbnail is embedded: the ingredient's would be a picture of the real person before the swap, and
the claim's is a second copy of the picture the file already is (alone it doubled a still's size). The
ingredient is declared by its title and format, never read from the source: reading it would also copy
in the source's own manifest, with that manifest's thumbnail. The source's SHA-256 is in our assertion.

Writes stay atomic: the unsigned file is written under a hidden staging name, signed into a temp file and
renamed onto the output in one step (`signed_output`); a failure leaves nothing under the output's name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from deepfake import __version__
from deepfake.errors import BadInputError, OutputError
from deepfake.provenance.signing import (  # noqa: F401  (re-exported: where the local chain lives)
    LOCAL_CERT,
    LOCAL_KEY,
    LOCAL_ROOT,
    config_dir,
    make_signer,
)

# Output suffix -> MIME type the manifest can be embedded in.
CREDENTIAL_FORMATS: dict[str, str] = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
                                      ".mp4": "video/mp4", ".m4v": "video/x-m4v", ".mov": "video/quicktime"}
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
SOURCE_TYPES = {"composite": IPTC + "compositeWithTrainedAlgorithmicMedia",
                "trained": IPTC + "trainedAlgorithmicMedia"}
ASSERTION = "org.deepfake.provenance"
# Builder settings: no claim or ingredient thumbnail (why: the module's docstring).
NO_THUMBNAILS = {"builder": {"thumbnail": {"enabled": False}}}
# The only status a locally signed, unaltered file reports; anything else means it no longer validates.
UNTRUSTED = "signingCredential.untrusted"
TRUSTED = "signingCredential.trusted"  # only ever reported when the reader is given trust anchors
NOT_CHECKED = "trust not checked (no trust anchors given)"


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
    definition: dict[str, Any] = {
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
    if opened:
        src = Path(credential.source)
        definition["ingredients"] = [{"title": src.name, "relationship": "parentOf", "label": "source",
                                      "format": CREDENTIAL_FORMATS.get(src.suffix.lower()) or _mime(src)}]
    return definition


def sign_file(unsigned: Path, signed: Path, title: str, credential: Credential) -> None:
    """Embed a signed manifest: read `unsigned`, write the signed copy to `signed` (its format by title)."""
    import c2pa

    fmt = CREDENTIAL_FORMATS[Path(title).suffix.lower()]
    signer = make_signer(credential.sign_cert, credential.sign_key)
    try:
        with c2pa.Context.from_dict(NO_THUMBNAILS) as context, \
                c2pa.Builder(manifest_definition(title, fmt, credential), context) as builder, \
                open(unsigned, "rb") as s, open(signed, "w+b") as d:
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
    trusted: bool | None = None  # signer chains to one of the given trust anchors; None = none given
    trust: str | None = None  # the line to show about `trusted`
    actions: list[str] | None = None
    digital_source_type: str | None = None
    ours: dict[str, Any] | None = None  # our org.deepfake.provenance assertion
    status: list[str] | None = None  # validation codes that are not successes
    error: str | None = None  # the manifest could not be read: the reason


def _trust_context(anchors: str | Path):
    """A c2pa.Context that checks the signer against the PEM bundle of root certificates `anchors`."""
    import c2pa
    from cryptography import x509

    anchors = Path(anchors)
    try:
        pem = anchors.read_bytes()
        x509.load_pem_x509_certificates(pem)
    except OSError as e:
        raise BadInputError(anchors, f"cannot read the trust anchors ({e.strerror})") from None
    except ValueError as e:
        raise BadInputError(anchors, f"not a PEM bundle of certificates ({e})") from None
    settings = {"verify": {"verify_trust": True}, "trust": {"user_anchors": pem.decode("utf-8", "replace")}}
    return c2pa.Context.from_dict(settings)


def _manifest_store(path: Path, context) -> dict[str, Any] | CredentialReport:
    """The file's manifest store as c2pa reports it, or the report of a file without a readable one."""
    import c2pa

    try:
        reader = c2pa.Reader.try_create(str(path), context=context)
    except c2pa.C2paError as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "NotSupported" in type(e).__name__ or "not supported" in text.lower():
            return CredentialReport(error=f"{path.suffix or 'this format'} carries no C2PA manifest here")
        return CredentialReport(present=True, valid=False, tampered=True, error=f"corrupt manifest ({text})")
    if reader is None:
        return CredentialReport()
    with reader:
        return json.loads(reader.json())


def read_credentials(path: str | Path, trust_anchors: str | Path | None = None) -> CredentialReport:
    """What the file's C2PA manifest says, and whether it still validates.

    `trust_anchors`: a PEM file of root certificates the signer is checked against (e.g. the C2PA trust
    list, an organisation's root, or the local chain's c2pa-root.pem). Without it trust is not checked:
    `trusted` is None, never False, since no anchor is configured by default."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "file not found")
    context = _trust_context(trust_anchors) if trust_anchors is not None else None
    try:
        store = _manifest_store(path, context)
    finally:
        if context is not None:
            context.close()
    if isinstance(store, CredentialReport):
        return store
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
    if context is None:
        trusted, trust = None, NOT_CHECKED
    else:
        successes = store.get("validation_results", {}).get("activeManifest", {}).get("success", [])
        trusted = any(s.get("code") == TRUSTED for s in successes)
        trust = "trusted signer" if trusted else "signer not under the given trust anchors"
    return CredentialReport(
        present=True, valid=not bad, tampered=bool(bad), signer=sig.get("common_name"), issuer=sig.get("issuer"),
        trusted=trusted, trust=trust, actions=actions, digital_source_type=dst, ours=ours, status=codes,
    )
