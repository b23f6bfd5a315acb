"""One registry per named choice: every name is spelled once, and every name works where it is used.

Nothing is kept in sync by an import-time ``assert`` (it vanishes under
``python -O``): these tests check that each registry's names are what the
code that acts on them accepts.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from flower_dl import config, registry
from flower_dl.config import ConfigError, RunConfig
from flower_dl.data import datasets as data
from flower_dl.privacy import mechanisms
from flower_dl.registry import RegistryError, load_object
from flower_dl.topology import compressed, schedule_checks


def test_every_registry_lists_unique_names_with_a_description() -> None:
    for reg in registry.ALL:
        names = reg.names()
        assert len(names) == len(set(names)), reg.key
        assert all(choice.doc for choice in reg.choices.values()), reg.key


def test_every_target_imports() -> None:
    for reg in registry.ALL:
        for name, choice in reg.choices.items():
            if choice.target:
                assert load_object(choice.target, reg.key) is not None, (reg.key, name)


def test_the_modules_read_their_names_from_the_registry() -> None:
    assert registry.STRATEGIES.names() == config.STRATEGY_NAMES
    assert registry.MODELS.names() == config.MODEL_NAMES
    assert registry.EXCHANGE_MODES.names() == config.EXCHANGE_MODES
    assert tuple(data.PARTITIONERS) == registry.PARTITIONERS.names()
    assert set(data.DATASETS) | {"folder"} == set(registry.DATASETS.names())
    assert registry.MIXING_SCHEDULES.names() == schedule_checks.SCHEDULES
    assert registry.COMPRESSORS.names() == compressed.COMPRESSORS
    assert registry.MECHANISMS.names() == mechanisms.MECHANISMS


def test_every_registered_name_is_accepted_by_the_run_config() -> None:
    keys = [
        (registry.MODELS, "model"), (registry.DATASETS, "dataset"), (registry.PARTITIONERS, "partitioner"),
        (registry.STRATEGIES, "strategy"), (registry.MIXING_SCHEDULES, "mixing-schedule"),
        (registry.COMPRESSORS, "compression"), (registry.MECHANISMS, "exchange-mechanism"),
        (registry.EXCHANGE_MODES, "exchange-mode"),
    ]  # fmt: skip
    assert [reg.key for reg, _ in keys] == [reg.key for reg in registry.ALL]
    for reg, key in keys:
        assert reg.key == key
        for name in reg.names():
            RunConfig.from_run_config({key: name})
        with pytest.raises(ConfigError, match=f"^{key}: 'no-such-name' is not a known .*; allowed: {reg.names()[0]}"):
            RunConfig.from_run_config({key: "no-such-name"})


def test_every_strategy_name_builds_its_kind() -> None:
    pytest.importorskip("flwr")
    from flower_dl.strategies import DecentralizedStrategy, build_strategy
    from flower_dl.strategies.server import ParameterServer

    for name, choice in registry.STRATEGIES.choices.items():
        cfg = RunConfig(strategy=name, num_nodes=3, topology="ring")
        strategy = build_strategy(cfg, np.full((3, 3), 1 / 3), {0: 10, 1: 11, 2: 12})
        expected = DecentralizedStrategy if choice.kind == "decentralized" else ParameterServer
        assert isinstance(strategy, expected), name


def test_every_model_name_builds_for_grayscale_and_colour() -> None:
    torch = pytest.importorskip("torch")
    from flower_dl.node.models import build_model

    for name in registry.MODELS.names():
        for shape, classes in (((1, 28, 28), 10), ((3, 32, 32), 100)):
            model = build_model(name, shape, classes, seed=0)
            with torch.no_grad():
                assert model.eval()(torch.zeros(2, *shape)).shape == (2, classes), (name, shape)


def test_dataset_class_counts() -> None:
    assert registry.num_classes("cifar100") == 100
    assert registry.num_classes("mnist-5k") == 10
    assert registry.num_classes("folder") == registry.num_classes("hf-disk") == 0
    with pytest.raises(ConfigError, match=r"digits-per-node: 11 is out of range; allowed: an integer in 1\.\.10"):
        RunConfig(dataset="cifar10", digits_per_node=11)
    RunConfig(dataset="cifar100", digits_per_node=50)


def test_import_path_errors_name_the_key_and_the_value(tmp_path, monkeypatch) -> None:
    (tmp_path / "raises_on_import.py").write_text("raise RuntimeError('broken module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = {
        "nodots": "is not a known model",
        "a:b:c": "is not an import path",
        ":build": "is not an import path",
        "no_such_pkg.nets:build": "module 'no_such_pkg.nets' cannot be imported (ModuleNotFoundError",
        "raises_on_import:build": "cannot be imported (RuntimeError: broken module)",
        "os.path:no_such_function": "module 'os.path' has no attribute 'no_such_function'",
    }
    for value, message in cases.items():
        with pytest.raises(RegistryError, match=rf"^model: {re.escape(repr(value))}.*{re.escape(message)}"):
            registry.MODELS.check(value)
    registry.MODELS.check("os.path:join")  # imports and names something: the node checks what it builds
    with pytest.raises(RegistryError, match="names no object"):
        registry.DATASETS.load("mnist")
