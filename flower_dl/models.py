"""The original study's two networks, chosen by name from the run config."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from flower_dl.config import MODEL_NAMES


class MLP(nn.Module):
    """784-200-10 perceptron with dropout 0.5 (the study's ``MLP``)."""

    def __init__(self, dim_in: int = 784, dim_hidden: int = 200, dim_out: int = 10) -> None:
        super().__init__()
        self.layer_input = nn.Linear(dim_in, dim_hidden)
        self.dropout = nn.Dropout(0.5)
        self.layer_hidden = nn.Linear(dim_hidden, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = F.relu(self.dropout(self.layer_input(x)))
        return self.layer_hidden(x)


class CNN(nn.Module):
    """Two 5x5 convolutions (10 and 20 channels), dropout, 320-50-10 (the study's ``CNNMnist``)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return self.fc2(x)


MODELS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": CNN}
assert tuple(MODELS) == MODEL_NAMES, "config.MODEL_NAMES and MODELS must agree"


def build_model(name: str, seed: int | None = None) -> nn.Module:
    """Instantiate a model by run-config name; ``seed`` fixes its initial weights.

    Raises
    ------
    ValueError
        If ``name`` is not in :data:`MODELS`.
    """
    if name not in MODELS:
        raise ValueError(f"model: {name!r} is not a known model; allowed: {', '.join(MODELS)}")
    if seed is None:
        return MODELS[name]()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name]()


def load_model(name: str, arrays, device: torch.device, into: nn.Module | None = None) -> nn.Module:
    """Model ``name`` holding the weights of ``arrays`` (a Flower ArrayRecord), on ``device``.

    ``into``: a module of that model to load the weights into instead of
    building one (building draws random initial weights, which the loaded
    ones replace at once).
    """
    model = build_model(name) if into is None else into
    model.load_state_dict(arrays.to_torch_state_dict())
    return model.to(device)


def initial_arrays(name: str, seed: int):  # -> flwr.app.ArrayRecord
    """The run's initial model: ``build_model(name, seed=seed)``'s weights as an ArrayRecord.

    The one definition for both places that build it: the node the server asks
    during the exchange phase, and the server itself if that node failed.
    """
    from flwr.app import ArrayRecord

    return ArrayRecord(build_model(name, seed=seed).state_dict())
