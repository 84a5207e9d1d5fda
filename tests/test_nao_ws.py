"""NAO-WS: the supernet evaluator (1 vs 8 devices, scoring) and the quickstart pipeline
end to end: every strategy over the supernet, the results recorded before the search
driver was shared, and a run killed twice then resumed."""

import functools
import json
import os
import pathlib
import signal
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from nao_jax import data as data_lib
from nao_jax import history
from nao_jax import nao_ws
from nao_jax import spaces
from nao_jax.evaluators import supernet as supernet_eval
from nao_jax.models import supernet as supernet_lib
from tests.conftest import RECORDED
from tests.conftest import REPO
from tests.conftest import figures
from tests.conftest import run_cli_until
from tests.conftest import tensorboard_scalars

sys.path.insert(0, str(REPO))
from configs import quickstart as quickstart_config  # noqa: E402

SPACE = spaces.get("nasnet", nodes=2, ops="ws5")


def random_data(train=32, valid=24, size=8):
  rng = np.random.default_rng(0)

  def split(n):
    return data_lib.Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                          rng.integers(0, 10, n).astype(np.int32))

  return data_lib.ImageData(name="random", num_classes=10, train=split(train),
                            valid=split(valid), test=None, mean=(0.5,) * 3, std=(0.25,) * 3)


def evaluator(num_devices, **overrides):
  config = ml_collections.ConfigDict(supernet_eval.default_config())
  config.update(num_cells=0, features=4, batch_size=16, eval_images=24, epochs=2,
                num_devices=num_devices, drop_path_keep_prob=1.0, learning_rate=0.1)
  config.update(**overrides)
  return supernet_eval.SupernetEvaluator(SPACE, random_data(), config, seed=0)


POOL = supernet_lib.arch_arrays(SPACE, SPACE.sample(np.random.default_rng(0), 21))


@pytest.mark.slow  # The child network's version runs by default (test_training.py).
def test_training_on_8_devices_equals_one_device_with_the_whole_batch():
  assert jax.local_device_count() == 8
  one, eight = evaluator(1), evaluator(8)
  metrics = [e.train_steps(POOL, 2) for e in (one, eight)]
  assert metrics[0]["loss"] == pytest.approx(metrics[1]["loss"], rel=1e-5)
  params = [e.host_state().params for e in (one, eight)]
  initial = supernet_lib.init_params(one.model, 0, 8)
  moved = 0
  for (path, a), (_, b), (_, start) in zip(
      jax.tree_util.tree_flatten_with_path(params[0])[0],
      jax.tree_util.tree_flatten_with_path(params[1])[0],
      jax.tree_util.tree_flatten_with_path(initial)[0], strict=True):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=jax.tree_util.keystr(path))
    moved += not np.array_equal(a, start)
  assert moved > 10  # The two steps trained (the archs' weights moved).


def test_scoring_any_number_of_archs_compiles_once_and_matches_one_by_one(monkeypatch):
  traces = []
  original = supernet_eval.score_archs

  def counting(*args, **kwargs):
    traces.append(1)
    return original(*args, **kwargs)

  monkeypatch.setattr(supernet_eval, "score_archs", counting)
  ev = evaluator(8)
  ev.train_steps(POOL, 1)
  few, many = ev.score_arrays(POOL[:3]), ev.score_arrays(POOL)
  assert len(traces) == 1
  params = ev.host_state().params
  single = jax.jit(functools.partial(original, model=ev.model))
  one_by_one = [float(single(params, ev.eval_images, ev.eval_labels, arch[None])[0])
                for arch in POOL]
  np.testing.assert_array_equal(many, one_by_one)
  np.testing.assert_array_equal(few, one_by_one[:3])
  assert len(set(one_by_one)) > 1  # Different archs, different scores.


# ---- the quickstart pipeline (configs/quickstart.py:small) --------------------------------


def stable(records):
  """History records without wall-clock figures (time, and cost: the scoring seconds)."""
  return [{k: v for k, v in r.items() if k not in ("time", "cost")} for r in records]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("quickstart"))
  summary = nao_ws.run(quickstart_config.get_config("small"), workdir)
  return workdir, summary


def test_quickstart_finds_and_trains_a_winner(uninterrupted):
  workdir, summary = uninterrupted
  records = history.read(os.path.join(workdir, "history.jsonl"))
  config = quickstart_config.get_config("small")
  rounds = config.supernet.epochs // config.search.eval_every
  assert len(records) == rounds * config.search.pool_size
  assert [r["index"] for r in records] == list(range(len(records)))
  last_round = nao_ws.last_pool(records)
  assert [r["round"] for r in last_round] == [rounds - 1] * config.search.pool_size
  for previous, current in zip(range(rounds - 1), range(1, rounds)):
    # Every proposal replaces new_per_round archs (gradient steps or the neighbour fill).
    before = {r["hash"] for r in records if r["round"] == previous}
    after = {r["hash"] for r in records if r["round"] == current}
    assert len(after - before) == config.search.new_per_round
  assert summary["hash"] in {r["hash"] for r in last_round[:config.search.rerank_top]}
  assert 0.0 <= summary["final_test_accuracy"] <= 1.0
  with open(os.path.join(workdir, "best_arch.json")) as f:
    assert json.load(f) == summary
  for plot in ("search.png", "best_normal_cell.png", "best_reduction_cell.png",
               "predicted_vs_measured_round1.png"):
    assert os.path.getsize(os.path.join(workdir, "plots", plot)) > 1000, plot
  # The controller's forecasts are recorded from the round after its first fit.
  assert all(("predicted" in r) == (r["round"] > 0) for r in records)
  tb = pathlib.Path(workdir) / "tb"
  (supernet_events,) = (tb / "evaluator").iterdir()
  supernet = tensorboard_scalars(supernet_events)
  steps = [step for step, _ in supernet["supernet/loss"]]
  assert steps == sorted(set(steps)) and len(steps) >= config.supernet.epochs  # One per epoch.
  assert {"supernet/learning_rate", "supernet/images_per_second"} <= set(supernet)
  (search_events,) = (tb / "search").iterdir()
  assert len(tensorboard_scalars(search_events)["search/supernet_accuracy"]) == len(records)
  for child in ("rerank/0", "final"):
    assert "test/accuracy" in tensorboard_scalars(
        next((pathlib.Path(workdir) / child / "tb" / "train").iterdir()))


