"""Round time of flower-dl's decentralized strategy against a plain PyTorch loop, same work.

Usage::

    python benchmarks/bench_round_time.py [--model mlp|cnn|both|fedavg-cnn|resnet18|colour|all] [--rounds R]
                                          [--startup-runs N] [--startup-only] [--json OUT.json] [--quick]
                                          [--cifar-dir DIR] [--cifar-train N]

For each model (``mlp``, ``cnn``; with ``--model colour`` the FedAvg paper's
CNN ``fedavg-cnn`` and the CIFAR-style ``resnet18`` on CIFAR-size data,
3 x 32 x 32, see below) one run measures, in this order:

(b) flower-dl, per round. One simulation launched through the package's own
    path (``flower_dl.launch.local_superlink`` + ``flower_dl.launch.run_app``,
    i.e. what ``flower-dl run`` does: ``flwr run --stream`` on a private
    simulation SuperLink, one simulated SuperNode per node, 1 CPU each). The
    figure is Flower's own "Strategy execution finished in X s" (timed inside
    the ServerApp from just before round 1 to the end of the last round)
    divided by the number of rounds: start-up, the exchange phase and writing
    the results are excluded. A flower-dl round is: send each node its model,
    ``local-epochs`` of local SGD on every node, mix with W, and every node
    evaluates its model on the whole test set. The per-round times from
    consecutive "[ROUND r/R]" line arrivals are kept in the JSON as a check
    (resolution ~0.5 s: Flower streams logs in batches).
(c) start-up: what a user waits for after ``flower-dl run`` has checked its
    config: from starting the private SuperLink (and, beside it, the Ray head
    the simulation joins) to the arrival of the "[ROUND 1/" line: the
    SuperLink's start, packaging and submitting the app, the simulation
    process, joining Ray and starting its workers, the ServerApp, node
    discovery, loading and partitioning the data on the nodes, and the
    exchange phase. Its two parts are in the JSON: ``superlink-start-s``
    (until the SuperLink listens) and ``launch-to-round-1-s``.
(c') ``--startup-runs N`` (default 3): after the per-model runs, N more short
    runs (MLP, 1 round of 1 epoch) each way, interleaved: flower-dl as a
    user runs it again (Ray head, decoded data in the cache), the first run
    after installing (Ray head, empty cache: every worker gunzips the data),
    and with Ray started by Flower's simulation process
    (``FLOWER_DL_RAY_HEAD=0``, what a plain ``flwr run`` does); the median,
    min and max start-up of each way (start-up drifts by 20-30% from run to
    run here). The order of the ways rotates from one round of runs to the
    next (a run that follows another starts while the other's processes
    still exit). The benchmark keeps flower-dl's cache in its temp dir,
    filled once before the runs.
(d) peak memory of the simulation: the summed RSS (and PSS) of every process
    of the run (SuperLink, ``flwr``, SuperExec, ServerApp, Ray and its
    ClientApp actors), sampled every 0.2 s through psutil (see ``_harness.py``;
    this benchmark's own process is not counted).
(a) the plain loop, per round: one process, no Flower, textbook PyTorch
    (``textbook_train`` below: ``torch.optim.SGD``, default memory layout),
    the same model (``flower_dl.node.models.build_model``, same seed), lr, momentum
    and batch size, on preloaded tensors; the nodes one after another,
    ``local-epochs`` each, per round. torch uses the number of threads a
    single process gets by default here (``torch.get_num_threads()``,
    reported). Node ``i`` trains on exactly as many samples as flower-dl's
    node ``i`` did: the sizes are read from the run's ``metrics.csv``
    (``num-train-examples`` of round 1 = own samples + the new samples it
    received). The samples are node ``i``'s own partition
    (``flower_dl.data.datasets.partition_indices``, as the nodes compute it) filled up
    with other training samples, picked at random, in place of the exchanged
    ones: the content does not change the cost, the sizes do. The loop's
    evaluation on the test set (what a flower-dl round also does) is timed
    apart, so both ``b/a`` (the issue's ratio: training only) and
    ``b/(a+eval)`` are printed. Its peak RSS is that of this process.
(a') the same loop calling flower-dl's own ``training.train`` and
    ``training.evaluate`` (channels-last convolutions, its own momentum SGD):
    ``b/tuned`` isolates what running the nodes in parallel on Flower gives,
    and ``a/tuned`` what the training code gives.

The setting is the original study's: 5 nodes on its 5-node tree, label skew
with 3 classes per node (``digits-per-node``: each node holds *all* training
samples of its 3 classes), share-ratio 0.1 (broadcast), 3 local epochs,
batch 64, lr 0.01, momentum 0.5, seed 42. Data: full-size Fashion-MNIST from
Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``)
when present, else synthetic random images of the same size (60,000 train /
10,000 test, 6,000 per class) written as IDX files to a temporary folder and
used by both sides. The colour models train on CIFAR-10 read from its Python
batches: the real files under ``--cifar-dir`` when they are there, else
random images of CIFAR's shape (``--cifar-train`` training images, a fifth
as many test images, 10 classes) written in the real files' layout; their
accuracy is never the point (and on random images, meaningless).

The plain loops are warmed up before their clock starts (one short training
call: torch.optim's first use imports ``torch._dynamo``, about 1.6 s, and
oneDNN sets up its kernels), so the reference is the stricter one. flower-dl's
round 1 still carries each simulation worker's first ``import torch`` and
kernel set-up (nodes import torch only when they first train); the per-round
lists in the JSON let one leave round 1 out, and with R >= 2 the column
"b/a rounds 2+" does: the plain loop's rounds 2..R against flower-dl's, the
latter from "[ROUND 2/" to "Strategy execution finished" line arrivals.

``--quick`` checks the script end to end in a minute or two: the embedded
``mnist-5k`` data, 1 round, 1 local epoch. Its figures mean nothing.

Timings depend on the machine and on what else runs on it: the load average
is recorded in the JSON.
"""

