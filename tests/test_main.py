"""The command-line entry point: dispatch, resolved config, one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_main(*args, workdir=None):
  command = [sys.executable, "-m", "nao_jax.main", *args]
  if workdir is not None:
    command.append(f"--workdir={workdir}")
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=120)


def error_lines(result):
  return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_sample_job_writes_config_and_archs(tmp_path):
  result = run_main("--config=configs/sample.py:nb201", "--config.num_samples=7",
                    "--config.seed=3", workdir=tmp_path)
  assert result.returncode == 0, result.stderr
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["num_samples"] == 7 and config["space"] == {"name": "nb201"}
  records = [json.loads(line) for line in (tmp_path / "archs.jsonl").read_text().splitlines()]
  assert len(records) == 7
  assert all(r["string"].startswith("|") and len(r["tokens"]) == 6 for r in records)
  assert "wrote 7 archs" in result.stdout


@pytest.mark.parametrize("flag, names", [
    ("--config.no_such_field=1", "no_such_field"),
    ("--config.space.no_such=1", "no_such"),
    ("--config.num_samples=abc", "num_samples"),
    ("--config.space.ops=ws7", "config.space"),
    ("--config.job=train_everything", "config.job"),
    ("--config.num_samples=0", "config.num_samples"),
])
def test_bad_config_fields_fail_with_one_line(tmp_path, flag, names):
  result = run_main("--config=configs/sample.py", flag, workdir=tmp_path)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  lines = error_lines(result)
  assert len(lines) == 1 and names in lines[0], result.stderr


def test_unknown_field_names_the_flags_that_could_have_set_it(tmp_path):
  result = run_main("--config=configs/sample.py", "--config.num_samples=3",
                    "--config.space.num_samples=1", workdir=tmp_path)
  lines = error_lines(result)
  assert result.returncode != 0 and len(lines) == 1, result.stderr
  assert "--config.space.num_samples=1" in lines[0], lines[0]


def test_missing_workdir_and_config_fail_with_one_line(tmp_path):
  for result, names in [(run_main("--config=configs/sample.py"), "--workdir"),
                        (run_main(workdir=tmp_path), "--config"),
                        (run_main("--config=configs/no_such_file.py", workdir=tmp_path),
                         "no_such_file.py")]:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and names in lines[0], result.stderr


def test_cpu_only_hosts_compile_at_xla_level_1_unless_the_user_set_a_level(monkeypatch):
  from nao_jax import main
  monkeypatch.setattr(main, "_cpu_only", lambda: True)
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  main._prefer_fast_cpu_compiles()
  assert os.environ["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=8 "
                                     "--xla_backend_optimization_level=1")
  monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=3")
  main._prefer_fast_cpu_compiles()
  assert os.environ["XLA_FLAGS"] == "--xla_backend_optimization_level=3"
  monkeypatch.setattr(main, "_cpu_only", lambda: False)  # An accelerator plugin is installed.
  monkeypatch.delenv("XLA_FLAGS")
  main._prefer_fast_cpu_compiles()
  assert "XLA_FLAGS" not in os.environ
