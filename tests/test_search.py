"""The search driver: history, resume == uninterrupted (also after SIGKILL), damaged history."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from nao_jax import configuration
from nao_jax import evaluators
from nao_jax import history
from nao_jax import search
from nao_jax import strategies
from nao_jax.evaluators import tabular
from tests.conftest import RECORDED
from tests.conftest import REPO
from tests.conftest import figures
from tests.conftest import tensorboard_scalars

sys.path.insert(0, str(REPO))
from configs import nb201 as nb201_config  # noqa: E402


def small_config(strategy, **overrides):
  config = nb201_config.get_config("small")
  config.strategy = strategy
  for field, value in overrides.items():
    config[field] = value
  return config


def stable(records):
  """History records without their wall-clock times."""
  return [{k: v for k, v in r.items() if k != "time"} for r in records]


def read_history(workdir):
  return history.read(os.path.join(workdir, "history.jsonl"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, nb201_table_path):
  """Uninterrupted small runs, per strategy: (history records, best_arch.json)."""
  del nb201_table_path  # Only to skip when the table is missing.
  runs = {}

  def get(strategy):
    if strategy not in runs:
      workdir = str(tmp_path_factory.mktemp(f"full_{strategy}"))
      search.run(small_config(strategy), workdir)
      get.workdirs[strategy] = workdir
      with open(os.path.join(workdir, "best_arch.json")) as f:
        runs[strategy] = (read_history(workdir), json.load(f))
    return runs[strategy]
  get.workdirs = {}
  return get


@pytest.mark.parametrize("strategy", ["random", "evolution", "reinforce", "nao", "local",
                                      "bananas", "gcn"])
def test_run_writes_history_best_plot_and_tensorboard(strategy, uninterrupted, tmp_path):
  records, best = uninterrupted(strategy)
  assert [r["index"] for r in records] == list(range(30))
  assert len({r["hash"] for r in records}) == 30
  top = max(records, key=lambda r: r["score"])
  assert best["c10v_valid_200"] == top["score"] and best["string"] == top["string"]
  assert best["c10_test_200"] == top["report"]["c10_test_200"]
  workdir = pathlib.Path(uninterrupted.workdirs[strategy])
  (events,) = (workdir / "tb" / "search").iterdir()
  scalars = tensorboard_scalars(events)
  assert [v for _, v in scalars["search/c10v_valid_200"]] == pytest.approx(
      [r["score"] for r in records])
  assert scalars["search/best_c10_test_200"][-1] == (30, pytest.approx(best["c10_test_200"]))
  if strategy == "nao":  # The controller's fit, and its forecasts against the scores.
    assert {"strategy/loss", "strategy/mse", "strategy/nll"} <= set(scalars)
    taus = [tau for _, tau in scalars["search/predicted_kendall_tau"]]
    assert len(taus) == 4 and all(-1 <= t <= 1 for t in taus)  # Rounds 1-4 of 10 + 5 x 4.


@pytest.mark.parametrize("strategy", ["random", "evolution", "reinforce", "nao"])
def test_results_equal_those_recorded_before_the_driver_was_rewritten(strategy, uninterrupted,
                                                                       tmp_path):
  if strategy == "nao":  # Recorded before NAO's predictor read every encoder step.
    config = small_config("nao")
    config.nao.controller.predictor.input = "embedding"
    search.run(config, str(tmp_path))
    with open(tmp_path / "best_arch.json") as f:
      run = read_history(str(tmp_path)), json.load(f)
  else:
    run = uninterrupted(strategy)
  assert figures(*run) == RECORDED[f"nb201:small:{strategy}"]


@pytest.mark.parametrize("strategy", ["evolution", "reinforce", "local", "bananas", "gcn"])
def test_resume_with_a_larger_budget_equals_one_run(strategy, uninterrupted, tmp_path):
  # 10 is a whole number of rounds: a smaller last round would change the run.
  workdir = str(tmp_path)
  search.run(small_config(strategy, budget=10), workdir)
  assert len(read_history(workdir)) == 10
  search.run(small_config(strategy), workdir)
  assert stable(read_history(workdir)) == stable(uninterrupted(strategy)[0])


def test_resume_replays_history_after_the_checkpoint_and_repairs_a_torn_line(
    uninterrupted, tmp_path):
  full, best = uninterrupted("reinforce")
  workdir = str(tmp_path)
  search.run(small_config("reinforce", budget=10), workdir)
  # Evaluations 10..17 recorded after the last checkpoint, then a torn write.
  path = os.path.join(workdir, "history.jsonl")
  with open(path, "a") as f:
    for record in full[10:18]:
      f.write(json.dumps(record, sort_keys=True) + "\n")
    f.write(json.dumps(full[18])[:40])
  search.run(small_config("reinforce"), workdir)
  assert stable(read_history(workdir)) == stable(full)
  with open(path + ".corrupt") as f:
    assert f.read() == json.dumps(full[18])[:40] + "\n"
  with open(os.path.join(workdir, "best_arch.json")) as f:
    assert json.load(f) == best


def test_history_reader_handles_damaged_lines(tmp_path):
  path = str(tmp_path / "history.jsonl")
  records = [{"index": i, "round": 0, "hash": str(i), "tokens": [i], "score": float(i),
              "report": {}, "cost": 1.0} for i in range(3)]
  with history.Writer(path) as writer:
    for record in records:
      writer.append(record)
  with open(path, "a") as f:
    f.write('{"index": 3, "rou')  # Torn write.
  assert history.read(path) == records
  assert history.read(path) == records  # Already repaired: nothing more is moved.
  with open(path, "a") as f:
    f.write("garbage line\n")  # A complete but corrupt last line.
  assert history.read(path) == records
  with open(path + ".corrupt") as f:
    assert f.read().splitlines() == ['{"index": 3, "rou', "garbage line"]
  lines = open(path).read().splitlines()
  lines[1] = "{broken"
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  with pytest.raises(ValueError, match="line 2 is corrupt"):
    history.read(path)


def test_resume_with_other_settings_is_refused(tmp_path, nb201_table_path):
  del nb201_table_path
  search.run(small_config("evolution", budget=3), str(tmp_path))
  config = small_config("evolution")
  config.evolution.tournament = 2
  with pytest.raises(configuration.ConfigError, match="different settings"):
    search.run(config, str(tmp_path))


def test_bad_config_fields_raise_config_errors(nb201_table_path):
  del nb201_table_path
  with pytest.raises(configuration.ConfigError, match="config.strategy: unknown strategy"):
    search.setup(small_config("bayesopt"))
  config = small_config("evolution")
  config.evolution.population = 0
  with pytest.raises(configuration.ConfigError,
                     match="config.evolution.population: must be an integer >= 2"):
    search.setup(config)
  config = small_config("random")
  config.evaluator.path = "/nonexistent/nb201_acc.npz"
  with pytest.raises(configuration.ConfigError, match="config.evaluator: path"):
    search.setup(config)


def _run_and_kill(workdir, strategy, kill_at_lines, *flags):
  """Runs the CLI (with ``flags``); SIGKILLs it once history.jsonl has
  ``kill_at_lines`` lines (None: let it finish). Returns the exit code."""
  command = [sys.executable, "-m", "nao_jax.main", "--config=configs/nb201.py:small",
             f"--workdir={workdir}", f"--config.strategy={strategy}",
             "--config.evaluator.seconds_per_query=0.05", *flags]
  # stderr goes to a file: processes the run started may outlive a SIGKILL (Ray's
  # agents) and would hold a pipe open.
  with tempfile.TemporaryFile() as stderr:
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
                               env={**os.environ, "JAX_PLATFORMS": "cpu"})
    path = os.path.join(workdir, "history.jsonl")
    while kill_at_lines is not None and process.poll() is None:
      if os.path.exists(path) and open(path, "rb").read().count(b"\n") >= kill_at_lines:
        process.send_signal(signal.SIGKILL)
        break
      time.sleep(0.005)
    process.wait(timeout=300)
    stderr.seek(0)
    assert process.returncode in (0, -signal.SIGKILL), stderr.read().decode()[-2000:]
  return process.returncode


@pytest.mark.parametrize("strategy, flags", [
    ("nao", ()), ("evolution", ("--config.executor.workers=3",)), ("local", ()),
    # Ray's start-up makes this the longest variant (test_executors runs Ray by default).
    pytest.param("random", ("--config.executor.name=ray", "--config.executor.workers=3",
                            "--config.executor.cpus_per_trial=0.5"), marks=pytest.mark.slow)])
def test_sigkill_mid_round_then_resume_equals_uninterrupted(strategy, flags, uninterrupted,
                                                            tmp_path):
  if "--config.executor.name=ray" in flags:
    pytest.importorskip("ray")
  full, best = uninterrupted(strategy)
  workdir = str(tmp_path)
  kills = 0
  for lines in (3, 17):  # Mid round 0 (no checkpoint yet), mid round 2 (of 10 + 5 x 4).
    kills += _run_and_kill(workdir, strategy, lines, *flags) == -signal.SIGKILL
  assert kills >= 1
  assert _run_and_kill(workdir, strategy, None, *flags) == 0
  if "--config.executor.name=ray" in flags:  # Ray's agents outlive a killed driver.
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "ray"), "stop", "--force"],
                   capture_output=True, timeout=120)
  # Trials run at once finish, and are recorded, in any order.
  assert (sorted(stable(read_history(workdir)), key=lambda r: r["index"]) ==
          stable(full))
  with open(os.path.join(workdir, "best_arch.json")) as f:
    assert json.load(f) == best


def test_macro_config_runs(tmp_path):
  from configs import macro as macro_config
  config = macro_config.get_config("small")
  config.strategy = "evolution"
  try:
    best = search.run(config, str(tmp_path))
  except configuration.ConfigError as e:
    pytest.skip(f"NAS-Bench-Macro data missing: {e}")
  assert len(read_history(str(tmp_path))) == 20
  assert best["report"]["test_acc_other_seeds"] > 0


class _PoolTable(tabular.Nb201Table):
  """The NB201 table as a pool evaluator of 3 rounds that remembers what each
  round trained on."""
  rescores_pool = True
  num_rounds = 3

  def __init__(self, path):
    super().__init__(path=path)
    self.trained = []

  def before_round(self, round_, archs, checkpoint):
    self.trained.append({self.space.arch_hash(a) for a in archs})


@pytest.mark.parametrize("strategy, fresh_per_round", [("enas", 6), ("reinforce", 2)])
def test_enas_replaces_the_whole_pool_every_round(strategy, fresh_per_round, nb201_table_path):
  config = small_config(strategy)
  config.enas = strategies.default_config("enas")
  config.search = {"pool_size": 6, "new_per_round": 2, "eval_every": 1}
  pool_table = _PoolTable(str(nb201_table_path))
  evaluators.register("nb201_pool_test", lambda _: pool_table)
  config.evaluator = {"name": "nb201_pool_test"}
  _, evaluator, strategy_fns, state, pool = search.setup(config)
  assert pool.new_per_round == fresh_per_round
  for _ in search.rounds(strategy_fns, state, evaluator, budget=18, pool=pool):
    pass
  trained = pool_table.trained
  assert len(trained) == 3 and all(len(t) == 6 for t in trained)
  assert [len(trained[r] - trained[r - 1]) for r in (1, 2)] == [fresh_per_round] * 2
