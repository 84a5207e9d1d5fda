"""Multi-process data parallelism, proven on one machine: 2 processes of one
CPU device each (``jax.distributed`` with a local coordinator, gloo collectives)
against 1 process of 2 devices on the same global batch: the parameters after
training are bitwise equal.

One device per process makes the comparison exact: an all-reduce of two
gradients is one addition, whose result does not depend on the order. With more
devices per process the reduction order differs between the two set-ups and
early training amplifies the rounding (measured, 2x2 against 1x4 devices:
1e-7 to 8e-5 after one step, depending on the network).
"""

import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest
from nao_jax import spaces
from nao_jax.main import CPU_COMPILE_FLAG

REPO = pathlib.Path(__file__).resolve().parents[1]
CHILD = ["--config=configs/cifar_final.py:small", "--config.train.epochs=1"]
# A collective waits up to 30 s (across processes) or 40 s (across one process's
# devices) for its last participant by default, then aborts the process. Three
# processes on a shared 2-core machine can fall that far behind each other.
PATIENT_COLLECTIVES = ("--xla_cpu_collective_timeout_seconds=900 "
                       "--xla_cpu_collective_call_terminate_timeout_seconds=900")
# A NAS-Bench-201 cell of one 1x1 convolution and skips: the network compiles in
# seconds (a nasnet cell takes a minute on two cores).
CELL = "|nor_conv_1x1~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _run_together(commands: list[tuple[list[str], int]], timeout: float = 600) -> list[str]:
  """Runs ``(argv, local devices)`` commands at once, each for at most ``timeout``
  seconds; returns their outputs."""
  processes = [subprocess.Popen(
      argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      env={**os.environ, "JAX_PLATFORMS": "cpu", "NAO_JAX_PROGRESS": "0",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} {CPU_COMPILE_FLAG} "
                        f"{PATIENT_COLLECTIVES}"})
      for argv, devices in commands]
  outputs = []
  for number, process in enumerate(processes):
    output, _ = process.communicate(timeout=timeout)
    # A fatal error's cause comes before its long list of extension modules.
    fatal = output.rfind("Fatal Python error")
    assert process.returncode == 0, (
        f"command {number} exited with {process.returncode}:\n" +
        (output[fatal:fatal + 3000] if fatal >= 0 else output[-3000:]))
    outputs.append(output)
  return outputs


def _two_processes(argv: list[str]) -> list[tuple[list[str], int]]:
  port = _free_port()
  return [([*argv, "--distributed", f"--coordinator_address=localhost:{port}",
            "--num_processes=2", f"--process_id={i}"], 1) for i in range(2)]


def _digests(output: str) -> list[str]:
  return re.findall(r"parameters sha256 ([0-9a-f]{64})", output)


def _history(workdir: pathlib.Path) -> list[dict]:
  """The search's records without their timings."""
  records = [json.loads(line) for line in (workdir / "history.jsonl").read_text().splitlines()]
  return [{k: v for k, v in r.items() if k not in ("cost", "time")} for r in records]


def _leaves(tree) -> list[np.ndarray]:
  if isinstance(tree, dict):
    return [leaf for key in sorted(tree) for leaf in _leaves(tree[key])]
  return [np.asarray(tree)]


def _last_state(workdir: pathlib.Path) -> dict:
  step = max((workdir / "checkpoints").glob("[0-9]*"), key=lambda path: int(path.name))
  return ocp.StandardCheckpointer().restore(step / "state")


def test_child_training_on_2_processes_equals_1_process(tmp_path):
  space = spaces.get("nb201")
  arch = tmp_path / "arch.json"
  arch.write_text(space.to_json(space.from_string(CELL)))
  main = [sys.executable, "-m", "nao_jax.main", *CHILD, f"--config.arch={arch}"]
  two, one = tmp_path / "two", tmp_path / "one"
  first, second, _ = _run_together(
      _two_processes([*main, f"--workdir={two}"]) + [([*main, f"--workdir={one}"], 2)])
  (digest,) = _digests(first)
  assert _digests(second) == [digest]  # Checked across processes by the run itself too.
  assert "process 0/2" in first and "process 1/2" in second
  for a, b in zip(_leaves(_last_state(two)["params"]), _leaves(_last_state(one)["params"]),
                  strict=True):
    np.testing.assert_array_equal(a, b)
  results = json.loads((two / "results.json").read_text())
  reference = json.loads((one / "results.json").read_text())
  assert results["devices"] == reference["devices"] == 2 and results["steps"] > 10
  assert results["final_test_accuracy"] == reference["final_test_accuracy"]
  assert not list(two.glob("*.tmp.*"))

  # A rerun restores the last checkpoint (written once, by process 0) on both
  # processes: nothing left to train, the same parameters.
  again = _run_together(_two_processes([*main, f"--workdir={two}"]))
  assert [_digests(output) for output in again] == [[digest], [digest]]
  assert all("resumed from checkpoint step" in output for output in again)


