"""Provenance: which code, libraries, machine and data made a result.

A results table is what goes into a paper, so every run records, in
``config.json`` (``provenance``) and in every row of a sweep's table
(:data:`flower_dl.results.columns.PROVENANCE_COLUMNS`):

* the code: flower-dl's version and, when it runs from a git checkout (an
  editable install), the commit, with ``-dirty`` appended when the checkout
  has uncommitted changes (so a table never passes off an edited tree's
  numbers as a commit's);
* the libraries (Python, flwr, torch, numpy) and the platform;
* the device each node trained on (the node says, in its train replies);
* a digest of the data: each node hashes the arrays it loaded (the shared
  dataset, or its own folder) and reports the digest when it is identified;
  the run's digest is the one value when every node holds the same dataset,
  else a hash of the per-node ones.

Nothing here imports torch or Flower: the ServerApp and the report read it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import flower_dl

_LIBRARIES: dict[str, str] = {"flwr-version": "flwr", "torch-version": "torch", "numpy-version": "numpy"}
"""Provenance column -> the distribution whose version it holds."""
SOURCE_ENV = "FLOWER_DL_SOURCE"
"""The checkout the launcher ran the app from (set for the SuperLink's processes): looked at first."""


def array_digest(*arrays: np.ndarray) -> str:
    """A short hash of arrays' shapes, dtypes and bytes (what a node's data is, not where it came from)."""
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(memoryview(a).cast("B"))  # type: ignore[arg-type]  # numpy's stub gives ndarray __buffer__ on Python >= 3.12 only
    return h.hexdigest()


def run_data_digest(per_node: Mapping[int, str]) -> str:
    """The run's data digest: the nodes' one digest when they agree (a shared dataset), else a hash of all.

    Parameters
    ----------
    per_node : mapping of int to str
        partition-id -> the digest that node reported (empty: it did not say).

    Returns
    -------
    str
        ``""`` when no node reported one.
    """
    known = {pid: d for pid, d in per_node.items() if d}
    if not known:
        return ""
    if len(set(known.values())) == 1 and len(known) == len(per_node):
        return next(iter(known.values()))
    text = ",".join(f"{pid}:{known.get(pid, '')}" for pid in sorted(per_node))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def version_of(distribution: str) -> str:
    """An installed distribution's version, or ``"not installed"``."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _source_dirs() -> list[Path]:
    """Where flower-dl's code may be checked out: the launched one, beside the imported package, an editable install's.

    A ServerApp runs from Flower's copy of the app (no ``.git`` there), so
    the launcher names the folder it launched in :data:`SOURCE_ENV`; the
    editable install records the checkout it was made from, which may be
    another one (a second worktree run with ``PYTHONPATH``).
    """
    launched = [Path(os.environ[SOURCE_ENV])] if os.environ.get(SOURCE_ENV) else []
    dirs = [*launched, Path(flower_dl.__file__).resolve().parent.parent]
    try:
        direct = metadata.distribution("flower-dl").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        direct = None
    if direct:
        url = json.loads(direct).get("url", "")
        if url.startswith("file://"):
            dirs.append(Path(url[len("file://") :]))
    return dirs


def _git(folder: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the checkout flower-dl runs from, ``-dirty`` if it has uncommitted changes; ``""`` if none."""
    for folder in _source_dirs():
        if not (folder / "pyproject.toml").exists():
            continue
        head = _git(folder, "rev-parse", "HEAD")
        if head is None:
            continue
        status = _git(folder, "status", "--porcelain")
        return head.strip() + ("-dirty" if status else "")
    return ""


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, str]:
    """The run-wide provenance columns: code, libraries and platform."""
    return {
        "flower-dl-version": version_of("flower-dl"),
        "git-commit": git_commit(),
        "python-version": platform.python_version(),
        **{column: version_of(dist) for column, dist in _LIBRARIES.items()},
        "platform": platform.platform(),
    }


def run_provenance(dataset: str, digests: Mapping[int, str], devices: Mapping[int, str]) -> dict[str, Any]:
    """``config.json``'s ``provenance``: :func:`environment`, the data and each node's device and digest."""
    nodes = sorted(set(digests) | set(devices))
    return {
        **environment(),
        "dataset": dataset,
        "data-digest": run_data_digest(digests),
        "nodes": {str(pid): {"data-digest": digests.get(pid, ""), "device": devices.get(pid, "")} for pid in nodes},
    }


def row_provenance(provenance: Mapping[str, Any], node: int) -> dict[str, str]:
    """The :data:`~flower_dl.results.columns.PROVENANCE_COLUMNS` of node ``node``'s rows, from ``config.json``'s provenance."""
    from flower_dl.results.columns import PROVENANCE_COLUMNS

    per_node = provenance.get("nodes", {}).get(str(node), {})
    out = {c: str(provenance.get(c, "")) for c in PROVENANCE_COLUMNS}
    out["device"] = str(per_node.get("device", ""))
    return out
