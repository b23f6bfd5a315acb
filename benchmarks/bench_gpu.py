"""GPU: several flower-dl nodes sharing one GPU against a plain single-process loop on the same GPU.

Usage (one short command, on a machine with a CUDA GPU)::

    python benchmarks/bench_gpu.py [--nodes 4] [--rounds 3] [--local-epochs 1] [--cifar-dir DIR]
                                   [--cifar-train 10000] [--batch-size 128] [--json OUT.json]

One run measures, for ResNet-18 (``resnet18``: torchvision's, CIFAR stem) on
CIFAR-size data (3 x 32 x 32; the real CIFAR-10 batches under ``--cifar-dir``
when there, else random images of that shape written in the real files'
layout: ``bench_round_time.write_synthetic_cifar10``):

(b) flower-dl: one simulation of ``--nodes`` nodes on a ring, ``iid``
    partition, no exchange (share-ratio 0: the data exchange is the same
    either way and is not training), ``--gpus-per-node 1/nodes`` (Ray packs
    every node onto the one GPU, all of them training at once), D-PSGD.
    s/round is Flower's own strategy time divided by the rounds; samples/s
    is every node's training samples times the local epochs, per second of
    round; GPU memory is the peak of ``nvidia-smi``'s used memory over the
    run, sampled every 0.2 s (all processes on the GPU: the nodes' CUDA
    contexts included), and each node reports the device it trained on
    (``config.json``'s provenance).
(a) the plain loop: one process, the same model, data, batch size, lr and
    momentum, the nodes one after another on the same GPU (textbook
    PyTorch, ``bench_round_time.textbook_train``), warmed up before the clock
    starts; its peak ``torch.cuda.max_memory_allocated`` and the
    ``nvidia-smi`` peak.

The ratio b/a says what running the nodes as Flower's simulated SuperNodes,
sharing the GPU, costs or gains against training the same models in turn.
Without a CUDA device it says so and exits with code 2: nothing is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import APP_DIR, fmt, machine_info, print_table, timed_simulation
from bench_round_time import node_sizes, plain_node_data, textbook_evaluate, textbook_train, write_synthetic_cifar10
from flower_dl.data.datasets import CACHE_DIR_ENV, find_cifar, load_dataset
from flower_dl.launch import resolve_config
from flower_dl.node.models import build_model

MODEL = "resnet18"


class GpuMemorySampler(threading.Thread):
    """The peak of ``nvidia-smi``'s used memory (MiB, the whole GPU) while the ``with`` block runs."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak_mib, self._stop = interval, 0.0, threading.Event()

    def __enter__(self) -> GpuMemorySampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.join()

    def run(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, used_mib())
            self._stop.wait(self.interval)


