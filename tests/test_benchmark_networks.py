"""The NAS-Bench-201 and NAS-Bench-Macro child networks: parameter counts equal
to the benchmarks' own, the cell's arithmetic, and a search's best_arch.json
trained by the final-training config."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nao_jax import models
from nao_jax import spaces
from nao_jax.models import nb201 as nb201_net
from tests.conftest import REPO

# (arch, parameters): NAS-Bench-201's params_mb x 1e6 (nb201_acc.npz rows 0, 6111, 9930)
# and NAS-Bench-Macro's "params" field.
NB201_COUNTS = [
    ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|"
     "skip_connect~2|", 129_306),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
     "nor_conv_1x1~2|", 1_073_466),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
     "nor_conv_3x3~2|", 1_288_506),
]
MACRO_COUNTS = [("00000000", 387_882), ("02012100", 890_666), ("11111221", 2_181_386),
                ("22212202", 1_985_514), ("22222222", 2_932_586)]


def parameter_count(space_name, text):
  space = spaces.get(space_name)
  model = models.from_space(space, space.from_string(text))
  images = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  variables = jax.eval_shape(lambda r, x: model.init(r, x, train=True),
                             {"params": jax.random.key(0)}, images)
  return models.count_params(variables["params"])[0]


@pytest.mark.parametrize("text, expected", NB201_COUNTS)
def test_nb201_network_has_the_benchmarks_parameter_count(text, expected):
  assert parameter_count("nb201", text) == expected


@pytest.mark.parametrize("text, expected", MACRO_COUNTS)
def test_macro_network_has_the_benchmarks_parameter_count(text, expected):
  assert parameter_count("macro", text) == expected


@pytest.mark.parametrize("ops, factor", [
    ((1,) * 6, 4.0),  # Skips: node1 = x, node2 = x + x, node3 = x + x + 2x.
    ((0,) * 6, 0.0),  # Nothing reaches node 3.
    ((0, 0, 0, 1, 0, 0), 1.0),  # Only the direct edge 0 -> 3.
    ((1, 0, 1, 0, 0, 1), 1.0),  # The chain 0 -> 1 -> 2 -> 3.
])
def test_nb201_cell_sums_its_edges(ops, factor):
  x = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
  cell = nb201_net.Nb201Cell(ops)
  variables = cell.init(jax.random.key(1), x, False)
  np.testing.assert_allclose(cell.apply(variables, x, False), factor * x, rtol=1e-6)


def test_nb201_cell_average_pool_leaves_out_the_padding():
  x = jnp.ones((1, 4, 4, 2))
  cell = nb201_net.Nb201Cell((0, 0, 0, 4, 0, 0))  # avg_pool_3x3 on 0 -> 3 only.
  np.testing.assert_allclose(cell.apply(cell.init(jax.random.key(0), x, False), x, False), x)


def _cli(*flags):
  return subprocess.run([sys.executable, "-m", "nao_jax.main", *flags], cwd=REPO,
                        capture_output=True, text=True, timeout=900,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})


@pytest.mark.slow
@pytest.mark.parametrize("config, table_fixture", [("nb201", "nb201_table_path"),
                                                   ("macro", "macro_table_path")])
def test_a_searchs_best_arch_trains_with_the_final_config(config, table_fixture, request,
                                                          tmp_path):
  request.getfixturevalue(table_fixture)  # Skips when the table is missing.
  search = _cli(f"--config=configs/{config}.py:small", "--config.strategy=local",
                f"--workdir={tmp_path / 'search'}")
  assert search.returncode == 0, search.stderr[-2000:]
  best = tmp_path / "search" / "best_arch.json"
  train = _cli("--config=configs/cifar_final.py:small", f"--config.arch={best}",
               "--config.train.epochs=1", f"--workdir={tmp_path / 'train'}")
  assert train.returncode == 0, train.stderr[-2000:]
  results = json.loads((tmp_path / "train" / "results.json").read_text())
  space = spaces.get(config)
  arch = json.loads(best.read_text())["string"]
  assert results["arch_string"] == arch
  assert results["params"] == parameter_count(config, arch)
  assert 0.0 <= results["final_test_accuracy"] <= 1.0 and space.name == config
