"""Tabular evaluators: known values, optimum, clear errors for bad files and names."""

import json

import numpy as np
import pytest

from nao_jax import evaluators
from nao_jax import spaces
from tests.conftest import SHARED_DATA

MACRO_PATH = SHARED_DATA / "nasbench_macro" / "nas-bench-macro_cifar10.json"
OPTIMUM = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


@pytest.fixture(scope="module")
def nb201(nb201_table_path):
  return evaluators.get("nb201", path=str(nb201_table_path))


def test_nb201_known_values(nb201):
  space = nb201.space
  best, = nb201.evaluate([space.from_string(OPTIMUM)])
  assert best.score == pytest.approx(91.6067, abs=1e-4)
  assert best.report == {"c10_test_200": pytest.approx(94.3733, abs=1e-4)}
  assert best.cost == 1.0
  first = space.from_string("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|"
                            "skip_connect~1|skip_connect~2|")
  row0, = nb201.evaluate([first])
  assert (row0.score, row0.report["c10_test_200"]) == pytest.approx((81.9827, 85.8633), abs=1e-4)
  arch, evaluation = nb201.optimum()
  assert space.to_string(arch) == OPTIMUM and evaluation == best
  search, report = nb201.all_scores()
  assert len(nb201) == 15625 and search.shape == report.shape == (15625,)
  assert np.mean(report) == pytest.approx(87.06, abs=0.01)


def test_nb201_twelve_epoch_columns(nb201_table_path):
  table = evaluators.get("nb201", path=str(nb201_table_path), search_metric="in16_valid_12",
                         report_metric="in16_test_12")
  _, report = table.all_scores()
  assert report.max() == pytest.approx(38.27, abs=0.01)


def test_an_empty_path_is_looked_up_in_the_data_directories(nb201_table_path, tmp_path,
                                                             monkeypatch):
  # conftest sets NAO_JAX_DATA to ../shared/data.
  assert evaluators.get("nb201").path.resolve() == nb201_table_path.resolve()
  monkeypatch.chdir(tmp_path)
  (tmp_path / "data" / "nasbench201").mkdir(parents=True)
  (tmp_path / "data" / "nasbench201" / "nb201_acc.npz").symlink_to(nb201_table_path)
  monkeypatch.setenv("NAO_JAX_DATA", str(tmp_path / "elsewhere"))
  assert evaluators.get("nb201").path == tmp_path / "data" / "nasbench201" / "nb201_acc.npz"
  (tmp_path / "data" / "nasbench201" / "nb201_acc.npz").unlink()
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  tried = [tmp_path / "elsewhere", tmp_path / "data", tmp_path / "home" / ".cache" / "nao_jax" /
           "data"]
  with pytest.raises(ValueError) as error:
    evaluators.get("nb201")
  message = str(error.value)
  assert message.startswith("config.evaluator: path: nasbench201/nb201_acc.npz not found in ")
  for directory in tried:
    assert str(directory / "nasbench201" / "nb201_acc.npz") in message
  assert "Set NAO_JAX_DATA=DIR" in message and "path=FILE" in message


def test_nb201_errors_name_the_problem(tmp_path, nb201_table_path):
  with pytest.raises(ValueError, match=r"path: file .*missing\.npz' not found.*nb201_acc\.npz"):
    evaluators.get("nb201", path=str(tmp_path / "missing.npz"))
  garbage = tmp_path / "garbage.npz"
  garbage.write_bytes(b"not a zip file")
  with pytest.raises(ValueError, match="not a readable .npz"):
    evaluators.get("nb201", path=str(garbage))
  wrong = tmp_path / "wrong.npz"
  np.savez(wrong, acc=np.zeros(3))
  with pytest.raises(ValueError, match="no 'ops' array"):
    evaluators.get("nb201", path=str(wrong))
  with pytest.raises(ValueError, match=r"search_metric: unknown column 'c10_valid'.*c10v_valid_200"):
    evaluators.get("nb201", path=str(nb201_table_path), search_metric="c10_valid")
  with pytest.raises(ValueError, match="unknown evaluator"):
    evaluators.get("nb301")


@pytest.fixture(scope="module")
def macro():
  if not MACRO_PATH.exists():
    pytest.skip(f"NAS-Bench-Macro file not found at {MACRO_PATH}")
  return evaluators.get("macro", path=str(MACRO_PATH))


def test_macro_searches_one_seed_and_reports_the_others(macro):
  with open(MACRO_PATH) as f:
    record = json.load(f)["22212220"]
  result, = macro.evaluate([macro.space.from_string("22212220")])
  assert result.score == record["test_acc"][0]
  assert result.report["test_acc_other_seeds"] == pytest.approx(np.mean(record["test_acc"][1:]))
  assert len(macro) == 6561
  arch, best = macro.optimum()
  assert best.score == pytest.approx(93.28, abs=0.01)
  other_seed = evaluators.get("macro", path=str(MACRO_PATH), search_seed=2)
  assert other_seed.evaluate([arch])[0].report["test_acc_other_seeds"] == pytest.approx(
      np.mean(macro._table[macro.space.to_values(arch).tobytes()][:2]))


def test_macro_errors(tmp_path):
  with pytest.raises(ValueError, match="not found.*NAS-Bench-Macro"):
    evaluators.get("macro", path=str(tmp_path / "none.json"))
  bad = tmp_path / "bad.json"
  bad.write_text('{"0000000": {"test_acc": [1, 2, 3]}}')
  with pytest.raises(ValueError, match="not a NAS-Bench-Macro JSON"):
    evaluators.get("macro", path=str(bad))
  if MACRO_PATH.exists():
    with pytest.raises(ValueError, match="search_seed"):
      evaluators.get("macro", path=str(MACRO_PATH), search_seed=3)


def test_macro_space_round_trips():
  space = spaces.get("macro")
  arch = space.from_string("01202211")
  assert space.to_string(arch) == "01202211"
  assert space.from_json(space.to_json(arch)) == arch
  np.testing.assert_array_equal(space.encode(arch), [1, 2, 3, 1, 3, 3, 2, 2])
  assert space.allowed.shape == (8, 4) and not space.allowed[:, 0].any()
  with pytest.raises(ValueError, match="8 digits"):
    space.from_string("0120221")
  with pytest.raises(ValueError, match="position 3"):
    space.decode([1, 2, 3, 4, 1, 1, 1, 1])
