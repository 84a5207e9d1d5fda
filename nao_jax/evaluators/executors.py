"""Executors: run an evaluator's trials several at once, on this host or on Ray.

``config.executor`` chooses one (``default_config()`` gives every field):

* ``name='local'`` (default): ``workers`` trials at once in threads of this
  process, on one shared evaluator (which must be thread-safe: the tables are;
  the child-training evaluator hands each trial its own group of devices).
  With ``workers=1`` the evaluator runs as it is, one trial after another.
* ``name='ray'``: each trial a Ray task with ``cpus_per_trial``,
  ``gpus_per_trial`` and ``resources_per_trial``, at most ``workers`` in
  flight. ``address=''`` starts a Ray on this machine (with room for
  ``workers`` trials), ``'auto'`` joins the cluster this node belongs to,
  ``'ray://host:10001'`` a remote one. A worker process builds the evaluator
  from the job's config once and keeps it for the trials it runs; it imports
  the modules ``imports`` names first (those that register a user's evaluator).
  A trial whose worker dies (process killed, node lost) is resubmitted up to
  ``max_retries`` times, then recorded as failed; an exception inside a trial
  is recorded as failed at once.

Results come back as each trial finishes (``Evaluator.evaluate_each``), so the
driver records every one the moment it is known.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib
import json
import math
import os
import sys
from typing import Any, Callable, Iterator, Sequence

import ml_collections

from nao_jax import configuration
from nao_jax.evaluators.base import Evaluation, Evaluator, evaluate_one

NAMES = ("local", "ray")


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name="local",  # 'local' or 'ray'.
      workers=1,  # Trials at once.
      # Ray only:
      address="",  # '' starts Ray here; 'auto' joins this node's cluster; 'ray://host:port'.
      cpus_per_trial=1.0,
      gpus_per_trial=0.0,
      resources_per_trial={},  # Custom Ray resources, e.g. {'TPU': 4}.
      max_retries=2,  # Resubmissions of a trial whose worker died.
      imports=[],  # Modules a worker imports first (registering a user's evaluator).
  ))


class Executed(Evaluator):
  """``evaluator`` with its trials run by ``run_trials``: ``(archs) -> iterator of
  (i, Evaluation)`` in the order they finish."""

  def __init__(self, evaluator: Evaluator,
               run_trials: Callable[[Sequence[Any]], Iterator[tuple[int, Evaluation]]]):
    self.inner, self._run_trials = evaluator, run_trials
    self.space = evaluator.space
    self.search_metric, self.report_metric = evaluator.search_metric, evaluator.report_metric
    self.cost_unit = evaluator.cost_unit

  def evaluate(self, archs: Sequence[Any]) -> list[Evaluation]:
    found = dict(self.evaluate_each(archs))
    return [found[i] for i in range(len(archs))]

  def evaluate_each(self, archs: Sequence[Any]) -> Iterator[tuple[int, Evaluation]]:
    return self._run_trials(archs) if len(archs) else iter(())

  def observe(self, writer: Any) -> None:
    self.inner.observe(writer)


def _check(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config.executor`` with defaults for absent fields; ``ConfigError`` naming a bad one."""
  executor = default_config()
  executor.update(configuration.value(config, "executor") or {})
  config = ml_collections.ConfigDict({"executor": executor})
  configuration.check(config, [
      ("executor.name", executor.name in NAMES, f"choose one of {list(NAMES)}")])
  configuration.positive_int(config, "executor.workers")
  if executor.name == "ray":
    checks = [("executor.max_retries", isinstance(executor.max_retries, int)
               and executor.max_retries >= 0, "must be an integer >= 0")]
    for field in ("cpus_per_trial", "gpus_per_trial"):
      got = executor[field]
      checks.append((f"executor.{field}", isinstance(got, (int, float)) and got >= 0,
                     "must be a number >= 0"))
    configuration.check(config, checks)
  return executor


