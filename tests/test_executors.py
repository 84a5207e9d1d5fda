"""Executors: several trials at once (threads, Ray) give the results of one at a
time; failed trials are recorded, never told, never fatal; a lost Ray worker's
trial is resubmitted, then recorded as failed."""

import os
import subprocess
import sys

import ml_collections
import pytest

from nao_jax import configuration
from nao_jax import history
from nao_jax import search
from nao_jax import spaces
from nao_jax import strategies
from nao_jax.training import loop
from tests import faulty_evaluator  # noqa: F401  # Registers 'faulty'.
from tests.conftest import REPO

sys.path.insert(0, str(REPO))
from configs import nb201 as nb201_config  # noqa: E402


def config_for(strategy, **executor):
  config = nb201_config.get_config("small")
  config.strategy = strategy
  config.executor.update(executor)
  return config


def by_index(records):
  return sorted(((r["index"], r["round"], r["hash"], r["score"], r.get("error"))
                 for r in records))


@pytest.mark.parametrize("strategy", ["random", "nao"])
def test_threads_give_the_results_of_one_worker(strategy, tmp_path, nb201_table_path):
  one = search.run(config_for(strategy), str(tmp_path / "one"))
  config = config_for(strategy, workers=4)
  config.evaluator.seconds_per_query = 0.01  # Trials overlap and finish out of order.
  four = search.run(config, str(tmp_path / "four"))
  records = [history.read(str(tmp_path / d / "history.jsonl")) for d in ("one", "four")]
  assert by_index(records[0]) == by_index(records[1])
  assert one == {**four, "time": one["time"]}


def _faulty_config(tmp_path, faults, **executor):
  """A random search of 20 evaluations of the faulty table (``tests.faulty_evaluator``)
  whose first round (10 archs) holds ``faults``: {kind: position in that round}."""
  config = config_for("random", **executor)
  config.budget = 20
  space, random = spaces.get("nb201"), strategies.get("random")
  first_round, _ = random.ask(random.init(config.seed, space, config.random),
                              config.random.round_size)
  settings = {kind: [] for kind in ("crash_once", "crash_always", "raise_error", "nan")}
  for kind, position in faults.items():
    settings[kind].append(space.to_string(first_round[position]))
  config.evaluator = ml_collections.ConfigDict(dict(
      name="faulty", path="", seconds_per_query=0.0, markers=str(tmp_path), **settings))
  config.executor.imports = ["tests.faulty_evaluator"]
  return config, first_round


def test_failed_evaluations_are_recorded_and_never_told(tmp_path, nb201_table_path):
  config, _ = _faulty_config(tmp_path, {"raise_error": 2, "nan": 5})
  _, evaluator, strategy, state, _ = search.setup(config)
  results = list(search.rounds(strategy, state, evaluator, config.budget))
  records = [r for result in results for r in result.records]
  assert len(records) == 20  # The budget counts the failures.
  failed = {r["index"]: r for r in records if r.get("failed")}
  assert sorted(failed) == [2, 5]
  assert failed[2]["score"] is None and failed[2]["error"] == (
      f"ValueError: {failed[2]['string']} is not trainable here")
  assert failed[5]["error"] == "the score is nan"
  archive = results[-1].state.archive
  assert len(archive) == 18 and len(archive.pending) == 2  # Never told; never asked again.
  assert search.best_record(records)["score"] == max(r["score"] for r in records
                                                     if not r.get("failed"))


def test_a_bad_executor_setting_names_the_field(nb201_table_path):
  with pytest.raises(configuration.ConfigError, match=r"config.executor.name: choose one of"):
    search.setup(config_for("random", name="slurm"))
  with pytest.raises(configuration.ConfigError, match=r"config.executor.workers: must be an"):
    search.setup(config_for("random", workers=0))


def test_ray_resubmits_a_lost_trial_then_records_it_as_failed(tmp_path, nb201_table_path):
  ray = pytest.importorskip("ray")
  config, _ = _faulty_config(
      tmp_path, {"crash_once": 1, "crash_always": 3, "raise_error": 6}, name="ray", workers=3,
      max_retries=1, cpus_per_trial=0.5)
  workdir = str(tmp_path / "run")
  try:
    search.run(config, workdir)
  finally:
    ray.shutdown()
  records = history.read(os.path.join(workdir, "history.jsonl"))
  assert sorted(r["index"] for r in records) == list(range(20))
  assert len({r["hash"] for r in records}) == 20
  failed = {r["index"]: r["error"] for r in records if r.get("failed")}
  assert sorted(failed) == [3, 6]
  assert failed[3].startswith("the trial's worker was lost 2 times (executor.max_retries=1)")
  assert failed[6].startswith("ValueError:")
  # The trial lost once was resubmitted and scored like any other.
  config = config_for("random")
  config.budget = 20
  search.run(config, str(tmp_path / "plain"))
  plain = {r["index"]: r["score"] for r in history.read(str(tmp_path / "plain" /
                                                              "history.jsonl"))}
  assert all(r["score"] == plain[r["index"]] for r in records if not r.get("failed"))


def _cifar_nao_small(**executor):
  from configs import cifar_nao as cifar_nao_config
  config = cifar_nao_config.get_config("small")
  config.executor.update(executor)
  return config


@pytest.mark.slow
def test_child_trials_on_device_groups_equal_one_at_a_time(tmp_path):
  # 8 fake devices in groups of 4: two children train at once.
  runs = {}
  for workers in (1, 2):
    config = _cifar_nao_small(workers=workers)
    config.evaluator.devices_per_trial = 4
    config.strategy, config.budget = "random", 4
    search.run(config, str(tmp_path / str(workers)))
    runs[workers] = history.read(str(tmp_path / str(workers) / "history.jsonl"))
  assert by_index(runs[1]) == by_index(runs[2])
  assert all(0.0 <= r["score"] <= 1.0 and r["report"]["params"] > 0 for r in runs[2])


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_nao_without_weight_sharing_runs_and_its_winner_is_trainable(executor, tmp_path):
  if executor == "ray":
    pytest.importorskip("ray")
  workdir = str(tmp_path)
  command = [sys.executable, "-m", "nao_jax.main", "--config=configs/cifar_nao.py:small",
             f"--workdir={workdir}", f"--config.executor.name={executor}",
             f"--config.executor.workers={2 if executor == 'ray' else 1}"]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert done.returncode == 0, done.stderr[-3000:]
  records = history.read(os.path.join(workdir, "history.jsonl"))
  assert sorted(r["index"] for r in records) == [0, 1, 2, 3]
  assert len({r["hash"] for r in records}) == 4 and not any(r.get("failed") for r in records)
  best_path = os.path.join(workdir, "best_arch.json")
  space, arch = loop.resolve_arch(best_path)
  best = search.best_record(records)
  assert space.arch_hash(arch) == best["hash"]
