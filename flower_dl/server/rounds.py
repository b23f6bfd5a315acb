"""The strategy rounds: Flower's round loop, with a start round, a hook after each round, and checkpoints.

Flower's :meth:`Strategy.start <flwr.serverapp.strategy.Strategy.start>` runs
rounds ``1..num_rounds`` in one go and logs every aggregated metric record.
A run that takes hours must keep what it finished and go on after an
interruption, so :func:`run_rounds` is the same loop (``configure_train`` ->
``send_and_receive`` -> ``aggregate_train`` -> ``configure_evaluate`` ->
``send_and_receive`` -> ``aggregate_evaluate``, the strategy's own methods,
unchanged) that

* can start at any round (a resumed run),
* calls ``on_round(round)`` when a round is done (the run folder is written
  then, :class:`flower_dl.results.writer.RunFolder`), and
* logs one progress line per round (round, mean accuracy so far, elapsed,
  ETA) instead of Flower's metric dumps (beside Flower's own ``[ROUND r/R]``
  and ``Strategy execution finished`` lines, which the benchmarks time rounds
  by and ``flower-dl run`` does not show unless ``-v``).

A checkpoint is the server's whole state after a round: the strategy's
attributes (the per-node models of a decentralized strategy and whatever an
algorithm adds, K-GT's trackers, Choco's public copies, a Flower strategy's
optimizer state; the per-node history), and the arrays the loop passes on.
Only what names this Flower run's nodes is left out (Flower node ids change
in a new run; partition-ids do not), so :func:`restore` puts the state into a
strategy built for the new run. Nodes keep nothing between rounds that
matters (every random choice of a round is seeded by the run's seed, the
node's partition-id and the round; the optimizer is made afresh each round),
so a resumed run computes what the uninterrupted one would have.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from logging import INFO
from typing import Any, BinaryIO

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

CHECKPOINT_FORMAT = 1
"""Version of what :func:`write_checkpoint` writes."""

_RUN_BOUND = ("node_ids", "partition_of", "run_config")
"""Strategy attributes bound to this Flower run (its node ids, the run config it stamps on messages, whose
output keys may differ on resume): never checkpointed, kept from the new strategy."""


def run_rounds(
    strategy: Strategy,
    grid: Grid,
    arrays: ArrayRecord,
    *,
    num_rounds: int,
    timeout: float,
    first_round: int = 1,
    on_round: Callable[[int, ArrayRecord], None] | None = None,
    progress: Callable[[int], str] | None = None,
    on_round_start: Callable[[int], None] | None = None,
) -> ArrayRecord:
    """Run rounds ``first_round..num_rounds`` of ``strategy``; return the arrays the last round left.

    Parameters
    ----------
    strategy : flwr.serverapp.strategy.Strategy
        Any Flower strategy (flower-dl's or Flower's own): only its
        ``configure_*`` and ``aggregate_*`` methods are called.
    grid : flwr.serverapp.Grid
        Where messages go.
    arrays : flwr.app.ArrayRecord
        What the first round starts from (the initial model, or a checkpoint's arrays).
    num_rounds : int
        The run's last round.
    timeout : float
        Seconds to wait for replies in each ``send_and_receive``.
    first_round : int
        The round to start at (``> 1`` when resuming).
    on_round : callable, optional
        ``on_round(round, arrays)`` once a round (its training and, if any,
        its evaluate message) is done.
    progress : callable, optional
        ``progress(round)`` -> what the progress line says of the round's results (e.g. the accuracy so far).
    on_round_start : callable, optional
        ``on_round_start(round)`` before a round's first message.
    """
    train_config, evaluate_config = ConfigRecord(), ConfigRecord()
    started = time.monotonic()
    for rnd in range(first_round, num_rounds + 1):
        log(INFO, "[ROUND %s/%s]", rnd, num_rounds)  # Flower's own marker
        if on_round_start is not None:
            on_round_start(rnd)
        replies = grid.send_and_receive(strategy.configure_train(rnd, arrays, train_config, grid), timeout=timeout)
        new_arrays, _ = strategy.aggregate_train(rnd, replies)
        if new_arrays is not None:
            arrays = new_arrays
        replies = grid.send_and_receive(
            strategy.configure_evaluate(rnd, arrays, evaluate_config, grid), timeout=timeout
        )
        strategy.aggregate_evaluate(rnd, replies)
        if on_round is not None:
            on_round(rnd, arrays)
        log(INFO, "%s", progress_line(rnd, num_rounds, first_round, time.monotonic() - started,
                                      progress(rnd) if progress else ""))  # fmt: skip
    log(INFO, "Strategy execution finished in %.2fs", time.monotonic() - started)  # Flower's wording, as above
    return arrays


def progress_line(rnd: int, num_rounds: int, first_round: int, elapsed: float, results: str) -> str:
    """``"round 3/10: accuracy 58.10% (round 2), 4.2 s elapsed, ETA 9.8 s"``: one line a round.

    The ETA assumes the remaining rounds take as long as the ones done so far in this process.
    """
    done = rnd - first_round + 1
    eta = elapsed / done * (num_rounds - rnd)
    text = f"round {rnd}/{num_rounds}"
    if results:
        text += f": {results}"
    return f"{text}, {_seconds(elapsed)} elapsed, ETA {_seconds(eta)}"


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


# --------------------------------------------------------------- checkpoints
def _stateful(strategy: Strategy) -> Strategy:
    """The strategy whose attributes a checkpoint holds: the innermost one of a wrapper such as Flower's DP ones
    (they keep the strategy they wrap in ``strategy`` and nothing a later round needs)."""
    while isinstance(getattr(strategy, "strategy", None), Strategy):
        strategy = strategy.strategy  # type: ignore[attr-defined]  # a wrapper's: the isinstance check above found it
    return strategy


def write_checkpoint(fh: BinaryIO, strategy: Strategy, server_round: int, arrays: ArrayRecord, cell: str) -> None:
    """Write the server's state after ``server_round`` to ``fh`` (a pickle: load only your own runs' checkpoints).

    Streamed into the file: a checkpoint of a thousand models is not held in memory a second time.
    """
    strategy = _stateful(strategy)
    state = {k: v for k, v in vars(strategy).items() if k not in _RUN_BOUND}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "cell": cell,
        "round": server_round,
        "strategy": type(strategy).__name__,
        "arrays": {k: a.numpy() for k, a in arrays.items()},
        "state": state,
    }
    pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)


def restore(strategy: Strategy, fh: BinaryIO, cell: str) -> tuple[int, ArrayRecord]:
    """Put the state of the checkpoint ``fh`` holds into ``strategy``; return its round and arrays.

    Raises
    ------
    ValueError
        When the checkpoint is of another format, another config (``cell``) or another strategy class.
    """
    strategy = _stateful(strategy)
    payload: dict[str, Any] = pickle.load(fh)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint: not a flower-dl checkpoint of format {CHECKPOINT_FORMAT}")
    if payload["cell"] != cell:
        raise ValueError(f"checkpoint: made by the run config {payload['cell']!r}, not by this one ({cell!r})")
    if payload["strategy"] != type(strategy).__name__:
        raise ValueError(f"checkpoint: made by strategy {payload['strategy']}, not {type(strategy).__name__}")
    vars(strategy).update(payload["state"])
    arrays = ArrayRecord({k: Array(np.asarray(v)) for k, v in payload["arrays"].items()})
    return int(payload["round"]), arrays
