"""What a secure deployment needs, made in one go: TLS certificates, SuperNode keys, flower-dl identities.

Three kinds of keys, each protecting something else:

TLS (``ca.crt``, ``superlink.crt`` / ``superlink.key``)
    The wire. The SuperLink serves its Fleet, Control and ServerAppIo APIs
    over TLS with a certificate for its host names and addresses, signed by
    a CA made here; SuperNodes and ``flwr`` trust that CA only
    (``--root-certificates``, ``root-certificates``), so nobody between them
    reads or changes the messages, and a SuperLink with a certificate from
    another CA is not talked to.
SuperNode authentication (``supernode-<i>-auth.key`` / ``.pub``)
    Who may join. With ``--enable-supernode-auth`` the SuperLink accepts
    only SuperNodes whose public key was registered (``flwr supernode
    register``); each SuperNode signs its requests with its private key
    (NIST P-384, OpenSSH format, as Flower requires).
flower-dl identities (``node-<i>.key``, ``peer-keys.txt``, :mod:`flower_dl.exchange.identity`)
    Who may read a node's exchanged samples: every node signs its exchange
    key, and a node seals its samples only for keys its peers signed, so a
    SuperLink that swaps keys is refused.

What none of them hides: the SuperLink sees the models it mixes (Flower has
no peer-to-peer runtime; decentralized averaging is emulated on it), and the
sizes of what is relayed.

Private keys are written with mode 0600 and certificates 0644; the output
folder must be new or empty (nothing is overwritten).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flower_dl.exchange import identity

DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")
"""The SuperLink certificate's names when none are given: the loopback deployment's."""
VALID_DAYS = 365
CA_FILE, CA_KEY = "ca.crt", "ca.key"
SUPERLINK_CERT, SUPERLINK_KEY = "superlink.crt", "superlink.key"


def supernode_key(pid: int) -> str:
    """File name of SuperNode ``pid``'s Flower authentication private key."""
    return f"supernode-{pid}-auth.key"


def supernode_public(pid: int) -> str:
    """File name of SuperNode ``pid``'s Flower authentication public key (what ``flwr supernode register`` takes)."""
    return f"supernode-{pid}-auth.pub"


@dataclass(frozen=True)
class SecureFiles:
    """The files of a secure deployment of ``num_nodes`` nodes, in ``folder``."""

    folder: Path
    num_nodes: int

    @property
    def ca(self) -> Path:
        return self.folder / CA_FILE

    @property
    def superlink_cert(self) -> Path:
        return self.folder / SUPERLINK_CERT

    @property
    def superlink_key(self) -> Path:
        return self.folder / SUPERLINK_KEY

    def auth_key(self, pid: int) -> Path:
        return self.folder / supernode_key(pid)

    def auth_public(self, pid: int) -> Path:
        return self.folder / supernode_public(pid)

    def identity_key(self, pid: int) -> Path:
        return self.folder / f"node-{pid}.key"

    @property
    def peer_keys(self) -> Path:
        return self.folder / identity.PEER_KEYS_FILE


def check_hosts(hosts: Sequence[str]) -> tuple[str, ...]:
    """The SuperLink's host names and addresses, refused if empty or not plain names.

    Raises
    ------
    ValueError
        Naming ``--host``, the value and what is allowed.
    """
    if not hosts:
        raise ValueError("--host: none given; allowed: one or more host names or IP addresses of the SuperLink")
    for host in hosts:
        if not host or (any(c in host for c in " /:") and not _is_ip(host)):
            raise ValueError(f"--host: {host!r} is not a host name or an IP address (no port, no scheme)")
    return tuple(dict.fromkeys(hosts))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def write_secure_files(
    num_nodes: int, out_dir: str | os.PathLike[str], hosts: Sequence[str] = DEFAULT_HOSTS
) -> SecureFiles:
    """Make a CA, a SuperLink certificate for ``hosts``, ``num_nodes`` SuperNode key pairs and flower-dl identities.

    Parameters
    ----------
    num_nodes : int
        SuperNodes (partition-ids ``0..num_nodes-1``).
    out_dir : path
        A new or empty folder (the caller checks; existing files are never overwritten).
    hosts : sequence of str
        The names and addresses SuperNodes and ``flwr`` reach the SuperLink by:
        the certificate's subject alternative names.

    Returns
    -------
    SecureFiles
        Where each file is.
    """
    hosts = check_hosts(hosts)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    files = SecureFiles(out, num_nodes)
    ca_key, ca_cert = _make_ca()
    _write(files.ca, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
    _write(out / CA_KEY, _pem_private(ca_key), private=True)
    link_key = ec.generate_private_key(ec.SECP256R1())
    link_cert = _make_server_cert(link_key, ca_key, ca_cert, hosts)
    _write(files.superlink_cert, link_cert.public_bytes(serialization.Encoding.PEM), private=False)
    _write(files.superlink_key, _pem_private(link_key), private=True)
    for pid in range(num_nodes):
        key = ec.generate_private_key(ec.SECP384R1())
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        _write(files.auth_key(pid), private, private=True)
        _write(files.auth_public(pid), public + f" flower-dl-supernode-{pid}\n".encode(), private=False)
    identity.write_keys(num_nodes, out)
    return files


def _pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, *, private: bool) -> None:
    """Write a new file (never over an existing one), 0600 if it holds a private key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=VALID_DAYS)


def _make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign server certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flower-dl deployment CA")])
    start, end = _validity()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_server_cert(
    key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, hosts: Sequence[str]
) -> x509.Certificate:
    """The SuperLink's certificate: its ``hosts`` as subject alternative names, for TLS server use only."""
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(h)) if _is_ip(h) else x509.DNSName(h) for h in hosts
    ]
    start, end = _validity()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