def wrap(evaluator: Evaluator, config: ml_collections.ConfigDict) -> Evaluator:
  """``evaluator`` run by the executor ``config.executor`` names (as it is for one
  local worker, and for an evaluator that re-scores a pool: the supernet)."""
  executor = _check(config)
  if evaluator.rescores_pool or (executor.name == "local" and executor.workers == 1):
    return evaluator
  if executor.name == "local":
    return Executed(evaluator, lambda archs: _local_trials(evaluator, archs, executor.workers))
  return Executed(evaluator, _RayTrials(config, executor, evaluator.space))


def _local_trials(evaluator: Evaluator, archs: Sequence[Any],
                  workers: int) -> Iterator[tuple[int, Evaluation]]:
  with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="trial") as pool:
    futures = {pool.submit(evaluate_one, evaluator, arch): i for i, arch in enumerate(archs)}
    for future in concurrent.futures.as_completed(futures):
      yield futures[future], future.result()


# ---- Ray ---------------------------------------------------------------------

# In a Ray worker process: the evaluators built for the configs of its trials.
_WORKER_EVALUATORS: dict[str, Evaluator] = {}


def run_trial(config_json: str, arch_json: str) -> dict[str, Any]:
  """One trial in a worker: the evaluation of ``arch_json`` (``space.to_json``) by
  the evaluator of ``config_json`` (a job config as JSON), as a dict of
  ``Evaluation``'s fields. Never raises for a failed evaluation."""
  if config_json not in _WORKER_EVALUATORS:
    config = ml_collections.ConfigDict(json.loads(config_json))
    for module in config.executor.imports:
      importlib.import_module(module)
    from nao_jax import evaluators  # pylint: disable=g-import-not-at-top  # Cycle.
    _WORKER_EVALUATORS[config_json] = evaluators.build_plain(config)
  evaluator = _WORKER_EVALUATORS[config_json]
  try:
    arch = evaluator.space.from_json(arch_json)
  except ValueError as e:
    return dataclasses.asdict(Evaluation.failure(f"ValueError: {e}"))
  return dataclasses.asdict(evaluate_one(evaluator, arch))


class _RayTrials:
  """Runs trials as Ray tasks (see the module docstring); starts or joins Ray once."""

  def __init__(self, config: ml_collections.ConfigDict, executor: ml_collections.ConfigDict,
               space: Any):
    try:
      import ray  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise configuration.ConfigError(
          "executor.name", "'ray' needs Ray: pip install -e \".[ray]\" (or use 'local').") from None
    self.ray, self.executor, self.space = ray, executor, space
    self.config_json = json.dumps(json.loads(config.to_json_best_effort()), sort_keys=True)
    if not ray.is_initialized():
      if executor.address:
        ray.init(address=executor.address, include_dashboard=False, configure_logging=False)
      else:
        # Room for every worker, whatever this machine's core count; the workers
        # inherit this process's environment and import path.
        path = os.pathsep.join([os.getcwd(), *filter(None, sys.path)])
        ray.init(num_cpus=max(os.cpu_count() or 1,
                              math.ceil(executor.workers * executor.cpus_per_trial)),
                 include_dashboard=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    self.task = ray.remote(run_trial).options(
        num_cpus=executor.cpus_per_trial, num_gpus=executor.gpus_per_trial,
        resources=dict(executor.resources_per_trial) or None,
        max_retries=executor.max_retries, retry_exceptions=False)

  def __call__(self, archs: Sequence[Any]) -> Iterator[tuple[int, Evaluation]]:
    ray = self.ray
    waiting = list(range(len(archs)))
    running: dict[Any, int] = {}
    while waiting or running:
      while waiting and len(running) < self.executor.workers:
        i = waiting.pop(0)
        running[self.task.remote(self.config_json, self.space.to_json(archs[i]))] = i
      done, _ = ray.wait(list(running), num_returns=1)
      for ref in done:
        i = running.pop(ref)
        try:
          yield i, Evaluation(**ray.get(ref))
        except ray.exceptions.RayError as e:
          yield i, Evaluation.failure(
              f"the trial's worker was lost {self.executor.max_retries + 1} times "
              f"(executor.max_retries={self.executor.max_retries}): "
              f"{' '.join(str(e).split())[:500]}")
