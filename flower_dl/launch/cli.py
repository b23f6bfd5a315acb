"""The ``flower-dl`` command: it parses arguments, validates them and prints; nothing else.

``flower-dl run``     one simulation through ``flwr run`` (the same code path), against
                      the installed environment, on a private SuperLink that it starts
                      on a free loopback port and always stops; exits non-zero when the
                      run fails.
``flower-dl sweep``   a grid of run configs x seeds, each cell such a simulation, rows
                      appended to one results table; resumes, survives Ctrl-C.
``flower-dl report``  the study's figures and a summary from a results table.

Every config is resolved and validated (:func:`resolve_config`) and every
output folder checked writable before anything starts, so a mistake costs
seconds, not a finished run. The work is done elsewhere: starting and
stopping Flower's processes and ``flwr run`` in :mod:`flower_dl.launch.processes`
(:func:`~flower_dl.launch.processes.launch`), running a sweep's cells in
:func:`flower_dl.launch.sweep.run_sweep` (this module shows its progress), and
reading Flower's output in :mod:`flower_dl.launch.flwr_output`.

One module although over ~400 lines: every command's argument parsing, checks and
printing sit together so that the commands stay consistent; the work itself is elsewhere.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flower_dl.launch import flwr_output, watchdog
from flower_dl.launch.processes import CONNECTION, ProcessError, launch, local_deployment, local_superlink
from flower_dl.results.files import check_writable_dir

if TYPE_CHECKING:
    from flower_dl.launch.sweep import Cell, CellResult, SweepOutcome

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
    from flower_dl.data.datasets import check_data_dir, fetch_dataset
    from flower_dl.registry import is_import_path
    from flower_dl.server.app import build_topology

    if not (app_dir / "pyproject.toml").is_file():
        raise CliError(f"app: {str(app_dir)!r} holds no pyproject.toml (run from the flower-dl app folder)")
    try:
        fused = get_fused_config_from_dir(app_dir, overrides)
    except ValueError as err:
        raise CliError(f"--run-config: {err}") from err
    try:
        cfg = RunConfig.from_run_config(fused)
        build_topology(cfg)
        if is_import_path(cfg.strategy):  # a user's rule: a subclass of the base, checked before anything starts
            from flower_dl.strategies import strategy_class

            strategy_class(cfg.strategy)
        if cfg.dataset == "folder":
            _check_node_folders(cfg)
        elif cfg.dataset != "mnist-5k" and cfg.data_dir:
            check_data_dir(cfg.data_dir, cfg.dataset)
        elif cfg.dataset != "mnist-5k":
            fetch_dataset(cfg.dataset)  # once, here, before any node starts (nodes then find it)
    except ValueError as err:
        raise CliError(str(err)) from err
    return cfg


def _check_node_folders(cfg) -> None:
    """In a simulation every node's folder is on this machine: each must exist before anything starts."""
    from flower_dl.data.folders import data_dir_for

    for pid in range(cfg.num_nodes):
        path = Path(data_dir_for(cfg.data_dir, pid, cfg.num_nodes)).expanduser()
        if not path.is_dir():
            raise ValueError(f"data-dir: node {pid}'s folder {str(path)!r} does not exist or is not a folder")
    if cfg.test_dir and not Path(cfg.test_dir).expanduser().is_dir():
        raise ValueError(f"test-dir: {cfg.test_dir!r} does not exist or is not a folder")


