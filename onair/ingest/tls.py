"""Self-signed certificate for RTMPS when the operator configured none."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
from pathlib import Path


def ensure_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    cert_path, key_path = directory / "rtmps.crt", directory / "rtmps.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    # made in a child process: the cryptography package would stay resident (about 8 MB) for one use at first start
    subprocess.run([sys.executable, "-m", "onair.ingest.tls", str(directory), host], check=True, timeout=60)
    return cert_path, key_path


def generate_certificate(directory: Path, host: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = directory / "rtmps.crt", directory / "rtmps.key"
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .sign(key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


if __name__ == "__main__":
    generate_certificate(Path(sys.argv[1]), sys.argv[2])
