"""Flower processes on this machine: a private simulation SuperLink, a local deployment, and runs on them.

Both run on 127.0.0.1 only, on free ports chosen at run time, in their own
process groups, and are stopped on exit whatever happens (each is a context
manager). They yield the environment for the ``flwr`` CLI: a private
``FLWR_HOME`` whose ``config.toml`` names one connection, :data:`CONNECTION`.
The simulation SuperLink comes with its own Ray head (:class:`RayHead`),
started at the same time, which Flower's simulation joins.

:func:`launch` runs one app on such a SuperLink (``flwr run --stream``, its
own process group, stopped if interrupted) and :func:`run_status` asks
``flwr ls`` how the run ended. Every process is started by :func:`popen`: in
a session of its own, which the command's :mod:`~flower_dl.launch.watchdog` is told
of, so that it is stopped even when the command is killed outright (SIGKILL)
and cannot stop it itself. Everything that starts or stops a process
lives here; the command line (:mod:`flower_dl.launch.cli`) only parses and prints,
and a sweep (:mod:`flower_dl.launch.sweep`) calls :func:`launch` once a cell.

One module although over ~400 lines (about 160 of them docstrings): starting, watching
and stopping every process flower-dl launches (SuperLink, Ray head, SuperNodes, ``flwr run``)
share one process-group and signal discipline, which splitting would duplicate.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flower_dl.launch import flwr_output, watchdog
from flower_dl.launch.app_files import stage_app
from flower_dl.launch.ray_head import READY

if TYPE_CHECKING:
    from flower_dl.launch.secure import SecureFiles

CONNECTION = "flower-dl-local"
PROG = "flower-dl"
"""How :func:`launch` prefixes the command line it shows."""
RAY_HEAD_MODULE = "flower_dl.launch.ray_head"
"""What :class:`RayHead` runs with ``python -m``."""
RAY_HEAD_ENV = "FLOWER_DL_RAY_HEAD"
"""Set to ``0`` to let Flower's simulation start Ray itself, as plain ``flwr run`` does."""


class ProcessError(RuntimeError):
    """A Flower process did not start."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Block until 127.0.0.1:``port`` accepts connections (or ``proc`` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ProcessError(f"{Path(str(proc.args[0])).name} exited early with code {proc.returncode}")  # type: ignore[index]  # every caller starts it from an argument list
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise ProcessError(f"nothing listened on 127.0.0.1:{port} within {timeout:g} s")


def stop_process_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL, the process group led by ``proc``."""
    stop_process_groups([proc], timeout)


def stop_process_groups(procs: Sequence[subprocess.Popen], timeout: float = 15.0) -> None:
    """SIGTERM the process groups led by ``procs``, all at once; SIGKILL each after ``timeout`` s.

    At once, because each of Flower's processes may take seconds to shut
    down (it sends its telemetry first, up to 4 s); one SIGTERM only, because
    a second kills it in the middle (Flower's handler restores the default).
    """
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their leader
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)


