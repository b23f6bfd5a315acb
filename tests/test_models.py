"""Models by name or import path: the built-ins' shapes, the study's weights unchanged, and every bad factory refused."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from flower_dl import registry
from flower_dl.node.models import CNN, MLP, ModelError, build_model, check_model, initial_arrays, load_model

BUILT_IN = ("mlp", "cnn", "fedavg-cnn", "resnet18")
SHAPES = [((1, 28, 28), 10), ((3, 32, 32), 10), ((3, 32, 32), 100)]


def state_digest(model: nn.Module) -> str:
    """blake2b of every state-dict entry's name, shape and bytes, in order."""
    h = hashlib.blake2b(digest_size=16)
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(str(tuple(value.shape)).encode())
        h.update(value.numpy().tobytes())
    return h.hexdigest()


# computed with models.py as it was before models took an input shape (MLP(dim_in=784), CNN(num_classes=10))
STUDY_DIGESTS = {
    ("mlp", 0): "2cf40a1a37b52998514a5b1fffc8a1ca",
    ("mlp", 42): "b95ce951aea7b1a84fc96cf9d702aa44",
    ("cnn", 0): "74b53a2a59e936c24b031255bd81b561",
    ("cnn", 42): "bcf724ab32eef231f89e1ef5de7879cd",
}


@pytest.mark.parametrize(("name", "seed"), list(STUDY_DIGESTS))
def test_the_study_models_have_the_same_initial_weights_as_before(name: str, seed: int) -> None:
    """The default run's accuracy rests on these bytes: same layers, same order, same shapes, same draws."""
    assert state_digest(build_model(name, seed=seed)) == STUDY_DIGESTS[(name, seed)]
    assert state_digest(build_model(name, (1, 28, 28), 10, seed=seed)) == STUDY_DIGESTS[(name, seed)]


def test_the_study_models_layer_shapes_on_mnist() -> None:
    assert [tuple(v.shape) for v in MLP().state_dict().values()] == [(200, 784), (200,), (10, 200), (10,)]
    cnn = CNN()
    assert cnn.conv1.in_channels == 1 and cnn.fc1.in_features == 320
    assert CNN((3, 32, 32)).conv1.in_channels == 3 and CNN((3, 32, 32)).fc1.in_features == 500


@pytest.mark.parametrize("name", BUILT_IN)
@pytest.mark.parametrize(("input_shape", "num_classes"), SHAPES)
def test_every_built_in_model_fits_grayscale_and_colour_data(name, input_shape, num_classes) -> None:
    model = build_model(name, input_shape, num_classes, seed=0)
    assert model.training  # handed back in train mode after the output check
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(3, *input_shape)).shape == (3, num_classes)


def test_fedavg_cnn_is_the_papers() -> None:
    """McMahan et al. 2017: 1,663,370 parameters on MNIST (5x5 conv 32, 5x5 conv 64, 512 hidden)."""
    model = build_model("fedavg-cnn", (1, 28, 28), 10)
    assert sum(p.numel() for p in model.parameters()) == 1_663_370
    assert build_model("fedavg-cnn", (3, 32, 32), 10).fc1.in_features == 64 * 8 * 8


def test_resnet18_has_the_cifar_stem_and_batchnorm_buffers() -> None:
    model = build_model("resnet18", (3, 32, 32), 100, seed=0)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.bias is None
    assert isinstance(model.maxpool, nn.Identity) and model.fc.out_features == 100
    state = model.state_dict()
    assert state["bn1.num_batches_tracked"].dtype == torch.int64
    assert state["bn1.running_var"].dtype == torch.float32
    record = initial_arrays("resnet18", 0, (3, 32, 32), 100)
    assert record["bn1.num_batches_tracked"].numpy().dtype == np.int64
    assert set(record.keys()) == set(state)  # the buffers travel