# --------------------------------------------------------------------- run
def _echo(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


def checked_dir(path: str | Path, key: str) -> Path:
    """``path`` resolved, once it is known to be a folder that can be written; else :class:`CliError`.

    Checked before anything starts, so that no run computes results it then
    cannot write. ``key`` (the run-config key or option) is named in the error.
    """
    try:
        return check_writable_dir(path, key)
    except ValueError as err:
        raise CliError(str(err)) from err


def cmd_run(args: argparse.Namespace) -> int:
    """``flower-dl run``: one simulation, results in ``results-dir/run-name`` (or ``--resume`` one that stopped)."""
    from flower_dl.results.writer import run_folder_name

    app_dir = Path(args.app).resolve()
    if args.resume:
        overrides = _resume_overrides(Path(args.resume), args.run_config)
    else:
        overrides = parse_overrides(args.run_config)
    cfg = resolve_config(app_dir, overrides)
    overrides["results-dir"] = str(checked_dir(cfg.results_dir, "results-dir"))
    # the folder's name is fixed here, so that this command can say how the run ended in it
    overrides["run-name"] = run_folder_name(cfg.to_run_config(), time.time())
    folder = Path(overrides["results-dir"]) / overrides["run-name"]
    num_supernodes = _check_supernodes(args.num_supernodes, cfg.num_nodes)
    quiet = None if args.verbose else flwr_output.QuietLog()
    interrupted = False
    try:
        with tempfile.TemporaryDirectory(prefix="flower-dl-") as tmp, local_superlink(Path(tmp)) as env:
            rc, status = launch(
                app_dir,
                overrides,
                env,
                num_supernodes=num_supernodes,
                cpus_per_node=args.cpus_per_node,
                gpus_per_node=args.gpus_per_node,
                on_line=lambda line: _echo(line) if quiet is None or quiet.keep(line) else None,
            )
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        _close_status(folder, interrupted)
    if rc != 0 or status != "finished:completed":
        reason = flwr_output.failure_reason(status)
        print(f"{PROG}: error: the run failed: {reason} (flwr exit code {rc}; -v shows Flower's whole log)",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _resume_overrides(folder: Path, extra: Sequence[str] | None) -> dict[str, Any]:
    """The run config of the run in ``folder`` (its ``config.json``), to go on from its last checkpoint."""
    from flower_dl.results.writer import RunFolder

    if extra:
        raise CliError("--resume: a resumed run keeps its own run config; -c is not allowed with it")
    if not (folder / "config.json").is_file():
        raise CliError(f"--resume: {str(folder)!r} holds no config.json (not a flower-dl run folder)")
    try:
        run_config = dict(RunFolder(folder, resume=True).config()["run-config"])
    except (ValueError, KeyError) as err:
        raise CliError(f"--resume: {str(folder / 'config.json')!r} cannot be read: {err}") from err
    folder = folder.resolve()
    return {**run_config, "results-dir": str(folder.parent), "run-name": folder.name, "resume": True}


def _close_status(folder: Path, interrupted: bool) -> None:
    """A run folder whose status still says ``running`` once its run is gone: say it stopped (and resumable)."""
    from flower_dl.results.writer import RunFolder

    if not (folder / "status.json").exists():
        return
    run = RunFolder(folder, resume=True)
    status = run.status()
    if status.get("state") == "running":
        how = "interrupted" if interrupted else "failed"
        run.write_status({**status, "state": how, "error": f"the run's processes stopped ({how})"})


def _check_supernodes(requested: int | None, num_nodes: int) -> int:
    if requested is not None and requested != num_nodes:
        raise CliError(f"--num-supernodes: {requested} differs from num-nodes = {num_nodes}; they must be equal")
    return num_nodes


# ------------------------------------------------------------------- sweep
class Progress:
    """One status line: cells done, current round, elapsed time and ETA.

    Driven by :func:`flower_dl.launch.sweep.run_sweep`'s callbacks; on a terminal the
    line is redrawn in place, elsewhere (a log file) printed only when it changes
    much (a cell starts or ends, a round starts), so logs stay short.
    """

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
        """A cell starts: show its label, no round yet."""
        self.label = label
        self.round = (0, 0)
        self.cell_started = time.monotonic()
        self.show(force=True)

    def line(self, text: str) -> None:
        """An output line of the cell's run: a ``[ROUND r/R]`` line moves the round on."""
        rnd = flwr_output.round_of(text)
        if rnd is not None:
            self.round = rnd
            self.show(force=not self.tty)

    def finish_cell(self) -> None:
        """A cell ended (completed or failed): it counts towards the ETA."""
        self.durations.append(time.monotonic() - self.cell_started)
        self.done += 1
        self.show(force=True)

    def eta(self) -> float | None:
        """Seconds left, from the mean time of the cells done; ``None`` before the first."""
        if not self.durations:
            return None
        remaining = self.total - self.done
        return remaining * (sum(self.durations) / len(self.durations))

    def show(self, force: bool = False) -> None:
        """Draw the line (``force``: also when the stream is not a terminal)."""
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
        """End the line on a terminal, so what is printed next starts on its own."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _fmt(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _sweep_grid(args: argparse.Namespace, app_dir: Path) -> tuple[dict[str, list[Any]], dict[str, Any], list[int]]:
    """The grid, the fixed values and the seeds from ``--file``, ``--grid``, ``--run-config`` and the seed options."""
    from flower_dl.launch import sweep

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
    return grid, base, seeds


def sweep_cells(app_dir: Path, grid: dict[str, list[Any]], base: dict[str, Any], seeds: list[int]) -> list[Cell]:
    """Every cell of the sweep, each config resolved and validated before anything runs.

    A bad value in the last cell fails here, not after hours of the others.
    """
    from flower_dl.launch import sweep

    cells = []
    for values in sweep.expand(grid, seeds):
        overrides = {**base, **values}
        cells.append(sweep.Cell.from_config(overrides, resolve_config(app_dir, overrides).to_run_config(), grid))
    return cells


def _table_arg(text: str) -> Path:
    table = Path(text).expanduser().resolve()
    if table.suffix not in (".csv", ".xlsx"):
        raise CliError(f"--table: {str(table)!r} must end in .csv or .xlsx")
    return table


def _pending(cells: list[Cell], table: Path) -> list[Cell]:
    from flower_dl.launch import sweep

    try:
        return sweep.pending_cells(cells, table)
    except Exception as err:  # unreadable table: refuse rather than overwrite it
        raise CliError(f"--table: cannot read {str(table)!r}: {err}") from err


def cmd_sweep(args: argparse.Namespace) -> int:
    """``flower-dl sweep``: every grid cell x seed as a Flower simulation, rows appended to one table."""
    from flower_dl.launch import sweep

    app_dir = Path(args.app).resolve()
    grid, base, seeds = _sweep_grid(args, app_dir)
    table = _table_arg(args.table)
    cells = sweep_cells(app_dir, grid, base, seeds)
    todo = _pending(cells, table)
    runs_dir = None
    if todo:  # the outputs must be writable before the first cell, not after it
        checked_dir(table.parent, "--table")
        runs_dir = checked_dir(args.runs_dir or sweep.default_runs_dir(table), "--runs-dir")
    print(
        f"{PROG}: sweep of {len(cells)} cells ({len(cells) - len(todo)} already in {table}); running {len(todo)}",
        flush=True,
    )
    if not todo:
        return 0
    progress = Progress(len(todo))
    outcome = sweep.run_sweep(
        todo,
        table,
        app_dir=app_dir,
        runs_dir=runs_dir,
        cpus_per_node=args.cpus_per_node,
        gpus_per_node=args.gpus_per_node,
        on_cell_start=lambda cell: progress.start_cell(cell.label),
        on_line=progress.line,
        on_cell_end=lambda cell, result: _cell_ended(progress, cell, result, sweep.log_path(table)),
        separate_runs=args.separate_runs,
    )
    progress.close()
    return _sweep_summary(outcome, table)


def _cell_ended(progress: Progress, cell: Cell, result: CellResult, log: Path) -> None:
    if not result.ok:
        progress.stream.write(f"\n{PROG}: cell {cell.id} ({cell.label}) failed: status {result.status}; see {log}\n")
    progress.finish_cell()


def _sweep_summary(outcome: SweepOutcome, table: Path) -> int:
    """Say how the sweep ended; its exit code (130 interrupted, 1 a cell failed)."""
    if outcome.interrupted:
        print(
            f"{PROG}: interrupted; {outcome.finished} cells finished and kept in {table}; re-run to resume",
            file=sys.stderr,
        )
        return 130
    failed = len(outcome.failed)
    print(f"{PROG}: {outcome.written} cells written to {table}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def _fitting_topology(num_nodes: int) -> str:
    """Run-config text choosing a topology for ``num_nodes``: the default ``edges`` is the study's 5-node tree."""
    if num_nodes == 5:
        return ""
    return " topology='ring'" if num_nodes >= 3 else " topology='full'"


def cmd_deploy_local(args: argparse.Namespace) -> int:
    """``flower-dl deploy-local``: a SuperLink and N SuperNodes on 127.0.0.1 until Ctrl-C."""
    own_workdir = not args.workdir  # a folder of its own is removed when it stops; the user's is kept
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="flower-dl-deploy-")).resolve()
    if own_workdir:
        watchdog.register_dir(workdir)  # removed even if this command is killed outright
    try:
        _deploy(args, workdir)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    where = f"its temporary folder {workdir} removed" if own_workdir else f"logs kept in {workdir}"
    print(f"{PROG}: local deployment stopped; {where}", flush=True)
    return 0


