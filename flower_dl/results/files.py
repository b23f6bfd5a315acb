"""Files a run leaves behind: written atomically, into folders checked before anything starts.

Nothing a user produced may be lost to a crash or a bad path: every file is
written to a temporary file beside its final place and renamed over it
(:func:`atomic_write_bytes`), and an output folder is checked for being
creatable and writable (:func:`check_writable_dir`) before a run trains, not
when it is done.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """Permissions a plain ``open``/``mkdir`` would give (tempfile's are private: 0600/0700)."""
    return (0o777 if directory else 0o666) & ~_umask()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` atomically once the ``with`` block ends without an error.

    For what is too large to hold in memory twice (a checkpoint of many
    models): it is streamed into a temporary file beside ``path``, flushed to
    disk and renamed over it; on an error the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    with atomic_open(path) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and an atomic rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Rows -> CSV text with a header; missing keys and ``None``/NaN become empty cells."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(row.get(c)) for c in columns})
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Read a ``metrics.csv`` (or any CSV) into a list of dicts."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def check_writable_dir(path: str | os.PathLike[str], key: str) -> Path:
    """Check that folder ``path`` exists and is writable, or can be created; return it resolved.

    Nothing is left behind: a folder is made and removed again in the nearest
    existing ancestor, which must be a folder. Raises :class:`ValueError` naming ``key`` (the run-config key or
    option the path came from), the path and why it cannot be written.
    """
    folder = Path(path).expanduser().resolve()
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{key}: {str(path)!r} cannot be created: {str(probe)!r} is not a folder")
    try:  # os.access says yes to root everywhere (even in /proc): make and remove a folder instead
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".flower-dl-write-check-"))
    except OSError as err:
        where = "is not writable" if probe == folder else f"cannot be created in {str(probe)!r}"
        raise ValueError(f"{key}: {str(path)!r} {where} ({err.strerror}); allowed: a folder you can write to") from err
    return folder