def _cpu() -> str:
  """This CPU's model name and whether it has AVX-512 (as ``RECORDED`` names a CPU)."""
  with open("/proc/cpuinfo") as f:
    info = f.read()
  model = next((l.split(":", 1)[1].strip() for l in info.splitlines()
                if l.startswith("model name")), "unknown")
  return f"{model} avx512f" if "avx512f" in info else model


def test_quickstart_results_equal_those_recorded_before_the_driver_was_shared(uninterrupted):
  workdir, summary = uninterrupted
  recorded = RECORDED["quickstart:small:nao"]
  found = figures(history.read(os.path.join(workdir, "history.jsonl")), summary)
  # The initial pool is drawn by numpy on any machine.
  assert ([e[1] for e in found["evaluations"] if e[0] == 0] ==
          [e[1] for e in recorded["evaluations"] if e[0] == 0])
  if not os.path.exists("/proc/cpuinfo") or _cpu() != recorded["cpu"]:
    pytest.skip(f"the supernet's scores were recorded on a {recorded['cpu']}; this is a {_cpu()}")
  assert found == {k: v for k, v in recorded.items() if k != "cpu"}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "evolution", "reinforce", "enas"])
def test_every_strategy_searches_over_the_supernet(strategy, tmp_path):
  workdir = str(tmp_path)
  command = [sys.executable, "-m", "nao_jax.main", "--config=configs/quickstart.py:small",
             f"--workdir={workdir}", f"--config.strategy={strategy}",
             "--config.final.enabled=False"]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert done.returncode == 0, done.stderr[-3000:]
  records = history.read(os.path.join(workdir, "history.jsonl"))
  config = quickstart_config.get_config("small")
  assert len(records) == 2 * config.search.pool_size
  rounds = [{r["hash"] for r in records if r["round"] == k} for k in (0, 1)]
  fresh = config.search.pool_size if strategy == "enas" else config.search.new_per_round
  assert len(rounds[1] - rounds[0]) == fresh  # The strategy's proposals.
  with open(os.path.join(workdir, "best_arch.json")) as f:
    best = json.load(f)
  assert best["hash"] in {r["hash"] for r in nao_ws.last_pool(records)[:config.search.rerank_top]}
  assert 0.0 <= best["rerank_valid_accuracy"] <= 1.0
  for plot in ("search.png", "best_normal_cell.png"):
    assert os.path.getsize(os.path.join(workdir, "plots", plot)) > 1000, plot


@pytest.mark.slow
def test_darts_hands_its_arch_to_the_same_reranking_and_final_training(tmp_path):
  command = [sys.executable, "-m", "nao_jax.main", "--config=configs/quickstart.py:small",
             f"--workdir={tmp_path}", "--config.strategy=darts"]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert done.returncode == 0, done.stderr[-3000:]
  best = json.loads((tmp_path / "best_arch.json").read_text())
  lines = (tmp_path / "darts_epochs.jsonl").read_text().splitlines()
  epochs = [json.loads(line) for line in lines]
  assert best["string"] == epochs[-1]["string"] and len(epochs) == 2
  assert best["darts_valid_accuracy"] == epochs[-1]["valid_accuracy"]
  final = json.loads((tmp_path / "final" / "results.json").read_text())
  assert best["final_test_accuracy"] == final["final_test_accuracy"]
  assert (tmp_path / "rerank" / "0" / "results.json").exists()


def _run_until(workdir, pattern):
  """The quickstart CLI, killed when its output matches ``pattern`` (``run_cli_until``).
  The runs share the session's compilation cache (conftest)."""
  return run_cli_until(["--config=configs/quickstart.py:small"], workdir, pattern)


@pytest.mark.slow
def test_quickstart_killed_in_every_phase_resumes_to_the_same_result(uninterrupted, tmp_path):
  full_workdir, summary = uninterrupted
  workdir = str(tmp_path / "run")
  # Mid supernet epoch 0 (checkpointed at step 5); at the end of epoch 1, as the
  # pool is scored; in the re-ranking training; in the winner's final training.
  for phase in ("supernet step 10/", "supernet step 20/", "re-ranking 1/",
                r"winner:.*\n.*step \d+/"):
    assert _run_until(workdir, phase)[0] == -signal.SIGKILL, phase
  code, output = _run_until(workdir, None)
  assert code == 0
  assert "resumed at supernet step" in output
  assert (stable(history.read(os.path.join(workdir, "history.jsonl")))
          == stable(history.read(os.path.join(full_workdir, "history.jsonl"))))
  with open(os.path.join(workdir, "best_arch.json")) as f:
    assert json.load(f) == summary


@pytest.mark.slow  # About a minute of compiling; test_training checks bf16 steps by default.
def test_a_bfloat16_supernet_step_matches_float32_within_tolerance():
  """The same first step in bf16 compute (float32 parameters): loss within 2%."""
  losses = {}
  for dtype in ("float32", "bfloat16"):
    supernet = evaluator(1, dtype=dtype)
    losses[dtype] = float(supernet.train_steps(POOL, 1)["loss"])
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(supernet.state.params))
  assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.02)
