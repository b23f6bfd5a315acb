"""Images in memory: :class:`ImageData`, how images are read, sized and normalised, and the tensors made of them.

Datasets are held as raw ``uint8`` images with ``int64`` labels: grayscale
``(n, H, W)``, colour ``(n, H, W, 3)`` (channels last, as CIFAR's arrays and
Pillow give them); every training sample's index in the training set is its
stable id (used to dedupe exchanged samples). Tensors for training are made
once per node by :func:`to_tensor` (``(n, C, H, W)``, normalised per channel);
there are no per-sample transforms.

Sizes and modes. Images keep their own size unless ``image-size`` asks for
``image-size x image-size`` (Pillow's LANCZOS filter, the aspect ratio not
kept). Pillow images (``hf-disk``, node folders) are read by
:func:`image_array`: the grayscale modes stay grayscale, every colour mode
becomes ``RGB``.

Normalisation (:func:`normalisation`, applied by :func:`to_tensor`)
    grayscale data            MNIST's mean 0.1307, std 0.3081 (the study's)
    ``cifar10``               mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616)
    ``cifar100``              mean (0.5071, 0.4865, 0.4409), std (0.2673, 0.2564, 0.2762)
    other colour data         0.5 / 0.5 per channel (``hf-disk``, node folders): no
                              statistics of a user's data are computed, so that every
                              node normalises the same way whatever its own samples
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

NUM_CLASSES = 10
MEAN, STD = 0.1307, 0.3081
CHANNEL_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
"""Per-channel mean and std of the colour datasets whose statistics are known (their training sets)."""
COLOUR_MEAN = COLOUR_STD = 0.5
RESIZE_FILTER = "LANCZOS"
"""Pillow resampling filter (``PIL.Image.Resampling``) of ``image-size``: the sharpest of its antialiasing filters."""


class DataError(ValueError):
    """Bad dataset name, data directory or partitioning parameters."""


@dataclass(frozen=True)
class ImageData:
    """A dataset held in memory as raw images and labels, with what a model and :func:`to_tensor` need of it.

    Attributes
    ----------
    train_images, test_images : numpy.ndarray
        ``uint8``, ``(n, H, W)`` grayscale or ``(n, H, W, 3)`` colour.
    train_labels, test_labels : numpy.ndarray
        ``int64`` in ``0..num_classes-1``.
    num_classes : int
        The model's outputs (a class absent from the samples still counts).
    mean, std : tuple[float, ...]
        Per channel, for :func:`to_tensor` (see :func:`normalisation`).
    classes : tuple[str, ...]
        Class names when known (label = index), else empty.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int = NUM_CLASSES
    mean: tuple[float, ...] = (MEAN,)
    std: tuple[float, ...] = (STD,)
    classes: tuple[str, ...] = ()


GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
"""Pillow modes read as grayscale; every other mode (``RGB``, ``RGBA``, ``P``, ``CMYK``, ...) is read as ``RGB``."""


def image_array(img: Any, image_size: int = 0) -> np.ndarray:
    """A Pillow image as ``uint8`` ``(H, W)`` (grayscale) or ``(H, W, 3)`` (colour), resized when asked.

    Grayscale modes (:data:`GRAY_MODES`) become ``L``: 16-bit ones (``I;16*``)
    scaled from 0..65535 to 0..255 (rounded; Pillow's own conversion would
    clip everything above 255 to white), ``LA`` losing its alpha, ``1``,
    ``I`` and ``F`` by Pillow's ``convert("L")`` (``I`` and ``F`` clipped to
    0..255). Every other mode becomes ``RGB`` by Pillow's ``convert``: a
    palette (``P``) image is colour even when its palette is gray, an alpha
    channel is dropped (not composited onto a background), ``CMYK`` is
    converted. ``image_size > 0``: resized to ``image_size x image_size`` with
    :data:`RESIZE_FILTER` (the aspect ratio is not kept).
    """
    from PIL import Image

    if img.mode.startswith("I;16"):
        wide = np.asarray(img).astype(np.uint32)
        img = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8))
    elif img.mode in GRAY_MODES:
        img = img if img.mode == "L" else img.convert("L")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    if image_size and img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), getattr(Image.Resampling, RESIZE_FILTER))
    return np.asarray(img, dtype=np.uint8)


