"""What of an app folder goes into the Flower app bundle (FAB), staged before ``flwr run``.

``flwr run <folder>`` walks the *whole* folder before it filters the files it
bundles (Flower's ``collect_files`` resolves every path, then keeps ``*.py``,
``*.toml``, ``*.md``, ``*.json``, ...): a virtual environment in the folder
(``pip install -e .`` beside a ``.venv``, as ``.ci/run`` and the README's
quickstart do) adds tens of thousands of files to that walk, several seconds
of every start-up; and a ``results/`` folder of earlier runs puts their JSON
into every bundle. flower-dl therefore runs ``flwr run`` on a staged copy
holding only what the bundle needs: the files git would track (the folder's
``.gitignore`` applies, hidden folders and Flower's own exclusions are not
entered) that Flower would bundle anyway.
``python benchmarks/bench_round_time.py --startup-only`` measures the
start-up; ``python -c "from flower_dl.launch.app_files import walk_seconds; print(walk_seconds('.'))"``
times Flower's own walk of a folder.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pathspec


def _ignore_spec(app_dir: Path) -> pathspec.PathSpec:
    gitignore = app_dir / ".gitignore"
    lines = gitignore.read_text().splitlines() if gitignore.is_file() else []
    return pathspec.GitIgnoreSpec.from_lines(lines)


def app_files(app_dir: Path) -> list[str]:
    """Relative POSIX paths of the files ``flwr run app_dir`` would bundle, without walking ignored folders.

    The same selection as Flower's (``flwr.cli.build.get_filtered_fab_paths``,
    with the app's own ``[tool.flwr.app]`` include/exclude patterns) applied
    to the files git would track.
    """
    from flwr.cli.build import FAB_EXCLUDE_PATTERNS, build_pathspec, get_filtered_fab_paths
    from flwr.cli.config_utils import load_and_validate

    app_dir = Path(app_dir)
    ignored = _ignore_spec(app_dir)
    # a folder all of whose files Flower's own exclusions drop (``.venv/**``, ``**/__pycache__/**``, ...)
    flower_excluded = build_pathspec(FAB_EXCLUDE_PATTERNS)
    found: dict[str, bytes | Path] = {}  # the type Flower's get_filtered_fab_paths takes
    for dirpath, dirnames, filenames in os.walk(app_dir, followlinks=False):
        rel_dir = Path(dirpath).relative_to(app_dir).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [
            d
            for d in dirnames
            if not d.startswith(".")
            and not ignored.match_file(f"{prefix}{d}/")
            and not flower_excluded.match_file(f"{prefix}{d}/_")  # any file in it
        ]
        for name in filenames:
            rel = prefix + name
            path = Path(dirpath) / name
            if not path.is_symlink() and not ignored.match_file(rel):
                found[rel] = path
    config, *_ = load_and_validate(app_dir / "pyproject.toml", check_module=False)
    return sorted([*get_filtered_fab_paths(found, config or {}), "pyproject.toml"])


def stage_app(app_dir: Path, into: Path) -> Path:
    """Copy the app's bundled files (:func:`app_files`) into ``into`` (created); return ``into``."""
    app_dir, into = Path(app_dir), Path(into)
    for rel in app_files(app_dir):
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(app_dir / rel, target)
    return into


def walk_seconds(app_dir: str | Path) -> dict[str, float]:
    """Seconds Flower's own file walk takes on ``app_dir``, against :func:`app_files`' (for the docs' figure)."""
    from flwr.cli.build import collect_files

    t0 = time.perf_counter()
    collect_files(Path(app_dir))
    t1 = time.perf_counter()
    app_files(Path(app_dir))
    return {"flower-walk-s": round(t1 - t0, 3), "flower-dl-staged-walk-s": round(time.perf_counter() - t1, 3)}