@pytest.mark.usefixtures("needs_ptb")
def test_ptb_training_on_2_processes_equals_1_process(tmp_path):
  """The rows of the training stream are split over the processes, their
  gradients averaged over both (each process used to train alone)."""
  main = [sys.executable, "-m", "nao_jax.main", "--config=configs/ptb_final.py:small",
          "--config.train.epochs=1", "--config.train.asgd_epoch=0"]
  two, one = tmp_path / "two", tmp_path / "one"
  first, second, _ = _run_together(
      _two_processes([*main, f"--workdir={two}"]) + [([*main, f"--workdir={one}"], 2)])
  (digest,) = _digests(first)
  assert _digests(second) == [digest]
  # Weights, their average and the best weights: every leaf of the checkpoint.
  for a, b in zip(_leaves(_last_state(two)), _leaves(_last_state(one)), strict=True):
    np.testing.assert_array_equal(a, b)
  results = json.loads((two / "results.json").read_text())
  reference = json.loads((one / "results.json").read_text())
  assert results["devices"] == reference["devices"] == 2 and results["steps"] > 100
  assert results["test_perplexity"] == reference["test_perplexity"] < 1000


@pytest.mark.slow  # 2.5 minutes; the child-training test keeps 2 processes = 1 in the default run.
def test_supernet_training_on_2_processes_equals_1_process(tmp_path):
  worker = [sys.executable, str(REPO / "tests" / "multihost_worker.py")]
  two, one = tmp_path / "two", tmp_path / "one"
  two.mkdir()
  one.mkdir()
  port = _free_port()
  _run_together([([*worker, str(two), str(i), "2", str(port)], 1) for i in range(2)]
                + [([*worker, str(one), "0", "1", "0"], 2)])
  records = [json.loads((two / f"process{i}.json").read_text()) for i in range(2)]
  reference = json.loads((one / "process0.json").read_text())
  assert records[0]["digest"] == records[1]["digest"]
  assert records[0]["step"] == reference["step"] == 2
  assert records[0]["scores"] == records[1]["scores"] == reference["scores"]
  a, b = np.load(two / "params.npz"), np.load(one / "params.npz")
  assert a.files == b.files and len(a.files) > 10
  for name in a.files:
    np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.slow  # About 4 minutes: a whole NAO-WS job (search, re-ranking, final training) x 3.
def test_nao_ws_job_on_2_processes_equals_1_process(tmp_path):
  """Each process fits its own copy of the controller; its checkpoint is saved
  from host memory (orbax writes only global arrays on a multi-process run)."""
  main = [sys.executable, "-m", "nao_jax.main", "--config=configs/quickstart.py:small"]
  two, one = tmp_path / "two", tmp_path / "one"
  _run_together(_two_processes([*main, f"--workdir={two}"]) +
                [([*main, f"--workdir={one}"], 2)], timeout=1800)

  assert _history(two) == _history(one) and len(_history(one)) > 10
  best = json.loads((two / "best_arch.json").read_text())
  assert best == json.loads((one / "best_arch.json").read_text())
  assert best["final_test_accuracy"] > 0


@pytest.mark.usefixtures("needs_ptb")
@pytest.mark.slow  # About 4 minutes: the recurrent supernet's search, re-ranking, training.
def test_ptb_nao_ws_job_on_2_processes_equals_1_process(tmp_path):
  """The recurrent supernet splits its training rows and their hidden state over
  the processes; a checkpoint gathers the hidden state of every row."""
  main = [sys.executable, "-m", "nao_jax.main", "--config=configs/ptb.py:small",
          "--config.final.train.epochs=2", "--config.final.train.asgd_epoch=1"]
  two, one = tmp_path / "two", tmp_path / "one"
  _run_together(_two_processes([*main, f"--workdir={two}"]) +
                [([*main, f"--workdir={one}"], 2)], timeout=1800)
  assert _history(two) == _history(one) and len(_history(one)) == 16
  best = json.loads((two / "best_arch.json").read_text())
  assert best == json.loads((one / "best_arch.json").read_text())
  assert best["final_test_perplexity"] < 1000
