"""Command-line entry point.

  python -m nao_jax.main --config=configs/<experiment>.py --workdir=DIR \
      [--config.<field>=<value> ...]

Creates and locks ``DIR`` (one process per workdir), refuses a resume whose
settings differ from ``DIR/config.json`` (``nao_jax.workdir``), then writes the
resolved config there and runs ``config.job``.
Compiled programs are cached in ``--compilation_cache`` (default
``~/.cache/nao_jax/xla``), so a resumed run does not compile them again. On a
CPU-only host XLA's backend compiles at optimisation level 1 (``CPU_COMPILE_FLAG``)
unless ``$XLA_FLAGS`` sets the level: short CPU runs are compile-bound; for a long
one, ``XLA_FLAGS=--xla_backend_optimization_level=3`` (XLA's default) may step faster.
Bad flags or config values end with one line naming the field and the fix.
"""

import importlib.metadata
import importlib.util
import os
import sys
from typing import Any

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
from ml_collections import config_flags

from nao_jax import configuration
from nao_jax import jobs
from nao_jax import workdir as workdir_lib

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, e.g. configs/nb201.py; any field "
    "can be overridden with --config.<field>=<value>.", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for config.json, history, checkpoints and plots.")
_CACHE = flags.DEFINE_string(
    "compilation_cache", "~/.cache/nao_jax/xla",
    "Persistent XLA compilation cache: a rerun (resume) or a later run of the same "
    "networks skips their compilation; '' disables it. $JAX_COMPILATION_CACHE_DIR, "
    "if set, wins.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() before the job: every host of a "
    "multi-host TPU slice or GPU cluster runs the same command (launch/tpu.sh passes it). "
    "On Cloud TPU, SLURM and the other clusters JAX detects, nothing else is needed; "
    "elsewhere pass --coordinator_address, --num_processes and --process_id.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0's coordinator (with --distributed; "
    "default: detected, or $JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Processes in the job (with --distributed; default: detected).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's index, 0..num_processes-1 (with --distributed; "
    "default: detected).")
_DTYPE = flags.DEFINE_enum(
    "dtype", None, ["float32", "bfloat16"], "Compute dtype of everything the job trains: sets "
    "every 'dtype' field of the config (train.dtype, final.train.dtype, ...); parameters stay "
    "float32. A job that trains nothing ignores it.")
CACHE_MAX_BYTES = 4 << 30  # Least recently used entries go beyond this.
# LLVM at -O1 instead of -O3 for XLA:CPU's generated code: small networks compile
# about a fifth faster and step a few percent slower; large ones are unchanged, their
# convolutions being library calls (benchmarks/results/cpu_notes.md). Accelerator
# backends read the same flag for their own code, so it is set only where none can be.
CPU_COMPILE_FLAG = "--xla_backend_optimization_level=1"


def _fail(message: str) -> None:
  print(f"error: {' '.join(message.split())}", file=sys.stderr)
  sys.exit(2)


