"""The ``flower-dl`` command.

``flower-dl run``     one simulation through ``flwr run`` (the same code path), against
                      the installed environment, on a private SuperLink that it starts
                      on a free loopback port and always stops; exits non-zero when the
                      run fails.
``flower-dl sweep``   a grid of run configs x seeds, each cell such a simulation, rows
                      appended to one results table; resumes, survives Ctrl-C.
``flower-dl report``  the study's figures and a summary from a results table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

PROG = "flower-dl"
CONNECTION = "flower-dl-local"


class CliError(Exception):
    """An error reported to the user as ``flower-dl: error: ...`` (exit 2)."""


# ------------------------------------------------------------------- config
def parse_overrides(items: Sequence[str] | None) -> dict[str, Any]:
    """``--run-config`` values (``"k=v k2='s'"`` or one ``.toml`` file) -> dict."""
    from flwr.common.config import parse_config_args

    try:
        return parse_config_args(list(items) if items else None)
    except Exception as err:  # click.ClickException, ValueError, TOMLDecodeError
        msg = getattr(err, "message", None) or str(err)
        raise CliError(f"--run-config: {msg}") from err


def resolve_config(app_dir: Path, overrides: dict[str, Any]):
    """Defaults of the app's pyproject.toml fused with ``overrides``, validated.

    Returns the :class:`~flower_dl.config.RunConfig`; raises :class:`CliError`
    naming the key, the value and what is allowed. The topology is built too,
    so a bad graph fails here, before anything starts.
    """
    from flwr.common.config import get_fused_config_from_dir

    from flower_dl.config import RunConfig
    from flower_dl.server_app import build_topology

    if not (app_dir / "pyproject.toml").is_file():
        raise CliError(f"app: {str(app_dir)!r} holds no pyproject.toml (run from the flower-dl app folder)")
    try:
        fused = get_fused_config_from_dir(app_dir, overrides)
    except ValueError as err:
        raise CliError(f"--run-config: {err}") from err
    try:
        cfg = RunConfig.from_run_config(fused)
        build_topology(cfg)
    except ValueError as err:
        raise CliError(str(err)) from err
    return cfg


def toml_value(value: Any) -> str:
    """A Python scalar as a TOML literal (for ``--run-config``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def overrides_arg(overrides: dict[str, Any]) -> str:
    """dict -> the ``--run-config`` string ``k=v k2="s"``."""
    return " ".join(f"{k}={toml_value(v)}" for k, v in overrides.items())


# ---------------------------------------------------------------- superlink
def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Block until 127.0.0.1:``port`` accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise CliError(f"the SuperLink exited early with code {proc.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise CliError(f"the SuperLink did not open 127.0.0.1:{port} within {timeout:g} s")


def stop_process_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL, the process group led by ``proc``."""
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


@contextlib.contextmanager
def local_superlink(workdir: Path, startup_timeout: float = 60.0) -> Iterator[dict[str, str]]:
    """Start a simulation-mode SuperLink on free loopback ports; yield the env for ``flwr``.

    The SuperLink uses the installed environment
    (``--disable-runtime-dependency-installation``) and runs in its own
    process group, which is stopped on exit, whatever happens.
    """
    port = free_port()  # Flower 1.42: Control, Runtime (and Fleet) APIs share one HTTP port
    flwr_home = workdir / "flwr-home"
    flwr_home.mkdir(parents=True, exist_ok=True)
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n'
        f'[superlink.{CONNECTION}]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    env = os.environ.copy()
    env.update({
        "FLWR_HOME": str(flwr_home),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "PYTHONUNBUFFERED": "1",
        # the SuperLink starts flower-superexec, flwr-serverapp, ... by name
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    })
    cmd = [
        _bin("flower-superlink"), "--insecure", "--simulation", "--isolation", "subprocess",
        "--disable-runtime-dependency-installation",
        "--host", "127.0.0.1", "--port", str(port),
        "--health-server-address", f"127.0.0.1:{free_port()}",
        "--database", str(workdir / "state.db"),
        "--log-file", str(workdir / "superlink.log"),
    ]
    with open(workdir / "superlink.out", "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_for_port(port, startup_timeout, proc)
        except CliError as err:
            log = (workdir / "superlink.out").read_text(errors="replace")[-2000:]
            raise CliError(f"{err}; its output ends with:\n{log}") from err
        yield env
    finally:
        stop_process_group(proc)


def _bin(name: str) -> str:
    """An executable of this environment (beside the running Python), else from PATH."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


# --------------------------------------------------------------------- run
RUN_ID = re.compile(r"Successfully started run (\d+)")
ROUND = re.compile(r"\[ROUND (\d+)/(\d+)\]")


def run_status(run_id: str, env: dict[str, str]) -> str:
    """The run's status as ``flwr ls`` reports it (e.g. ``finished:completed``)."""
    out = subprocess.run(
        [_bin("flwr"), "ls", "--run-id", run_id, "--format", "json"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    try:
        runs = json.loads(out.stdout).get("runs", [])
        return str(runs[0].get("status", "unknown")) if runs else "unknown"
    except (json.JSONDecodeError, AttributeError, IndexError):
        return "unknown"


def launch(
    app_dir: Path,
    overrides: dict[str, Any],
    env: dict[str, str],
    *,
    num_supernodes: int,
    cpus_per_node: int,
    on_line=None,
) -> tuple[int, str]:
    """``flwr run --stream`` one run on the private SuperLink; return ``(exit code, status)``.

    ``on_line(line)`` sees every output line. The ``flwr`` child runs in its own
    process group and is stopped if this is interrupted.
    """
    fed = f"num-supernodes={num_supernodes} client-resources-num-cpus={cpus_per_node}"
    cmd = [
        _bin("flwr"), "run", str(app_dir), CONNECTION, "--stream",
        "--run-config", overrides_arg(overrides), "--federation-config", fed,
    ]
    if on_line is not None:
        on_line(f"{PROG}: {shlex.join(cmd)}\n")
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        start_new_session=True,
    )
    run_id = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if on_line is not None:
                on_line(line)
            match = RUN_ID.search(line)
            if match:
                run_id = match.group(1)
        rc = proc.wait()
    except BaseException:
        stop_process_group(proc, timeout=5)
        raise
    status = run_status(run_id, env) if run_id else "not started"
    return rc, status


def _echo(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


def cmd_run(args: argparse.Namespace) -> int:
    """``flower-dl run``: one simulation, results in ``results-dir``."""
    app_dir = Path(args.app).resolve()
    overrides = parse_overrides(args.run_config)
    cfg = resolve_config(app_dir, overrides)
    overrides["results-dir"] = str(Path(cfg.results_dir).expanduser().resolve())
    num_supernodes = _check_supernodes(args.num_supernodes, cfg.num_nodes)
    with tempfile.TemporaryDirectory(prefix="flower-dl-") as tmp, local_superlink(Path(tmp)) as env:
        rc, status = launch(
            app_dir, overrides, env, num_supernodes=num_supernodes, cpus_per_node=args.cpus_per_node, on_line=_echo
        )
    if rc != 0 or status != "finished:completed":
        print(f"{PROG}: error: the run did not complete (flwr exit code {rc}, status {status})", file=sys.stderr)
        return 1
    return 0


def _check_supernodes(requested: int | None, num_nodes: int) -> int:
    if requested is not None and requested != num_nodes:
        raise CliError(f"--num-supernodes: {requested} differs from num-nodes = {num_nodes}; they must be equal")
    return num_nodes


# ------------------------------------------------------------------- sweep
class Progress:
    """One status line: cells done, current round, elapsed time and ETA."""

    def __init__(self, total: int, stream=None) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.cell_started = self.started
        self.round = (0, 0)
        self.label = ""
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.durations: list[float] = []

    def start_cell(self, label: str) -> None:
        self.label = label
        self.round = (0, 0)
        self.cell_started = time.monotonic()
        self.show(force=True)

    def line(self, text: str) -> None:
        match = ROUND.search(text)
        if match:
            self.round = (int(match.group(1)), int(match.group(2)))
            self.show(force=not self.tty)

    def finish_cell(self) -> None:
        self.durations.append(time.monotonic() - self.cell_started)
        self.done += 1
        self.show(force=True)

    def eta(self) -> float | None:
        if not self.durations:
            return None
        remaining = self.total - self.done
        return remaining * (sum(self.durations) / len(self.durations))

    def show(self, force: bool = False) -> None:
        width = 20
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        rnd = f"round {self.round[0]}/{self.round[1]}" if self.round[1] else "starting"
        eta = self.eta()
        text = (
            f"[{bar}] {self.done}/{self.total} cells | {self.label} {rnd} | "
            f"elapsed {_fmt(time.monotonic() - self.started)} | ETA {_fmt(eta) if eta is not None else '?'}"
        )
        if self.tty:
            self.stream.write("\r\033[K" + text)
        elif force:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _fmt(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def cmd_sweep(args: argparse.Namespace) -> int:
    """``flower-dl sweep``: every grid cell x seed as a Flower simulation, rows appended to one table."""
    from flower_dl import sweep

    app_dir = Path(args.app).resolve()
    grid: dict[str, list[Any]] = {}
    base: dict[str, Any] = {}
    seeds: list[int] = []
    try:
        if args.file:
            grid, base, seeds = sweep.load_grid_file(args.file)
        for text in args.grid or []:
            grid.update(sweep.parse_grid(text))
    except (OSError, ValueError) as err:
        raise CliError(str(err)) from err
    base.update(parse_overrides(args.run_config))
    if "seed" in grid:
        raise CliError("--grid: seed: use --seeds (or seeds = [...] in the sweep file) for repetitions")
    if args.seeds:
        seeds = list(args.seeds)
    if not seeds:
        first = resolve_config(app_dir, base).seed
        seeds = [first + i for i in range(args.repetitions)]
    table = Path(args.table).expanduser().resolve()
    if table.suffix not in (".csv", ".xlsx"):
        raise CliError(f"--table: {str(table)!r} must end in .csv or .xlsx")

    # resolve and validate every cell before anything runs
    cells = []
    for values in sweep.expand(grid, seeds):
        overrides = {**base, **values}
        cfg = resolve_config(app_dir, overrides)
        full = cfg.to_run_config()
        cells.append((sweep.cell_id(full), overrides, full, cfg))
    try:
        done = sweep.done_cells(sweep.read_table(table))
    except Exception as err:  # unreadable table: refuse rather than overwrite it
        raise CliError(f"--table: cannot read {str(table)!r}: {err}") from err
    todo = [c for c in cells if c[0] not in done]
    print(
        f"{PROG}: sweep of {len(cells)} cells ({len(cells) - len(todo)} already in {table}); running {len(todo)}",
        flush=True,
    )
    if not todo:
        return 0
    runs_dir = Path(args.runs_dir).expanduser().resolve() if args.runs_dir else None
    progress = Progress(len(todo))
    failed = 0
    log_file = open(table.with_name(table.stem + ".log"), "a", encoding="utf-8")  # noqa: SIM115
    try:
        with tempfile.TemporaryDirectory(prefix="flower-dl-sweep-") as tmp, local_superlink(Path(tmp)) as env:
            for cid, overrides, full, cfg in todo:
                out_dir = runs_dir or Path(tmp) / "runs"
                label = " ".join(f"{k}={v}" for k, v in {**{k: overrides[k] for k in grid}, "seed": full["seed"]}.items())
                progress.start_cell(label)

                def on_line(line: str) -> None:
                    log_file.write(line)
                    progress.line(line)

                rc, status = launch(
                    app_dir, {**overrides, "seed": full["seed"], "results-dir": str(out_dir), "run-name": cid},
                    env, num_supernodes=cfg.num_nodes, cpus_per_node=args.cpus_per_node, on_line=on_line,
                )
                log_file.flush()
                metrics = out_dir / cid / "metrics.csv"
                if rc != 0 or status != "finished:completed" or not metrics.exists():
                    failed += 1
                    progress.stream.write(f"\n{PROG}: cell {cid} ({label}) failed: status {status}; see {log_file.name}\n")
                else:
                    sweep.append_cell(table, full, cid, metrics)
                progress.finish_cell()
    except KeyboardInterrupt:
        progress.close()
        print(f"{PROG}: interrupted; {progress.done} cells finished and kept in {table}; re-run to resume", file=sys.stderr)
        return 130
    finally:
        log_file.close()
    progress.close()
    print(f"{PROG}: {progress.done - failed} cells written to {table}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    """``flower-dl report``: the study's figures and a Markdown summary from a results table."""
    from flower_dl import report

    try:
        paths = report.write_report(args.table, args.out, formats=tuple(args.formats))
    except (OSError, ValueError) as err:
        raise CliError(str(err)) from err
    for path in paths:
        print(path)
    return 0


# -------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Decentralized learning with data exchange on Flower.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one simulation (flwr run on a private local SuperLink)")
    run.add_argument("app", nargs="?", default=".", help="the flower-dl app folder (default: .)")
    run.add_argument(
        "--run-config", "-c", action="append",
        help="override run-config values: 'k1=v1 k2=\"s\"' (TOML values) or a .toml file; repeatable",
    )
    run.add_argument("--num-supernodes", type=int, default=None, help="simulated nodes (default: num-nodes)")
    run.add_argument("--cpus-per-node", type=int, default=1, help="CPUs per simulated node (default: 1)")
    run.set_defaults(func=cmd_run)

    sw = sub.add_parser("sweep", help="run a grid of configs x seeds; append rows to one results table")
    sw.add_argument("app", nargs="?", default=".", help="the flower-dl app folder (default: .)")
    sw.add_argument("--grid", "-g", action="append", help="axes as TOML arrays: \"share-ratio=[0, 0.1] digits-per-node=[2, 4]\"")
    sw.add_argument("--file", "-f", help="sweep TOML file with [grid], [run-config] and seeds = [...]")
    sw.add_argument("--run-config", "-c", action="append", help="fixed run-config values for every cell (as for run)")
    sw.add_argument("--seeds", type=int, nargs="+", help="explicit seeds (repetitions)")
    sw.add_argument("--repetitions", "-r", type=int, default=1, help="seeds seed, seed+1, ... (default: 1)")
    sw.add_argument("--table", "-t", default="results/sweep.csv", help="results table, .csv or .xlsx (default: results/sweep.csv)")
    sw.add_argument("--runs-dir", help="keep each cell's run folder here (default: discarded)")
    sw.add_argument("--cpus-per-node", type=int, default=1, help="CPUs per simulated node (default: 1)")
    sw.set_defaults(func=cmd_sweep)

    rp = sub.add_parser("report", help="figures (PNG, SVG) and a Markdown summary from a results table")
    rp.add_argument("table", help="results table (.csv or .xlsx)")
    rp.add_argument("--out", "-o", default="results/report", help="output folder (default: results/report)")
    rp.add_argument("--formats", nargs="+", default=["png", "svg"], help="figure formats (default: png svg)")
    rp.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flower-dl`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
