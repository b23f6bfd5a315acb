"""``flower-dl run`` from any folder: which app it runs, from a checkout and from a wheel, and whose commit it records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from flower_dl.launch import app_folder, resolve_config
from flower_dl.launch.app_files import app_files
from flower_dl.launch.app_location import APP_COMPONENTS, PACKAGED_APP, is_flower_dl_app, package_app, source_of
from flower_dl.launch.superlink import flwr_env
from flower_dl.results import provenance

from .conftest import ROOT

PYPROJECT = (ROOT / "pyproject.toml").read_text()


def _fake_site_packages(tmp_path: Path) -> Path:
    """``site-packages/flower_dl`` as a wheel installs it: no checkout above, the app's pyproject.toml inside."""
    package = tmp_path / "site-packages" / "flower_dl"
    (package / PACKAGED_APP).mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / PACKAGED_APP / "pyproject.toml").write_text(PYPROJECT)
    return package


def test_the_components_are_the_repositorys() -> None:
    assert is_flower_dl_app(ROOT)
    assert f'serverapp = "{APP_COMPONENTS["serverapp"]}"' in PYPROJECT


def test_the_current_folder_is_used_only_when_it_is_a_flower_dl_app(tmp_path: Path) -> None:
    other = tmp_path / "other-project"
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.flwr.app.components]\nserverapp = "x:app"\n')
    assert app_folder(None, cwd=other) == ROOT  # the checkout this package is imported from
    assert app_folder(None, cwd=tmp_path) == ROOT
    assert app_folder(None, cwd=ROOT) == ROOT
    copy = tmp_path / "my-app"
    copy.mkdir()
    (copy / "pyproject.toml").write_text(PYPROJECT)
    assert app_folder(None, cwd=copy) == copy
    assert app_folder(str(other), cwd=tmp_path) == other  # named on the command line: taken as it is


def test_a_wheel_install_runs_the_packaged_app(tmp_path: Path) -> None:
    package = _fake_site_packages(tmp_path)
    packaged = package / PACKAGED_APP
    assert package_app(package) == packaged
    assert app_folder(None, cwd=tmp_path, package_dir=package) == packaged
    assert source_of(packaged, package) is None  # no checkout: the ServerApp finds the installed package's provenance
    assert source_of(ROOT, package) == ROOT
    # the bundle holds no code: the apps import the installed flower_dl
    assert app_files(packaged) == ["pyproject.toml"]
    assert resolve_config(packaged, {"num-server-rounds": 2}).num_server_rounds == 2
    (packaged / "pyproject.toml").unlink()
    assert package_app(package) is None
    assert app_folder(None, cwd=tmp_path, package_dir=package) == tmp_path.resolve()  # its check then refuses it


def test_the_launched_checkout_is_the_one_whose_commit_is_recorded(tmp_path: Path, monkeypatch) -> None:
    env = flwr_env(tmp_path, 1, source=ROOT)
    assert env[provenance.SOURCE_ENV] == str(ROOT)
    assert provenance.SOURCE_ENV not in flwr_env(tmp_path, 1)
    monkeypatch.setenv(provenance.SOURCE_ENV, str(tmp_path / "launched"))
    assert provenance._source_dirs()[0] == tmp_path / "launched"  # before the package's folder and the editable one


@pytest.mark.e2e  # builds a wheel, installs it in a new venv and runs its flower-dl
def test_the_wheel_ships_the_apps_pyproject_and_runs_it_from_an_empty_folder(tmp_path: Path) -> None:
    pytest.importorskip("hatchling", reason="builds the wheel with the project's build backend")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("flower_dl-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        assert whl.read(f"flower_dl/{PACKAGED_APP}/pyproject.toml").decode() == PYPROJECT
    # a fresh venv holding the wheel, this environment's libraries beside it (a path, so no editable install applies)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    with zipfile.ZipFile(wheel) as whl:
        whl.extractall(site)
    ours = subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "libraries.pth").write_text(ours + "\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    code = (
        "import flower_dl; from flower_dl.launch import app_folder, resolve_config; "
        "app = app_folder(None); print(flower_dl.__file__); print(app); print(resolve_config(app, {}).num_nodes)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(python), "-c", code], cwd=empty, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    where, app, num_nodes = proc.stdout.split()
    assert where.startswith(site), where  # the wheel's package, not this checkout
    assert app == str(Path(site) / "flower_dl" / PACKAGED_APP)
    assert num_nodes == "5"
    helped = subprocess.run(
        [str(python), "-m", "flower_dl.launch.cli", "run", "--help"], cwd=empty, env=env, capture_output=True, text=True
    )
    assert helped.returncode == 0 and "flower-dl run" in helped.stdout, helped.stderr[-2000:]


@pytest.mark.e2e
def test_run_from_an_empty_folder_writes_there_and_records_the_launched_checkouts_commit(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "flower_dl.launch.cli", "run", "-c", "num-server-rounds=1 local-epochs=1 run-name='here'"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "results" / "here"  # results-dir is relative to the folder the command ran from
    assert (run / "metrics.csv").is_file()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    recorded = json.loads((run / "config.json").read_text())["provenance"]["git-commit"]
    assert head and recorded in (head, f"{head}-dirty"), (recorded, head)