def bin_path(name: str) -> str:
    """An executable of this environment (beside the running Python), else from PATH."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def flwr_env(workdir: Path, port: int, root_certificates: Path | None = None) -> dict[str, str]:
    """Environment for ``flwr`` and Flower's processes: a private FLWR_HOME naming one connection.

    ``PYTHONPATH`` is passed on with every entry made absolute: Flower runs
    the ServerApp and the ClientApps from its own copy of the app (another
    working directory) and appends this ``PYTHONPATH`` to the simulation
    workers' own, so a user's model or strategy module named by an import
    path (``model = "my_nets:build"``) imports there as it does here.

    ``root_certificates``: the connection uses TLS, trusting that CA
    certificate only (a secure deployment, :mod:`flower_dl.launch.secure`).
    """
    flwr_home = workdir / "flwr-home"
    flwr_home.mkdir(parents=True, exist_ok=True)
    tls = "insecure = true" if root_certificates is None else f'root-certificates = "{root_certificates.resolve()}"'
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\naddress = "127.0.0.1:{port}"\n{tls}\n'
    )
    env = os.environ.copy()
    env.update(
        {
            "FLWR_HOME": str(flwr_home),
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "PYTHONUNBUFFERED": "1",
            # the SuperLink and SuperNodes start flower-superexec, flwr-serverapp, ... by name
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        }
    )
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = absolute_path_list(env["PYTHONPATH"])
    return env


def absolute_path_list(value: str) -> str:
    """A ``PYTHONPATH``-style list with every entry absolute (relative ones against the working directory)."""
    return os.pathsep.join(str(Path(p).resolve()) for p in value.split(os.pathsep) if p)


def popen(cmd: list[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen`` in a new session (process group), registered with the :mod:`~flower_dl.launch.watchdog`.

    Its own session, so that stopping it (:func:`stop_process_group`) stops
    its children and Ctrl-C on the terminal reaches only this process, which
    stops it in order. The watchdog is started first, so that no process is
    left unwatched should this one be killed in between; a stop signal waits
    until it is registered (see :class:`_StopSignals`).
    """
    with _stop_held_back():
        watchdog.start()
        proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        watchdog.register(proc.pid)
    return proc


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def _startup_error(err: Exception, log: Path) -> ProcessError:
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    return ProcessError(f"{err}; its output ends with:\n{tail}")


def _superlink_cmd(workdir: Path, port: int, simulation: bool, secure: SecureFiles | None = None) -> list[str]:
    """The SuperLink's command: insecure, or (``secure``) over TLS with SuperNode authentication."""
    if secure is None:
        tls = ["--insecure"]
    else:
        tls = [
            "--ssl-ca-certfile", str(secure.ca), "--ssl-certfile", str(secure.superlink_cert),
            "--ssl-keyfile", str(secure.superlink_key), "--enable-supernode-auth",
        ]  # fmt: skip
    cmd = [
        bin_path("flower-superlink"),
        *tls,
        "--isolation",
        "subprocess",
        "--disable-runtime-dependency-installation",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),  # Flower 1.42: one HTTP port for all APIs
        "--health-server-address",
        f"127.0.0.1:{free_port()}",
        "--database",
        str(workdir / "state.db"),
    ]
    return cmd + (["--simulation"] if simulation else [])


