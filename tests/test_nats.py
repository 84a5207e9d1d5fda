"""The official NATS-Bench topology files: a tiny directory in their format is
read into the columns of nb201_acc.npz, directly or through the converter."""

import bz2
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from nao_jax import spaces
from nao_jax.evaluators import nats
from nao_jax.evaluators import tabular
from tests.conftest import REPO

ARCHS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
         "nor_conv_1x1~2|",
         "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
         "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|"
         "skip_connect~2|"]


def _result(dataset, seed, epochs, accuracies):
  """A ResultsCount state dict as NATS-Bench pickles it (the fields read, and some others)."""
  return {"name": dataset, "net_state_dict": None, "seed": seed, "epochs": epochs,
          "params": 1.5, "flop": 100.0, "latency": None, "train_acc1es": {},
          "eval_names": list(accuracies),
          "eval_acc1es": {f"{name}@{epochs - 1}": acc for name, acc in accuracies.items()},
          "eval_losses": {}, "eval_times": {}}


def _write(path, obj):
  with bz2.open(path, "wb") as f:
    pickle.dump(obj, f)


@pytest.fixture
def nats_directory(tmp_path):
  directory = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
  directory.mkdir()
  _write(directory / nats.META_FILE, {"meta_archs": ARCHS, "evaluated_indexes": [0, 1, 2]})
  for index, _ in enumerate(ARCHS):
    per_hp = {}
    for hp, epochs in (("200", 200), ("12", 12)):
      base = 90.0 - 10 * index + (0.5 if hp == "200" else 0.0)
      results = {}
      for seed, shift in ((777, -1.0), (888, 1.0)):  # Mean over the seeds: base.
        results[("cifar10-valid", seed)] = _result(
            "cifar10-valid", seed, epochs, {"x-valid": base + shift, "ori-test": base + 2})
        results[("cifar10", seed)] = _result("cifar10", seed, epochs, {"ori-test": base + 3})
        results[("cifar100", seed)] = _result("cifar100", seed, epochs,
                                              {"x-valid": base - 20, "x-test": base - 21})
      per_hp[hp] = {"arch_index": index, "arch_str": ARCHS[index], "all_results": results,
                    "dataset_seed": {}, "clear_net_done": True}
    _write(directory / f"{index:06d}.pickle.pbz2", per_hp)
  return directory


def test_reads_the_final_epoch_mean_over_seeds(nats_directory):
  table = nats.read_topology(nats_directory)
  np.testing.assert_allclose(table["c10v_valid_200"], [90.5, 80.5, 70.5])
  np.testing.assert_allclose(table["c10_test_12"], [93.0, 83.0, 73.0])
  np.testing.assert_allclose(table["c100_test_200"], [69.5, 59.5, 49.5])
  np.testing.assert_allclose(table["params_mb"], [1.5] * 3)
  assert "in16_valid_200" not in table  # No ImageNet16-120 results in these files.
  space = spaces.get("nb201")
  assert [space.to_string(space.from_values(row)) for row in table["ops"]] == ARCHS


def test_the_nb201_evaluator_takes_the_directory_or_the_converted_file(nats_directory,
                                                                        tmp_path):
  space = spaces.get("nb201")
  direct = tabular.Nb201Table(str(nats_directory), "c100_valid_200", "c100_test_200")
  converted_path = tmp_path / "nats.npz"
  done = subprocess.run([sys.executable, "-m", "nao_jax.evaluators.nats",
                         f"--input={nats_directory}", f"--output={converted_path}"],
                        cwd=REPO, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert done.returncode == 0, done.stderr[-2000:]
  converted = tabular.Nb201Table(str(converted_path), "c100_valid_200", "c100_test_200")
  for table in (direct, converted):
    (evaluation,) = table.evaluate([space.from_string(ARCHS[1])])
    assert (evaluation.score, evaluation.report["c100_test_200"]) == (60.5, 59.5)


def test_a_damaged_directory_names_the_problem(nats_directory):
  os.remove(nats_directory / "000001.pickle.pbz2")
  with pytest.raises(ValueError, match="lacks 000001.pickle.pbz2"):
    nats.read_topology(nats_directory)
  (nats_directory / "000001.pickle.pbz2").write_bytes(b"not bz2")
  with pytest.raises(ValueError, match="not a readable NATS-Bench pickle.pbz2 file"):
    nats.read_topology(nats_directory)
