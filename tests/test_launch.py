"""Launch scripts: --help, argument checks, and what --dry-run says it will do."""

import json
import os
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO


def launch(script, *args):
  return subprocess.run(["bash", str(REPO / "launch" / script), *args], cwd=REPO,
                        capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("script", ["tpu.sh", "gpu.sh", "ray.sh"])
def test_help(script):
  result = launch(script, "--help")
  assert result.returncode == 0 and "Usage: launch/" in result.stdout and "--dry-run" in result.stdout


def test_tpu_dry_runs_print_every_step():
  where = ["--name=nao", "--zone=us-central2-b", "--dry-run"]
  create = launch("tpu.sh", "create", *where, "--accelerator=v4-32", "--spot")
  assert create.returncode == 0, create.stderr
  assert ("+ gcloud compute tpus tpu-vm create nao --zone=us-central2-b --accelerator-type=v4-32 "
          "--version=tpu-ubuntu2204-base --spot") in create.stdout
  install = launch("tpu.sh", "install", *where)
  assert "--worker=all" in install.stdout and "[tpu,tfds]" in install.stdout
  run = launch("tpu.sh", "run", *where, "--config=configs/cifar_final.py",
               "--workdir=gs://bucket/naonet", "--override=--config.train.epochs=3")
  assert run.returncode == 0, run.stderr
  line = [l for l in run.stdout.splitlines() if l.startswith("+")][0]
  for part in ("tpu-vm ssh nao", "--worker=all", "configs/cifar_final.py",
               "gs://bucket/naonet", "--distributed", "epochs=3"):
    assert part in line
  delete = launch("tpu.sh", "delete", *where)
  assert "+ gcloud compute tpus tpu-vm delete nao --zone=us-central2-b --quiet" in delete.stdout


def test_gpu_dry_run():
  result = launch("gpu.sh", "--config=configs/cifar_final.py:small", "--workdir=/tmp/w",
                  "--gpus=0,1", "--bf16", "--dry-run")
  assert result.returncode == 0, result.stderr
  assert ("CUDA_VISIBLE_DEVICES=0\\,1 python -m nao_jax.main --config=configs/cifar_final.py:small "
          "--workdir=/tmp/w --dtype=bfloat16") in result.stdout


def test_gpu_dry_run_of_one_host_of_several():
  result = launch("gpu.sh", "--config=configs/cifar.py", "--workdir=gs://b/w",
                  "--coordinator=10.0.0.2:12345", "--hosts=2", "--host-id=1", "--dry-run")
  assert result.returncode == 0, result.stderr
  assert ("python -m nao_jax.main --config=configs/cifar.py --workdir=gs://b/w --distributed "
          "--coordinator_address=10.0.0.2:12345 --num_processes=2 --process_id=1") in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("config, extra", [
    ("configs/nb201.py:small", []),  # A search: --dtype has nothing to set.
    ("configs/cifar_final.py:small", [])])
def test_the_printed_gpu_command_runs_here(config, extra, tmp_path, request):
  if "nb201" in config:
    request.getfixturevalue("nb201_table_path")  # Skips without the table.
  result = launch("gpu.sh", f"--config={config}", f"--workdir={tmp_path}", "--bf16",
                  "--dry-run", *extra)
  assert result.returncode == 0, result.stderr
  (line,) = [l for l in result.stdout.splitlines() if l.startswith("+ ")]
  command = shlex.split(line[2:])
  command[0:1] = [sys.executable]  # The venv's python for the printed 'python'.
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert done.returncode == 0, done.stderr[-2000:]
  recorded = json.loads((tmp_path / "config.json").read_text())
  if "train" in recorded:  # bf16 training converges: 0.67 measured, 0.1 is chance.
    assert recorded["train"]["dtype"] == "bfloat16"
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["final_test_accuracy"] > 0.4


def test_ray_dry_runs_start_the_cluster_and_submit_the_search():
  assert "+ ray start --head --port=6379 --dashboard-host=0.0.0.0" in launch(
      "ray.sh", "head", "--dry-run").stdout
  assert "+ ray start --address=10.0.0.2:6379" in launch(
      "ray.sh", "worker", "--address=10.0.0.2:6379", "--dry-run").stdout
  submit = launch("ray.sh", "submit", "--address=http://10.0.0.2:8265",
                  "--config=configs/cifar_nao.py:small", "--workdir=/shared/w", "--workers=32",
                  "--override=--config.budget=8", "--dry-run")
  assert submit.returncode == 0, submit.stderr
  assert ("+ ray job submit --address=http://10.0.0.2:8265 --working-dir=. -- python -m "
          "nao_jax.main --config=configs/cifar_nao.py:small --workdir=/shared/w "
          "--config.executor.name=ray --config.executor.address=auto "
          "--config.executor.workers=32 --config.executor.gpus_per_trial=1 "
          "--config.budget=8") in submit.stdout


@pytest.mark.parametrize("script, args, message", [
    ("ray.sh", ["launch"], "unknown action"),
    ("ray.sh", ["worker", "--address=10.0.0.2"], "--address"),
    ("ray.sh", ["submit", "--address=10.0.0.2:8265", "--config=configs/cifar_nao.py",
                "--workdir=/w"], "--address"),
    ("ray.sh", ["submit", "--address=http://h:8265", "--config=configs/none.py",
                "--workdir=/w"], "no such file"),
    ("ray.sh", ["submit", "--address=http://h:8265", "--config=configs/cifar_nao.py",
                "--workdir=/w", "--workers=0"], "--workers"),
    ("tpu.sh", ["start", "--name=a", "--zone=z"], "unknown action"),
    ("tpu.sh", ["create", "--zone=z"], "--name"),
    ("tpu.sh", ["create", "--name=a", "--zone=z", "--accelerator=h100"], "--accelerator"),
    ("tpu.sh", ["run", "--name=a", "--zone=z", "--config=configs/cifar_final.py",
                "--workdir=/tmp/w"], "gs://"),
    ("tpu.sh", ["run", "--name=a", "--zone=z", "--config=configs/none.py",
                "--workdir=gs://b/w"], "no such file"),
    ("gpu.sh", ["--config=configs/cifar_final.py"], "--workdir"),
    ("gpu.sh", ["--config=configs/cifar_final.py", "--workdir=/w", "--gpus=a"], "--gpus"),
    ("gpu.sh", ["--config=configs/cifar_final.py", "--workdir=/w", "--override=epochs=3"],
     "--override"),
    ("gpu.sh", ["--config=configs/cifar_final.py", "--workdir=/w", "--coordinator=h:1",
                "--hosts=2", "--host-id=2"], "--host-id"),
    ("gpu.sh", ["--config=configs/cifar_final.py", "--workdir=/w", "--hosts=2"], "--coordinator"),
])
def test_bad_arguments_fail_with_one_line(script, args, message):
  result = launch(script, *args, "--dry-run")
  assert result.returncode == 2 and message in result.stderr and "+ " not in result.stdout