def _deploy(args: argparse.Namespace, workdir: Path) -> None:
    """Start the local deployment in ``workdir``, say how to use it, wait until stopped."""
    secure = None
    if args.secure:
        from flower_dl.launch.secure import write_secure_files

        secure = write_secure_files(args.num_nodes, workdir / "keys")
    with local_deployment(workdir, args.num_nodes, data_dir=args.data_dir, secure=secure) as dep:
        home = dep.env["FLWR_HOME"]
        folder = " dataset='folder'" if "{partition-id}" in args.data_dir else ""
        how = "insecure, loopback only" if secure is None else (
            f"TLS and SuperNode authentication, every SuperNode registered; keys in {secure.folder}"
        )  # fmt: skip
        print(
            f"{PROG}: SuperLink on {dep.superlink_address} ({how}) and "
            f"{args.num_nodes} SuperNodes (partition-id 0..{args.num_nodes - 1}); logs in {workdir} "
            f"({'removed when it stops' if not args.workdir else 'kept'})\n"
            f"Run the app against it from another shell:\n"
            f"  FLWR_HOME={home} flwr run . {CONNECTION} --stream "
            f'--run-config "num-nodes={args.num_nodes}{_fitting_topology(args.num_nodes)}{folder} '
            f"results-dir='$PWD/results'\"\n"
            f"Press Ctrl-C (or send SIGTERM) to stop every process.",
            flush=True,
        )
        try:
            while dep.superlink.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


