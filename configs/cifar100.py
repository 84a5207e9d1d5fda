"""NAO-WS on CIFAR-100: configs/cifar.py with the CIFAR-100 data (100 classes).

Command:
  python -m nao_jax.main --config=configs/cifar100.py --workdir=/tmp/nao_ws_cifar100

Expected: runtime as configs/cifar.py (same network sizes); the reference
reports no NAO-WS CIFAR-100 figure (NAONet-A reaches 14.80% test error on
CIFAR-100 in the TF README), so this setting is unmeasured.
"""

import importlib.util
import os

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, ""):
    raise ValueError(f"configs/cifar100.py:{arg}: takes no variant.")
  spec = importlib.util.spec_from_file_location(
      "nao_ws_cifar_config", os.path.join(os.path.dirname(__file__), "cifar.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config("cifar100")