class RayHead:
    """A Ray head node on this machine, for the simulations of one SuperLink.

    Flower's simulation process starts Ray itself (``ray.init``) once ``flwr
    run`` has packaged and submitted the app and the process has imported
    Flower: on a small machine, a large share of the start-up to round 1
    (``benchmarks/bench_round_time.py --startup-only`` measures it). Started here, beside the
    SuperLink (``python -m flower_dl.launch.ray_head``: the cluster ``ray.init``
    would start, see that module), Ray comes up while the SuperLink starts
    and ``flwr run`` runs; Flower's ``ray.init`` joins it through
    ``RAY_ADDRESS`` in a fraction of a second, and every run of a sweep joins
    the same head.

    Ray pre-starts no idle workers when a run joins
    (``RAY_prestart_worker_first_driver=0``): Flower gives every run a
    ``runtime_env`` (its ``PYTHONPATH``), so such workers would never be
    used, only slow down the ones that are.

    A watchdog thread calls ``on_failure`` (which stops the SuperLink and
    with it the run, which would otherwise wait for Ray for minutes) if the
    head exits, or is not up after ``startup_timeout`` seconds; :attr:`error`
    then says why.
    """

    def __init__(self, workdir: Path, env: dict[str, str], startup_timeout: float = 60.0) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = workdir / "ray.log"
        self.startup_timeout = startup_timeout
        self.error: str | None = None
        self.ready = threading.Event()
        self._stopping = threading.Event()
        # Ray's own temp dir, short: its unix sockets live there (at most 107 bytes a path)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="flower-dl-ray-", dir="/tmp" if os.path.isdir("/tmp") else None))
        watchdog.register_dir(self.temp_dir)  # removed even if this process is killed outright
        cmd = [
            sys.executable,
            "-m",
            RAY_HEAD_MODULE,
            "--port",
            str(self.port),
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--temp-dir",
            str(self.temp_dir),
        ]
        ray_env = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}
        ray_env["RAY_prestart_worker_first_driver"] = "0"
        self.proc = _start(cmd, ray_env, self.log)

    def watch(self, on_failure) -> threading.Thread:
        """Start the watchdog thread (see the class docstring)."""
        thread = threading.Thread(target=self._watch, args=(on_failure,), name="ray-head-watchdog", daemon=True)
        thread.start()
        return thread

    def _watch(self, on_failure) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not self._stopping.is_set():
            code = self.proc.poll()
            if code is not None:
                self.error = f"the simulation's Ray head exited with code {code}"
            elif not self.ready.is_set():
                if READY in self.log.read_text(errors="replace"):
                    self.ready.set()
                elif time.monotonic() > deadline:
                    self.error = f"the simulation's Ray head did not start within {self.startup_timeout:g} s"
            if self.error is not None:
                if not self._stopping.is_set():
                    on_failure()
                return
            self._stopping.wait(0.1)

    def stop_watching(self) -> None:
        """The run is over: the head's exit is no longer a failure."""
        self._stopping.set()

    def stop(self) -> None:
        """Stop the head and every Ray process (its process group).

        Ray's processes keep nothing a run needs afterwards (results are
        written by then; Ray's temp dir is removed too) and some take
        2-3 s to honour SIGTERM: they get half a second before SIGKILL.
        """
        self.stop_watching()
        stop_process_group(self.proc, timeout=0.5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def failure(self) -> ProcessError | None:
        """The head's failure, with the end of its output, if it failed."""
        if self.error is None:
            return None
        return _startup_error(ProcessError(self.error), self.log)


@contextlib.contextmanager
def local_superlink(workdir: Path, startup_timeout: float = 60.0) -> Iterator[dict[str, str]]:
    """A simulation-mode SuperLink on a free loopback port; yields the env for ``flwr``.

    It uses the installed environment (``--disable-runtime-dependency-installation``).
    A :class:`RayHead` is started at the same time and handed to Flower's
    simulation in ``RAY_ADDRESS``, unless ``RAY_ADDRESS`` is already set (a
    Ray cluster of the user's own, which Flower then joins as it would) or
    ``FLOWER_DL_RAY_HEAD=0`` (Flower starts Ray itself).
    Raises :class:`ProcessError` if either did not start, or if Ray failed
    during the run (which stops the run).
    """
    port = free_port()
    env = flwr_env(workdir, port)
    # a temporary workdir of flower-dl's own (``flower-dl-*``: run, sweep) goes even if the command is killed
    watchdog.register_dir(workdir)
    head = proc = None
    try:
        if not env.get("RAY_ADDRESS") and env.get(RAY_HEAD_ENV, "1") != "0":
            head = RayHead(workdir, env, startup_timeout)
            env["RAY_ADDRESS"] = head.address
        log = workdir / "superlink.log"
        proc = _start(_superlink_cmd(workdir, port, simulation=True), env, log)
        if head is not None:
            head.watch(on_failure=lambda: stop_process_group(proc, timeout=5))
        try:
            wait_for_port(port, startup_timeout, proc)
        except ProcessError as err:
            raise (head and head.failure()) or _startup_error(err, log) from err
        yield env
    finally:
        if head is not None:
            head.stop()
        if proc is not None:
            stop_process_group(proc)
    if head is not None and (failure := head.failure()) is not None:
        raise failure


@dataclass
class Deployment:
    """A running local deployment."""

    env: dict[str, str]
    superlink_address: str
    superlink: subprocess.Popen
    supernodes: dict[int, subprocess.Popen] = field(default_factory=dict)
    logs: Path | None = None

    def kill_supernode(self, index: int) -> None:
        """Kill SuperNode ``index`` (and its ClientApp processes) at once, as a crash would."""
        proc = self.supernodes[index]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@contextlib.contextmanager
def local_deployment(
    workdir: Path,
    num_nodes: int,
    *,
    data_dir: str = "",
    partition_ids: list[int] | None = None,
    startup_timeout: float = 60.0,
    secure: SecureFiles | None = None,
    registered: Sequence[int] | None = None,
    node_ca: Mapping[int, Path] | None = None,
) -> Iterator[Deployment]:
    """A deployment-mode SuperLink and ``num_nodes`` SuperNodes on 127.0.0.1.

    SuperNode ``i`` is started with ``--node-config "partition-id=i
    num-partitions=N"`` (plus ``data-dir`` if given, its ``{partition-id}`` replaced by i). Insecure (no TLS):
    loopback only. Every process is stopped on exit. ``partition_ids``
    overrides which ids the SuperNodes get (to test a bad deployment).

    ``secure`` (the files :func:`flower_dl.launch.secure.write_secure_files` made):
    TLS on every connection, SuperNode authentication on the SuperLink, the
    public keys of the SuperNodes in ``registered`` (default: all) registered
    with ``flwr supernode register`` before any SuperNode starts, and each
    SuperNode given its flower-dl identity (``identity-key``, ``peer-keys``).
    ``node_ca`` gives some SuperNodes another CA certificate to trust (to
    test that they cannot connect). A SuperNode that cannot join is left
    running, retrying, as Flower's are: the run waits for it up to
    ``node-wait-timeout``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = flwr_env(workdir, port, root_certificates=None if secure is None else secure.ca)
    log = workdir / "superlink.log"
    superlink = _start(_superlink_cmd(workdir, port, simulation=False, secure=secure), env, log)
    dep = Deployment(env=env, superlink_address=f"127.0.0.1:{port}", superlink=superlink, logs=workdir)
    try:
        try:
            wait_for_port(port, startup_timeout, superlink)
        except ProcessError as err:
            raise _startup_error(err, log) from err
        pids = list(partition_ids if partition_ids is not None else range(num_nodes))
        if secure is not None:
            for pid in pids if registered is None else registered:
                register_supernode(secure.auth_public(pid), env, timeout=startup_timeout)
        for index, pid in enumerate(pids):
            node_config = f"partition-id={pid} num-partitions={num_nodes}"
            if data_dir:  # a template names each SuperNode's own folder
                node_config += f' data-dir="{data_dir.replace("{partition-id}", str(pid))}"'
            if secure is None:
                tls = ["--insecure"]
            else:
                ca = (node_ca or {}).get(pid, secure.ca)
                tls = ["--root-certificates", str(ca), "--auth-supernode-private-key", str(secure.auth_key(pid))]
                node_config += f' identity-key="{secure.identity_key(pid)}" peer-keys="{secure.peer_keys}"'
            node_port = free_port()
            cmd = [
                bin_path("flower-supernode"),
                *tls,
                "--superlink",
                dep.superlink_address,
                "--node-config",
                node_config,
                "--isolation",
                "subprocess",
                "--host",
                "127.0.0.1",
                "--port",
                str(node_port),
                "--health-server-address",
                f"127.0.0.1:{free_port()}",
            ]
            node_log = workdir / f"supernode-{index}.log"
            dep.supernodes[index] = _start(cmd, env, node_log)
            refused = secure is not None and (
                pid in (node_ca or {}) or (registered is not None and pid not in registered)
            )
            if refused:
                continue  # expected not to join (a test of who is kept out): it may exit at once
            try:
                wait_for_port(node_port, startup_timeout, dep.supernodes[index])
            except ProcessError as err:
                raise _startup_error(err, node_log) from err
        yield dep
    finally:
        stop_process_groups(list(dep.supernodes.values()))
        stop_process_group(superlink)


def register_supernode(public_key: Path, env: dict[str, str], timeout: float = 60.0) -> None:
    """``flwr supernode register``: let the SuperLink of ``env`` accept the SuperNode holding ``public_key``'s pair.

    Raises
    ------
    ProcessError
        With ``flwr``'s output if it did not register the key.
    """
    cmd = [bin_path("flwr"), "supernode", "register", str(public_key), CONNECTION]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        raise ProcessError(f"{shlex.join(cmd)} did not finish within {timeout:g} s") from err
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip()[-1500:]
        raise ProcessError(f"{shlex.join(cmd)} failed (exit code {done.returncode}): {said}")


# ---------------------------------------------------------------- commands
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
"""Signals that stop a command as Ctrl-C (SIGINT) does."""


class _StopSignals:
    """The stop signals a :func:`stoppable` command received; held back while :func:`popen` starts a process.

    A :class:`KeyboardInterrupt` raised inside ``subprocess.Popen`` (Python
    waits there until the child has called ``exec``) or before the child is
    registered would leave a process that neither its caller nor the
    watchdog knows of: there the signal only takes note, and
    :meth:`held_back` raises once the process is registered.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self.holding = 0
        self.pending = False

    def handler(self, signum: int, _frame: object) -> None:
        self.received.append(signum)
        if self.holding:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def held_back(self) -> Iterator[None]:
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1
            if self.pending and not self.holding:
                self.pending = False
                raise KeyboardInterrupt  # the process started is registered: the watchdog stops it


_STOP: _StopSignals | None = None
"""The running :func:`stoppable` command's signals (``None``: no such command, signals as Python has them)."""


@contextlib.contextmanager
def stoppable(*, ignore_late: bool = False) -> Iterator[list[int]]:
    """Run a command: SIGTERM and SIGHUP stop it as Ctrl-C does; nothing it started outlives it.

    ``kill``, ``timeout``, a job scheduler or a container stop send SIGTERM, a
    closed terminal SIGHUP; by default either ends Python at once, and no
    ``finally`` stops the processes started. Inside, both raise
    :class:`KeyboardInterrupt`, as SIGINT does, so that every context manager
    here stops what it started and a sweep keeps its finished cells (none
    while :func:`popen` starts a process, see :class:`_StopSignals`). A
    signal set to be ignored (``nohup``) or handled by someone else stays so.
    At the end the previous handlers are back, and the
    :mod:`~flower_dl.launch.watchdog` is closed: it stops whatever is left, as it
    would have stopped everything had the command been killed outright.
    With ``ignore_late`` (a command about to exit), once a stop signal came
    the stop signals are ignored instead: a late one, between the handlers'
    return and the exit, would otherwise end Python by SIGINT's default
    handler and change the exit code the first one decided.

    Yields
    ------
    list of int
        The stop signals received so far, first first.
    """
    global _STOP
    stop, previous = _StopSignals(), {}
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
                previous[sig] = signal.signal(sig, stop.handler)
    _STOP = stop if previous else None
    try:
        yield stop.received
    finally:
        try:
            watchdog.close()  # first: a stop signal while it stops what is left is still ours
        finally:
            _STOP = None
            for sig, handler in previous.items():
                signal.signal(sig, signal.SIG_IGN if ignore_late and stop.received else handler)


def _stop_held_back() -> contextlib.AbstractContextManager[None]:
    stop = _STOP
    if stop is None or threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    return stop.held_back()


# -------------------------------------------------------------------- runs
def toml_value(value: Any) -> str:
    """A Python scalar as a TOML literal, as ``flwr run --run-config`` parses it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def overrides_arg(overrides: Mapping[str, Any]) -> str:
    """dict -> the ``--run-config`` string ``k=v k2="s"``."""
    return " ".join(f"{k}={toml_value(v)}" for k, v in overrides.items())


def run_status(run_id: str, env: dict[str, str]) -> str:
    """How a run ended, as ``flwr ls`` reports it (e.g. ``finished:completed``).

    ``flwr run``'s exit code does not say whether the ServerApp failed, so a
    run counts as done only on this status.

    Parameters
    ----------
    run_id : str
        The id ``flwr run`` printed.
    env : dict of str to str
        The environment naming the SuperLink (from :func:`local_superlink`).

    Returns
    -------
    str
        The status, followed by its details in parentheses when it is not
        ``finished:completed``; ``"unknown"`` if ``flwr ls`` did not answer.
    """
    proc = popen(
        [bin_path("flwr"), "ls", "--run-id", run_id, "--format", "json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=60)
    finally:
        stop_process_group(proc, timeout=5)  # at once if it exited; if not (timeout, Ctrl-C), now
    try:
        runs = json.loads(stdout).get("runs", [])
    except (json.JSONDecodeError, AttributeError):
        return "unknown"
    if not runs:
        return "unknown"
    status = str(runs[0].get("status", "unknown"))
    details = runs[0].get("status-details")
    return f"{status} ({details})" if details and status != "finished:completed" else status


def _needs_file(overrides: Mapping[str, Any]) -> bool:
    """Whether a value cannot pass as ``k="v"`` on the command line: flwr's parser ends a string at any quote."""
    return any(isinstance(v, str) and ('"' in v or "'" in v) for v in overrides.values())


def run_config_file(overrides: Mapping[str, Any], path: Path) -> Path:
    """Write ``overrides`` as the TOML file ``flwr run --run-config <file.toml>`` reads (any string passes)."""
    path.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in overrides.items()))
    return path