def _new_or_empty(path: str, who: str) -> Path:
    """``--out`` resolved, once it is known to be a new or an empty folder (checked before any work)."""
    out = Path(path).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CliError(f"--out: {str(out)!r} is not an empty folder; {who} only into a new or empty one")
    return out


def cmd_split(args: argparse.Namespace) -> int:
    """``flower-dl split``: one folder per node from a dataset and a partitioner, plus ``manifest.json``."""
    from flower_dl.data.datasets import DATASETS, DataError, load_dataset
    from flower_dl.data.split import split

    app_dir = Path(args.app).resolve()
    overrides = parse_overrides(args.run_config)
    overrides.setdefault("topology", "full")  # a split needs no graph: any num-nodes is fine
    if overrides.get("dataset") == "folder":
        raise CliError(f"dataset: 'folder' cannot be split; name the source dataset ({', '.join(DATASETS)})")
    cfg = resolve_config(app_dir, overrides)
    out = _new_or_empty(args.out, "split writes")
    try:
        manifest = split(
            load_dataset(cfg.dataset, cfg.data_dir, image_size=cfg.image_size, image_column=cfg.image_column,
                         label_column=cfg.label_column),
            partitioner=cfg.partitioner, num_nodes=cfg.num_nodes,
            digits_per_node=cfg.digits_per_node, alpha=cfg.dirichlet_alpha, seed=cfg.seed, out_dir=out,
            layout=args.layout, source=cfg.dataset, test=args.test,
        )  # fmt: skip
    except DataError as err:
        raise CliError(str(err)) from err
    sizes = ", ".join(f"node {node['partition-id']}: {node['train-samples']}" for node in manifest["nodes"])
    test_dir = f" test-dir='{out}'" if args.test == "shared" else ""
    print(
        f"{PROG}: wrote {cfg.num_nodes} node folders ({args.layout}) and manifest.json to {out} "
        f"(training samples per node: {sizes})\n"
        f"Run on them (simulation):\n"
        f"  {PROG} run -c \"dataset='folder' data-dir='{out}/node-{{partition-id}}'{test_dir} num-nodes={cfg.num_nodes}"
        f'{_fitting_topology(cfg.num_nodes)}"\n'
        f'On separate machines, give SuperNode i --node-config "partition-id=i num-partitions={cfg.num_nodes} '
        f"data-dir='<its copy of node-i>'\" and run with --run-config \"dataset='folder'{test_dir}\"",
        flush=True,
    )
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """``flower-dl keys``: every key of a secure deployment, and the commands that use them."""
    from flower_dl.launch.secure import DEFAULT_HOSTS, check_hosts, write_secure_files

    if args.num_nodes < 1:
        raise CliError(f"--num-nodes: {args.num_nodes} is not allowed; allowed: an integer >= 1")
    try:
        hosts = check_hosts(args.host or DEFAULT_HOSTS)
    except ValueError as err:
        raise CliError(str(err)) from err
    out = _new_or_empty(args.out, "keys are written")
    files = write_secure_files(args.num_nodes, out, hosts)
    print(secure_commands(files, hosts[0], args.port), flush=True)
    return 0


