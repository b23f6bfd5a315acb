"""The run config: every key declared once (type, default, allowed values, description), one frozen object.

Flower hands the apps ``context.run_config``, a flat dict with kebab-case keys
(defaults from ``[tool.flwr.app.config]`` in pyproject.toml, overridden by
``--run-config``). :meth:`RunConfig.from_run_config` reads it once, checks every
key (:func:`flower_dl.config.schema.check_values`: type, range, registry), then
what several keys ask of each other, once each, and returns a frozen
:class:`RunConfig` with snake_case attributes; everything below takes typed
arguments, never the raw dict.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flower_dl import registry
from flower_dl.config.schema import ConfigError, check_values, kebab, key, refuse_unknown
from flower_dl.privacy.central_dp import check_central_strategy
from flower_dl.topology import MIXINGS, STUDY_EDGES, TOPOLOGIES
from flower_dl.topology.compressed import MAX_QSGD_LEVELS
from flower_dl.topology.graphs import check_family
from flower_dl.topology.schedule_checks import check_epidemic_peers

_BYO_DATA = "[Bring your own data](bring-your-own.md#bring-your-own-data)"
_OWN_DATA = "[Nodes that own their data](deployment.md#nodes-that-own-their-data)"
_PRIVACY = "[docs/privacy.md](privacy.md)"


@dataclass(frozen=True)
class RunConfig:
    """Validated run config (attribute ``x_y`` is run-config key ``x-y``); each field declares its key."""

    # topology
    num_nodes: int = key(5, "number of nodes; equals the number of SuperNodes", ge=2)
    topology: str = key(
        "edges",
        "`edges` (the graph in `edges`), `ring`, `star` (hub 0), `full`, `line`, `torus` (r x c, r, c >= 3), "
        "`erdos-renyi`, `k-regular`, `small-world`, `exponential` (i ~ i +- 2^k)",
        choices=TOPOLOGIES,
    )
    edges: str = key(
        STUDY_EDGES,
        'edge list (`"i-j,..."`, a connected graph on 0..num-nodes-1) for `topology = "edges"`; default: the '
        "study's 5-node tree",
        allowed="an edge list 'i-j,...' of a connected graph on 0..num-nodes-1",
    )
    degree: int = key(4, "degree of `k-regular`; neighbours of `small-world` (even)", ge=1)
    edge_prob: float = key(
        0.5,
        "edge probability of `erdos-renyi` (resampled until connected); rewiring probability of `small-world`",
        ge=0,
        le=1,
    )
    mixing: str = key(
        "metropolis",
        "`metropolis` (Metropolis-Hastings, doubly stochastic) or `uniform` (1/(deg+1) over the closed neighbourhood)",
        choices=MIXINGS,
    )
    # data
    dataset: str = key(
        "mnist-5k",
        "`mnist-5k` (embedded, 4,000 train / 1,000 test, stratified), `mnist`, `fashion-mnist`, `cifar10`, "
        f"`cifar100` (3 x 32 x 32), `hf-disk` (a Hugging Face dataset saved with `save_to_disk`, see {_BYO_DATA}), "
        f"or `folder`: each node reads only its own folder (see {_OWN_DATA})",
        choices=registry.DATASETS,
    )
    data_dir: str = key(
        "",
        "folder with MNIST-format IDX files (`train-images-idx3-ubyte[.gz]`, ...) for `mnist`/`fashion-mnist`, "
        "the Python batches (`cifar-10-batches-py`, `cifar-100-python`) for `cifar10`/`cifar100`, the saved "
        "dataset for `hf-disk`; empty: download with torchvision into the cache folder (below). For `folder`: a "
        'template with `{partition-id}` (e.g. `"/data/node-{partition-id}"`); a SuperNode\'s node-config '
        "`data-dir` takes precedence",
        allowed="a folder path (a template with {partition-id} for folder), or empty",
    )
    test_dir: str = key(
        "",
        "`folder`: a folder whose test part every node evaluates on (`split` writes the shared test set there); "
        "empty: each node's own `test/` (or `t10k-*` files)",
        allowed="a folder path, or empty",
    )
    partitioner: str = key(
        "digits-per-node",
        "`digits-per-node` (the study's label skew; overlapping), `digits-per-node-disjoint`, `iid`, `dirichlet`",
        choices=registry.PARTITIONERS,
    )
    digits_per_node: int = key(
        3, "k, classes per node", allowed="an integer in 1..the dataset's class count (checked by the node that "
        "loads a `folder` or `hf-disk`)"
    )  # fmt: skip
    dirichlet_alpha: float = key(0.5, "concentration of `dirichlet`", gt=0)
    image_size: int = key(
        0, "resize every image to this many pixels a side (Pillow LANCZOS)", ge=0, note="0: the data's own size"
    )
    image_column: str = key("image", "`hf-disk`: the column holding the images", allowed="a column name")
    label_column: str = key("label", "`hf-disk`: the column holding the labels", allowed="a column name")
    # exchange phase
    share_ratio: float = key(0.1, "fraction of its original samples a node sends to its neighbours", ge=0, le=1)
    exchange_mode: str = key(
        "broadcast",
        "`broadcast` (one share for all neighbours) or `per-neighbour` (a share drawn for each)",
        choices=registry.EXCHANGE_MODES,
    )
    exchange_encryption: bool = key(
        True,
        "encrypt the exchanged samples end to end (X25519 + AES-256-GCM); `false` relays them in clear through "
        "the server",
    )
    exchange_mechanism: str = key(
        "raw",
        "what a node sends for the samples it drew: `raw` (the samples; the study), `noise` (each image plus "
        "Gaussian pixel noise of std `exchange-noise`, pixels in [0, 1], clipped), `mixup` (each item the mean of "
        "`mixup-size` of the node's own images of the drawn sample's class, with that label; FedMix's "
        "mean-augmented data)",
        choices=registry.MECHANISMS,
    )
    exchange_noise: float = key(0.1, "`noise`: the noise's standard deviation (0 sends exact copies)", ge=0)
    mixup_size: int = key(4, "`mixup`: images per mean (at most a node's smallest class)", ge=1)
    mia_samples: int = key(
        200,
        "members (and as many non-members) of the membership attack per node (0: off); a node that holds fewer "
        "(own samples, or test samples of its classes) uses what it has: capped when the nodes are identified, "
        "before training, said in one log line and recorded in `config.json` (`mia-samples-used`)",
        ge=0,
    )
    mia_reference_models: int = key(
        1,
        "reference models of the strong membership attack (offline RMIA, Zarifzadeh et al. 2024), trained by each "
        f"node's own training code on the public half of its test set (0: the loss-threshold attack only); see {_PRIVACY}",
        ge=0,
        note="0: no RMIA",
    )
    mia_every: int = key(
        10,
        "the model each node sends is attacked every this many rounds and in the last round (`sent-*` columns); "
        "with the default 10 rounds, the last round only",
        ge=1,
        note="rounds; the last round is always attacked",
    )
    # model and training
    model: str = key(
        "mlp",
        "`mlp` (784-200-10, dropout 0.5), `cnn` (2 conv 5x5, 10/20 channels, 320-50-10), `fedavg-cnn` (the FedAvg "
        'paper\'s CNN), `resnet18` (CIFAR-style ResNet-18, BatchNorm), or an import path `"my_pkg.nets:build"` to '
        "a factory `(input_shape, num_classes) -> nn.Module` (see [Bring your own model]"
        "(bring-your-own.md#bring-your-own-model)); input size and class count come from the data",
        choices=registry.MODELS,
    )
    strategy: str = key(
        "decentralized",
        "decentralized (gossip emulated on the server): `decentralized` (D-PSGD), `gradient-tracking` (K-GT), "
        "`choco` (Choco-SGD, compressed gossip); parameter server (Flower's own): `fedavg`, `fedprox`, `fedavgm`, "
        "`fedadam`, `fedadagrad`, `fedyogi`, `fedmedian`, `fedtrimmedavg`, `krum` (see [Algorithms]"
        '(algorithms.md#decentralized-algorithms)); or an import path `"my_pkg.gossip:MyRule"` to a subclass of '
        "the decentralized base (see [Write your own algorithm](bring-your-own.md#write-your-own-algorithm))",
        choices=registry.STRATEGIES,
    )
    num_server_rounds: int = key(10, "rounds", ge=1)
    evaluate_every: int = key(
        1, "evaluate every node's model every this many rounds", ge=1, note="the last round is always evaluated"
    )
    evaluate_in_train: bool = key(
        True,
        "evaluate round r's model at the start of round r + 1's `train` message (one message per node per round; "
        "the last round gets an `evaluate` message); `false`: a separate `evaluate` message after each evaluated "
        "round (Flower's usual way, twice the messages); the accuracies are the same",
    )
    local_epochs: int = key(3, "local epochs per round", ge=1)
    lr: float = key(0.01, "SGD learning rate", gt=0)
    momentum: float = key(0.5, "SGD momentum", ge=0, lt=1)
    batch_size: int = key(64, "local batch size", ge=1)
    proximal_mu: float = key(0.01, "FedProx's proximal term (used by `fedprox` only)", ge=0)
    dp_clip: float = key(1.0, "DP-SGD's per-sample gradient clipping norm (used when `dp-noise-multiplier` > 0)", gt=0)
    dp_noise_multiplier: float = key(
        0.0,
        "DP-SGD's Gaussian noise, as a multiple of `dp-clip` (0: plain SGD, no DP); Poisson-sampled batches, "
        f"epsilon per node and round from Opacus's RDP accountant (`dp-epsilon`); see {_PRIVACY}",
        ge=0,
    )
    dp_delta: float = key(1e-5, "the delta of both epsilons reported (DP-SGD's and central DP's)", gt=0, lt=1)
    central_dp_noise_multiplier: float = key(
        0.0,
        "central DP for `fedavg`/`fedprox`: Flower's `DifferentialPrivacyServerSideFixedClipping` adds Gaussian "
        "noise of this times `central-dp-clip` / n to the mean of the clipped updates, weighted by node (0: off; "
        "`central-dp-epsilon` column)",
        ge=0,
    )
    central_dp_clip: float = key(1.0, "central DP's L2 bound on a node's model update", gt=0)
    # decentralized gossip
    mixing_schedule: str = key(
        "static",
        "decentralized strategies: `static` (the topology's *W* every round), `random-matching` (a random maximal "
        "matching of the topology's edges each round, pairs average 1/2-1/2), `one-peer-exponential` (node i "
        "averages with i + 2^(t mod ceil(log2 n)); ignores the topology), `epidemic` (Epidemic Learning, EL-Local: "
        "each node sends to `epidemic-peers` random others; ignores the topology)",
        choices=registry.MIXING_SCHEDULES,
    )
    gossip_steps: int = key(1, "mixing steps per round; each step's communication is counted", ge=1)
    epidemic_peers: int = key(
        2, "`epidemic`: models each node sends per step", allowed="an integer in 1..num-nodes-1 (checked only for "
        "`epidemic`)"
    )  # fmt: skip
    compression: str = key(
        "top-k",
        "`choco`'s compressor: `top-k`, `random-k` (both at `compression-ratio`, index + value per kept "
        "coordinate), `qsgd` (`qsgd-levels`), `none`",
        choices=registry.COMPRESSORS,
    )
    compression_ratio: float = key(0.1, "fraction of coordinates `top-k` / `random-k` send", gt=0, le=1)
    qsgd_levels: int = key(16, "QSGD's quantisation levels s", ge=1, le=MAX_QSGD_LEVELS)
    choco_gamma: float = key(
        1.0,
        "Choco-SGD's consensus step size; 1 measured best with top-k 10% over 10 rounds (0.1 and 0.5 lag, see "
        "[Algorithms](algorithms.md#measured-on-the-embedded-data)); the paper's theory asks for smaller steps with stronger compression",
        gt=0,
        le=1,
    )
    # run
    seed: int = key(42, "seeds the model, partitions, exchange samples and training order", ge=0, le=2**32 - 1)
    node_wait_timeout: float = key(
        120.0, "seconds the ServerApp waits for `num-nodes` nodes to connect", gt=0, note="seconds"
    )
    round_timeout: float = key(3600.0, "seconds to wait for replies in a round", gt=0, note="seconds")
    results_dir: str = key("results", "where run folders go", min_length=1, allowed="a folder path (not empty)")
    run_name: str = key(
        "",
        "run folder name; empty: `<strategy>-<model>-k<k>-share<ratio>-<time>`",
        pattern=r"^([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)?$",  # no '/', not . or ..
        allowed="a plain folder name (no '/', not . or ..)",
    )
    sweep_cells: str = key(
        "",
        "set by `flower-dl sweep`: the cells (run configs, as JSON, each as its keys that differ from this run's "
        "config) that this one Flower run runs one after another, the nodes keeping their processes and data; "
        "empty: one run",
        allowed="JSON written by flower-dl sweep, or empty",
    )
    checkpoint_every: int = key(
        1,
        "write the server's state (every node's model and the strategy's own state) to `checkpoint.pkl` in the "
        "run folder every this many rounds (0: never); removed once the run completed",
        ge=0,
        note="rounds; 0: no checkpoints",
    )
    resume: bool = key(
        False,
        "go on from the run folder's checkpoint (`results-dir/run-name`); set by `flower-dl run --resume "
        "RUN_FOLDER` and by sweeps; a completed folder is left as it is",
    )

    def __post_init__(self) -> None:
        check_values(type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        try:
            _check_together(self)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> RunConfig:
        """Build from a Flower run config (kebab-case keys); unknown keys are refused."""
        refuse_unknown(cls, run_config, "run-config")
        return cls(**{k.replace("-", "_"): v for k, v in run_config.items()})

    def to_run_config(self) -> dict[str, Any]:
        """The kebab-case dict form (what is stored beside the results)."""
        return {kebab(k): v for k, v in dataclasses.asdict(self).items()}

    @functools.cached_property
    def cell_id(self) -> str:
        """Stable id of this config, output locations (``results-dir``, ``run-name``) ignored.

        A sweep's table names its cells by it (re-running skips the cells it
        holds), and a node keys its stored state by it, so that runs of two
        configs never share state.
        """
        return config_id(self.to_run_config())

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some attributes changed (and validated again)."""
        return dataclasses.replace(self, **changes)


