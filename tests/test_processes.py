"""The simulation SuperLink's Ray head: it starts, it is stopped with nothing left, and its failure is loud."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from flower_dl.launch import superlink
from flower_dl.launch.processes import ProcessError, wait_for_port
from flower_dl.launch.superlink import RayHead, flwr_env, local_superlink


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.e2e
def test_ray_head_starts_in_its_own_temp_dir_and_stops_with_every_process(tmp_path) -> None:
    head = RayHead(tmp_path, flwr_env(tmp_path, 1))
    failures: list[str] = []
    head.watch(on_failure=lambda: failures.append(head.error or ""))
    try:
        deadline = time.monotonic() + 90
        while not head.ready.is_set() and head.error is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert head.ready.is_set(), head.log.read_text()
        wait_for_port(head.port, 10)  # Ray's GCS answers on the address handed to Flower
        assert head.address == f"127.0.0.1:{head.port}"
        assert list(head.temp_dir.glob("session_*")), "Ray's sessions go to the head's own temp dir"
    finally:
        head.stop()
    assert not head.temp_dir.exists()
    deadline = time.monotonic() + 10  # SIGKILLed processes take a moment to be reaped
    while _group_alive(head.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group_alive(head.proc.pid), "a Ray process outlived the head"
    assert not _listening(head.port)
    assert failures == [] and head.failure() is None  # a stop is not a failure


@pytest.mark.e2e
def test_a_dead_ray_head_stops_the_superlink_and_says_why(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(superlink, "RAY_HEAD_MODULE", "flower_dl.no_such_module")
    with (
        pytest.raises(ProcessError, match=r"Ray head exited with code 1[\s\S]*no_such_module"),
        local_superlink(tmp_path) as env,
    ):
        config = (Path(env["FLWR_HOME"]) / "config.toml").read_text()
        port = int(config.split('address = "127.0.0.1:')[1].split('"')[0])  # the SuperLink's
        deadline = time.monotonic() + 60
        while _listening(port) and time.monotonic() < deadline:  # the watchdog stops the SuperLink
            time.sleep(0.2)
        assert not _listening(port)


@pytest.mark.e2e
def test_a_users_own_ray_address_is_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    with local_superlink(tmp_path) as env:
        assert env["RAY_ADDRESS"] == "127.0.0.1:6379"
    assert not (tmp_path / "ray.log").exists(), "no Ray head of ours when the user names a cluster"


@pytest.mark.e2e
def test_no_ray_head_when_switched_off(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv(superlink.RAY_HEAD_ENV, "0")
    with local_superlink(tmp_path) as env:
        assert "RAY_ADDRESS" not in env  # Flower's simulation starts Ray itself
    assert not (tmp_path / "ray.log").exists()


def test_the_watchdog_removes_only_flower_dl_temporary_folders(tmp_path):
    from flower_dl.launch.watchdog import remove_dirs

    ours, theirs = tmp_path / "flower-dl-ray-abc", tmp_path / "results"
    for folder in (ours, theirs):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "f.txt").write_text("x")
    remove_dirs({str(ours), str(theirs), str(tmp_path / "flower-dl-gone")})  # a gone one is no error
    assert not ours.exists()
    assert (theirs / "sub" / "f.txt").exists()  # a registered folder not named flower-dl-* is kept


def test_the_process_table_gives_parent_session_state_and_name_and_marks_zombies() -> None:
    import subprocess
    import sys

    from flower_dl.launch.watchdog import proc_table

    ppid, sid, state, name = proc_table()[os.getpid()]
    assert (ppid, sid) == (os.getppid(), os.getsid(0)) and state != "Z" and name
    child = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while proc_table().get(child.pid, (0, 0, "", ""))[2] != "Z" and time.monotonic() < deadline:
            time.sleep(0.1)  # exited, not reaped yet: a zombie
        assert proc_table()[child.pid][:3] == (os.getpid(), child.pid, "Z")
    finally:
        child.wait()
    assert child.pid not in proc_table()
