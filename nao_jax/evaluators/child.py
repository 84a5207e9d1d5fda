"""The child-training evaluator: train each arch from scratch, score it by its
validation accuracy (NAO without weight sharing, reference §6.3).

``config.evaluator.name = 'child'`` trains every asked arch of the ``nasnet``
space of ``config.space`` with the child trainer (``training.loop``) as
``config.child`` says (model, augmentation, training; ``split='search'``: the
45k/5k train/validation split of ``config.data``), and scores it by its best
validation accuracy over the epochs; the test accuracy and the parameter count
are reported, never shown to the strategy. A trial trains in a temporary
directory that is removed afterwards: a trial lost with its worker is trained
again from scratch, and the driver records each arch once.

Devices: each trial gets a group of ``config.evaluator.devices_per_trial``
local devices (0: all of them), so ``executor.workers`` trials on one host
train at once on disjoint groups (8 GPUs, 1 per trial: 8 trials at once). A
trial waits for a free group. Under Ray, a trial's worker sees the GPUs Ray
gave it, and ``devices_per_trial=0`` takes them all.
"""

from __future__ import annotations

import os
import queue
import tempfile
from typing import Any, Sequence

import jax
import ml_collections

from nao_jax import atomic
from nao_jax import configuration
from nao_jax import spaces
from nao_jax.evaluators.base import Evaluation, Evaluator
from nao_jax.training import loop


class ChildTraining(Evaluator):
  """Trains each arch; see the module docstring.

  Attributes:
    space: the ``nasnet`` space; search_metric 'valid_accuracy', report_metric
      'test_accuracy'; cost: the seconds of training.
  """
  search_metric = "valid_accuracy"
  report_metric = "test_accuracy"
  cost_unit = "seconds"

  def __init__(self, space: spaces.NasnetSpace, config: ml_collections.ConfigDict,
               device_groups: Sequence[Sequence[Any]]):
    self.space, self.config = space, config
    self._free_groups: queue.Queue = queue.Queue()
    for group in device_groups:
      self._free_groups.put(list(group))

  def evaluate(self, archs: Sequence[Any]) -> list[Evaluation]:
    return [self._train(arch) for arch in archs]

  def _train(self, arch: Any) -> Evaluation:
    devices = self._free_groups.get()
    try:
      with tempfile.TemporaryDirectory(prefix="nao_jax_trial_") as directory:
        arch_path = atomic.write_text(os.path.join(directory, "arch.json"),
                                      self.space.to_json(arch))
        child = loop.section_config(self.config, "child", arch_path)
        results = loop.run(child, directory, devices=devices)
    finally:
      self._free_groups.put(devices)
    if results["best_valid_accuracy"] is None:
      return Evaluation.failure("the child trainer reported no validation accuracy.")
    return Evaluation(float(results["best_valid_accuracy"]),
                      {"test_accuracy": float(results["final_test_accuracy"]),
                       "params": float(results["params"])}, float(results["wall_time_s"]))


def device_groups(devices_per_trial: int) -> list[list[Any]]:
  """The local devices in groups of ``devices_per_trial`` (0: one group of all)."""
  local = jax.local_devices()
  per = devices_per_trial or len(local)
  return [local[i:i + per] for i in range(0, len(local) - per + 1, per)]


def build(config: ml_collections.ConfigDict) -> ChildTraining:
  """The evaluator of ``config.evaluator.name = 'child'`` (see the module docstring)."""
  local = len(jax.local_devices())
  per = configuration.value(config, "evaluator.devices_per_trial") or 0
  configuration.check(config, [
      ("evaluator.devices_per_trial", isinstance(per, int) and 0 <= per <= local,
       f"must be 0 (all) or 1..{local}, the local devices"),
      ("child.split", configuration.value(config, "child.split") == "search",
       "the child is scored on a validation split; use 'search'")])
  with configuration.section("space"):
    space = spaces.get("nasnet", **config.space)
  return ChildTraining(space, config, device_groups(per))