def _check_together(cfg: RunConfig) -> None:
    """What keys ask of each other, each once, every key already valid on its own.

    ``digits-per-node`` and the dataset's class count, the topology and its
    parameters, ``epidemic-peers`` and ``num-nodes``, central DP and the
    strategy. Raises ``ValueError`` naming the key, the value and what is allowed.
    """
    classes = registry.num_classes(cfg.dataset)
    if classes and not 1 <= cfg.digits_per_node <= classes:
        raise ConfigError(
            f"digits-per-node: {cfg.digits_per_node!r} is out of range; allowed: an integer in 1..{classes} "
            f"({cfg.dataset})"
        )
    if not classes and cfg.digits_per_node < 1:  # the data's own class count, checked by the node that loads it
        raise ConfigError(f"digits-per-node: {cfg.digits_per_node!r} is out of range; allowed: an integer >= 1")
    check_family(cfg.topology, cfg.num_nodes, edges=cfg.edges, degree=cfg.degree, prob=cfg.edge_prob)
    check_epidemic_peers(cfg.mixing_schedule, cfg.num_nodes, cfg.epidemic_peers)
    check_central_strategy(cfg.central_dp_noise_multiplier, cfg.strategy)


STRATEGY_NAMES: tuple[str, ...] = registry.STRATEGIES.names()
EXCHANGE_MODES: tuple[str, ...] = registry.EXCHANGE_MODES.names()
MODEL_NAMES: tuple[str, ...] = registry.MODELS.names()
"""The built-in names of ``strategy``, ``exchange-mode`` and ``model`` (:mod:`flower_dl.registry` holds them)."""

