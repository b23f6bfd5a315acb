"""Ray's private API, which flower-dl reaches through one function: every name is there, and its absence is loud."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import ray

import flower_dl
from flower_dl.launch.ray_head import RAY_PRIVATE, RayPrivateAPIError, ray_private

HEAD_PARAMS = (
    "node_ip_address",
    "gcs_server_port",
    "dashboard_agent_listen_port",
    "include_dashboard",
    "no_monitor",
    "temp_dir",
)
"""The ``RayParams`` keywords :func:`flower_dl.launch.ray_head.main` passes."""


@pytest.mark.parametrize("name", sorted(RAY_PRIVATE))
def test_every_private_name_is_in_the_installed_ray(name: str) -> None:
    assert ray_private(name) is not None  # raises RayPrivateAPIError, naming the version, if Ray moved it


def test_the_head_nodes_private_calls_take_what_flower_dl_gives() -> None:
    params = inspect.signature(ray_private("RayParams")).parameters
    missing = [key for key in HEAD_PARAMS if key not in params]
    assert not missing, f"Ray {ray.__version__}'s RayParams takes no {missing}"
    node = ray_private("Node")
    node_params = inspect.signature(node).parameters
    missing = [key for key in ("head", "shutdown_at_exit", "spawn_reaper") if key not in node_params]
    assert not missing, f"Ray {ray.__version__}'s Node takes no {missing}"
    gone = [m for m in ("address", "dead_processes", "kill_all_processes") if not hasattr(node, m)]
    assert not gone, f"Ray {ray.__version__}'s Node has no {gone}"


def test_a_name_ray_moved_is_reported_with_the_ray_version_and_the_attribute(monkeypatch) -> None:
    monkeypatch.setitem(RAY_PRIVATE, "Node", "ray._private.node:NodeThatMoved")
    with pytest.raises(RayPrivateAPIError, match=rf"Ray {ray.__version__} has no ray\._private\.node\.NodeThatMoved"):
        ray_private("Node")
    monkeypatch.setitem(RAY_PRIVATE, "Node", "ray._private.module_that_moved:Node")
    with pytest.raises(RayPrivateAPIError, match=r"has no ray\._private\.module_that_moved\.Node"):
        ray_private("Node")


def test_nothing_else_of_flower_dl_imports_rays_private_api() -> None:
    package = Path(flower_dl.__file__).parent
    users = sorted(
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if re.search(r"^\s*(from|import) ray\._", p.read_text(), re.MULTILINE)
    )
    assert users == [], f"modules importing Ray's private API other than through ray_private: {users}"
