"""The server's TLS certificate: a given one, or a self-signed one made on first start.

    cert, key, made = self_signed(data_dir)       # DATA_DIR/tls-cert.pem, tls-key.pem
    ctx = transports.tls.server_context(cert, key)
    fingerprint(cert)                              # "AB:CD:…" (SHA-256 of the DER), as
                                                   # `openssl x509 -fingerprint -sha256` shows it

A self-signed certificate is made with the ``cryptography`` package if it is
installed (``pip install 'parley[tls]'``), else with the ``openssl`` command if
it is on the PATH; without either, ``CertError`` says so in one line.  It is
made once and reused on later starts, so clients that trusted its fingerprint
keep trusting it.  The key file is readable by its owner only.
"""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
from typing import Iterable

CERT_FILE = "tls-cert.pem"
KEY_FILE = "tls-key.pem"
DAYS = 3650

HINT = ("a self-signed certificate needs the 'cryptography' package (pip install "
        "'parley[tls]') or the openssl command on the PATH; or give --tls-cert and --tls-key")


class CertError(Exception):
    """A certificate that cannot be made or read; the message is one line for the operator."""


def fingerprint_der(der: bytes) -> str:
    """SHA-256 of a DER certificate as colon-separated upper-case hex."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def fingerprint(cert_path: str) -> str:
    """The SHA-256 fingerprint of the first certificate in a PEM file."""
    try:
        with open(cert_path, encoding="ascii") as f:
            pem = f.read()
        begin = pem.index("-----BEGIN CERTIFICATE-----")
        end = pem.index("-----END CERTIFICATE-----", begin) + len("-----END CERTIFICATE-----")
        return fingerprint_der(ssl.PEM_cert_to_DER_cert(pem[begin:end]))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CertError(f"cannot read the certificate {cert_path}: {e}") from None


def default_names() -> list[str]:
    """Names and addresses the self-signed certificate is made for."""
    names = ["localhost", "127.0.0.1", "::1"]
    host = socket.gethostname()
    if host and host not in names:
        names.append(host)
    return names


def self_signed(data_dir: str, names: Iterable[str] = ()) -> tuple[str, str, bool]:
    """(cert path, key path, made now?): the certificate in ``data_dir``, made if missing."""
    cert = os.path.join(data_dir, CERT_FILE)
    key = os.path.join(data_dir, KEY_FILE)
    if os.path.exists(cert) and os.path.exists(key):
        return cert, key, False
    names = list(dict.fromkeys(list(names) or default_names()))
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as e:
        raise CertError(f"cannot create {data_dir}: {e.strerror or e}") from None
    try:
        import cryptography  # noqa: F401
    except ImportError:
        if shutil.which("openssl") is None:
            raise CertError(HINT) from None
        _make_with_openssl(cert, key, names)
    else:
        _make_with_cryptography(cert, key, names)
    return cert, key, True


def _split(names: list[str]) -> tuple[list[str], list[str]]:
    dns, ips = [], []
    for n in names:
        try:
            ips.append(str(ipaddress.ip_address(n)))
        except ValueError:
            dns.append(n)
    return dns, ips


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _make_with_cryptography(cert_path: str, key_path: str, names: list[str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    dns, ips = _split(names)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0] if dns else "parley"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Parley (self-signed)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=DAYS))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def _make_with_openssl(cert_path: str, key_path: str, names: list[str]) -> None:
    dns, ips = _split(names)
    san = ",".join([f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips])
    d = os.path.dirname(key_path)
    fd, tmp_key = tempfile.mkstemp(prefix=".tls-key-", dir=d)
    os.close(fd)
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", tmp_key, "-out", cert_path, "-days", str(DAYS),
             "-subj", f"/CN={dns[0] if dns else 'parley'}/O=Parley (self-signed)",
             "-addext", f"subjectAltName={san}"],
            check=True, capture_output=True, timeout=60)
        with open(tmp_key, "rb") as f:
            _write_private(key_path, f.read())
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", b"") or b""
        raise CertError(f"openssl could not make a certificate: "
                        f"{detail.decode(errors='replace').strip() or e}") from None
    finally:
        try:
            os.unlink(tmp_key)
        except OSError:
            pass