def secure_commands(files, host: str, port: int) -> str:  # files: flower_dl.launch.secure.SecureFiles
    """What to run with the files of :func:`flower_dl.launch.secure.write_secure_files`, machine by machine."""
    n, d = files.num_nodes, files.folder
    return (
        f"{PROG}: wrote a CA and a SuperLink certificate, {n} SuperNode key pairs and {n} flower-dl identities to {d}\n"
        f"(private keys: mode 0600; copy each to its own machine only)\n\n"
        f"1. SuperLink (keeps {files.superlink_key.name}; the CA key {d / 'ca.key'} stays offline):\n"
        f"  flower-superlink --host 0.0.0.0 --port {port} --ssl-ca-certfile {files.ca} "
        f"--ssl-certfile {files.superlink_cert} --ssl-keyfile {files.superlink_key} --enable-supernode-auth\n\n"
        f"2. The flwr connection (in $FLWR_HOME/config.toml, on the machine that runs flwr):\n"
        f'  [superlink.{CONNECTION}]\n  address = "{host}:{port}"\n  root-certificates = "{files.ca}"\n\n'
        f"3. Register every SuperNode's public key (only registered ones may join):\n"
        + "".join(f"  flwr supernode register {files.auth_public(i)} {CONNECTION}\n" for i in range(n))
        + "\n4. SuperNode i, on its machine (i = 0.."
        + f"{n - 1}):\n"
        f"  flower-supernode --superlink {host}:{port} --root-certificates {files.ca} "
        f"--auth-supernode-private-key {d}/supernode-i-auth.key "
        f"--node-config \"partition-id=i num-partitions={n} identity-key='{d}/node-i.key' "
        f"peer-keys='{files.peer_keys}'\"\n\n"
        f'5. Run: flwr run . {CONNECTION} --stream --run-config "num-nodes={n}"'
    )


