"""README.md and docs/ stay true: README's quickstart shows the main job and the test command CI runs; every
run-config key is documented in docs/configuration.md; README stays short; every relative link of README.md,
docs/*.md and benchmarks/results/HISTORY.md points to an existing file and, for an anchor, an existing heading."""

from __future__ import annotations

import re
from pathlib import Path

from flower_dl.config import defaults

from .conftest import ROOT

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
HISTORY = ROOT / "benchmarks" / "results" / "HISTORY.md"
LINK = re.compile(r"\[[^\]]*\]\(([^()\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    command = next(line for line in reversed(ci_lines) if line.strip() and not line.startswith("#"))
    assert command in README.read_text()


def test_readme_quickstart_shows_the_main_job() -> None:
    quickstart = README.read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "pip install -e . && flower-dl run" in quickstart
    assert 'pip install -e ".[test]" && python -m pytest -q' in quickstart


def test_every_run_config_key_is_documented() -> None:
    reference = (ROOT / "docs" / "configuration.md").read_text()
    for key in defaults():
        assert f"| `{key}` |" in reference, key


def test_readme_is_short() -> None:
    assert README.stat().st_size < 10_000, README.stat().st_size


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, only letters, digits, spaces, hyphens, underscores; spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (outside code blocks), with GitHub's -1, -2 for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        match = re.match(r"#{1,6} +(.+?) *#* *$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def test_slug_is_githubs() -> None:
    assert slug("Plain `flwr run`") == "plain-flwr-run"
    assert (
        slug("Failures, reproducibility, privacy of the exchange") == "failures-reproducibility-privacy-of-the-exchange"
    )
    assert slug("metrics.csv, summary.json and edges.csv") == "metricscsv-summaryjson-and-edgescsv"
    assert slug("1. Make the keys") == "1-make-the-keys"


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in [README, *DOCS, HISTORY]:
        for target in LINK.findall(FENCE.sub("", page.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def module_map(text: str) -> set[str]:
    """The paths docs/architecture.md's module map names: its tree of ``flower_dl/``, read by indentation."""
    block = text.split("```\nflower_dl/\n", 1)[1].split("```", 1)[0]
    paths, parents = set(), {0: "flower_dl"}
    for line in block.splitlines():
        match = re.match(r"( *)(\S+)", line)
        if not match or not line.startswith("  "):
            continue
        depth, name = len(match.group(1)) // 2, match.group(2)
        if name.endswith("/"):
            parents[depth] = f"{parents[depth - 1]}/{name.rstrip('/')}"
        elif name.endswith(".py"):
            paths.add(f"{parents[depth - 1]}/{name}")
    return paths


def test_module_map_names_every_module() -> None:
    """Every module of the package sits in the map, in its folder, and the map names no module that is gone."""
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "flower_dl").rglob("*.py")}
    assert module_map((ROOT / "docs" / "architecture.md").read_text()) == on_disk
