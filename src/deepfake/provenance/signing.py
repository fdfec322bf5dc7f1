"""Who signs the Content Credentials: the user's own certificate and key, or a local chain.

The local chain is made on first use in the user's config folder ($XDG_CONFIG_HOME/deepfake or
~/.config/deepfake, 0700, the key 0600): a local root CA named "deepfake local root" (no user or host
name: the chain is embedded in every signed file) and a signing certificate with the profile C2PA asks
for (digitalSignature key usage, the emailProtection extended key usage, subject and authority key
identifiers). A bare self-signed certificate is refused by the library.

The three files are made, checked and read under one lock (an flock on a file in that folder), so two
processes signing for the first time at once make one chain, and no reader sees half of a new one. A
local key that does not match its certificate (a crash between two writes, an older version's race) is
replaced by a new chain with a one-line warning; a user's own mismatched pair is a one-line error.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import logging
import os
from pathlib import Path
from typing import Iterator

from deepfake.errors import BadInputError, OutputError

log = logging.getLogger(__name__)

CONFIG_ENV = "XDG_CONFIG_HOME"
LOCAL_CERT = "c2pa-chain.pem"  # signing certificate, then the local root
LOCAL_KEY = "c2pa-signer.key"
LOCAL_ROOT = "c2pa-root.pem"  # the root alone: the trust anchor to check one's own files with
LOCAL_LOCK = ".c2pa.lock"
ROOT_NAME = "deepfake local root"
SIGNER_NAME = "deepfake local signer"
ORGANIZATION = "deepfake (local, unverified)"


def config_dir() -> Path:
    """The user's config folder for this tool ($XDG_CONFIG_HOME/deepfake, else ~/.config/deepfake)."""
    base = os.environ.get(CONFIG_ENV) or str(Path.home() / ".config")
    return Path(base) / "deepfake"


def _private(path: Path, data: bytes) -> None:
    """Write `data` readable by the user alone (0600), atomically."""
    from deepfake.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        os.chmod(tmp, 0o600)
        tmp.write_bytes(data)
    os.chmod(path, 0o600)


def make_local_chain(folder: Path) -> None:
    """A local root CA and a signing certificate issued by it (ECDSA P-256), written into `folder`.

    Call it under `_chain_lock(folder)`: the three files are written one after another."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)])

    def usage(sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
                             crl_sign=not sign, encipher_only=False, decipher_only=False)

    now = _dt.datetime.now(_dt.timezone.utc)
    start, end = now - _dt.timedelta(days=1), now + _dt.timedelta(days=3650)
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = name(ROOT_NAME)
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage(False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name(SIGNER_NAME)).issuer_name(root_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
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


@contextlib.contextmanager
def _chain_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder`'s local chain (released when the process dies)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(folder / LOCAL_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def mismatch(cert_pem: bytes, key_pem: bytes) -> str | None:
    """None when `key_pem` is the private key of the chain's first certificate, else why not."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as e:
        return f"the certificate is not a PEM certificate chain ({e})"
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        return f"not an unencrypted PEM private key ({e})"
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if chain[0].public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        return "not the private key of the certificate (their public keys differ)"
    return None


def _local_mismatch(folder: Path) -> str | None:
    """None when the local chain is whole and consistent, else why not."""
    try:
        cert, key, root = ((folder / n).read_bytes() for n in (LOCAL_CERT, LOCAL_KEY, LOCAL_ROOT))
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if not cert.endswith(root):
        return f"{LOCAL_CERT} does not end with {LOCAL_ROOT}"
    return mismatch(cert, key)


def signing_material(sign_cert: Path | None = None, sign_key: Path | None = None) -> tuple[Path, bytes, Path, bytes]:
    """(chain path, chain PEM, key path, key PEM): the user's own pair, or the local chain.

    The local chain is made on first use, and made anew when its key does not match its certificate;
    the user's own pair is never replaced: a mismatch is a BadInputError."""
    if sign_cert or sign_key:
        if not (sign_cert and sign_key):
            raise OutputError("signing: give both --sign-cert and --sign-key")
        for p in (sign_cert, sign_key):
            if not Path(p).is_file():
                raise BadInputError(p, "signing file not found")
        cert, key = Path(sign_cert).read_bytes(), Path(sign_key).read_bytes()
        why = mismatch(cert, key)
        if why:
            raise BadInputError(sign_key, f"cannot sign with {sign_cert}: {why}")
        return Path(sign_cert), cert, Path(sign_key), key
    folder = config_dir()
    cert_path, key_path = folder / LOCAL_CERT, folder / LOCAL_KEY
    with _chain_lock(folder):
        if cert_path.is_file() or key_path.is_file():
            why = _local_mismatch(folder)
            if why:
                log.warning("%s: local signing chain is broken (%s); made a new one", folder, why)
                make_local_chain(folder)
        else:
            make_local_chain(folder)
        # Read under the lock: another process may be replacing a broken chain.
        return cert_path, cert_path.read_bytes(), key_path, key_path.read_bytes()


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


def make_signer(sign_cert: Path | None = None, sign_key: Path | None = None):
    """A c2pa.Signer for the user's own pair, or for the local chain."""
    import c2pa

    cert_path, cert, key_path, key = signing_material(sign_cert, sign_key)
    try:
        return c2pa.Signer.from_info(c2pa.C2paSignerInfo(_algorithm(key, key_path), cert, key, None))
    except c2pa.C2paError as e:
        raise OutputError(f"{cert_path}: cannot sign with this certificate ({e})") from None