# Over ~400 lines on purpose: one self-contained script whose method (the docstring above, ~90
# lines) and measurements (a), (a'), (b)-(d), (c') are read and changed together; what it shares
# with bench_scale.py lives in _harness.py.

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (
    APP_DIR,
    MIB,
    TreeMemorySampler,
    fmt,
    machine_info,
    own_rss,
    print_table,
    progress_line,
    timed_simulation,
    wait_for_exit,
    warn_leftovers,
)
from flower_dl.data.datasets import CACHE_DIR_ENV, find_cifar, input_shape, load_dataset, partition_indices, to_tensor
from flower_dl.launch import RAY_HEAD_ENV, resolve_config
from flower_dl.node.models import build_model
from flower_dl.node.training import evaluate, train
from flower_dl.topology import STUDY_EDGES

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

STUDY: dict[str, Any] = {
    "num-nodes": 5,
    "topology": "edges",
    "edges": STUDY_EDGES,
    "mixing": "metropolis",
    "partitioner": "digits-per-node",
    "digits-per-node": 3,
    "share-ratio": 0.1,
    "exchange-mode": "broadcast",
    "strategy": "decentralized",
    "batch-size": 64,
    "lr": 0.01,
    "momentum": 0.5,
    "seed": 42,
}
"""The original study's setting, given explicitly (not relying on the defaults)."""


