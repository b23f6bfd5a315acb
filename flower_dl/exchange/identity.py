"""Long-term node identities, so that a relaying server cannot swap the exchange's keys.

The exchange (:mod:`flower_dl.exchange.crypto`) seals each share for a neighbour's
X25519 key, and those keys travel through the server. An honest-but-curious
server only routes them; a server that *swaps* them (hands node 0 its own key
as "node 1's") could open what node 0 seals. A deployment closes that gap by
giving each node, in its node config:

``identity-key``
    a file with the node's own Ed25519 private key (64 hex digits), and
``peer-keys``
    a file with every node's Ed25519 public key, one ``<partition-id> <64 hex digits>``
    line per node (``#`` starts a comment).

``flower-dl keys -n N -o DIR`` writes ``node-<i>.key`` (mode 0600) for each
node and one ``peer-keys.txt`` for all. A node with an identity key publishes
its exchange key *signed*: the 32 key bytes followed by an Ed25519 signature
over the key, the node's partition-id and the run (its Flower run id and the
cell, :meth:`~flower_dl.config.RunConfig.cell_id`), so a signature from
another run or for another node does not verify either. The server relays
the 96 bytes as it relays any public key (it never reads them). A node with
``peer-keys`` accepts a peer's exchange key only if its signature verifies
under that peer's listed key, and refuses otherwise, naming the peer; without
``peer-keys`` it takes keys as they come (the simulation's behaviour, and the
docs/failures-and-privacy.md's warning). Nothing here is used in a simulation unless its node
config names the files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_SIZE = 32
SIGNATURE_SIZE = 64
LABEL = b"flower-dl exchange key v1"
PEER_KEYS_FILE = "peer-keys.txt"


class KeyRefused(ValueError):
    """A peer's exchange key that this node will not use (bad or missing signature)."""


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def _signed_text(exchange_key: bytes, partition_id: int, context: bytes) -> bytes:
    return b"|".join([LABEL, context, b"node %d" % partition_id, exchange_key])


# ------------------------------------------------------------------- files
def load_identity(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The node's Ed25519 private key from its ``identity-key`` file (64 hex digits)."""
    try:
        raw = bytes.fromhex(Path(path).expanduser().read_text().strip())
    except (OSError, ValueError) as err:
        raise ValueError(f"identity-key: {str(path)!r} cannot be read as 64 hex digits ({err})") from None
    if len(raw) != KEY_SIZE:
        raise ValueError(f"identity-key: {str(path)!r} holds {len(raw)} bytes; allowed: 32 (64 hex digits)")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_peer_keys(path: str | os.PathLike[str]) -> dict[int, Ed25519PublicKey]:
    """Partition-id -> Ed25519 public key, from a ``peer-keys`` file."""
    where = f"peer-keys: {str(path)!r}"
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except OSError as err:
        raise ValueError(f"{where} cannot be read ({err})") from None
    keys: dict[int, Ed25519PublicKey] = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            pid_text, hex_key = text.split()
            pid, raw = int(pid_text), bytes.fromhex(hex_key)
            if len(raw) != KEY_SIZE or pid < 0 or pid in keys:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{where}, line {number}: {line.strip()!r}; allowed: '<partition-id> <64 hex digits>', "
                f"each partition-id once"
            ) from None
        keys[pid] = Ed25519PublicKey.from_public_bytes(raw)
    return keys


def write_keys(num_nodes: int, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Make ``node-<i>.key`` (mode 0600) for ``i = 0..num_nodes-1`` and ``peer-keys.txt``; return their paths."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    paths, lines = [], ["# flower-dl peer keys: <partition-id> <Ed25519 public key>"]
    for pid in range(num_nodes):
        key = Ed25519PrivateKey.generate()
        path = out / f"node-{pid}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(_raw_private(key).hex() + "\n")
        paths.append(path)
        lines.append(f"{pid} {_raw_public(key.public_key()).hex()}")
    peers = out / PEER_KEYS_FILE
    peers.write_text("\n".join(lines) + "\n")
    return [*paths, peers]


# ---------------------------------------------------------- sign and check
def publish(exchange_key: bytes, partition_id: int, context: bytes, identity: Ed25519PrivateKey | None) -> bytes:
    """What a node publishes as its exchange key: the key, signed when it has an identity."""
    if identity is None:
        return exchange_key
    return exchange_key + identity.sign(_signed_text(exchange_key, partition_id, context))


def accept(published: bytes, peer: int, context: bytes, peer_keys: Mapping[int, Ed25519PublicKey] | None) -> bytes:
    """The exchange key of node ``peer`` from what the server relayed; raises :class:`KeyRefused`.

    Without ``peer_keys`` any key is taken (a signature, if present, is
    dropped unchecked). With them, the key must carry a signature that
    verifies under ``peer``'s listed key for this run.
    """
    published = bytes(published)
    key = published[:KEY_SIZE]
    if peer_keys is None:
        return key
    if peer not in peer_keys:
        raise KeyRefused(f"node {peer}'s exchange key: node {peer} is not in peer-keys; refusing to exchange with it")
    if len(published) != KEY_SIZE + SIGNATURE_SIZE:
        raise KeyRefused(f"node {peer}'s exchange key is not signed; refusing to exchange with it")
    try:
        peer_keys[peer].verify(published[KEY_SIZE:], _signed_text(key, peer, context))
    except InvalidSignature:
        raise KeyRefused(
            f"node {peer}'s exchange key does not verify against its key in peer-keys (swapped or replayed "
            f"by the relay?); refusing to exchange with it"
        ) from None
    return key