def describe_image(shape: tuple[int, ...]) -> str:
    """An image's mode and size for an error (``"RGB 56 wide x 40 high"``), from its array shape."""
    mode = "grayscale" if len(shape) == 2 else "RGB" if shape[2:] == (3,) else f"{shape[2]}-channel"
    return f"{mode} {shape[1]} wide x {shape[0]} high"


def check_image_size(image_size: int) -> int:
    """``image_size`` if it is an integer >= 0 (0: the data's own size); else :class:`DataError` naming ``image-size``."""
    if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) or image_size < 0:
        raise DataError(
            f"image-size: {image_size!r} is not allowed; allowed: an integer >= 0 (pixels a side; 0: the data's own size)"
        )
    return int(image_size)


def resize_images(images: np.ndarray, image_size: int) -> np.ndarray:
    """``uint8`` images resized to ``image_size x image_size`` (Pillow, :data:`RESIZE_FILTER`); as they are if 0 or that size."""
    if not image_size or images.shape[1:3] == (image_size, image_size):
        return images
    from PIL import Image

    resample = getattr(Image.Resampling, RESIZE_FILTER)
    out = np.empty((len(images), image_size, image_size, *images.shape[3:]), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((image_size, image_size), resample))
    return out


def input_shape(images: np.ndarray) -> tuple[int, int, int]:
    """``(C, H, W)`` of ``(n, H, W)`` (grayscale, C = 1) or ``(n, H, W, C)`` images: what a model is built for."""
    if images.ndim == 3:
        return (1, int(images.shape[1]), int(images.shape[2]))
    if images.ndim == 4:
        return (int(images.shape[3]), int(images.shape[1]), int(images.shape[2]))
    raise DataError(f"images of shape {images.shape}; allowed: (n, H, W) or (n, H, W, C)")


def normalisation(dataset: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` of ``dataset``'s images with ``channels`` channels (see the module docstring).

    Grayscale: MNIST's, as the study. A colour dataset with known statistics
    (:data:`CHANNEL_STATS`): those; other colour data (``hf-disk``,
    ``folder``): 0.5 / 0.5, which maps 0..255 onto -1..1 and needs no pass
    over a user's data (nodes owning their data would each compute other numbers).
    """
    if channels == 1:
        return (MEAN,), (STD,)
    if dataset in CHANNEL_STATS and len(CHANNEL_STATS[dataset][0]) == channels:
        return CHANNEL_STATS[dataset]
    return (COLOUR_MEAN,) * channels, (COLOUR_STD,) * channels


def to_tensor(images: np.ndarray, mean: tuple[float, ...] = (MEAN,), std: tuple[float, ...] = (STD,)):  # -> Tensor
    """Raw ``uint8`` images ``(n, H, W)`` or ``(n, H, W, C)`` -> normalised float32 ``(n, C, H, W)``.

    ``x / 255``, minus ``mean``, divided by ``std``, per channel (one value
    for every channel, or one each). Grayscale takes the study's operations
    in the study's order, so its tensors are bitwise what they always were.
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    channels = input_shape(images)[0]
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise DataError(
            f"to_tensor: {len(mean)} means and {len(std)} stds for {channels} channels; allowed: 1 or {channels}"
        )
    if images.ndim == 3:
        return x.sub_(float(mean[0])).div_(float(std[0])).unsqueeze(1)
    m = torch.tensor(mean, dtype=torch.float32)
    s = torch.tensor(std, dtype=torch.float32)
    return x.sub_(m).div_(s).permute(0, 3, 1, 2).contiguous()  # channels last broadcast, then (n, C, H, W)
