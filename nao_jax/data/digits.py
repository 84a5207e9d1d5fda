"""The 1,797 real 8x8 handwritten digits bundled in scikit-learn, as 32x32x3 images.

Each 8x8 image (values 0..16) is scaled to 0..255, upsampled to
``image_size`` (32 by default, as CIFAR; 16 or 8 for quick runs) by pixel
repetition and copied to 3 channels. A fixed (seed 0) hold-out of
``TEST_SIZE`` images is the test set; the rest is the training set, split
further by ``split``/``valid_size``/``split_seed``. No download is needed, so
every config can run on a bare machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nao_jax import data

TEST_SIZE = 297
IMAGE_SIZES = (8, 16, 32)


def images_and_labels(image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
  """All digits: uint8 ``[1797, S, S, 3]`` (``S = image_size``) and int32 ``[1797]``
  labels 0..9."""
  if image_size not in IMAGE_SIZES:
    raise ValueError(f"image_size: digits come in sizes {IMAGE_SIZES}, got {image_size}.")
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  small = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # [n, 8, 8]
  factor = image_size // 8
  large = np.repeat(np.repeat(small, factor, axis=1), factor, axis=2)
  return np.repeat(large[..., None], 3, axis=-1), digits.target.astype(np.int32)


def load(data_config: Any) -> data.ImageData:
  images, labels = images_and_labels(data_config.get("image_size", 32))
  order = np.random.default_rng(0).permutation(len(labels))
  test_idx, train_idx = np.sort(order[:TEST_SIZE]), np.sort(order[TEST_SIZE:])
  train, valid = data.split_train(data.Split(images[train_idx], labels[train_idx]),
                                  data_config.split, data_config.valid_size,
                                  data_config.split_seed)
  mean = float(train.images.mean() / 255.0)
  std = float(train.images.std() / 255.0)
  return data.ImageData("digits", train, valid, data.Split(images[test_idx], labels[test_idx]),
                        num_classes=10, mean=(mean,) * 3, std=(std,) * 3)
