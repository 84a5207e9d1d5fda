"""nao_jax.report: the text summary of workdirs and the comparison plot."""

import os
import subprocess
import sys

from tests.conftest import REPO


def _run(*args):
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_report_compares_two_searches(tmp_path, nb201_table_path):
  del nb201_table_path  # Skips when the table is missing.
  for strategy in ("random", "local"):
    done = _run("nao_jax.main", "--config=configs/nb201.py:small",
                f"--config.strategy={strategy}", f"--workdir={tmp_path / strategy}")
    assert done.returncode == 0, done.stderr[-2000:]
  out = tmp_path / "report"
  done = _run("nao_jax.report", f"--workdir={tmp_path / 'random'}",
              f"--workdir={tmp_path / 'local'}", f"--out={out}")
  assert done.returncode == 0, done.stderr[-2000:]
  for strategy in ("random", "local"):
    assert f"job search, strategy {strategy}, seed 0, evaluator nb201" in done.stdout
  assert done.stdout.count("30 evaluations (0 failed)") == 2
  assert (out / "search.png").stat().st_size > 1000


def test_report_names_a_directory_that_is_no_workdir(tmp_path):
  done = _run("nao_jax.report", f"--workdir={tmp_path}")
  assert done.returncode != 0
  assert f"--workdir={tmp_path} holds no config.json" in done.stderr
  assert "Traceback" not in done.stderr
