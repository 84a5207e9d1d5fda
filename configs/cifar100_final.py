"""Final training of a NAO architecture on CIFAR-100 (reference §7.1 recipe).

Command:
  python -m nao_jax.main --config=configs/cifar100_final.py --workdir=/tmp/naonet_a_c100 \
      [--config.arch=NAONet-B | --config.arch=/path/to/best_arch.json]

Same settings as ``configs/cifar_final.py`` with 100 classes (the classifier
and auxiliary head grow accordingly). The TF reference reports 14.80% test
error for NAONet at F=128; expect a higher error at F=36.

Small variant (CPU, a few minutes; digits, no download):
  python -m nao_jax.main --config=configs/cifar100_final.py:small --workdir=/tmp/c100_small
"""

import importlib.util
import os

import ml_collections


def _cifar_final():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cifar_final.py")
  spec = importlib.util.spec_from_file_location("cifar_final", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """``arg``: None for the full run, ``small`` for the digits variant."""
  config = _cifar_final().get_config(arg)
  if arg != "small":
    config.data.name = "cifar100"
  return config