def _run_cmd(
    app_dir: Path,
    overrides: Mapping[str, Any],
    num_supernodes: int | None,
    cpus_per_node: int,
    gpus_per_node: float,
    config_file: Path | None = None,
) -> list[str]:
    """The ``flwr run`` command; the run config through ``config_file`` when a value needs it (:func:`_needs_file`)."""
    run_config = str(run_config_file(overrides, config_file)) if config_file else overrides_arg(overrides)
    cmd = [bin_path("flwr"), "run", str(app_dir), CONNECTION, "--stream", "--run-config", run_config]
    if num_supernodes is not None:
        fed = f"num-supernodes={num_supernodes} client-resources-num-cpus={cpus_per_node}"
        if gpus_per_node:
            fed += f" client-resources-num-gpus={gpus_per_node}"
        cmd += ["--federation-config", fed]
    return cmd


def launch(
    app_dir: Path,
    overrides: Mapping[str, Any],
    env: dict[str, str],
    *,
    num_supernodes: int | None = None,
    cpus_per_node: int = 1,
    gpus_per_node: float = 0.0,
    on_line: Callable[[str], None] | None = None,
) -> tuple[int, str]:
    """``flwr run --stream`` one run on the private SuperLink and wait for it to end.

    The ``flwr`` child runs in its own process group and is stopped if this
    is interrupted (Ctrl-C, an exception in ``on_line``), so no run outlives
    its caller.

    Parameters
    ----------
    app_dir : pathlib.Path
        The app folder (holds ``pyproject.toml``).
    overrides : mapping of str to Any
        Run-config values passed as ``--run-config``.
    env : dict of str to str
        The environment naming the SuperLink (:func:`local_superlink` or
        :func:`local_deployment`).
    num_supernodes : int, optional
        Set: a simulation of that many nodes, ``cpus_per_node`` CPUs and
        ``gpus_per_node`` GPUs each. ``None``: a deployment (the nodes are
        SuperNodes).
    cpus_per_node, gpus_per_node
        Resources of each simulated node.
    on_line : callable, optional
        Sees the command line (prefixed ``flower-dl: ``) and then every output line.

    Returns
    -------
    tuple of (int, str)
        ``flwr``'s exit code and the run's :func:`run_status`
        (``"not started"`` when ``flwr`` printed no run id).
    """
    with (
        tempfile.TemporaryDirectory(prefix="flower-dl-app-") as staged,
        tempfile.TemporaryDirectory(prefix="flower-dl-config-") as config_dir,
    ):
        watchdog.register_dir(staged)
        watchdog.register_dir(config_dir)
        config_file = Path(config_dir) / "run-config.toml" if _needs_file(overrides) else None
        # flwr walks the whole folder it is given, a .venv in it included: give it only the app's files
        cmd = _run_cmd(
            stage_app(app_dir, Path(staged)), overrides, num_supernodes, cpus_per_node, gpus_per_node, config_file
        )
        if on_line is not None:
            on_line(f"{PROG}: {shlex.join(cmd)}  (the files of {app_dir} that go into the app bundle)\n")
        proc = popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        run_id = None
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if on_line is not None:
                    on_line(line)
                run_id = flwr_output.run_id(line) or run_id
            rc = proc.wait()
        except BaseException:
            stop_process_group(proc, timeout=5)
            raise
    status = run_status(run_id, env) if run_id else "not started"
    return rc, status
