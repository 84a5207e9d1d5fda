"""Image classification data held in host memory as uint8 (augmented on device).

``load(config.data)`` returns an ``ImageData`` for ``name`` in ``DATASETS``:
``cifar10`` / ``cifar100`` (tensorflow-datasets) or ``digits`` (scikit-learn's
bundled 8x8 digits, no download, at ``image_size`` 32, 16 or 8).
``split='search'`` holds out ``valid_size`` training images (seeded by
``split_seed``) as a validation set; ``split='full'`` trains on the whole
training set (no validation set). The test set is never used to select anything.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
  """``images`` uint8 ``[n, H, W, 3]`` and ``labels`` int32 ``[n]``."""
  images: np.ndarray
  labels: np.ndarray

  def __len__(self) -> int:
    return len(self.labels)

  def take(self, indices: np.ndarray) -> "Split":
    return Split(self.images[indices], self.labels[indices])


@dataclasses.dataclass(frozen=True)
class ImageData:
  """A dataset's splits and its per-channel normalisation."""
  name: str
  train: Split
  valid: Split | None
  test: Split
  num_classes: int
  mean: tuple[float, float, float]
  std: tuple[float, float, float]


def split_train(train: Split, split: str, valid_size: int, seed: int) -> tuple[Split, Split | None]:
  """``(train, valid)`` of the ``search`` split (a seeded hold-out of
  ``valid_size`` images) or the ``full`` split (``valid`` is None)."""
  if split == "full":
    return train, None
  if split != "search":
    raise ValueError(f"split: unknown split {split!r}; choose 'search' or 'full'.")
  if not 0 < valid_size < len(train):
    raise ValueError(f"valid_size: must be in [1, {len(train) - 1}] for this dataset, "
                     f"got {valid_size}.")
  order = np.random.default_rng(seed).permutation(len(train))
  return train.take(np.sort(order[valid_size:])), train.take(np.sort(order[:valid_size]))


def load(data_config: Any) -> ImageData:
  """Loads ``data_config.name`` with the config's split settings."""
  # Imported here so that digits-only runs never import tensorflow-datasets.
  from nao_jax.data import cifar, digits  # pylint: disable=g-import-not-at-top
  loaders = {"digits": digits.load, "cifar10": cifar.load, "cifar100": cifar.load}
  name = data_config.name
  if name not in loaders:
    raise ValueError(f"name: unknown dataset {name!r}; choose one of {sorted(loaders)}.")
  if name != "digits" and data_config.get("image_size", 32) != 32:
    raise ValueError(f"image_size: {name} images are 32x32; only digits can be resized "
                     f"(got {data_config.image_size}).")
  return loaders[name](data_config)


DATASETS = ("cifar10", "cifar100", "digits")
