"""TLS for the clients: verification, trust on first use, and the known-hosts file.

A server's certificate is checked like this (``Session(..., tls=TlsOptions())``):

1. With ``ca`` (``--ca FILE``): it must verify against that CA file, and the
   host name must match.  Nothing else is accepted.
2. Else, if ``known_hosts`` holds a fingerprint for this ``host:port`` (a
   self-signed server trusted before), the certificate's SHA-256 fingerprint
   must be exactly that one.  If it changed, the client refuses loudly: a
   changed certificate may be someone in the middle.  (A server that moved to a
   certificate from a real CA is refused the same way: delete its line.)
3. Else it must verify against the system's CA store (and match the host).
4. Else (self-signed, or an unknown CA): trust on first use.  The session
   asks the UI (a ``TrustQuestion`` event, answered with
   ``session.trust(True|False)``), or follows ``trust="yes"|"no"``; a trusted
   fingerprint is written to ``known_hosts``.

The known-hosts file is ``known_hosts`` in the client's config directory
(``~/.config/parley/known_hosts``; ``%APPDATA%\\parley`` on Windows), one line
per server, like SSH's::

    127.0.0.1:8889 SHA256 5C:7D:76:F8:…:21:82
    [::1]:8889 SHA256 …

Fingerprints are what ``openssl x509 -noout -fingerprint -sha256`` prints, and
what the server prints at start, so they can be compared by eye.
"""
from __future__ import annotations

import hashlib
import os
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from .core import config_dir


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as colon-separated upper-case hex."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def short_fingerprint(fp: str) -> str:
    """The first 8 bytes of a fingerprint, for a status bar (``5C:7D:76:F8:12:77:79:50…``)."""
    return fp[:23] + "…" if len(fp) > 23 else fp


def default_known_hosts() -> str:
    return str(config_dir() / "known_hosts")


def host_key(host: str, port: int) -> str:
    host = host.strip().lower()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


class KnownHosts:
    """The fingerprints of servers trusted on first use, one ``host:port`` a line."""

    _lock = threading.Lock()        # two sessions in one process write it in turn

    def __init__(self, path: Optional[str] = None):
        self.path = path or default_known_hosts()

    def _read(self) -> dict[str, str]:
        out: dict[str, str] = {}
        try:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3 and parts[1].upper() == "SHA256" and not line.startswith("#"):
                        out[parts[0].lower()] = parts[2].upper()
        except (OSError, UnicodeDecodeError):
            pass
        return out

    def get(self, host: str, port: int) -> Optional[str]:
        return self._read().get(host_key(host, port))

    def add(self, host: str, port: int, fp: str) -> None:
        """Remember ``fp`` for ``host:port`` (OSError if the file cannot be written)."""
        key = host_key(host, port)
        with self._lock:
            entries = self._read()
            entries[key] = fp.upper()
            target = Path(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".known_hosts-", dir=target.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write("# Parley servers trusted on first use: host:port SHA256 fingerprint\n")
                    for k, v in sorted(entries.items()):
                        f.write(f"{k} SHA256 {v}\n")
                os.replace(tmp, target)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise


@dataclass
class TlsOptions:
    """How a session uses TLS.  ``trust`` decides about a certificate seen for the
    first time that does not verify: "ask" (a ``TrustQuestion`` event), "yes", "no"."""
    ca: Optional[str] = None
    known_hosts: Optional[str] = None
    trust: str = "ask"


@dataclass
class TlsInfo:
    """The TLS of the current connection, for a padlock and the fingerprint."""
    version: str
    fingerprint: str
    verified_by: str              # "ca" (system store or --ca) | "known_hosts" | "first use"


@dataclass
class TrustQuestion:
    """(session event) A certificate seen for the first time that does not verify:
    show the fingerprint and answer ``session.trust(True)`` or ``session.trust(False)``."""
    host: str
    port: int
    fingerprint: str
    reason: str = ""


@dataclass
class TlsRefused:
    """(session event) The server's certificate was refused; the session stops.
    ``changed``: it is not the one remembered in ``known_hosts`` for this server."""
    host: str
    port: int
    message: str
    fingerprint: str = ""
    expected: str = ""
    changed: bool = False


class TlsRefusal(Exception):
    def __init__(self, event: TlsRefused):
        super().__init__(event.message)
        self.event = event


def verifying_context(ca: Optional[str] = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def pinning_context() -> ssl.SSLContext:
    """No chain check: the fingerprint is checked against known_hosts instead."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def handshake(sock: socket.socket, ctx: ssl.SSLContext, host: str, timeout: float) -> ssl.SSLSocket:
    """Blocking TLS handshake on a connected socket, bounded by ``timeout``."""
    sock.settimeout(timeout)
    sni = None if _is_ip(host) else host
    try:
        return ctx.wrap_socket(sock, server_hostname=sni if ctx.check_hostname is False else host)
    except BaseException:
        sock.close()
        raise


def _is_ip(host: str) -> bool:
    import ipaddress
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def describe_handshake_error(e: BaseException, port: int) -> str:
    """One line for a TLS handshake that failed (not a certificate question)."""
    text = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e) or type(e).__name__
    if isinstance(e, (ssl.SSLEOFError, ConnectionResetError, ConnectionAbortedError)) or \
            "WRONG_VERSION_NUMBER" in str(text).upper() or "wrong version" in str(text).lower() \
            or "EOF" in str(text):
        return (f"TLS handshake failed ({text}); port {port} may not be the server's TLS "
                f"port (parley-server --tls-port, 8889 by default)")
    return f"TLS handshake failed: {text}"
