"""Models, chosen by name or by import path from the run config (``model``).

A model is made by a *factory*: any callable
``factory(input_shape, num_classes) -> torch.nn.Module``, called with keywords,
where ``input_shape`` is the data's ``(channels, height, width)`` and
``num_classes`` its class count. The module it returns must map a float32
batch ``(N, *input_shape)`` to logits ``(N, num_classes)`` (no softmax:
training uses cross-entropy). Its whole ``state_dict`` travels between the
nodes and the server, parameters and buffers alike (what the strategies do
with buffers: ``docs/algorithms.md``, "Models with buffers").

The built-in factories (:data:`flower_dl.registry.MODELS`):

* ``mlp``, ``cnn``: the original study's two networks, taking their input
  size from the data; on 1 x 28 x 28 images they are exactly the study's (the
  same layers, created in the same order: a seed gives the same weights).
* ``fedavg-cnn``: the CNN of the FedAvg paper (McMahan et al. 2017).
* ``resnet18``: torchvision's ResNet-18 with the CIFAR stem (BatchNorm).

Any other value is an import path, ``"my_pkg.nets:build"``, naming a user's
factory. It is imported where the models are built, on every node and on the
server (which builds the initial model), so the module must be importable in
each of those processes: installed, or on their ``PYTHONPATH``.
:func:`build_model` checks what a factory returns before anything uses it, so
that a bad model stops a run with a message instead of failing in training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from flower_dl import registry

InputShape = tuple[int, int, int]
"""``(channels, height, width)`` of one sample."""

Factory = Callable[..., nn.Module]
"""``factory(input_shape=..., num_classes=...) -> nn.Module``."""

MNIST_SHAPE: InputShape = (1, 28, 28)


class ModelError(ValueError):
    """A model that cannot be built, or whose output does not fit the data; the message names ``model``."""


class MLP(nn.Module):
    """C*H*W-200-classes perceptron with dropout 0.5 (the study's ``MLP``; 784-200-10 on MNIST)."""

    def __init__(self, input_shape: InputShape = MNIST_SHAPE, num_classes: int = 10, dim_hidden: int = 200) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.layer_input = nn.Linear(channels * height * width, dim_hidden)
        self.dropout = nn.Dropout(0.5)
        self.layer_hidden = nn.Linear(dim_hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = F.relu(self.dropout(self.layer_input(x)))
        return self.layer_hidden(x)


def _conv_pool(size: int, kernel: int, padding: int = 0) -> int:
    """A side's length after a ``kernel`` x ``kernel`` convolution (stride 1) and a 2 x 2 max-pool."""
    return (size + 2 * padding - kernel + 1) // 2


class CNN(nn.Module):
    """Two 5x5 convolutions (10 and 20 channels), dropout, 50 hidden units (the study's ``CNNMnist``).

    ``fc1``'s input is the second pooling's output, 20 x 4 x 4 = 320 on
    28 x 28 images, as in the study; 20 x 5 x 5 on 32 x 32.
    """

    def __init__(self, input_shape: InputShape = MNIST_SHAPE, num_classes: int = 10) -> None:
        super().__init__()
        channels, height, width = input_shape
        side_h, side_w = _conv_pool(_conv_pool(height, 5), 5), _conv_pool(_conv_pool(width, 5), 5)
        if min(side_h, side_w) < 1:
            raise ValueError(f"images of {height}x{width} are too small for two 5x5 convolutions and pools")
        self.conv1 = nn.Conv2d(channels, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(20 * side_h * side_w, 50)
        self.fc2 = nn.Linear(50, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return self.fc2(x)


class FedAvgCNN(nn.Module):
    """The CNN of the FedAvg paper (McMahan et al., AISTATS 2017, section 3).

    "Two 5x5 convolution layers (the first with 32 channels, the second with
    64, each followed with 2x2 max pooling), a fully connected layer with 512
    units and ReLu activation, and a final softmax output layer". The
    convolutions are padded by 2, as the common reference implementations do
    (FedML's ``CNN_OriginalFedAvg``), so that a side only halves at each pool:
    64 x 7 x 7 = 3136 inputs to the hidden layer on 28 x 28 images, 4096 on
    32 x 32. The softmax is left to the loss (logits out).
    """

    def __init__(self, input_shape: InputShape = MNIST_SHAPE, num_classes: int = 10) -> None:
        super().__init__()
        channels, height, width = input_shape
        if min(height, width) < 4:
            raise ValueError(f"images of {height}x{width} are too small for two 2x2 max-pools")
        self.conv1 = nn.Conv2d(channels, 32, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5, padding=2)
        self.fc1 = nn.Linear(64 * (height // 4) * (width // 4), 512)
        self.fc2 = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def resnet18(input_shape: InputShape = (3, 32, 32), num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem: a 3x3 convolution of stride 1 and no max-pool.

    ImageNet's stem (7x7 stride 2, then a max-pool) would shrink a 32 x 32
    image to 8 x 8 before the first block; the CIFAR stem keeps it whole, as
    the ResNet paper's CIFAR networks and most CIFAR baselines do. The new
    first convolution is initialised as torchvision initialises its own
    (Kaiming normal, fan-out). Its BatchNorm layers carry buffers: running
    means and variances (float) and ``num_batches_tracked`` counters (int64).
    """
    from torchvision.models import resnet18 as torchvision_resnet18  # imported only when used: seconds of CPU

    model = torchvision_resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def _factory(name: str) -> Factory:
    """The factory a ``model`` value names (a built-in name or an import path)."""
    factory = registry.MODELS.load(name)
    if not callable(factory):
        raise ModelError(
            f"model: {name!r} names an object of type {type(factory).__name__}, not a callable; "
            "allowed: a factory (input_shape, num_classes) -> torch.nn.Module"
        )
    return factory


def _check_output(name: str, model: nn.Module, input_shape: InputShape, num_classes: int) -> None:
    """Refuse a model whose logits on a dummy batch are not ``(2, num_classes)``.

    The forward pass runs in eval mode without gradients, so it draws no
    dropout masks and updates no BatchNorm statistics; the global RNG is
    forked anyway, so that the check leaves the caller's random stream as it
    found it (a user's model may draw in ``forward``). The model is handed
    back in the mode it came in.
    """
    was_training = model.training
    expected = (2, num_classes)
    param = next(model.parameters(), None)
    dummy = torch.zeros((2, *input_shape), device=param.device if param is not None else None)
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model.eval()
            out = model(dummy)
    except Exception as err:
        raise ModelError(
            f"model: {name!r}: its forward pass fails on a batch of shape {tuple(dummy.shape)} "
            f"(input shape {input_shape}): {type(err).__name__}: {err}"
        ) from None
    finally:
        model.train(was_training)
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != expected:
        raise ModelError(
            f"model: {name!r}: output of shape {got} on a batch of 2 inputs of shape {input_shape}; "
            f"expected {expected} (one logit per class, {num_classes} classes)"
        )


def build_model(
    name: str, input_shape: InputShape = MNIST_SHAPE, num_classes: int = 10, seed: int | None = None
) -> nn.Module:
    """Build and check the model ``name`` for the data's ``input_shape`` and ``num_classes``.

    Parameters
    ----------
    name : str
        A name of :data:`flower_dl.registry.MODELS` or an import path
        ``"package.module:factory"``.
    input_shape : tuple of int
        ``(channels, height, width)`` of one sample.
    num_classes : int
        The size of the output.
    seed : int, optional
        Fixes the initial weights: the factory runs under ``torch.manual_seed(seed)``
        in a forked RNG, so the caller's random stream is left as it was.

    Returns
    -------
    torch.nn.Module
        The model, in train mode.

    Raises
    ------
    ModelError
        Naming ``model`` and the value: the factory raised, returned something
        other than a module, or the module's output is not ``(N, num_classes)``.
    flower_dl.registry.RegistryError
        An unknown name, or an import path that does not import.
    """
    factory = _factory(name)
    input_shape = cast(InputShape, tuple(int(s) for s in input_shape))  # plain ints, of whatever sequence came
    try:
        if seed is None:
            model = factory(input_shape=input_shape, num_classes=num_classes)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = factory(input_shape=input_shape, num_classes=num_classes)
    except Exception as err:
        raise ModelError(
            f"model: {name!r}: the factory raised {type(err).__name__}: {err} "
            f"(called with input_shape={input_shape}, num_classes={num_classes})"
        ) from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"model: {name!r}: the factory returned a {type(model).__name__}; expected a torch.nn.Module")
    _check_output(name, model, input_shape, num_classes)
    return model


def check_model(name: str, input_shape: InputShape, num_classes: int) -> None:
    """Build ``name`` once and check it (see :func:`build_model`): for refusing a bad model before a run starts.

    Raises
    ------
    ModelError, flower_dl.registry.RegistryError
        As :func:`build_model`.
    """
    build_model(name, input_shape, num_classes)


def load_model(
    name: str,
    arrays,  # flwr.app.ArrayRecord
    device: torch.device,
    into: nn.Module | None = None,
    input_shape: InputShape = MNIST_SHAPE,
    num_classes: int = 10,
) -> nn.Module:
    """Model ``name`` holding the weights and buffers of ``arrays`` (a Flower ArrayRecord), on ``device``.

    ``into``: a module of that model to load the weights into instead of
    building one (building draws random initial weights, which the loaded
    ones replace at once). Every entry of the state dict is loaded, buffers
    included, each cast to the module's own dtype.
    """
    model = build_model(name, input_shape, num_classes) if into is None else into
    model.load_state_dict(arrays.to_torch_state_dict())
    return model.to(device)


def initial_arrays(name: str, seed: int, input_shape: InputShape = MNIST_SHAPE, num_classes: int = 10):
    """The run's initial model: ``build_model(name, input_shape, num_classes, seed)``'s state dict as an ArrayRecord.

    The one definition for both places that build it: the node the server asks
    during the exchange phase, and the server itself if that node failed.
    The record holds the buffers too, each in its own dtype (BatchNorm's
    ``num_batches_tracked``: int64).
    """
    from flwr.app import ArrayRecord

    return ArrayRecord(build_model(name, input_shape, num_classes, seed=seed).state_dict())