def cmd_report(args: argparse.Namespace) -> int:
    """``flower-dl report``: the study's figures and a Markdown summary from a results table."""
    from flower_dl import report

    try:
        paths = report.write_report(args.table, args.out, formats=tuple(args.formats), allow_mixed=args.allow_mixed)
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
    run.add_argument("--resume", metavar="RUN_FOLDER", help="go on with the run in RUN_FOLDER from its last checkpoint")
    run.add_argument("--verbose", "-v", action="store_true", help="show Flower's whole log (default: progress only)")
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
    sw.add_argument(
        "--runs-dir", help="each cell's run folder (and checkpoint: a re-run resumes it) (default: TABLE-STEM.runs/)"
    )
    sw.add_argument("--cpus-per-node", type=int, default=1, help="CPUs per simulated node (default: 1)")
    sw.add_argument("--gpus-per-node", type=float, default=0.0, help="GPU share per simulated node (default: 0)")
    sw.add_argument(
        "--separate-runs", action="store_true",
        help="one Flower run per cell (default: cells with the same num-nodes share one run)",
    )  # fmt: skip
    sw.set_defaults(func=cmd_sweep)

    dl = sub.add_parser("deploy-local", help="start a SuperLink and N SuperNodes on 127.0.0.1 (until Ctrl-C)")
    dl.add_argument("--num-nodes", "-n", type=int, default=5, help="SuperNodes to start (default: 5)")
    dl.add_argument(
        "--data-dir", default="",
        help="data-dir of every SuperNode's node config; with {partition-id}, each SuperNode's own folder",
    )  # fmt: skip
    dl.add_argument("--workdir", help="folder for logs and state (default: a new temporary folder)")
    dl.add_argument(
        "--secure", action="store_true",
        help="TLS, SuperNode authentication (every SuperNode registered) and flower-dl identities",
    )  # fmt: skip
    dl.set_defaults(func=cmd_deploy_local)

    sp = sub.add_parser("split", help="write one data folder per node (dataset = 'folder') and a manifest")
    sp.add_argument("app", nargs="?", default=".", help="the flower-dl app folder (default: .)")
    sp.add_argument(
        "--run-config", "-c", action="append",
        help="dataset, data-dir, partitioner, num-nodes, digits-per-node, dirichlet-alpha, seed (as for run)",
    )  # fmt: skip
    sp.add_argument("--out", "-o", required=True, help="output folder (new or empty)")
    sp.add_argument("--layout", choices=["idx", "png"], default="idx", help="IDX files or a PNG tree (default: idx)")
    sp.add_argument(
        "--test", choices=["shared", "own"], default="shared",
        help="shared: the whole test set once, as OUT/test (default); own: each node the test samples of its classes",
    )  # fmt: skip
    sp.set_defaults(func=cmd_split)

    ks = sub.add_parser(
        "keys", help="every key of a secure deployment: TLS certificates, SuperNode keys, flower-dl identities"
    )
    ks.add_argument("--num-nodes", "-n", type=int, required=True, help="nodes to make keys for")
    ks.add_argument("--out", "-o", required=True, help="output folder (new or empty)")
    ks.add_argument(
        "--host", action="append", default=None,
        help="a name or address the SuperLink is reached by (repeatable; default: 127.0.0.1 and localhost)",
    )  # fmt: skip
    ks.add_argument(
        "--port", type=int, default=8000, help="the SuperLink's port (Flower's default: 8000), for the printed commands"
    )
    ks.set_defaults(func=cmd_keys)

    rp = sub.add_parser("report", help="figures (PNG, SVG) and a Markdown summary from a results table")
    rp.add_argument("table", help="results table (.csv or .xlsx)")
    rp.add_argument("--out", "-o", default="results/report", help="output folder (default: results/report)")
    rp.add_argument("--formats", nargs="+", default=["png", "svg"], help="figure formats (default: png svg)")
    rp.add_argument(
        "--allow-mixed", action="store_true",
        help="report rows made by different code, or from different data under one dataset name, side by side",
    )  # fmt: skip
    rp.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flower-dl`` command.

    SIGTERM and SIGHUP stop every command as Ctrl-C does, and nothing a
    command started outlives it, even killed outright
    (:func:`~flower_dl.launch.processes.stoppable`). An interrupted ``run`` or
    ``sweep`` exits with 128 + the signal's number, as a shell reports a
    command killed by it: 130 for Ctrl-C (SIGINT), 143 for SIGTERM, 129 for
    SIGHUP. ``deploy-local`` runs until it is stopped, so any of the three
    ends it normally (exit 0) once it is up.

    Returns
    -------
    int
        The exit code: 0 done, 1 a run or cell failed, 2 a usage error or a
        process that did not start, 128 + signal number interrupted.
    """
    import signal

    from flower_dl.launch.processes import stoppable

    args = build_parser().parse_args(argv)
    received: list[int] = []
    try:
        with stoppable(ignore_late=argv is None) as received:
            try:
                code = int(args.func(args) or 0)
            except (CliError, ProcessError) as err:
                print(f"{PROG}: error: {err}", file=sys.stderr)
                code = 2
            except KeyboardInterrupt:
                how = f" by {signal.Signals(received[0]).name}" if received else ""
                print(f"{PROG}: interrupted{how}", file=sys.stderr)
                code = 130
    except KeyboardInterrupt:  # a second stop signal while the watchdog stopped what was left: the first one decides
        code = 130
    return 128 + received[0] if code == 130 and received else code  # a sweep says 130 whatever the signal


if __name__ == "__main__":
    sys.exit(main())
