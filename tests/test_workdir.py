"""The workdir before a job: one clear line for a path that cannot be one, one
process at a time, and a resume with other settings refused before anything is
written."""

import os
import signal
import subprocess
import sys
import time

from nao_jax import workdir
from tests.conftest import REPO


def main_command(*args):
  return [sys.executable, "-m", "nao_jax.main", *args]


def run_main(*args):
  return subprocess.run(main_command(*args), cwd=REPO, capture_output=True, text=True,
                        timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def assert_one_line(result, *parts):
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1, result.stderr[-2000:]
  for part in parts:
    assert part in lines[0], lines[0]


def test_a_workdir_that_is_a_file_or_lies_under_one_is_refused(tmp_path):
  a_file = tmp_path / "file"
  a_file.write_text("not a directory")
  assert_one_line(run_main("--config=configs/sample.py", f"--workdir={a_file}"),
                  f"--workdir={a_file} is a file")
  under = a_file / "run"
  assert_one_line(run_main("--config=configs/sample.py", f"--workdir={under}"),
                  f"--workdir={under}: cannot write there", "Not a directory")


def test_a_resume_with_another_seed_is_refused_and_config_json_kept(tmp_path):
  # A NAO-WS run killed once it recorded its config, then rerun with another seed.
  workdir_ = str(tmp_path)
  process = subprocess.Popen(main_command("--config=configs/quickstart.py:small",
                                          f"--workdir={workdir_}"), cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "JAX_PLATFORMS": "cpu"})
  config_path = tmp_path / "config.json"
  while not config_path.exists() and process.poll() is None:
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait(timeout=60)
  recorded = config_path.read_bytes()
  result = run_main("--config=configs/quickstart.py:small", f"--workdir={workdir_}",
                    "--config.seed=1", "--config.supernet.learning_rate=0.1")
  assert_one_line(result, "holds a run with other settings", "seed: 0 -> 1",
                  "supernet.learning_rate: 0.05 -> 0.1", "pass a new --workdir")
  assert config_path.read_bytes() == recorded


def test_settings_that_do_not_alter_results_may_change(tmp_path):
  assert run_main("--config=configs/sample.py", f"--workdir={tmp_path}").returncode == 0
  config = tmp_path / "config.json"
  text = config.read_text().replace('"job": "sample"', '"job": "sample", "budget": 3')
  config.write_text(text)
  assert run_main("--config=configs/sample.py", f"--workdir={tmp_path}").returncode == 0
  assert workdir._may_change("executor.workers", "nao")
  assert not workdir._may_change("seed", "nao")
  # An unused strategy's settings (new strategies add sections) may change; the used one's not.
  assert workdir._may_change("gcn.epochs", "nao") and not workdir._may_change("nao.top_k", "nao")


def _slow_search(workdir_):
  """The CLI flags of a 30-evaluation search that takes a few seconds."""
  return ["--config=configs/nb201.py:small", "--config.strategy=random",
          "--config.evaluator.seconds_per_query=0.1", f"--workdir={workdir_}"]


def _start_until_recording(flags, stderr=subprocess.DEVNULL):
  """The CLI started with ``flags``, once its history.jsonl exists (it holds the lock)."""
  process = subprocess.Popen(main_command(*flags), cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=stderr, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  history = os.path.join(flags[-1].split("=", 1)[1], "history.jsonl")
  while not os.path.exists(history) and process.poll() is None:
    time.sleep(0.05)
  return process


def test_a_second_process_on_a_workdir_refuses_and_the_first_completes(tmp_path,
                                                                       nb201_table_path):
  first = _start_until_recording(_slow_search(tmp_path), stderr=subprocess.PIPE)
  # Paused, the first keeps its lock however long the second takes to start.
  first.send_signal(signal.SIGSTOP)
  try:
    second = run_main(*_slow_search(tmp_path))
  finally:
    first.send_signal(signal.SIGCONT)
  assert_one_line(second, f"--workdir={tmp_path} is in use by process {first.pid}")
  _, stderr = first.communicate(timeout=300)
  assert first.returncode == 0, stderr.decode()[-2000:]
  lines = (tmp_path / "history.jsonl").read_text().splitlines()
  indices = [line.split('"index": ')[1].split(",")[0] for line in lines]
  assert sorted(map(int, indices)) == list(range(30))


def test_a_killed_run_leaves_no_lock_behind(tmp_path, nb201_table_path):
  process = _start_until_recording(_slow_search(tmp_path))
  process.send_signal(signal.SIGKILL)
  process.wait(timeout=60)
  result = run_main(*_slow_search(tmp_path))
  assert result.returncode == 0, result.stderr[-2000:]


def test_a_damaged_record_in_the_workdir_ends_with_one_line(tmp_path, nb201_table_path):
  # A search whose history was edited in the middle, and a training whose only
  # checkpoint was overwritten: each resume names the file and the way out.
  search = ["--config=configs/nb201.py:small", "--config.strategy=random",
            f"--workdir={tmp_path / 'search'}"]
  assert run_main(*search).returncode == 0
  history = tmp_path / "search" / "history.jsonl"
  lines = history.read_text().splitlines()
  history.write_text("\n".join([lines[0], "{not json", *lines[2:]]) + "\n")
  assert_one_line(run_main(*search), "line 2 is corrupt", "start a new workdir")
  train = ["--config=configs/cifar_final.py:small", "--config.train.epochs=1",
           f"--workdir={tmp_path / 'train'}"]
  assert run_main(*train).returncode == 0
  for path in (tmp_path / "train" / "checkpoints").rglob("*"):
    if path.is_file() and "state" in path.parts:
      path.write_text("junk")
  assert_one_line(run_main(*train), "cannot be restored", "it is corrupt")
