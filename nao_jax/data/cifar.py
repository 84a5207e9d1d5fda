"""CIFAR-10 / CIFAR-100 through tensorflow-datasets, held in memory as uint8.

The first use downloads and prepares the data into ``data_dir`` (default
``~/tensorflow_datasets``; a ``gs://`` path works on Cloud TPU VMs) in
array_record format, which needs ``pip install '.[tfds]'``; later runs read it
without TensorFlow. ``download=False`` only reads what is there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nao_jax import data

# Per-channel statistics of the training images (the reference's values).
MEAN_STD = {
    "cifar10": ((0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)),
    "cifar100": ((0.5070751, 0.48654887, 0.44091785), (0.26733429, 0.25643846, 0.27615047)),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


def _read(source: Any) -> data.Split:
  """All examples of a tfds data source as one uint8 ``Split``."""
  images = np.empty((len(source), 32, 32, 3), np.uint8)
  labels = np.empty((len(source),), np.int32)
  for i in range(len(source)):
    example = source[i]
    images[i] = example["image"]
    labels[i] = example["label"]
  return data.Split(images, labels)


def _missing_data_message(name: str, data_dir: str | None, error: Exception) -> str:
  where = data_dir or "~/tensorflow_datasets"
  return (f"data_dir: {name} is not prepared in {where} and could not be downloaded "
          f"({type(error).__name__}: {str(error)[:200]}). Provide it: on a machine with "
          f"internet run `pip install '.[tfds]'` and then `tfds build {name} "
          f"--file_format=array_record --data_dir=DIR` (or run this config there once), copy DIR "
          f"here (or to gs://...) and pass --config.data.data_dir=DIR.")


def load(data_config: Any) -> data.ImageData:
  """Loads ``data_config.name`` ('cifar10' or 'cifar100') with its split settings."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name = data_config.name
  data_dir = data_config.get("data_dir") or None
  try:
    sources = tfds.data_source(
        name, split=["train", "test"], data_dir=data_dir, download=data_config.download,
        builder_kwargs={"file_format": "array_record"})
  except Exception as e:  # tfds raises many types for missing data / no network.
    raise ValueError(_missing_data_message(name, data_dir, e)) from e
  train, test = (_read(source) for source in sources)
  train, valid = data.split_train(train, data_config.split, data_config.valid_size,
                                  data_config.split_seed)
  mean, std = MEAN_STD[name]
  return data.ImageData(name, train, valid, test, NUM_CLASSES[name], mean, std)
