"""Progress bars: off when stderr is not a terminal (logs stay clean), forced on
by NAO_JAX_PROGRESS=1, and counting a search's evaluations to its budget."""

import os
import subprocess
import sys

from nao_jax import progress
from tests.conftest import REPO


def test_bars_are_off_without_a_terminal_and_forced_by_the_environment(monkeypatch):
  monkeypatch.delenv("NAO_JAX_PROGRESS", raising=False)
  assert not progress.enabled()  # pytest captures stderr.
  with progress.bar(10, "x", "step") as bar:
    assert bar.disable
  monkeypatch.setenv("NAO_JAX_PROGRESS", "1")
  with progress.bar(10, "x", "step") as bar:
    assert progress.enabled() and not bar.disable
  with progress.bar(10, "x", "step", show=False) as bar:
    assert bar.disable  # A trial's thread.
  monkeypatch.setenv("NAO_JAX_PROGRESS", "0")
  assert not progress.enabled()


def test_a_search_shows_its_evaluations_with_rate_and_eta(tmp_path, nb201_table_path):
  del nb201_table_path  # Skips when the table is missing.
  done = subprocess.run(
      [sys.executable, "-m", "nao_jax.main", "--config=configs/nb201.py:small",
       "--config.strategy=random", f"--workdir={tmp_path}"], cwd=REPO, capture_output=True,
      text=True, timeout=600, env={**os.environ, "NAO_JAX_PROGRESS": "1"})
  assert done.returncode == 0, done.stderr[-2000:]
  assert "evaluations:" in done.stderr and "/30 [" in done.stderr and "eval/s" in done.stderr
  assert "eval/s" not in done.stdout  # The bar stays off stdout, where the job's lines go.