def _parse_flags(argv: list[str]) -> list[str]:
  """Parses flags, turning absl's and ml_collections' failures into one line."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    # ml_collections raises these for an override of a field the config lacks.
    field = str(e).strip("'\"")
    given = [a for a in argv[1:] if a.startswith("--config.")
             and field in a.partition("=")[0].split(".")[1:]]
    source = ("a --config flag" if not given else given[0] if len(given) == 1 else
              "one of " + ", ".join(given))
    _fail(f"unknown config field {field!r} (from {source}); "
          "remove it or use a field that the config file defines.")
  except (flags.Error, ValueError, TypeError) as e:
    message = _last_line(str(e)).rstrip(".")
    if "workdir" in message:
      _fail(f"{message}. Pass --workdir=DIR (created if missing).")
    _fail(f"{message}. Fix that flag (--config=FILE.py, --config.<field>=<value>).")


def _last_line(message: str) -> str:
  """The flag name plus the final line of a message that embeds a traceback."""
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  if len(lines) <= 1:
    return message.strip()
  return f"{lines[0].split(':')[0]}: {lines[-1]}"


def _enable_compilation_cache(directory: str) -> None:
  """Caches compiled programs that took over a second to compile in ``directory``."""
  if os.environ.get("JAX_COMPILATION_CACHE_DIR") or not directory:
    return
  jax.config.update("jax_compilation_cache_dir", os.path.expanduser(directory))
  jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)


def _cpu_only() -> bool:
  """Whether JAX can only use the CPU here: ``JAX_PLATFORMS`` says so, or no
  accelerator plugin (CUDA, ROCm, ...) and no ``libtpu`` is installed."""
  if jax.config.jax_platforms:
    return set(jax.config.jax_platforms.split(",")) == {"cpu"}
  return (not importlib.metadata.entry_points(group="jax_plugins")
          and importlib.util.find_spec("jax_plugins") is None
          and importlib.util.find_spec("libtpu") is None)


def _prefer_fast_cpu_compiles() -> None:
  """Adds ``CPU_COMPILE_FLAG`` to ``$XLA_FLAGS`` on a CPU-only host (before any
  backend starts, which is when XLA reads the variable) unless the user set the level."""
  current = os.environ.get("XLA_FLAGS", "")
  if "xla_backend_optimization_level" not in current and _cpu_only():
    os.environ["XLA_FLAGS"] = f"{current} {CPU_COMPILE_FLAG}".strip()


def _set_every_dtype(config: Any, dtype: str) -> None:
  """Sets every field named ``dtype`` in ``config`` (a ConfigDict tree) to ``dtype``."""
  for key in list(config.keys()):
    if key == "dtype":
      config[key] = dtype
    elif isinstance(config[key], ml_collections.ConfigDict):
      _set_every_dtype(config[key], dtype)


def _initialize_distributed() -> None:
  """Joins the multi-process job; CPU processes exchange collectives through gloo."""
  explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if any(v is not None for v in explicit[1:]) and None in explicit[1:]:
    _fail("--num_processes and --process_id go together; pass both, or neither to detect them.")
  if _PROCESS_ID.value is not None and not 0 <= _PROCESS_ID.value < _NUM_PROCESSES.value:
    _fail(f"--process_id={_PROCESS_ID.value} must be in 0..{_NUM_PROCESSES.value - 1}.")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(*explicit)


def main(argv: list[str]) -> None:
  if not flags.FLAGS["verbosity"].present:
    # Progress goes to stdout; library INFO logs (orbax saves, backend probing)
    # would bury it. --verbosity=0 brings them back.
    logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; settings go in --config.<field>=<value>.")
  if not _WORKDIR.value:
    _fail("--workdir is required: pass --workdir=DIR (created if missing).")
  if _CONFIG.value is None:
    _fail("--config is required: pass --config=configs/<experiment>.py.")
  try:
    config = _CONFIG.value
    config.get("job")  # A config file that failed to load raises here.
  except (OSError, AttributeError) as e:
    _fail(f"--config: {_last_line(str(e))}; pass --config=configs/<experiment>.py.")
  if _DTYPE.value:
    _set_every_dtype(config, _DTYPE.value)
  _prefer_fast_cpu_compiles()
  _enable_compilation_cache(_CACHE.value)
  if _DISTRIBUTED.value:
    _initialize_distributed()
  logging.info("JAX %s, process %d/%d, devices: %s", jax.__version__,
               jax.process_index(), jax.process_count(), jax.local_devices())
  try:
    run(config, _WORKDIR.value)
  except (configuration.ConfigError, workdir_lib.WorkdirError) as e:
    _fail(str(e))


def run(config: ml_collections.ConfigDict, workdir: str) -> Any:
  """Runs ``config.job`` in ``workdir`` (a local path or any ``etils.epath`` URL):
  creates and locks it, refuses a resume with other settings, writes
  ``config.json``, runs the job; returns what the job returns.
  Raises:
    configuration.ConfigError, workdir_lib.WorkdirError: one line naming the fix.
  """
  job = jobs.get(config)
  workdir_lib.create(workdir)
  with workdir_lib.lock(workdir):
    workdir_lib.check_resume(config, workdir)
    configuration.write_resolved(config, workdir)
    return job(config, workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