OUTPUT_KEYS: tuple[str, ...] = ("results-dir", "run-name", "sweep-cells", "checkpoint-every", "resume")
"""Keys that say where a run's results go and how they are kept (or which cells one Flower run runs), not
what it computes: left out of :func:`config_id` (a resumed run is the same cell) and of the results table."""


def config_id(run_config: Mapping[str, Any]) -> str:
    """Stable id of a run config: a hash of its keys and values, the :data:`OUTPUT_KEYS` left out."""
    canonical = {k: v for k, v in sorted(run_config.items()) if k not in OUTPUT_KEYS}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:12]


SWEEP_FORMAT = 2
"""Version of what :func:`cells_value` writes (2: the cells inline, as differences from the run's config)."""


def cells_value(cells: Sequence[Mapping[str, Any]], run_config: Mapping[str, Any]) -> str:
    """The ``sweep-cells`` value for one Flower run of ``cells`` whose own run config is ``run_config``.

    JSON, each cell as its keys that differ from ``run_config``: small enough for a run config, and it
    travels in the run config itself, so it reaches a ServerApp on another machine as every value does.
    """
    diffs = [{k: v for k, v in c.items() if run_config.get(k) != v or k not in run_config} for c in cells]
    return json.dumps({"format": SWEEP_FORMAT, "cells": diffs}, separators=(",", ":"))


def load_cells(value: str, run_config: Mapping[str, Any]) -> list[RunConfig]:
    """The cells a ``sweep-cells`` value names, each validated; raises :class:`ConfigError` naming ``sweep-cells``."""
    try:
        data = json.loads(value)
    except ValueError as err:
        raise ConfigError(f"sweep-cells: {value[:60]!r}... is not JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format") != SWEEP_FORMAT or not isinstance(data.get("cells"), list):
        raise ConfigError(f"sweep-cells: not a list of cells of format {SWEEP_FORMAT} (written by flower-dl sweep)")
    base = {k: v for k, v in run_config.items() if k != "sweep-cells"}
    return [RunConfig.from_run_config({**base, **c, "sweep-cells": ""}) for c in data["cells"]]


def defaults() -> dict[str, Any]:
    """Every key's default, kebab-case (pyproject.toml must agree; a test checks)."""
    return RunConfig().to_run_config()
