"""A self-signed certificate for ``instab capture serve --tls``, made on first use and kept under ``OUT/tls/``.

Phones' browsers allow the camera (``getUserMedia``) only in a secure context: HTTPS,
even with a certificate the phone does not trust once the user accepts the warning.
The certificate names the addresses the server is reached at (subject alternative names).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

VALID_DAYS = 365


def _san_entries(hosts: Sequence[str]) -> list[object]:
    # cryptography is part of the optional [capture] extra: loaded here, not at import
    from cryptography import x509

    entries: list[object] = []
    for host in dict.fromkeys(["localhost", "127.0.0.1", *hosts]):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return entries


def ensure_certificate(folder: str | os.PathLike[str], hosts: Sequence[str]) -> tuple[Path, Path]:
    """``(cert.pem, key.pem)`` in ``folder``: the ones there if they name every host, else new ones.

    Parameters
    ----------
    folder : path
        Where the files are kept (created; the key is readable by its owner only).
    hosts : sequence of str
        Addresses (IP or DNS names) the certificate must be valid for; localhost is always added.
    """
    # cryptography is part of the optional [capture] extra: loaded here, not at import
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization  # [capture] extra, as above
    from cryptography.hazmat.primitives.asymmetric import ec  # [capture] extra, as above
    from cryptography.x509.oid import NameOID  # [capture] extra, as above

    folder = Path(folder)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    wanted = _san_entries(hosts)
    if cert_path.is_file() and key_path.is_file():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        still_valid = cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        if still_valid and all(entry in names for entry in wanted):
            return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "instab capture (self-signed)")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(wanted), critical=False)  # type: ignore[arg-type]
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


__all__ = [
    "VALID_DAYS",
    "ensure_certificate",
]
