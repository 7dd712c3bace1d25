"""The local stack's TLS certificate: self-signed for 127.0.0.1 and localhost, made by `stack up`.

Trino serves HTTPS with it (its password authentication needs TLS, and the Python client refuses basic
authentication over HTTP); clients verify against the public half. A missing, unreadable, expired or
soon-expiring certificate, or one for other hosts, is made anew, and `stack up` says why.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from lakehouse.secrets_store import write_private

HOSTS = ("127.0.0.1", "localhost", "trino")  # trino: its name inside docker compose
VALID_DAYS = 365
RENEW_BEFORE_DAYS = 14


@dataclass(frozen=True)
class Certificate:
    key_and_cert: Path  # PEM: private key then certificate (what Trino's keystore path takes), mode 0600
    cert: Path  # PEM: the certificate alone
    trust: Path  # PEM: the system's CAs and the certificate: what clients verify with


def paths(directory: Path) -> Certificate:
    return Certificate(directory / "server.pem", directory / "ca.pem", directory / "trust.pem")


def system_bundle() -> Path:
    """The CA bundle `requests` would use: REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, else certifi's."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if os.environ.get(name) and Path(os.environ[name]).is_file():
            return Path(os.environ[name])
    import certifi

    return Path(certifi.where())


def requests_environment(trust: Path) -> dict[str, str]:
    """Environment for a process whose HTTP clients must trust the stack's certificate. `requests` lets
    REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE) override a client's own `verify` file, so that variable is
    pointed at the bundle that holds the system's CAs and ours."""
    return {"REQUESTS_CA_BUNDLE": str(trust)} if trust.exists() else {}


def problem(cert: Certificate, now: dt.datetime | None = None) -> str | None:
    """Why the certificate must be made anew, or None when it is good."""
    from cryptography import x509

    if not (cert.cert.exists() and cert.key_and_cert.exists()):
        return "there is no certificate yet"
    try:
        parsed = x509.load_pem_x509_certificate(cert.cert.read_bytes())
        names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound) as exc:
        return f"the certificate cannot be read ({exc})"
    now = now or dt.datetime.now(dt.UTC)
    if parsed.not_valid_after_utc <= now:
        return f"the certificate expired at {parsed.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if parsed.not_valid_after_utc - now < dt.timedelta(days=RENEW_BEFORE_DAYS):
        return f"the certificate expires at {parsed.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    covered = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} | set(
        names.get_values_for_type(x509.DNSName)
    )
    if not set(HOSTS) <= covered:
        return f"the certificate covers {sorted(covered)}, not {list(HOSTS)}"
    return None


def generate(cert: Certificate, now: dt.datetime | None = None, days: int = VALID_DAYS) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lakehouse local stack")])
    alt = x509.SubjectAlternativeName(
        [x509.IPAddress(ipaddress.ip_address(h)) if h[0].isdigit() else x509.DNSName(h) for h in HOSTS]
    )
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(alt, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem_cert = built.public_bytes(serialization.Encoding.PEM)
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    cert.cert.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(cert.cert.parent, 0o700)
    write_private(cert.key_and_cert, pem_key + pem_cert)
    write_private(cert.cert, pem_cert, 0o644)


def ensure(directory: Path, log) -> Certificate:
    """The certificate in `directory`, made anew (with a message saying why) when it is not good."""
    cert = paths(directory)
    why = problem(cert)
    if why:
        generate(cert)
        log(
            f"  TLS: {why}; generated a new one for {', '.join(HOSTS)} ({cert.cert}, valid {VALID_DAYS} days)"
        )
    system = system_bundle()
    bundle = (
        system.read_bytes() if system.resolve() != cert.trust.resolve() else b""
    ) + cert.cert.read_bytes()
    if not cert.trust.exists() or cert.trust.read_bytes() != bundle:
        write_private(cert.trust, bundle, 0o644)
    return cert
