"""What ``flwr run`` is given: the app's bundled files only, never a virtual environment or old results."""

from __future__ import annotations

from pathlib import Path

from flwr.cli.build import collect_files, get_filtered_fab_paths
from flwr.cli.config_utils import load_and_validate

from flower_dl.launch.app_files import app_files, stage_app

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str = "x = 1\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_repository_stages_exactly_what_flower_would_bundle_of_its_tracked_files():
    # Flower's own selection over its own walk, minus what .gitignore keeps out of git
    config, _ = load_and_validate(REPO / "pyproject.toml", check_module=False)
    theirs = get_filtered_fab_paths(collect_files(REPO), config)
    ignored = ("results/", "build/", "dist/")  # .gitignore's; hidden folders (.venv, .pytest_cache) are not walked

    def kept(path: str) -> bool:
        parts = path.split("/")
        return not path.startswith(ignored) and "__pycache__" not in parts and not any(p.startswith(".") for p in parts)

    expected = sorted({p for p in theirs if kept(p)} | {"pyproject.toml"})
    assert app_files(REPO) == expected
    assert "flower_dl/server/app.py" in expected and "flower_dl/node/app.py" in expected


def test_a_venv_results_and_hidden_folders_are_not_walked_or_staged(tmp_path):
    app = tmp_path / "app"
    _write(app / "pyproject.toml", (REPO / "pyproject.toml").read_text())
    _write(app / ".gitignore", "/results/\n*.log\n")
    _write(app / "flower_dl" / "server_app.py")
    _write(app / "flower_dl" / "sub" / "helpers.py")
    _write(app / "flower_dl" / "lib" / "util.py")  # a package folder Flower bundles (its lib/ exclusion is the root's)
    _write(app / "README.md", "# app\n")
    _write(app / ".venv" / "lib" / "site.py")  # a virtual environment beside the app
    _write(app / "venv" / "x.py")
    _write(app / "results" / "run-1" / "summary.json", "{}")  # an earlier run's results
    _write(app / ".git" / "hooks" / "x.py")
    _write(app / "flower_dl" / "__pycache__" / "server_app.py")
    _write(app / "notes.log", "")
    _write(app / "data.bin", "")  # not a kind of file Flower bundles
    staged = stage_app(app, tmp_path / "staged")
    found = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    assert found == [
        "README.md", "flower_dl/lib/util.py", "flower_dl/server_app.py", "flower_dl/sub/helpers.py", "pyproject.toml",
    ]  # fmt: skip
    assert (staged / "flower_dl" / "server_app.py").read_text() == "x = 1\n"
