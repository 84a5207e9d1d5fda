"""Shared test setup: 8 fake CPU devices (for data-parallel tests), one persistent
compilation cache for the session, and paths."""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from nao_jax.main import CPU_COMPILE_FLAG  # Imports jax, starts no backend.

# The suite compiles as the CLI does on a CPU-only host (most of its time is compilation).
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {CPU_COMPILE_FLAG}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests (and the CLI runs they start, which inherit the environment) that build the
# same networks compile them once: most of the suite's time is XLA compilation. The
# pytest-xdist workers inherit the cache directory from the process that started
# them, which alone created it (and removes it).
_SESSION_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _SESSION_CACHE = tempfile.mkdtemp(prefix="nao_jax_tests_xla_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _SESSION_CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# The benchmark tables (and the CLI runs of the tests) are found through the
# library's data-directory lookup (nao_jax.data_dirs).
os.environ.setdefault("NAO_JAX_DATA", str(SHARED_DATA))
# Results of configs recorded before a refactor of the search driver, which must
# not change them (see its "_source").
RECORDED = json.loads((REPO / "tests" / "data" / "recorded_results.json").read_text())


def figures(records, best):
  """What ``RECORDED`` holds of a run: its evaluations as sorted ``[round, hash,
  score]``, the hash of ``best_arch.json`` and its final test accuracy."""
  return {"evaluations": sorted([r["round"], r["hash"], r["score"]] for r in records),
          "best": best["hash"], "final_test_accuracy": best.get("final_test_accuracy")}


def tensorboard_scalars(path: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value)]} of a TensorBoard event file (TFRecord framing: length,
  its CRC, the Event proto, its CRC)."""
  import struct
  from tensorboardX.proto import event_pb2
  data, offset, scalars = path.read_bytes(), 0, {}
  while offset < len(data):
    (length,) = struct.unpack("<Q", data[offset:offset + 8])
    event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
    offset += 16 + length
    for value in event.summary.value:
      scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  return scalars


def run_cli_until(args: list[str], workdir: str, pattern: str | None) -> tuple[int, str]:
  """Runs ``python -m nao_jax.main ARGS --workdir=WORKDIR`` on the CPU, appending its
  output to ``workdir/out.log``; SIGKILLs it when this run's output matches the
  regex ``pattern`` (None: never). Returns ``(exit code, this run's output)``."""
  command = [sys.executable, "-u", "-m", "nao_jax.main", *args, f"--workdir={workdir}"]
  log = os.path.join(workdir, "out.log")
  os.makedirs(workdir, exist_ok=True)
  with open(log, "ab") as out:
    start = out.tell()
    process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                               env={**os.environ, "JAX_PLATFORMS": "cpu"})
    while pattern is not None and process.poll() is None:
      with open(log, "rb") as f:
        f.seek(start)
        if re.search(pattern.encode(), f.read()):
          process.send_signal(signal.SIGKILL)
          break
      time.sleep(0.01)
    process.wait(timeout=600)
  with open(log, "rb") as f:
    f.seek(start)
    output = f.read().decode(errors="replace")
  assert process.returncode in (0, -signal.SIGKILL), output[-3000:]
  return process.returncode, output


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Drops each module's compiled programs from memory when it ends (the
  persistent cache keeps them for later modules): a long session's memory stays flat."""
  yield
  import jax  # pylint: disable=g-import-not-at-top
  jax.clear_caches()


def _shared_table(relative: str, name: str) -> pathlib.Path:
  """``SHARED_DATA / relative``; skips the test when it is missing."""
  path = SHARED_DATA / relative
  if not path.exists():
    pytest.skip(f"{name} table not found at {path}")
  return path


@pytest.fixture
def needs_ptb() -> None:
  """Skips the test unless the PTB files are beside the repo (../shared/data/ptb)."""
  _shared_table("ptb/ptb.valid.txt", "PTB")


@pytest.fixture(scope="session")
def nb201_table_path() -> pathlib.Path:
  """The offline NAS-Bench-201 table beside the repo (../shared/data)."""
  return _shared_table("nasbench201/nb201_acc.npz", "NAS-Bench-201")


@pytest.fixture(scope="session")
def macro_table_path() -> pathlib.Path:
  """The NAS-Bench-Macro JSON beside the repo (../shared/data)."""
  return _shared_table("nasbench_macro/nas-bench-macro_cifar10.json", "NAS-Bench-Macro")


def pytest_sessionfinish(session, exitstatus):
  if _SESSION_CACHE:
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