# --------------------------------------------------------------------- data
def write_synthetic_idx(folder: Path, n_train: int = 60_000, n_test: int = 10_000, seed: int = 0) -> Path:
    """Random ``uint8`` 28x28 images and balanced labels as MNIST-format IDX files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def write(name: str, array: np.ndarray) -> None:
        kind = 0x08  # unsigned byte
        header = bytes([0, 0, kind, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        (folder / name).write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())

    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write(f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        write(f"{prefix}-labels-idx1-ubyte", rng.permutation(np.arange(n) % 10).astype(np.uint8))
    return folder


COLOUR_MODELS: tuple[str, ...] = ("fedavg-cnn", "resnet18")
"""Models measured on CIFAR-size colour data."""
MODEL_SETS: dict[str, tuple[str, ...]] = {
    "both": ("mlp", "cnn"),
    "colour": COLOUR_MODELS,
    "all": ("mlp", "cnn", *COLOUR_MODELS),
}


def write_synthetic_cifar10(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Random ``uint8`` 3 x 32 x 32 images, balanced labels, as CIFAR-10's Python batches under ``root``."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def batch(n: int) -> bytes:
        labels = rng.permutation(np.arange(n) % 10)
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        return pickle.dumps({b"data": data, b"labels": labels.tolist(), b"batch_label": b"synthetic"})

    per_batch = n_train // 5
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(batch(per_batch))
    (folder / "test_batch").write_bytes(batch(n_test))
    names = [f"class-{c}".encode() for c in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    return root


def choose_colour_data(args: argparse.Namespace, tmp: Path) -> tuple[str, str, str]:
    """``("cifar10", data-dir, description)``: the real batches under ``--cifar-dir``, else synthetic ones."""
    if args.cifar_dir:
        try:
            find_cifar(args.cifar_dir, "cifar10")
            return "cifar10", args.cifar_dir, f"CIFAR-10 from {args.cifar_dir}"
        except ValueError:
            pass
    n_train, n_test = args.cifar_train, args.cifar_train // 5
    folder = write_synthetic_cifar10(tmp / "synthetic-cifar10", n_train, n_test)
    return "cifar10", str(folder), f"synthetic, CIFAR-10-shaped (3x32x32, {n_train:,} / {n_test:,}), random pixels"


def choose_data(args: argparse.Namespace, tmp: Path) -> tuple[str, str, str]:
    """``(dataset, data-dir, description)`` for the run config (the grayscale models')."""
    if args.quick:
        return "mnist-5k", "", "mnist-5k (embedded, 4,000 train / 1,000 test)"
    data_dir = Path(args.data_dir)
    if not args.synthetic and data_dir.is_dir() and any(data_dir.rglob("train-images-idx3-ubyte*")):
        return "fashion-mnist", str(data_dir), f"Fashion-MNIST from {data_dir}"
    folder = write_synthetic_idx(tmp / "synthetic-fashion-mnist")
    return "fashion-mnist", str(folder), "synthetic, Fashion-MNIST-sized (60,000 / 10,000), random pixels"


def node_sizes(metrics_csv: Path, num_nodes: int) -> list[int]:
    """Per-node ``num-train-examples`` of round 1 from a run's metrics.csv."""
    with open(metrics_csv, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["round"] == "1"]
    sizes = {int(r["node"]): r["num-train-examples"] for r in rows}
    missing = [i for i in range(num_nodes) if not sizes.get(i)]
    if missing:
        raise RuntimeError(f"{metrics_csv}: no num-train-examples in round 1 for nodes {missing}")
    return [int(float(sizes[i])) for i in range(num_nodes)]


def plain_node_data(cfg, sizes: list[int]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], tuple, tuple]:
    """Each node's own partition filled up to ``sizes[i]`` samples; the test set; (input shape, class count)."""
    data = load_dataset(cfg.dataset, cfg.data_dir)
    parts = partition_indices(
        data.train_labels,
        cfg.partitioner,
        cfg.num_nodes,
        digits_per_node=cfg.digits_per_node,
        alpha=cfg.dirichlet_alpha,
        seed=cfg.seed,
        num_classes=data.num_classes,
    )
    rng = np.random.default_rng(cfg.seed)
    everything = np.arange(len(data.train_labels))
    nodes = []
    for own, size in zip(parts, sizes):
        if size < len(own):
            raise RuntimeError(f"flower-dl trained a node on {size} samples, fewer than it owns ({len(own)})")
        others = np.setdiff1d(everything, own, assume_unique=True)
        extra = rng.choice(others, size=size - len(own), replace=False)
        ids = np.concatenate([own, extra])
        x = to_tensor(data.train_images[ids], data.mean, data.std)
        nodes.append((x, torch.from_numpy(data.train_labels[ids].astype(np.int64))))
    test = (to_tensor(data.test_images, data.mean, data.std), torch.from_numpy(data.test_labels.astype(np.int64)))
    return nodes, test, (input_shape(data.train_images), data.num_classes)


# --------------------------------------------------------------- the loops
def after_round_1(per_round: list[float]) -> float | None:
    """Mean of rounds 2..R (leaves out round 1's first-call costs); None for one round."""
    return float(np.mean(per_round[1:])) if len(per_round) >= 2 else None


