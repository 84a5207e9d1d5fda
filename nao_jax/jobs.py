"""The registry of jobs that ``config.job`` names.

A job is ``run(config, workdir)``; modules are imported on use so that a job's
heavy dependencies load only when it runs.
"""

from __future__ import annotations

import importlib
from typing import Callable

import ml_collections

from nao_jax import configuration

Job = Callable[[ml_collections.ConfigDict, str], None]

# job name -> module whose ``run(config, workdir)`` carries it out.
JOBS = {
    "sample": "nao_jax.sample",
    "train": "nao_jax.training.loop",
    "ptb": "nao_jax.training.rnn_loop",
    "search": "nao_jax.search",
    "nao_ws": "nao_jax.nao_ws",
    "darts": "nao_jax.oneshot.darts",
}


def get(config: ml_collections.ConfigDict) -> Job:
  """The ``run`` function for ``config.job``; ``ConfigError`` if unknown."""
  name = config.get("job")
  if name not in JOBS:
    raise configuration.ConfigError("job", f"unknown job {name!r}; choose one of {sorted(JOBS)}.")
  return importlib.import_module(JOBS[name]).run