def used_mib() -> float:
    """GPU 0's used memory as ``nvidia-smi`` reports it (0 if it cannot be asked)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
        return float(out.strip().splitlines()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return 0.0


def overrides_for(args: argparse.Namespace, data_dir: str, tmp: Path) -> dict[str, Any]:
    return {
        "num-nodes": args.nodes, "topology": "ring", "dataset": "cifar10", "data-dir": data_dir,
        "partitioner": "iid", "share-ratio": 0.0, "mia-samples": 0, "model": MODEL, "strategy": "decentralized",
        "num-server-rounds": args.rounds, "local-epochs": args.local_epochs, "batch-size": args.batch_size,
        "lr": 0.05, "momentum": 0.9, "seed": 42, "results-dir": str(tmp / "results"), "run-name": "bench-gpu",
    }  # fmt: skip


def flower_side(args: argparse.Namespace, overrides: dict[str, Any], tmp: Path) -> tuple[Any, dict[str, Any]]:
    """(b): one simulation, the nodes sharing the GPU."""
    cfg = resolve_config(APP_DIR, overrides)
    workdir = tmp / "superlink"
    workdir.mkdir()
    with GpuMemorySampler() as gpu:
        sim = timed_simulation(overrides, workdir, num_nodes=args.nodes, gpus_per_node=1.0 / args.nodes)
    if not sim.ok:
        sys.stderr.write(sim.tail())
        raise SystemExit(f"flower-dl run failed (flwr exit code {sim.rc}, status {sim.status})")
    folder = Path(cfg.results_dir) / cfg.run_name
    sizes = node_sizes(folder / "metrics.csv", args.nodes)
    nodes = json.loads((folder / "config.json").read_text())["provenance"]["nodes"]
    devices = {pid: node["device"] for pid, node in nodes.items()}
    s_per_round = sim.strategy_s / args.rounds
    return cfg, {
        "s-per-round": s_per_round,
        "samples-per-s": sum(sizes) * args.local_epochs / s_per_round,
        "gpu-peak-mib": gpu.peak_mib,
        "startup-s": sim.startup_total_s,
        "num-train-examples": sizes,
        "devices": devices,
    }


def plain_side(args: argparse.Namespace, cfg: Any, sizes: list[int]) -> dict[str, Any]:
    """(a): the nodes one after another in this process, on the same GPU."""
    dev = torch.device("cuda")
    nodes, (test_x, test_y), spec = plain_node_data(cfg, sizes)
    nodes = [(x.to(dev), y.to(dev)) for x, y in nodes]
    test_x, test_y = test_x.to(dev), test_y.to(dev)
    models = [build_model(MODEL, *spec, seed=cfg.seed).to(dev) for _ in nodes]
    torch.cuda.reset_peak_memory_stats()
    with GpuMemorySampler() as gpu:
        warm = build_model(MODEL, *spec, seed=cfg.seed).to(dev)
        textbook_train(warm, nodes[0][0][:512], nodes[0][1][:512], epochs=1, lr=cfg.lr, momentum=cfg.momentum,
                       batch_size=cfg.batch_size, generator=None)  # fmt: skip
        del warm
        torch.cuda.synchronize()
        rounds = []
        for rnd in range(args.rounds):
            t = time.perf_counter()
            for i, (x, y) in enumerate(nodes):
                generator = torch.Generator().manual_seed(cfg.seed + 1000 * rnd + i)
                textbook_train(models[i], x, y, epochs=cfg.local_epochs, lr=cfg.lr, momentum=cfg.momentum,
                               batch_size=cfg.batch_size, generator=generator)  # fmt: skip
            for model in models:
                textbook_evaluate(model, test_x, test_y)
            torch.cuda.synchronize()
            rounds.append(time.perf_counter() - t)
    s_per_round = float(np.mean(rounds))
    return {
        "s-per-round": s_per_round,
        "s-rounds": rounds,
        "samples-per-s": sum(sizes) * cfg.local_epochs / s_per_round,
        "torch-peak-allocated-mib": torch.cuda.max_memory_allocated() / 2**20,
        "gpu-peak-mib": gpu.peak_mib,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=4, help="nodes sharing the GPU (default: 4)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cifar-dir", default="", help="a folder holding cifar-10-batches-py")
    parser.add_argument("--cifar-train", type=int, default=10_000, help="synthetic training images (default: 10000)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device in this process: nothing measured", file=sys.stderr)
        return 2
    card = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory(prefix="flower-dl-bench-gpu-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ[CACHE_DIR_ENV] = str(tmp / "cache")
        data_dir, described = args.cifar_dir, f"CIFAR-10 from {args.cifar_dir}"
        try:
            find_cifar(data_dir, "cifar10")
        except ValueError:
            n_test = args.cifar_train // 5
            data_dir = str(write_synthetic_cifar10(tmp / "cifar", args.cifar_train, n_test))
            described = f"synthetic, CIFAR-10-shaped (3x32x32, {args.cifar_train:,} / {n_test:,}), random pixels"
        load_dataset("cifar10", data_dir)
        print(f"[gpu] {card}; data: {described}; {args.nodes} nodes, {args.rounds} round(s)", flush=True)
        cfg, flower = flower_side(args, overrides_for(args, data_dir, tmp), tmp)
        plain = plain_side(args, cfg, flower["num-train-examples"])
    header = ("", "s/round", "samples/s", "GPU peak MiB (nvidia-smi)", "torch peak MiB")
    rows = [
        (f"flower-dl, {args.nodes} nodes sharing the GPU", fmt(flower["s-per-round"]), fmt(flower["samples-per-s"], ".0f"),
         fmt(flower["gpu-peak-mib"], ".0f"), ""),
        ("plain loop, one process", fmt(plain["s-per-round"]), fmt(plain["samples-per-s"], ".0f"),
         fmt(plain["gpu-peak-mib"], ".0f"), fmt(plain["torch-peak-allocated-mib"], ".0f")),
    ]  # fmt: skip
    print_table(header, rows)
    print(f"ratio b/a (s/round): {flower['s-per-round'] / plain['s-per-round']:.2f}; card: {card}")
    print(f"devices the nodes reported: {flower['devices']}")
    if args.json:
        out = {"benchmark": "gpu", "card": card, "data": described, "args": vars(args), "machine": machine_info(),
               "flower-dl": flower, "plain": plain}  # fmt: skip
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
