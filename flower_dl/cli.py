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
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flower_dl.processes import (
    CONNECTION,
    ProcessError,
    bin_path,
    local_deployment,
    local_superlink,
    stop_process_group,
)

PROG = "flower-dl"


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
    from flower_dl.data import check_data_dir
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
        if cfg.dataset != "mnist-5k" and cfg.data_dir:
            check_data_dir(cfg.data_dir)
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


# --------------------------------------------------------------------- run
RUN_ID = re.compile(r"Successfully started run (\d+)")
ROUND = re.compile(r"\[ROUND (\d+)/(\d+)\]")


def run_status(run_id: str, env: dict[str, str]) -> str:
    """The run's status as ``flwr ls`` reports it (e.g. ``finished:completed``), with its details if any."""
    out = subprocess.run(
        [bin_path("flwr"), "ls", "--run-id", run_id, "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        runs = json.loads(out.stdout).get("runs", [])
    except (json.JSONDecodeError, AttributeError):
        return "unknown"
    if not runs:
        return "unknown"
    status = str(runs[0].get("status", "unknown"))
    details = runs[0].get("status-details")
    return f"{status} ({details})" if details and status != "finished:completed" else status


def launch(
    app_dir: Path,
    overrides: dict[str, Any],
    env: dict[str, str],
    *,
    num_supernodes: int | None = None,
    cpus_per_node: int = 1,
    gpus_per_node: float = 0.0,
    on_line=None,
) -> tuple[int, str]:
    """``flwr run --stream`` one run on the private SuperLink; return ``(exit code, status)``.

    ``num_supernodes`` set: a simulation of that many nodes, ``cpus_per_node``
    CPUs each; ``None``: a deployment (the nodes are SuperNodes). ``on_line(line)``
    sees every output line. The ``flwr`` child runs in its own process group and
    is stopped if this is interrupted.
    """
    cmd = [bin_path("flwr"), "run", str(app_dir), CONNECTION, "--stream", "--run-config", overrides_arg(overrides)]
    if num_supernodes is not None:
        fed = f"num-supernodes={num_supernodes} client-resources-num-cpus={cpus_per_node}"
        if gpus_per_node:
            fed += f" client-resources-num-gpus={gpus_per_node}"
        cmd += ["--federation-config", fed]
    if on_line is not None:
        on_line(f"{PROG}: {shlex.join(cmd)}\n")
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
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
            app_dir,
            overrides,
            env,
            num_supernodes=num_supernodes,
            cpus_per_node=args.cpus_per_node,
            gpus_per_node=args.gpus_per_node,
            on_line=_echo,
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
                label = " ".join(
                    f"{k}={v}" for k, v in {**{k: overrides[k] for k in grid}, "seed": full["seed"]}.items()
                )
                progress.start_cell(label)

                def on_line(line: str) -> None:
                    log_file.write(line)
                    progress.line(line)

                rc, status = launch(
                    app_dir,
                    {**overrides, "seed": full["seed"], "results-dir": str(out_dir), "run-name": cid},
                    env,
                    num_supernodes=cfg.num_nodes,
                    cpus_per_node=args.cpus_per_node,
                    gpus_per_node=args.gpus_per_node,
                    on_line=on_line,
                )
                log_file.flush()
                metrics = out_dir / cid / "metrics.csv"
                if rc != 0 or status != "finished:completed" or not metrics.exists():
                    failed += 1
                    progress.stream.write(
                        f"\n{PROG}: cell {cid} ({label}) failed: status {status}; see {log_file.name}\n"
                    )
                else:
                    sweep.append_cell(table, full, cid, metrics)
                progress.finish_cell()
    except KeyboardInterrupt:
        progress.close()
        print(
            f"{PROG}: interrupted; {progress.done} cells finished and kept in {table}; re-run to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        log_file.close()
    progress.close()
    print(f"{PROG}: {progress.done - failed} cells written to {table}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def cmd_deploy_local(args: argparse.Namespace) -> int:
    """``flower-dl deploy-local``: a SuperLink and N SuperNodes on 127.0.0.1 until Ctrl-C."""
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="flower-dl-deploy-")).resolve()
    with local_deployment(workdir, args.num_nodes, data_dir=args.data_dir) as dep:
        home = dep.env["FLWR_HOME"]
        print(
            f"{PROG}: SuperLink on {dep.superlink_address} (insecure, loopback only) and "
            f"{args.num_nodes} SuperNodes (partition-id 0..{args.num_nodes - 1}); logs in {workdir}\n"
            f"Run the app against it from another shell:\n"
            f"  FLWR_HOME={home} flwr run . {CONNECTION} --stream "
            f"--run-config \"num-nodes={args.num_nodes} results-dir='$PWD/results'\"\n"
            f"Press Ctrl-C to stop every process.",
            flush=True,
        )
        try:
            while dep.superlink.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    print(f"{PROG}: local deployment stopped", flush=True)
    return 0


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
        "--run-config",
        "-c",
        action="append",
        help="override run-config values: 'k1=v1 k2=\"s\"' (TOML values) or a .toml file; repeatable",
    )
    run.add_argument("--num-supernodes", type=int, default=None, help="simulated nodes (default: num-nodes)")
    run.add_argument("--cpus-per-node", type=int, default=1, help="CPUs per simulated node (default: 1)")
    run.add_argument(
        "--gpus-per-node", type=float, default=0.0, help="GPU share per simulated node, e.g. 0.2 (default: 0)"
    )
    run.set_defaults(func=cmd_run)

    sw = sub.add_parser("sweep", help="run a grid of configs x seeds; append rows to one results table")
    sw.add_argument("app", nargs="?", default=".", help="the flower-dl app folder (default: .)")
    sw.add_argument(
        "--grid", "-g", action="append", help='axes as TOML arrays: "share-ratio=[0, 0.1] digits-per-node=[2, 4]"'
    )
    sw.add_argument("--file", "-f", help="sweep TOML file with [grid], [run-config] and seeds = [...]")
    sw.add_argument("--run-config", "-c", action="append", help="fixed run-config values for every cell (as for run)")
    sw.add_argument("--seeds", type=int, nargs="+", help="explicit seeds (repetitions)")
    sw.add_argument("--repetitions", "-r", type=int, default=1, help="seeds seed, seed+1, ... (default: 1)")
    sw.add_argument(
        "--table", "-t", default="results/sweep.csv", help="results table, .csv or .xlsx (default: results/sweep.csv)"
    )
    sw.add_argument("--runs-dir", help="keep each cell's run folder here (default: discarded)")
    sw.add_argument("--cpus-per-node", type=int, default=1, help="CPUs per simulated node (default: 1)")
    sw.add_argument("--gpus-per-node", type=float, default=0.0, help="GPU share per simulated node (default: 0)")
    sw.set_defaults(func=cmd_sweep)

    dl = sub.add_parser("deploy-local", help="start a SuperLink and N SuperNodes on 127.0.0.1 (until Ctrl-C)")
    dl.add_argument("--num-nodes", "-n", type=int, default=5, help="SuperNodes to start (default: 5)")
    dl.add_argument("--data-dir", default="", help="data-dir passed to every SuperNode's node config")
    dl.add_argument("--workdir", help="folder for logs and state (default: a new temporary folder)")
    dl.set_defaults(func=cmd_deploy_local)

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
    except (CliError, ProcessError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