def test_a_seed_fixes_the_weights_and_leaves_the_callers_rng_alone() -> None:
    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    first = build_model("resnet18", (3, 32, 32), 10, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert state_digest(first) == state_digest(build_model("resnet18", (3, 32, 32), 10, seed=3))
    assert state_digest(first) != state_digest(build_model("resnet18", (3, 32, 32), 10, seed=4))


def test_load_model_and_initial_arrays_take_the_data_shape() -> None:
    record = initial_arrays("cnn", 5, (3, 32, 32), 100)
    model = load_model("cnn", record, torch.device("cpu"), input_shape=(3, 32, 32), num_classes=100)
    assert state_digest(model) == state_digest(build_model("cnn", (3, 32, 32), 100, seed=5))
    assert initial_arrays("mlp", 42).keys() == build_model("mlp").state_dict().keys()


# ------------------------------------------------------------------ user factories
USER_MODULE = '''
import torch
from torch import nn


def good(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.BatchNorm1d(input_shape[0] * input_shape[1] * input_shape[2]),
                         nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], num_classes))


def raises(input_shape, num_classes):
    raise RuntimeError("no GPU here")


def not_a_module(input_shape, num_classes):
    return {"weights": 1}


def wrong_output(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], 7))


def forward_fails(input_shape, num_classes):
    return nn.Linear(5, num_classes)


class Drawing(nn.Module):
    """Draws from the global RNG in forward, even in eval mode."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.fc = nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1)) + 0 * torch.rand(1)


NOT_CALLABLE = 3
'''


@pytest.fixture
def user_nets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user's module, importable only through ``sys.path`` (as on ``PYTHONPATH``)."""
    (tmp_path / "user_nets_for_test.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "user_nets_for_test"


def test_a_factory_by_import_path_builds_and_is_checked(user_nets: str) -> None:
    model = build_model(f"{user_nets}:good", (3, 8, 8), 4, seed=1)
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 4)
    assert "1.num_batches_tracked" in model.state_dict()
    check_model(f"{user_nets}:good", (1, 28, 28), 10)
    check_model(f"{user_nets}:Drawing", (1, 4, 4), 3)  # a class is a factory too


def test_the_output_check_leaves_the_global_rng_alone(user_nets: str) -> None:
    torch.manual_seed(0)
    model = build_model(f"{user_nets}:Drawing", (1, 4, 4), 3, seed=1)
    assert isinstance(model, nn.Module)
    after_build = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), after_build)


@pytest.mark.parametrize(
    ("attribute", "error", "message"),
    [
        ("raises", ModelError, "the factory raised RuntimeError: no GPU here (called with input_shape=(1, 28, 28)"),
        ("not_a_module", ModelError, "the factory returned a dict; expected a torch.nn.Module"),
        (
            "wrong_output",
            ModelError,
            "output of shape (2, 7) on a batch of 2 inputs of shape (1, 28, 28); expected (2, 10)",
        ),
        ("forward_fails", ModelError, "its forward pass fails on a batch of shape (2, 1, 28, 28)"),
        ("NOT_CALLABLE", ModelError, "names an object of type int, not a callable"),
        ("missing", registry.RegistryError, "has no attribute 'missing'"),
    ],
)
def test_a_bad_factory_is_refused_naming_the_key_and_value(user_nets, attribute, error, message) -> None:
    value = f"{user_nets}:{attribute}"
    with pytest.raises(error) as info:
        check_model(value, (1, 28, 28), 10)
    assert str(info.value).startswith(f"model: {value!r}")
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_an_unimportable_module_or_unknown_name_is_refused() -> None:
    with pytest.raises(
        registry.RegistryError,
        match=r"model: 'no_such_module_xyz:build': module 'no_such_module_xyz' cannot be imported",
    ):
        build_model("no_such_module_xyz:build")
    with pytest.raises(ValueError, match=r"model: 'vgg' is not a known model; allowed: mlp, cnn, fedavg-cnn, resnet18"):
        build_model("vgg")


def test_a_too_small_image_is_refused_by_the_factory() -> None:
    with pytest.raises(ModelError, match=r"model: 'cnn': the factory raised ValueError: images of 8x8 are too small"):
        build_model("cnn", (1, 8, 8), 10)