def textbook_train(model, images, labels, *, epochs, lr, momentum, batch_size, generator) -> None:
    """The reference loop: textbook PyTorch (default memory layout), SGD over mini-batches."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()
    n = len(labels)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            loss.backward()
            optimizer.step()


@torch.no_grad()
def textbook_evaluate(model, images, labels, batch_size: int = 1024) -> None:
    model.eval()
    for start in range(0, len(labels), batch_size):
        model(images[start : start + batch_size]).argmax(1)


LOOPS = {
    "plain": (textbook_train, textbook_evaluate),
    "tuned": (train, evaluate),
}
"""(a) the plain loop: textbook PyTorch; (a') the same loop calling flower-dl's own
``training.train``/``evaluate`` (channels-last convolutions): what the nodes run."""


def plain_loop(cfg, sizes: list[int], rounds: int, variant: str = "plain") -> dict[str, Any]:
    """(a) or (a'): every node's local epochs one after another, per round, in this process."""
    train_fn, evaluate_fn = LOOPS[variant]
    rss_before = own_rss()
    with TreeMemorySampler(tree=False) as mem:
        nodes, (test_x, test_y), spec = plain_node_data(cfg, sizes)

        def build_model_for_data():
            return build_model(cfg.model, *spec, seed=cfg.seed)

        models = [build_model_for_data() for _ in nodes]
        # first-call costs (torch.optim's first use imports torch._dynamo, ~1.6 s; oneDNN
        # kernel set-up) are not training: pay them before the clock starts
        warm = build_model_for_data()
        x0, y0 = nodes[0][0][: 4 * cfg.batch_size], nodes[0][1][: 4 * cfg.batch_size]
        train_fn(warm, x0, y0, epochs=1, lr=cfg.lr, momentum=cfg.momentum, batch_size=cfg.batch_size, generator=None)
        evaluate_fn(warm, test_x[:1024], test_y[:1024])
        train_s, eval_s = [], []
        for rnd in range(1, rounds + 1):
            t = time.perf_counter()
            for i, (x, y) in enumerate(nodes):
                torch.manual_seed(cfg.seed + 1000 * rnd + i)  # dropout masks
                generator = torch.Generator().manual_seed(cfg.seed + 1000 * rnd + i)
                train_fn(
                    models[i],
                    x,
                    y,
                    epochs=cfg.local_epochs,
                    lr=cfg.lr,
                    momentum=cfg.momentum,
                    batch_size=cfg.batch_size,
                    generator=generator,
                )
            train_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            for model in models:
                evaluate_fn(model, test_x, test_y)
            eval_s.append(time.perf_counter() - t)
        del nodes, models
    return {
        "train-s-per-round": float(np.mean(train_s)),
        "train-s-per-round-after-round-1": after_round_1(train_s),
        "eval-s-per-round": float(np.mean(eval_s)),
        "train-s-rounds": train_s,
        "eval-s-rounds": eval_s,
        "peak-rss-mib": round(mem.peak_rss / MIB, 1),
        "rss-before-mib": round(rss_before / MIB, 1),
        "torch-threads": torch.get_num_threads(),
    }


def flower_run(
    model: str, args: argparse.Namespace, dataset: str, data_dir: str, tmp: Path
) -> tuple[Any, dict[str, Any]]:
    """(b), (c), (d): one flower-dl simulation; returns the validated config and the figures."""
    overrides = {
        **STUDY,
        "dataset": dataset,
        "data-dir": data_dir,
        "model": model,
        "num-server-rounds": args.rounds,
        "local-epochs": args.local_epochs,
        "results-dir": str(tmp / "results"),
        "run-name": f"bench-round-time-{model}",
    }
    cfg = resolve_config(APP_DIR, overrides)  # validates before anything starts

    def echo(line: str) -> None:
        if args.verbose or progress_line(line):
            sys.stdout.write("    | " + line)
            sys.stdout.flush()

    workdir = tmp / f"superlink-{model}"
    workdir.mkdir()
    with TreeMemorySampler() as mem:
        sim = timed_simulation(overrides, workdir, num_nodes=cfg.num_nodes, cpus_per_node=args.cpus_per_node, echo=echo)
    teardown_s, leftovers = wait_for_exit(mem)
    if not sim.ok:
        sys.stderr.write(sim.tail())
        raise SystemExit(f"flower-dl run failed (flwr exit code {sim.rc}, status {sim.status})")
    metrics_csv = Path(cfg.results_dir) / cfg.run_name / "metrics.csv"
    figures = {
        "s-per-round": sim.strategy_s / args.rounds,
        "strategy-s": sim.strategy_s,
        "round-s-from-line-arrivals": sim.round_durations(),
        "s-per-round-after-round-1": after_round_1(sim.round_durations()),
        "startup-s": sim.startup_total_s,
        "launch-to-round-1-s": sim.startup_s,
        "superlink-start-s": sim.superlink_start_s,
        "launch-to-exit-s": sim.total_s,
        **mem.figures(),
        "teardown-s": teardown_s,
        "processes-left-after-teardown": leftovers,
        "num-train-examples": node_sizes(metrics_csv, cfg.num_nodes),
    }
    return cfg, figures


def startup_runs(args: argparse.Namespace, dataset: str, data_dir: str, tmp: Path) -> dict[str, Any]:
    """(c) again, ``--startup-runs`` times each way, interleaved: with flower-dl's Ray head (and the
    decoded data in the cache), the same with an empty cache (a user's first run), and with Ray started
    by Flower's simulation process (``FLOWER_DL_RAY_HEAD=0``, what plain ``flwr run`` does).

    Start-up on this machine varies by 20-30% from run to run; the median of
    interleaved runs compares the ways fairly. MLP, 1 round of 1 epoch
    (the start-up does not depend on them), the same data as the other runs.
    """
    overrides = {
        **STUDY,
        "dataset": dataset,
        "data-dir": data_dir,
        "model": "mlp",
        "num-server-rounds": 1,
        "local-epochs": 1,
        "results-dir": str(tmp / "results"),
        "run-name": "bench-startup",
    }
    cfg = resolve_config(APP_DIR, overrides)
    ways = {"ray-head": ("1", False), "ray-head-empty-cache": ("1", True), "ray-started-by-flower": ("0", False)}
    runs: dict[str, list[float]] = {way: [] for way in ways}
    before = os.environ.get(RAY_HEAD_ENV)
    cache = os.environ[CACHE_DIR_ENV]
    try:
        for i in range(args.startup_runs):
            # the order rotates: a run that follows another starts while that one's processes still exit
            order = list(ways.items())
            for way, (switch, empty_cache) in order[i % len(order) :] + order[: i % len(order)]:
                os.environ[RAY_HEAD_ENV] = switch
                workdir = tmp / f"startup-{way}-{i}"
                workdir.mkdir()
                os.environ[CACHE_DIR_ENV] = str(workdir / "empty-cache") if empty_cache else cache
                sim = timed_simulation(overrides, workdir, num_nodes=cfg.num_nodes, cpus_per_node=args.cpus_per_node)
                if not sim.ok or sim.startup_total_s is None:
                    sys.stderr.write(sim.tail())
                    raise SystemExit(f"start-up run failed (flwr exit code {sim.rc}, status {sim.status})")
                runs[way].append(sim.startup_total_s)
                print(f"    start-up, {way}: {sim.startup_total_s:.1f} s", flush=True)
    finally:
        os.environ[CACHE_DIR_ENV] = cache
        if before is None:
            os.environ.pop(RAY_HEAD_ENV, None)
        else:
            os.environ[RAY_HEAD_ENV] = before
    return {
        way: {"runs-s": v, "median-s": float(np.median(v)), "min-s": min(v), "max-s": max(v)} for way, v in runs.items()
    }


# --------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("mlp", "cnn", *COLOUR_MODELS, *MODEL_SETS), default="both")
    parser.add_argument("--cifar-dir", default="", help="a folder holding cifar-10-batches-py (the colour models)")
    parser.add_argument(
        "--cifar-train", type=int, default=2500, help="training images of the synthetic CIFAR-size data (default: 2500)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each run (default: 3)")
    parser.add_argument("--local-epochs", type=int, default=3, help="local epochs per round (default: 3, the study's)")
    parser.add_argument(
        "--cpus-per-node", type=int, default=1, help="CPUs per simulated node (default: 1, as flower-dl run)"
    )
    parser.add_argument(
        "--data-dir", default=DEBIAN_FASHION_MNIST, help=f"Fashion-MNIST IDX folder (default: {DEBIAN_FASHION_MNIST})"
    )
    parser.add_argument(
        "--synthetic", action="store_true", help="use synthetic Fashion-MNIST-sized data even if the real one is there"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch threads of the plain loop (default: torch's default for one process here)",
    )
    parser.add_argument(
        "--startup-runs",
        type=int,
        default=3,
        help="(c) again this many times with and without flower-dl's Ray head, interleaved (default: 3)",
    )
    parser.add_argument("--startup-only", action="store_true", help="only the --startup-runs comparison")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--verbose", "-v", action="store_true", help="echo the whole simulation output")
    parser.add_argument(
        "--quick", action="store_true", help="mnist-5k, 1 round, 1 local epoch: checks the script works"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.local_epochs, args.startup_runs = 1, 1, 1
    return args


def compare_model(model: str, args: argparse.Namespace, dataset: str, data_dir: str, tmp: Path) -> dict[str, Any]:
    """(b), (c), (d), then (a) and (a') on flower-dl's node sizes, for one model; with the ratios."""
    print(f"[{model}] flower-dl simulation ...", flush=True)
    cfg, flower = flower_run(model, args, dataset, data_dir, tmp)
    print(f"[{model}] plain loop on node sizes {flower['num-train-examples']} ...", flush=True)
    plain = plain_loop(cfg, flower["num-train-examples"], args.rounds, "plain")
    print(f"[{model}] the same loop with flower-dl's training code ...", flush=True)
    tuned = plain_loop(cfg, flower["num-train-examples"], args.rounds, "tuned")
    return {"model": model, "plain": plain, "tuned": tuned, "flower-dl": flower, **ratios(flower, plain, tuned)}


def ratios(flower: dict[str, Any], plain: dict[str, Any], tuned: dict[str, Any]) -> dict[str, float | None]:
    """flower-dl's s/round against the loops': b/tuned, b/a, b/(a+eval) and b/a over rounds 2+."""
    return {
        "ratio-vs-tuned": flower["s-per-round"] / tuned["train-s-per-round"],
        "ratio": flower["s-per-round"] / plain["train-s-per-round"],
        "ratio-vs-plain-with-eval": flower["s-per-round"] / (plain["train-s-per-round"] + plain["eval-s-per-round"]),
        "ratio-after-round-1": (
            flower["s-per-round-after-round-1"] / plain["train-s-per-round-after-round-1"]
            if flower["s-per-round-after-round-1"] and plain["train-s-per-round-after-round-1"]
            else None
        ),
    }


def run_benchmark(
    args: argparse.Namespace, machine: dict[str, Any]
) -> tuple[str, list[dict[str, Any]], dict[str, Any] | None]:
    """Every measurement, in a temporary folder: ``(data description, per-model results, start-up runs)``."""
    models = list(MODEL_SETS.get(args.model, (args.model,)))
    results = []
    with tempfile.TemporaryDirectory(prefix="flower-dl-bench-") as tmp_name:
        tmp = Path(tmp_name)
        dataset, data_dir, described = choose_data(args, tmp)
        colour = choose_colour_data(args, tmp) if set(models) & set(COLOUR_MODELS) else None
        if colour is not None:
            described = f"{described}; colour models: {colour[2]}"
        # flower-dl's cache of decoded data (here: private to this run), filled once as a user's first run would
        os.environ[CACHE_DIR_ENV] = str(tmp / "cache")
        load_dataset(dataset, data_dir)
        print(
            f"data: {described}; {args.rounds} round(s), {args.local_epochs} local epoch(s); "
            f"{machine['cpus']} CPUs, load {machine['loadavg']}, torch threads {machine['torch-threads']}",
            flush=True,
        )
        for model in [] if args.startup_only else models:
            data = colour[:2] if colour is not None and model in COLOUR_MODELS else (dataset, data_dir)
            results.append(compare_model(model, args, *data, tmp))
        startup = None
        if args.startup_runs > 0:
            print(
                f"[start-up] {args.startup_runs} run(s) each way: Ray head, Ray head with an empty cache, "
                "Ray started by Flower ...",
                flush=True,
            )
            startup = startup_runs(args, dataset, data_dir, tmp)
    return described, results, startup


# ------------------------------------------------------------------- output
TABLE_HEADER = (
    "model",
    "plain s/round",
    "+eval",
    "tuned s/round",
    "flower-dl s/round",
    "ratio b/a",
    "b/(a+eval)",
    "b/a rounds 2+",
    "b/tuned",
    "start-up s",
    "peak RSS MiB",
    "peak PSS MiB",
    "plain RSS MiB",
)


def table_row(r: dict[str, Any]) -> tuple[str, ...]:
    """One model's row under :data:`TABLE_HEADER`."""
    return (
        r["model"],
        fmt(r["plain"]["train-s-per-round"]),
        fmt(r["plain"]["train-s-per-round"] + r["plain"]["eval-s-per-round"]),
        fmt(r["tuned"]["train-s-per-round"]),
        fmt(r["flower-dl"]["s-per-round"]),
        fmt(r["ratio"]),
        fmt(r["ratio-vs-plain-with-eval"]),
        fmt(r["ratio-after-round-1"]),
        fmt(r["ratio-vs-tuned"]),
        fmt(r["flower-dl"]["startup-s"], ".1f"),
        fmt(r["flower-dl"]["peak-rss-mib"], ".0f"),
        fmt(r["flower-dl"]["peak-pss-mib"], ".0f"),
        fmt(r["plain"]["peak-rss-mib"], ".0f"),
    )


def print_details(r: dict[str, Any]) -> None:
    """One model's per-round times, start-up parts, largest processes and left-over processes."""
    f, p = r["flower-dl"], r["plain"]
    print(
        f"{r['model']}: plain loop s per round {[round(x, 2) for x in p['train-s-rounds']]} "
        f"(+ eval {[round(x, 2) for x in p['eval-s-rounds']]}), torch threads {p['torch-threads']}, "
        f"RSS {p['rss-before-mib']:.0f} MiB before loading its data"
    )
    print(
        f"{r['model']}: the same loop with flower-dl's training code, s per round "
        f"{[round(x, 2) for x in r['tuned']['train-s-rounds']]} "
        f"(+ eval {[round(x, 2) for x in r['tuned']['eval-s-rounds']]})"
    )
    print(
        f"{r['model']}: start-up {f['startup-s']:.1f} s = SuperLink and Ray head start {f['superlink-start-s']:.1f} s "
        f"+ launch->round 1 {f['launch-to-round-1-s']:.1f} s; launch->exit {f['launch-to-exit-s']:.1f} s, "
        f"teardown {f['teardown-s']:.1f} s, "
        f"rounds from log lines {[round(x, 2) for x in f['round-s-from-line-arrivals']]}, "
        f"largest processes {[(p['name'], p['peak-rss-mib']) for p in f['largest-processes'][:3]]}"
    )
    warn_leftovers(r["model"], f)


def print_results(results: list[dict[str, Any]], startup: dict[str, Any] | None) -> None:
    """The table, the start-up medians, then each model's details."""
    if results:
        print_table(TABLE_HEADER, [table_row(r) for r in results])
    if startup:
        for way, fig in startup.items():
            print(
                f"start-up to round 1, {way}: median {fig['median-s']:.1f} s "
                f"(min {fig['min-s']:.1f}, max {fig['max-s']:.1f}, {len(fig['runs-s'])} runs)"
            )
    for r in results:
        print_details(r)


def write_json(
    path: str,
    args: argparse.Namespace,
    described: str,
    machine: dict[str, Any],
    results: list[dict[str, Any]],
    startup: dict[str, Any] | None,
) -> None:
    out = {
        "benchmark": "round-time",
        "setting": {
            **STUDY,
            "data": described,
            "rounds": args.rounds,
            "local-epochs": args.local_epochs,
            "cpus-per-node": args.cpus_per_node,
            "quick": args.quick,
        },
        "machine": machine,
        "results": results,
        "startup-runs": startup,
    }
    Path(path).write_text(json.dumps(out, indent=2) + "\n")
    print(f"figures written to {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    machine = machine_info()
    machine["torch-threads"] = torch.get_num_threads()
    described, results, startup = run_benchmark(args, machine)
    machine["loadavg-end"] = [round(x, 2) for x in os.getloadavg()]

    print()
    print_results(results, startup)
    if args.json:
        write_json(args.json, args, described, machine, results, startup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
