"""Which app folder a command runs: the current folder, the package's source checkout, or the packaged app.

``flwr run`` needs a folder holding the app's ``pyproject.toml`` (its
components and every run-config default). :func:`app_folder` picks, for a
command given no folder:

1. the current folder, if it is a flower-dl app folder (:func:`is_flower_dl_app`:
   its ``[tool.flwr.app.components]`` name flower-dl's ServerApp and ClientApp);
2. else the source checkout the imported package sits in (an editable
   install, or ``PYTHONPATH`` pointing at a checkout);
3. else the app's ``pyproject.toml`` that a wheel ships inside the package,
   ``flower_dl/_app/`` (hatch's ``force-include``): a folder holding only that
   file, so the bundle ``flwr run`` makes holds no code and the ServerApp and
   ClientApp import flower_dl from the environment.

Results still go to ``results-dir`` relative to the folder the command runs
from: it is resolved there before the run starts.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import flower_dl

APP_COMPONENTS = {"serverapp": "flower_dl.server.app:app", "clientapp": "flower_dl.node.app:app"}
"""``[tool.flwr.app.components]`` of flower-dl's app."""
PACKAGE_DIR = Path(flower_dl.__file__).resolve().parent
"""The imported ``flower_dl`` package's folder."""
PACKAGED_APP = "_app"
"""The folder inside the package where a wheel ships the app's ``pyproject.toml``."""


def is_flower_dl_app(folder: Path) -> bool:
    """Whether ``folder`` holds a ``pyproject.toml`` whose app components are flower-dl's (:data:`APP_COMPONENTS`)."""
    try:
        data = tomllib.loads((folder / "pyproject.toml").read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    components = data.get("tool", {}).get("flwr", {}).get("app", {}).get("components", {})
    return all(components.get(key) == value for key, value in APP_COMPONENTS.items())


def package_app(package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The package's own app folder: its source checkout, else the packaged ``pyproject.toml``'s; ``None`` if neither.

    Parameters
    ----------
    package_dir : pathlib.Path
        The ``flower_dl`` package's folder (site-packages' in a wheel install).
    """
    for folder in (package_dir.parent, package_dir / PACKAGED_APP):
        if is_flower_dl_app(folder):
            return folder
    return None


def app_folder(given: str | None, cwd: Path | None = None, package_dir: Path = PACKAGE_DIR) -> Path:
    """The app folder a command runs (see the module docstring).

    Parameters
    ----------
    given : str, optional
        The folder named on the command line: taken as it is (a folder that
        is no app is refused when its config is read).
    cwd : pathlib.Path, optional
        The folder the command runs from (default: the current one).
    package_dir : pathlib.Path
        The ``flower_dl`` package's folder.

    Returns
    -------
    pathlib.Path
        An absolute path; ``cwd`` itself when no app is found anywhere (its
        config check then says so).
    """
    if given is not None:
        return Path(given).resolve()
    here = (cwd or Path.cwd()).resolve()
    if is_flower_dl_app(here):
        return here
    return package_app(package_dir) or here


def source_of(app_dir: Path, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The checkout whose commit a run from ``app_dir`` records (``FLOWER_DL_SOURCE``); ``None`` for the packaged app.

    The packaged app holds no code: the run's code is the installed
    package's, whose provenance the ServerApp finds itself.
    """
    if app_dir.resolve() == (package_dir / PACKAGED_APP).resolve():
        return None
    return app_dir
