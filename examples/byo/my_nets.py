"""A user's own model, in the user's own module: ``model = "my_nets:small_cnn"``.

flower-dl calls the factory with the data's input shape ``(channels, height,
width)`` and class count, once per node process, and loads the run's weights
into what it returns. Put this folder on ``PYTHONPATH`` (``flower-dl run``
passes it on to the simulation's processes) or install it as a package.
"""

from torch import nn


def small_cnn(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Two 3x3 convolutions with BatchNorm, global average pooling, a linear head."""
    channels = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, 16, kernel_size=3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )
